//! The C ABI (`src/capi/`, `include/tokenfab.h`) called as C calls it — the `extern "C"`
//! functions with raw pointers — on the default model: greedy output and per-token telemetry
//! equal `tokenfab run`'s, a cancel from another thread stops within one step, two sequences
//! of one engine generate on two threads as each does alone, and every kind of bad input is an
//! error code with a message that says what is wrong (never a panic or an abort).

mod common;

use std::ffi::{c_char, c_void, CStr, CString};
use std::process::Command;
use std::ptr::{null, null_mut};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::OnceLock;
use tokenfab::capi::engine::*;
use tokenfab::capi::sequence::*;
use tokenfab::capi::types::*;
use tokenfab::capi::*;

const PROMPT: &str = "The capital of France is";

/// A handle as the tests share it between threads (C callers do the same with the pointer).
#[derive(Clone, Copy)]
struct Engine(*mut tf_engine);
// SAFETY: engine handles may be used from any thread (the header's "Threads").
unsafe impl Send for Engine {}
unsafe impl Sync for Engine {}

fn last_error() -> String {
    // SAFETY: tf_last_error returns a valid NUL-terminated string.
    unsafe { CStr::from_ptr(tf_last_error()) }
        .to_string_lossy()
        .into_owned()
}

/// Asserts `status` is `want` and the message mentions `needle`.
fn expect_err(status: tf_status, want: tf_status, needle: &str) {
    // SAFETY: static strings.
    let name = |s| unsafe { CStr::from_ptr(tf_status_name(s)) }.to_string_lossy();
    let msg = last_error();
    assert_eq!(
        status,
        want,
        "got {} ({msg}), expected {}",
        name(status),
        name(want)
    );
    assert!(
        msg.contains(needle),
        "the message {msg:?} does not mention {needle:?}"
    );
}

fn ok(status: tf_status) {
    assert_eq!(status, TF_OK, "{}", last_error());
}

fn open(path: &str) -> Result<*mut tf_engine, (tf_status, String)> {
    let mut opts = tf_engine_options::default();
    // SAFETY: a writable struct.
    ok(unsafe { tf_engine_options_init(&mut opts) });
    let backend = CString::new("cpu").unwrap();
    opts.backend = backend.as_ptr();
    opts.threads = 2;
    opts.ctx = 512;
    let path = CString::new(path).unwrap();
    let mut e = null_mut();
    // SAFETY: valid strings and struct, a writable out-parameter.
    match unsafe { tf_engine_open(path.as_ptr(), &opts, &mut e) } {
        TF_OK => Ok(e),
        s => Err((s, last_error())),
    }
}

/// The default model, opened once for the whole binary (engines are shared across threads).
fn engine() -> *mut tf_engine {
    static E: OnceLock<Engine> = OnceLock::new();
    E.get_or_init(|| {
        let p = common::model(common::GEMMA);
        Engine(open(p.to_str().unwrap()).expect("the default model opens"))
    })
    .0
}

fn tokenize(e: *mut tf_engine, text: &str) -> Vec<u32> {
    let text = CString::new(text).unwrap();
    let mut n = 0usize;
    // SAFETY: asks for the length only (cap 0).
    let s = unsafe { tf_tokenize(e, text.as_ptr(), 1, null_mut(), 0, &mut n) };
    assert_eq!(s, TF_ERR_BUFFER);
    let mut ids = vec![0u32; n];
    // SAFETY: a buffer of `n` ids.
    ok(unsafe { tf_tokenize(e, text.as_ptr(), 1, ids.as_mut_ptr(), n, &mut n) });
    ids
}

fn greedy(max_tokens: u32) -> tf_generate_options {
    tf_generate_options {
        temperature: 0.0,
        max_tokens,
        ..tf_generate_options::default()
    }
}

/// What a callback saw.
#[derive(Default)]
struct Seen {
    events: Vec<tf_token_event>,
    text: String,
    /// Stop after this many generated tokens (callback returns 1).
    stop_after: Option<usize>,
    generated: AtomicUsize,
}

unsafe extern "C" fn record(ev: *const tf_token_event, user: *mut c_void) -> i32 {
    // SAFETY: `user` is the test's `Seen`; `ev` is valid during the call.
    let (seen, ev) = unsafe { (&mut *(user as *mut Seen), &*ev) };
    // SAFETY: `text` is `text_len` bytes, NUL-terminated.
    let text = unsafe { CStr::from_ptr(ev.text) }.to_str().unwrap();
    assert_eq!(text.len(), ev.text_len);
    seen.text.push_str(text);
    seen.events.push(*ev);
    if ev.phase == TF_PHASE_DECODE && ev.flush == 0 {
        let n = seen.generated.fetch_add(1, Ordering::SeqCst) + 1;
        if seen.stop_after.is_some_and(|s| n >= s) {
            return 1;
        }
    }
    0
}

fn new_sequence(e: *mut tf_engine) -> *mut tf_sequence {
    let mut s = null_mut();
    // SAFETY: a writable out-parameter.
    ok(unsafe { tf_sequence_new(e, &mut s) });
    s
}

/// Generates on `seq`, recording every event; returns the status and the summary.
fn generate(
    seq: *mut tf_sequence,
    prompt: &[u32],
    opts: &tf_generate_options,
    seen: &mut Seen,
) -> (tf_status, tf_summary) {
    let mut sum = tf_summary::default();
    // SAFETY: valid prompt, options, callback, user data and summary.
    let s = unsafe {
        tf_sequence_generate(
            seq,
            prompt.as_ptr(),
            prompt.len(),
            opts,
            Some(record),
            seen as *mut Seen as *mut c_void,
            &mut sum,
        )
    };
    (s, sum)
}

#[test]
fn greedy_output_and_telemetry_equal_tokenfab_run() {
    let e = engine();
    let ids = tokenize(e, PROMPT);
    let seq = new_sequence(e);
    let mut seen = Seen::default();
    let (s, sum) = generate(seq, &ids, &greedy(24), &mut seen);
    ok(s);
    assert_eq!(sum.stop_reason, TF_STOP_LENGTH);
    assert_eq!(sum.n_generated, 24);
    assert_eq!(sum.n_prompt as usize, ids.len());

    // the same run through the CLI, with its per-token trace
    let dir = tempfile::tempdir().unwrap();
    let trace = dir.path().join("trace.jsonl");
    let out = Command::new(env!("CARGO_BIN_EXE_tokenfab"))
        .args(["run", "--temp", "0", "-n", "24", "-t", "2", "-c", "512"])
        .args(["--backend", "cpu", "--energy", "estimate", "-m"])
        .arg(common::model(common::GEMMA))
        .arg("--trace")
        .arg(&trace)
        .arg(PROMPT)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8(out.stdout).unwrap();
    assert_eq!(
        seen.text,
        stdout.trim_end_matches('\n'),
        "text differs from `tokenfab run`"
    );

    // token by token: the same tokens, positions, phases, bytes and FLOPs as the trace
    let records: Vec<serde_json::Value> = std::fs::read_to_string(&trace)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .filter(|v: &serde_json::Value| v["type"] == "token")
        .collect();
    let events: Vec<&tf_token_event> = seen.events.iter().filter(|e| e.flush == 0).collect();
    assert_eq!(events.len(), records.len());
    let src = c"estimated:model";
    for (ev, r) in events.iter().zip(&records) {
        let phase = if ev.phase == TF_PHASE_PREFILL {
            "prefill"
        } else {
            "decode"
        };
        assert_eq!(r["phase"], phase);
        assert_eq!(r["token"], ev.token);
        assert_eq!(r["pos"], ev.pos);
        let b = &r["bytes"];
        let n = |k: &str| b[k].as_u64().unwrap();
        let read = n("weight_bytes") + n("kv_read_bytes") + n("act_read_bytes");
        let written = n("kv_write_bytes") + n("act_write_bytes");
        assert_eq!(
            (ev.bytes_read, ev.bytes_written, ev.flops),
            (read, written, n("flops"))
        );
        assert_eq!(r["energy_source"], "estimated:model");
        // SAFETY: a static string.
        assert_eq!(unsafe { CStr::from_ptr(ev.energy_source) }, src);
        assert!(ev.joules > 0.0 && ev.usd > 0.0 && ev.duration_s > 0.0);
    }
    // the summary adds up the events
    let sum_of = |phase: i32, f: fn(&tf_token_event) -> f64| -> f64 {
        events
            .iter()
            .filter(|e| e.phase == phase)
            .map(|e| f(e))
            .sum()
    };
    let close = |a: f64, b: f64| (a - b).abs() <= 1e-9 * a.abs().max(1.0);
    assert!(close(
        sum.decode_joules,
        sum_of(TF_PHASE_DECODE, |e| e.joules)
    ));
    assert!(close(sum.prefill_usd, sum_of(TF_PHASE_PREFILL, |e| e.usd)));
    assert_eq!(
        sum.decode_bytes_read as f64,
        sum_of(TF_PHASE_DECODE, |e| e.bytes_read as f64)
    );
    // SAFETY: an open sequence.
    ok(unsafe { tf_sequence_free(seq) });
}

#[test]
fn cancel_from_another_thread_stops_within_one_step() {
    let e = engine();
    let ids = tokenize(e, PROMPT);
    let seq = new_sequence(e);
    let mut seen = Seen::default();
    let counter: *const AtomicUsize = &seen.generated;
    let (seq_id, counter_addr) = (seq as usize, counter as usize);
    let canceller = std::thread::spawn(move || {
        // SAFETY: `seen` outlives the generation this thread watches.
        let generated = unsafe { &*(counter_addr as *const AtomicUsize) };
        while generated.load(Ordering::SeqCst) < 5 {
            std::thread::yield_now();
        }
        // SAFETY: any pointer value may be passed.
        ok(unsafe { tf_sequence_cancel(seq_id as *const tf_sequence) });
        generated.load(Ordering::SeqCst)
    });
    let (s, sum) = generate(seq, &ids, &greedy(200), &mut seen);
    ok(s);
    let at_cancel = canceller.join().unwrap();
    assert_eq!(sum.stop_reason, TF_STOP_CANCELLED);
    assert!(
        (sum.n_generated as usize) <= at_cancel + 1,
        "{} tokens generated, {at_cancel} when cancelled: more than one step later",
        sum.n_generated
    );
    // a later generation on the same sequence is not cancelled
    let mut again = Seen::default();
    let (s, sum) = generate(seq, &ids, &greedy(4), &mut again);
    ok(s);
    assert_eq!((sum.stop_reason, sum.n_generated), (TF_STOP_LENGTH, 4));
    // SAFETY: an open sequence.
    ok(unsafe { tf_sequence_free(seq) });
}

#[test]
fn two_sequences_on_one_engine_from_two_threads_match_each_alone() {
    let e = Engine(engine());
    let prompts = ["The capital of France is", "def fibonacci(n):"];
    let run = move |p: &str| {
        let e = e;
        let ids = tokenize(e.0, p);
        let seq = new_sequence(e.0);
        let mut seen = Seen::default();
        let (s, sum) = generate(seq, &ids, &greedy(20), &mut seen);
        ok(s);
        assert_eq!(sum.n_generated, 20);
        // SAFETY: an open sequence.
        ok(unsafe { tf_sequence_free(seq) });
        seen.text
    };
    let alone: Vec<String> = prompts.iter().map(|p| run(p)).collect();
    let together: Vec<String> = std::thread::scope(|s| {
        let hs: Vec<_> = prompts.iter().map(|p| s.spawn(move || run(p))).collect();
        hs.into_iter().map(|h| h.join().unwrap()).collect()
    });
    assert_eq!(alone, together);
    assert_ne!(alone[0], alone[1]);
}

#[test]
fn callback_stops_and_the_next_turn_reuses_the_cache() {
    let e = engine();
    let ids = tokenize(e, PROMPT);
    let seq = new_sequence(e);
    let mut seen = Seen {
        stop_after: Some(3),
        ..Seen::default()
    };
    let (s, sum) = generate(seq, &ids, &greedy(50), &mut seen);
    ok(s);
    assert_eq!((sum.stop_reason, sum.n_generated), (TF_STOP_CANCELLED, 3));
    // the conversation goes on: the first prompt is in the cache, only the rest runs
    let mut longer = ids.clone();
    longer.extend(
        tokenize(e, " Paris. The capital of Italy is")
            .into_iter()
            .skip(1),
    );
    let mut seen = Seen::default();
    let (s, sum) = generate(seq, &longer, &greedy(4), &mut seen);
    ok(s);
    assert_eq!(sum.n_reused as usize, ids.len());
    let prefill = seen.events.iter().filter(|e| e.phase == TF_PHASE_PREFILL);
    assert_eq!(prefill.count(), longer.len() - ids.len());
    // a callback that generates on its own sequence is refused (the sequence is busy)
    struct Reenter {
        seq: *mut tf_sequence,
        status: Option<tf_status>,
    }
    unsafe extern "C" fn reenter(_: *const tf_token_event, user: *mut c_void) -> i32 {
        // SAFETY: `user` is the test's `Reenter`.
        let r = unsafe { &mut *(user as *mut Reenter) };
        let p = [2u32, 651];
        // SAFETY: a valid prompt.
        let s = unsafe {
            tf_sequence_generate(r.seq, p.as_ptr(), 2, null(), None, null_mut(), null_mut())
        };
        r.status.get_or_insert(s);
        1
    }
    let mut r = Reenter { seq, status: None };
    let opts = greedy(2);
    // SAFETY: valid arguments; the callback's user data is `r`.
    ok(unsafe {
        tf_sequence_generate(
            seq,
            ids.as_ptr(),
            ids.len(),
            &opts,
            Some(reenter),
            &mut r as *mut Reenter as *mut c_void,
            null_mut(),
        )
    });
    expect_err(r.status.unwrap(), TF_ERR_BUSY, "generating already");
    // SAFETY: an open sequence.
    ok(unsafe { tf_sequence_free(seq) });
}

#[test]
fn chat_template_and_detokenize_round_trip() {
    let e = engine();
    let (role, content) = (
        CString::new("user").unwrap(),
        CString::new("Hi there").unwrap(),
    );
    let msgs = [tf_message {
        role: role.as_ptr(),
        content: content.as_ptr(),
    }];
    let mut buf = vec![0u8; 4096];
    let mut len = 0;
    // SAFETY: valid messages and buffer.
    ok(unsafe {
        tf_chat_apply(
            e,
            msgs.as_ptr(),
            1,
            buf.as_mut_ptr().cast(),
            buf.len(),
            &mut len,
        )
    });
    let text = std::str::from_utf8(&buf[..len]).unwrap().to_string();
    assert_eq!(buf[len], 0, "NUL-terminated");
    assert!(text.contains("<start_of_turn>user\nHi there"), "{text}");
    assert!(text.ends_with("<start_of_turn>model\n"), "{text}");
    let mut ids = vec![0u32; 256];
    let mut n = 0;
    // SAFETY: valid messages and buffer.
    ok(unsafe { tf_chat_tokenize(e, msgs.as_ptr(), 1, 1, ids.as_mut_ptr(), ids.len(), &mut n) });
    ids.truncate(n);
    let mut info = tf_engine_info::default();
    // SAFETY: a struct with its size set.
    ok(unsafe { tf_engine_info_get(e, &mut info) });
    assert_eq!(
        ids.iter().filter(|&&t| t as i64 == info.bos).count(),
        1,
        "one BOS"
    );
    assert_eq!((info.ctx, info.vocab_size), (512, 262144));
    // SAFETY: a string owned by the engine.
    let backend = unsafe { CStr::from_ptr(info.backend) }.to_str().unwrap();
    assert!(backend.starts_with("cpu"), "{backend}");
    // ids back to text: the template's text without the BOS
    let mut out = vec![0u8; 4096];
    // SAFETY: valid ids and buffer.
    ok(unsafe {
        tf_detokenize(
            e,
            ids.as_ptr(),
            n,
            out.as_mut_ptr().cast(),
            out.len(),
            &mut len,
        )
    });
    let back = std::str::from_utf8(&out[..len]).unwrap();
    assert!(back.contains("Hi there"), "{back}");
    // a buffer one byte short (no room for the NUL) says how long the text is
    let mut small = vec![0u8; len];
    let mut need = 0;
    // SAFETY: valid ids and a buffer of `len` bytes.
    let s = unsafe {
        tf_detokenize(
            e,
            ids.as_ptr(),
            n,
            small.as_mut_ptr().cast(),
            len,
            &mut need,
        )
    };
    expect_err(s, TF_ERR_BUFFER, "are needed");
    assert_eq!(need, len);
}

#[test]
fn bad_input_is_an_error_code_with_a_message() {
    let e = engine();
    let dir = tempfile::tempdir().unwrap();
    // opening: NULL, not UTF-8, missing, not a GGUF, bad options
    let mut out = null_mut();
    // SAFETY: each call passes what the test names; the library must refuse it.
    unsafe {
        expect_err(
            tf_engine_open(null(), null(), &mut out),
            TF_ERR_NULL,
            "path",
        );
        expect_err(
            tf_engine_open(c"x".as_ptr(), null(), null_mut()),
            TF_ERR_NULL,
            "engine",
        );
        let bad = [0xffu8, 0xfe, 0];
        expect_err(
            tf_engine_open(bad.as_ptr().cast::<c_char>(), null(), &mut out),
            TF_ERR_UTF8,
            "UTF-8",
        );
    }
    let missing = dir.path().join("nope.gguf");
    let (s, m) = open(missing.to_str().unwrap()).unwrap_err();
    assert_eq!(s, TF_ERR_MODEL, "{m}");
    assert!(m.contains("nope.gguf"), "{m}");
    let junk = dir.path().join("junk.gguf");
    std::fs::write(&junk, b"not a model at all, just text").unwrap();
    let (s, m) = open(junk.to_str().unwrap()).unwrap_err();
    assert_eq!(s, TF_ERR_MODEL, "{m}");
    assert!(m.contains("not a GGUF"), "{m}");
    let model = CString::new(common::model(common::GEMMA).to_str().unwrap()).unwrap();
    let mut opts = tf_engine_options {
        struct_size: 3,
        ..Default::default()
    };
    // SAFETY: the options are readable; their size is wrong.
    let s = unsafe { tf_engine_open(model.as_ptr(), &opts, &mut out) };
    expect_err(s, TF_ERR_VERSION, "struct_size is 3");
    opts = tf_engine_options {
        backend: c"tpu".as_ptr(),
        ..Default::default()
    };
    // SAFETY: valid options naming a backend that does not exist.
    let s = unsafe { tf_engine_open(model.as_ptr(), &opts, &mut out) };
    expect_err(s, TF_ERR_ARGUMENT, "unknown backend");

    // a context the machine cannot hold: refused at open, with the reason
    opts = tf_engine_options {
        ctx: 100_000_000,
        backend: c"cpu".as_ptr(),
        ..Default::default()
    };
    // SAFETY: valid options asking for too much memory.
    let s = unsafe { tf_engine_open(model.as_ptr(), &opts, &mut out) };
    expect_err(s, TF_ERR_DEVICE, "not enough memory");

    // handles: NULL, closed, never opened, of the wrong kind
    let seq = new_sequence(e);
    let mut n = 0;
    // SAFETY: the library must refuse each handle.
    unsafe {
        expect_err(
            tf_tokenize(null(), c"x".as_ptr(), 1, null_mut(), 0, &mut n),
            TF_ERR_NULL,
            "engine handle is NULL",
        );
        let bogus = 0xdead_beef as *const tf_engine;
        expect_err(
            tf_tokenize(bogus, c"x".as_ptr(), 1, null_mut(), 0, &mut n),
            TF_ERR_HANDLE,
            "not an open engine",
        );
        expect_err(
            tf_tokenize(
                seq as *const tf_engine,
                c"x".as_ptr(),
                1,
                null_mut(),
                0,
                &mut n,
            ),
            TF_ERR_HANDLE,
            "not an open engine",
        );
        ok(tf_sequence_free(seq));
        expect_err(tf_sequence_free(seq), TF_ERR_HANDLE, "closed already");
        expect_err(
            tf_sequence_cancel(seq),
            TF_ERR_HANDLE,
            "not an open sequence",
        );
    }

    // strings and arrays
    let seq = new_sequence(e);
    let ids = tokenize(e, PROMPT);
    // SAFETY: each call passes what the test names.
    unsafe {
        let bad = [b'a', 0xc3, 0];
        expect_err(
            tf_tokenize(e, bad.as_ptr().cast(), 1, null_mut(), 0, &mut n),
            TF_ERR_UTF8,
            "text is not valid UTF-8",
        );
        expect_err(
            tf_tokenize(e, c"x".as_ptr(), 1, null_mut(), 0, null_mut()),
            TF_ERR_NULL,
            "length",
        );
        let big = [5u32, 999_999];
        expect_err(
            tf_detokenize(e, big.as_ptr(), 2, null_mut(), 0, &mut n),
            TF_ERR_ARGUMENT,
            "ids[1] is 999999",
        );
        expect_err(
            tf_detokenize(e, null(), 3, null_mut(), 0, &mut n),
            TF_ERR_NULL,
            "ids",
        );
        let msg = [tf_message {
            role: null(),
            content: c"hi".as_ptr(),
        }];
        expect_err(
            tf_chat_tokenize(e, msg.as_ptr(), 1, 1, null_mut(), 0, &mut n),
            TF_ERR_NULL,
            "messages[0].role",
        );
        expect_err(
            tf_chat_tokenize(e, msg.as_ptr(), 0, 1, null_mut(), 0, &mut n),
            TF_ERR_ARGUMENT,
            "no messages",
        );

        // generation: empty and too long prompts, ids outside the vocabulary, bad options
        let g = |p: &[u32], o: &tf_generate_options, sum: *mut tf_summary| {
            tf_sequence_generate(seq, p.as_ptr(), p.len(), o, None, null_mut(), sum)
        };
        let d = greedy(4);
        expect_err(g(&[], &d, null_mut()), TF_ERR_ARGUMENT, "empty");
        expect_err(
            g(&vec![2; 600], &d, null_mut()),
            TF_ERR_ARGUMENT,
            "context holds 512",
        );
        expect_err(
            g(&[2, 300_000], &d, null_mut()),
            TF_ERR_ARGUMENT,
            "prompt[1] is 300000",
        );
        let hot = tf_generate_options {
            temperature: -1.0,
            ..d
        };
        expect_err(g(&ids, &hot, null_mut()), TF_ERR_ARGUMENT, "temperature");
        let stops = [bad.as_ptr().cast::<c_char>()];
        let o = tf_generate_options {
            stop: stops.as_ptr(),
            n_stop: 1,
            ..d
        };
        expect_err(g(&ids, &o, null_mut()), TF_ERR_UTF8, "stop[0]");
        let o = tf_generate_options {
            max_cost_usd: -1.0,
            ..d
        };
        expect_err(g(&ids, &o, null_mut()), TF_ERR_ARGUMENT, "max_cost_usd");
        let o = tf_generate_options {
            struct_size: 1000,
            ..d
        };
        expect_err(
            g(&ids, &o, null_mut()),
            TF_ERR_VERSION,
            "tf_generate_options",
        );
        let mut sum = tf_summary {
            struct_size: 8,
            ..Default::default()
        };
        expect_err(
            g(&ids, &d, &mut sum),
            TF_ERR_VERSION,
            "tf_summary.struct_size is 8",
        );
        // after all that the sequence still works
        let mut sum = tf_summary::default();
        ok(g(&ids, &d, &mut sum));
        assert_eq!(sum.n_generated, 4);
        ok(tf_sequence_free(seq));
        expect_err(
            tf_engine_info_init(null_mut()),
            TF_ERR_NULL,
            "tf_engine_info",
        );
    }
}

#[test]
fn a_closed_engine_keeps_its_sequences_working() {
    let p = common::model(common::GEMMA);
    let e = open(p.to_str().unwrap()).unwrap();
    let ids = tokenize(e, PROMPT);
    let seq = new_sequence(e);
    // SAFETY: an open engine.
    ok(unsafe { tf_engine_close(e) });
    let mut n = 0;
    // SAFETY: a closed handle is refused.
    let s = unsafe { tf_tokenize(e, c"x".as_ptr(), 1, null_mut(), 0, &mut n) };
    expect_err(s, TF_ERR_HANDLE, "closed already");
    let (s, sum) = generate(seq, &ids, &greedy(3), &mut Seen::default());
    ok(s);
    assert_eq!(sum.n_generated, 3);
    // SAFETY: an open sequence; freeing it releases the engine
    ok(unsafe { tf_sequence_free(seq) });
    // SAFETY: static strings
    assert_eq!(
        unsafe { CStr::from_ptr(tf_version()) }.to_str().unwrap(),
        env!("CARGO_PKG_VERSION")
    );
    assert_eq!(tf_abi_version(), TF_ABI_VERSION);
}

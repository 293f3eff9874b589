//! Sequence handles: one conversation (a KV cache on an engine) and its generations, streamed
//! to a C callback with each token's cost, cancellable from any thread.
//!
//! A generation runs step by step: the engine is locked for one forward pass of this sequence,
//! the step's events are collected, and the callback sees them after the lock is released —
//! so sequences on one engine generating on several threads take turns a step at a time, and
//! a callback may call back into the library. A cancel is seen before the next step.

use super::engine::{tf_engine, EngineHandle, ENGINES};
use super::handles::Registry;
use super::types::{
    read_in, tf_generate_options, tf_summary, tf_token_callback, tf_token_event, write_out,
    TF_PHASE_DECODE, TF_PHASE_PREFILL, TF_SEED_RANDOM, TF_STOP_BUDGET_COST, TF_STOP_BUDGET_ENERGY,
    TF_STOP_CANCELLED, TF_STOP_CONTEXT_FULL, TF_STOP_END_OF_GENERATION, TF_STOP_LENGTH,
    TF_STOP_STRING,
};
use super::{guard, slice_arg, str_arg, tf_status, Error, Result};
use super::{TF_ERR_ARGUMENT, TF_ERR_BUSY, TF_ERR_INTERNAL};
use crate::engine::{Cost, EngineError};
use crate::generate::{self, Budget, GenerateOptions, Phase, Sequence, StopReason, TokenEvent};
use crate::model::KvCache;
use crate::sampling::{Sampler, SamplingParams};
use crate::telemetry::ledger::Traffic;
use std::ffi::{c_char, c_void};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, TryLockError};

/// One conversation on an engine, as a C caller holds it.
pub struct tf_sequence {
    _opaque: [u8; 0],
}

/// A sequence's cache before its first generation, then the sequence itself.
enum State {
    Fresh(KvCache),
    Started(Box<Sequence>),
    /// Only while a generation moves the cache into a new sequence.
    Empty,
}

struct SequenceHandle {
    engine: Arc<EngineHandle>,
    state: Mutex<State>,
    cancel: AtomicBool,
}

impl Drop for SequenceHandle {
    /// The cache goes back to the engine for its next sequence.
    fn drop(&mut self) {
        let state = match self.state.get_mut() {
            Ok(s) => std::mem::replace(s, State::Empty),
            Err(_) => return,
        };
        let cache = match state {
            State::Fresh(c) => c,
            State::Started(s) => s.into_cache(),
            State::Empty => return,
        };
        if let Ok(mut e) = self.engine.lock() {
            e.model().release_cache(cache);
        }
    }
}

static SEQUENCES: Registry<SequenceHandle> = Registry::new("sequence");

#[no_mangle]
/// A new sequence on `engine` (a KV cache of the engine's context; allocated now, so a lack of
/// memory shows here) stored in `*sequence`.
///
/// # Safety
/// `sequence` must be NULL or writable.
pub unsafe extern "C" fn tf_sequence_new(
    engine: *const tf_engine,
    sequence: *mut *mut tf_sequence,
) -> tf_status {
    guard(|| {
        super::non_null(sequence, "sequence (the out-parameter)")?;
        let engine = ENGINES.get(engine)?;
        let cache = engine
            .lock()?
            .model()
            .new_cache(0)
            .map_err(|e| Error::from(EngineError::from(e)))?;
        let h = SequenceHandle {
            engine,
            state: Mutex::new(State::Fresh(cache)),
            cancel: AtomicBool::new(false),
        };
        // SAFETY: checked not NULL; writable by the contract.
        unsafe { *sequence = SEQUENCES.insert(Arc::new(h)) };
        Ok(())
    })
}

#[no_mangle]
/// Frees a sequence; its cache goes back to its engine. A generation running on it on another
/// thread finishes first (cancel it to make that quick).
///
/// # Safety
/// Any pointer value may be passed: one that is not an open sequence is `TF_ERR_HANDLE`.
pub unsafe extern "C" fn tf_sequence_free(sequence: *mut tf_sequence) -> tf_status {
    guard(|| SEQUENCES.remove(sequence).map(drop))
}

#[no_mangle]
/// Stops the generation running on `sequence` before its next step (at most one more token
/// is produced); it returns `TF_OK` with `stop_reason` = `TF_STOP_CANCELLED`. Safe to call
/// from any thread at any time; without a generation running it does nothing.
///
/// # Safety
/// Any pointer value may be passed.
pub unsafe extern "C" fn tf_sequence_cancel(sequence: *const tf_sequence) -> tf_status {
    guard(|| {
        SEQUENCES
            .get(sequence)?
            .cancel
            .store(true, Ordering::SeqCst);
        Ok(())
    })
}

/// The generation options, checked.
///
/// # Safety
/// `o.stop` must point to `o.n_stop` NUL-terminated strings (or be NULL with 0).
unsafe fn options(o: &tf_generate_options) -> Result<(SamplingParams, GenerateOptions)> {
    let arg = |m: String| Error::new(TF_ERR_ARGUMENT, m);
    let seed = match o.seed {
        TF_SEED_RANDOM => std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as u64),
        s => s,
    };
    let sampling = SamplingParams {
        temperature: o.temperature,
        top_k: o.top_k as usize,
        top_p: o.top_p,
        min_p: o.min_p,
        repeat_penalty: o.repeat_penalty,
        repeat_last_n: o.repeat_last_n as usize,
        seed,
        ..SamplingParams::default()
    };
    sampling.validate().map_err(|m| {
        // the check names tokenfab's flags; name the struct's fields instead
        let m = [
            ("--temp", "temperature"),
            ("--top-p", "top_p"),
            ("--min-p", "min_p"),
            ("--repeat-penalty", "repeat_penalty"),
        ]
        .iter()
        .fold(m, |m, (flag, field)| {
            m.replace(flag, &format!("tf_generate_options.{field}"))
        });
        arg(m)
    })?;
    // SAFETY: the contract above.
    let stops = unsafe { slice_arg(o.stop, o.n_stop, "tf_generate_options.stop") }?;
    let stop = stops
        .iter()
        .enumerate()
        // SAFETY: the contract above.
        .map(|(i, &s)| unsafe { str_arg(s, &format!("tf_generate_options.stop[{i}]")) })
        .map(|s| s.map(str::to_string))
        .collect::<Result<Vec<_>>>()?;
    if stop.iter().any(String::is_empty) {
        return Err(arg("a stop string is empty".into()));
    }
    let budget = |v: f64, what: &str| match v {
        0.0 => Ok(None),
        v if v > 0.0 && v.is_finite() => Ok(Some(v)),
        v => Err(arg(format!(
            "tf_generate_options.{what} is {v}: give 0 (none) or more"
        ))),
    };
    let gen = GenerateOptions {
        max_tokens: o.max_tokens as usize,
        stop,
        ignore_eog: o.ignore_eog != 0,
        logprobs: None,
        max_energy_j: budget(o.max_energy_j, "max_energy_j")?,
        max_cost_usd: budget(o.max_cost_usd, "max_cost_usd")?,
    };
    Ok((sampling, gen))
}

/// A token event kept past the step that made it (the callback runs after the engine's lock
/// is released).
struct Owned {
    event: tf_token_event,
    /// The text, NUL-terminated.
    text: Vec<u8>,
}

/// Prefill and decode totals, added up from the events (what the callback saw).
#[derive(Default)]
struct Totals {
    traffic: [Traffic; 2],
    cost: [Cost; 2],
}

fn stop_code(s: StopReason) -> i32 {
    match s {
        StopReason::Length => TF_STOP_LENGTH,
        StopReason::EndOfGeneration => TF_STOP_END_OF_GENERATION,
        StopReason::StopString => TF_STOP_STRING,
        StopReason::ContextFull => TF_STOP_CONTEXT_FULL,
        StopReason::Cancelled => TF_STOP_CANCELLED,
        StopReason::Budget(Budget::Energy) => TF_STOP_BUDGET_ENERGY,
        StopReason::Budget(Budget::Cost) => TF_STOP_BUDGET_COST,
    }
}

#[no_mangle]
/// Generates on `sequence` from `prompt` (`n_prompt` token ids, BOS included if wanted — from
/// `tf_tokenize` or `tf_chat_tokenize`) with `opts` (NULL = the defaults), calling `callback`
/// (may be NULL) with `user_data` for every prompt and generated token, and writes the totals to
/// `*summary` (may be NULL). The prompt's longest prefix already in the sequence's cache (an
/// earlier turn of the conversation) is not run again. Returns when generation ends: the token
/// limit, an end-of-generation token, a stop string, a full context, a budget, the callback's
/// non-zero return or `tf_sequence_cancel`. `TF_ERR_BUSY` if the sequence is generating
/// already (on another thread, or from inside its own callback).
///
/// # Safety
/// `prompt` must point to `n_prompt` ids; `opts` be NULL or a `tf_generate_options` of its
/// `struct_size` (its stop strings valid during the call); `callback` a function that does not
/// unwind; `summary` NULL or a `tf_summary` whose `struct_size` is set.
pub unsafe extern "C" fn tf_sequence_generate(
    sequence: *mut tf_sequence,
    prompt: *const u32,
    n_prompt: usize,
    opts: *const tf_generate_options,
    callback: tf_token_callback,
    user_data: *mut c_void,
    summary: *mut tf_summary,
) -> tf_status {
    guard(|| {
        let h = SEQUENCES.get(sequence)?;
        let mut state = match h.state.try_lock() {
            Ok(s) => s,
            Err(TryLockError::WouldBlock) => {
                return Err(Error::new(
                    TF_ERR_BUSY,
                    "the sequence is generating already (another thread, or its own callback)",
                ))
            }
            Err(TryLockError::Poisoned(_)) => {
                return Err(Error::new(
                    TF_ERR_INTERNAL,
                    "the sequence is unusable: an earlier call failed inside it",
                ))
            }
        };
        // SAFETY: the contract above.
        let prompt = unsafe { slice_arg(prompt, n_prompt, "prompt") }?;
        h.engine.check_ids(prompt, "prompt")?;
        // SAFETY: the contract above.
        let (sampling, gen) = unsafe { options(&read_in(opts)?) }?;
        generate::check_prompt(prompt, h.engine.ctx)
            .map_err(|e| Error::from(EngineError::from(e)))?;
        if !summary.is_null() {
            // a summary of the wrong version is refused before the work, not after
            // SAFETY: the contract above.
            unsafe { write_out(summary, &tf_summary::default(), "summary") }?;
        }
        h.cancel.store(false, Ordering::SeqCst);
        let sampler = Sampler::new(sampling);
        let seq = match std::mem::replace(&mut *state, State::Empty) {
            State::Fresh(cache) => Sequence::new(cache, prompt, sampler, gen),
            State::Started(mut s) => s.restart(prompt, sampler, gen).map(|_| *s),
            State::Empty => {
                return Err(Error::new(
                    TF_ERR_INTERNAL,
                    "the sequence lost its cache in an earlier failed call",
                ))
            }
        };
        let seq = seq.map_err(|e| Error::from(EngineError::from(e)))?;
        *state = State::Started(Box::new(seq));
        let State::Started(seq) = &mut *state else {
            unreachable!("just stored")
        };
        let totals = run(&h, seq, callback, user_data)?;
        if !summary.is_null() {
            let v = summarize(seq, &totals, &h.engine);
            // SAFETY: the contract above.
            unsafe { write_out(summary, &v, "summary") }?;
        }
        Ok(())
    })
}

/// The generation loop: one step under the engine's lock, then the step's events to the
/// callback.
fn run(
    h: &SequenceHandle,
    seq: &mut Sequence,
    callback: tf_token_callback,
    user_data: *mut c_void,
) -> Result<Totals> {
    let pricer = &h.engine.pricer;
    let source = h.engine.energy_source.as_ptr();
    let mut totals = Totals::default();
    let mut events: Vec<Owned> = Vec::new();
    loop {
        if h.cancel.load(Ordering::SeqCst) {
            seq.cancel(StopReason::Cancelled);
        }
        if seq.finished().is_some() {
            return Ok(totals);
        }
        events.clear();
        let report = {
            let mut engine = h.engine.lock()?;
            engine.step(&mut [&mut *seq], &mut |_, ev: &TokenEvent| {
                let cost = pricer.cost(ev);
                let k = (ev.phase == Phase::Decode) as usize;
                totals.traffic[k] += ev.traffic;
                totals.cost[k] += cost;
                events.push(owned(ev, cost, source));
                true
            })?
        };
        for o in &mut events {
            o.event.text = o.text.as_ptr().cast::<c_char>();
            if let Some(cb) = callback {
                // SAFETY: the callback's contract (a C function that does not unwind); the
                // event and its text outlive the call.
                if unsafe { cb(&o.event, user_data) } != 0 {
                    seq.cancel(StopReason::Cancelled);
                }
            }
        }
        if report.tokens == 0 && seq.finished().is_none() {
            // nothing ran and nothing ended it: should not happen; do not spin
            return Err(Error::new(
                TF_ERR_INTERNAL,
                "a step ran no tokens on an unfinished sequence",
            ));
        }
    }
}

fn owned(ev: &TokenEvent, cost: Cost, source: *const c_char) -> Owned {
    let mut text = Vec::with_capacity(ev.text.len() + 1);
    text.extend_from_slice(ev.text.as_bytes());
    text.push(0);
    Owned {
        event: tf_token_event {
            struct_size: std::mem::size_of::<tf_token_event>() as u32,
            phase: match ev.phase {
                Phase::Prefill => TF_PHASE_PREFILL,
                Phase::Decode => TF_PHASE_DECODE,
            },
            pos: ev.pos as u32,
            token: ev.token,
            text: std::ptr::null(),
            text_len: ev.text.len(),
            at_s: ev.at.as_secs_f64(),
            duration_s: ev.duration.as_secs_f64(),
            bytes_read: ev.traffic.read_bytes(),
            bytes_written: ev.traffic.write_bytes(),
            flops: ev.traffic.flops,
            joules: cost.joules,
            usd: cost.usd,
            energy_source: source,
            flush: ev.flush as i32,
        },
        text,
    }
}

fn summarize(seq: &Sequence, t: &Totals, engine: &EngineHandle) -> tf_summary {
    let s = seq.summary();
    let [p, d] = &t.traffic;
    let [pc, dc] = &t.cost;
    tf_summary {
        stop_reason: stop_code(s.stop),
        n_prompt: s.n_prompt as u32,
        n_reused: seq.reused_tokens() as u32,
        n_generated: s.n_generated as u32,
        decode_steps: s.decode_steps as u32,
        prefill_s: s.prefill_time.as_secs_f64(),
        ttft_s: s.ttft.as_secs_f64(),
        decode_s: s.decode_time.as_secs_f64(),
        prefill_tok_s: s.prefill_tok_s(),
        decode_tok_s: s.decode_tok_s(),
        prefill_bytes_read: p.read_bytes(),
        prefill_bytes_written: p.write_bytes(),
        prefill_flops: p.flops,
        prefill_joules: pc.joules,
        prefill_usd: pc.usd,
        decode_bytes_read: d.read_bytes(),
        decode_bytes_written: d.write_bytes(),
        decode_flops: d.flops,
        decode_joules: dc.joules,
        decode_usd: dc.usd,
        energy_source: engine.energy_source.as_ptr(),
        ..tf_summary::default()
    }
}

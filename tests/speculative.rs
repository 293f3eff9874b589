//! Speculative decoding (issue 16) on the real draft/target pair — Qwen2.5-Coder 0.5B drafting
//! for 1.5B — and with prompt lookup:
//! - greedy output with a draft is token for token the output without one (the CPU backend's
//!   verification rows are bitwise the single-token decode's logits: same kernels per row);
//! - after rejections the target's KV cache holds exactly the accepted text: a continuation
//!   that reuses it equals one from a fresh prefill, logprobs included;
//! - sampling keeps the target's distribution: tokens drawn with drafts follow the target's
//!   own probabilities (chi-square over a top-3 vocabulary slice);
//! - a draft model with another vocabulary is refused, naming both files.

mod common;

use tokenfab::engine::{DraftFrom, DraftSpec, Engine, EngineError, EngineOptions};
use tokenfab::generate::{DraftOptions, GenerateOptions, Sequence, Summary, TokenLogprob};
use tokenfab::model::LoadOptions;
use tokenfab::sampling::{Sampler, SamplingParams};

const CODE: &str = "def quicksort(arr):\n    \"\"\"Sort a list of numbers.\"\"\"\n";
const PROSE: &str = "The history of the printing press begins";
/// Code to rewrite: the answer repeats most of it, prompt lookup's best case.
const REWRITE: &str = "Rename the variable `total` to `acc` in this code:\n\ndef sum_list(items):\n    total = 0\n    for item in items:\n        total += item\n    return total\n\nHere is the code with `total` renamed to `acc`:\n\n";

fn engine(model: &str, draft: Option<DraftFrom>, max: usize) -> Engine {
    let opts = EngineOptions {
        load: LoadOptions {
            ctx: 512,
            ..Default::default()
        },
        threads: 2,
        draft: draft.map(|from| DraftSpec {
            from,
            // every step verifies a full draft (the adaptive length would mostly not draft on
            // a 2-core CPU, and these tests are about verification)
            opts: DraftOptions {
                max,
                adaptive: false,
                ..Default::default()
            },
        }),
        ..Default::default()
    };
    Engine::load(&common::model(model), &opts).unwrap()
}

fn greedy(e: &mut Engine, text: &str, n: usize) -> Summary {
    let prompt = e.encode(text, true).unwrap();
    let opts = GenerateOptions {
        max_tokens: n,
        ignore_eog: true,
        ..Default::default()
    };
    e.generate(&prompt, &mut Sampler::greedy(), &opts, &mut |_| true)
        .unwrap()
}

/// Steps `seq` to its end; its generated tokens with their logprobs.
fn to_end(e: &mut Engine, seq: &mut Sequence) -> Vec<(u32, TokenLogprob)> {
    let mut out = Vec::new();
    while seq.finished().is_none() {
        e.step(&mut [&mut *seq], &mut |_, ev| {
            if let Some(l) = &ev.logprob {
                out.push((ev.token, l.clone()));
            }
            true
        })
        .unwrap();
    }
    out
}

#[test]
fn greedy_with_a_draft_model_equals_greedy_without() {
    let mut plain = engine(common::QWEN_1_5B, None, 0);
    let mut spec = engine(
        common::QWEN_1_5B,
        Some(DraftFrom::Model(common::model(common::QWEN))),
        4,
    );
    for text in [CODE, PROSE] {
        let a = greedy(&mut plain, text, 40);
        let b = greedy(&mut spec, text, 40);
        assert_eq!(a.tokens, b.tokens, "{text:?}");
        assert_eq!(a.text, b.text);
        let s = b.spec;
        eprintln!("{text:?}: {s:?}");
        assert!(s.rounds > 0 && s.draft_forwards > 0 && s.draft_bytes > 0);
        assert!(
            s.accepted > 0,
            "the 0.5B model never agreed with the 1.5B: {s:?}"
        );
        // every generated token after the first came from a target forward pass
        assert_eq!(s.target_forwards + s.accepted, b.n_generated - 1);
        assert_eq!(a.spec.rounds, 0);
        assert_eq!(a.spec.target_forwards, a.n_generated - 1);
    }
}

#[test]
fn greedy_with_prompt_lookup_equals_greedy_without() {
    let mut plain = engine(common::QWEN_1_5B, None, 0);
    let mut spec = engine(common::QWEN_1_5B, Some(DraftFrom::Lookup(3)), 8);
    for text in [REWRITE, CODE] {
        let a = greedy(&mut plain, text, 48);
        let b = greedy(&mut spec, text, 48);
        assert_eq!(a.tokens, b.tokens, "{text:?}");
        eprintln!("{text:?}: {:?}", b.spec);
        assert_eq!(b.spec.draft_forwards, 0);
        assert_eq!(b.spec.target_forwards + b.spec.accepted, b.n_generated - 1);
        if text == REWRITE {
            // the answer repeats the code, then explains it: measured 47 tokens from 26
            // forward passes (1.81 per pass)
            assert!(
                b.spec.tokens_per_forward().unwrap() > 1.6,
                "lookup accepted too little on the rewrite prompt: {:?}",
                b.spec
            );
        }
    }
}

#[test]
fn a_rewound_cache_holds_exactly_the_accepted_text() {
    // drafts from a model that disagrees often: many rejections, each a rewind
    let mut e = engine(
        common::QWEN_1_5B,
        Some(DraftFrom::Model(common::model(common::QWEN))),
        6,
    );
    let prompt = e.encode(PROSE, true).unwrap();
    let opts = GenerateOptions {
        max_tokens: 32,
        ignore_eog: true,
        ..Default::default()
    };
    let mut seq = e
        .new_sequence(&prompt, Sampler::greedy(), opts.clone())
        .unwrap();
    while seq.finished().is_none() {
        e.step(&mut [&mut seq], &mut |_, _| true).unwrap();
    }
    let st = *seq.spec();
    assert!(st.drafted > st.accepted, "no rejection to test: {st:?}");
    // continue the text: the cache is reused up to the text, whose keys and values must be
    // those of a fresh prefill
    let mut text = prompt.clone();
    text.extend_from_slice(seq.tokens());
    text.extend(e.encode(" In the end,", false).unwrap());
    let more = GenerateOptions {
        max_tokens: 8,
        logprobs: Some(3),
        ..opts
    };
    seq.restart(&text, Sampler::greedy(), more.clone()).unwrap();
    assert!(
        seq.reused_tokens() >= prompt.len() + 31,
        "{}",
        seq.reused_tokens()
    );
    e.set_drafter(None); // both continuations decode one token at a time
    let reused_logprobs = to_end(&mut e, &mut seq);
    e.release(seq);
    let mut fresh = e.new_sequence(&text, Sampler::greedy(), more).unwrap();
    assert_eq!(fresh.reused_tokens(), 0);
    let fresh_logprobs = to_end(&mut e, &mut fresh);
    assert_eq!(reused_logprobs.len(), 8);
    // bitwise: the same kernels ran on the same keys and values
    assert_eq!(reused_logprobs, fresh_logprobs);
}

#[test]
fn a_draft_model_with_another_vocabulary_is_refused() {
    let opts = EngineOptions {
        load: LoadOptions {
            ctx: 128,
            ..Default::default()
        },
        draft: Some(DraftSpec {
            from: DraftFrom::Model(common::model(common::GEMMA)),
            opts: DraftOptions::default(),
        }),
        ..Default::default()
    };
    let err = match Engine::load(&common::model(common::QWEN), &opts) {
        Err(e) => e,
        Ok(_) => panic!("a Gemma draft for a Qwen target was accepted"),
    };
    assert!(matches!(err, EngineError::Input(_)), "{err:?}");
    let msg = err.to_string();
    assert!(
        msg.contains("gemma-3-270m")
            && msg.contains("qwen2.5-coder-0.5b")
            && msg.contains("vocabulary"),
        "{msg}"
    );
}

/// Sampling with drafts draws every token from the target's distribution. Temperature 1 over
/// the top 3 candidates: the first generated token comes from the prompt's logits, the next
/// two from one verification step with the 0.5B model's greedy draft (accepted with the
/// target's probability of the drafted token). The joint frequencies of those two tokens,
/// over many seeds, are compared with the target's own probabilities (computed from its
/// logits one token at a time, no draft): a chi-square test at the 0.1% level.
#[test]
fn sampling_with_a_draft_keeps_the_target_distribution() {
    let params = |seed| SamplingParams {
        temperature: 1.0,
        top_k: 3,
        top_p: 1.0,
        min_p: 0.0,
        seed,
        ..SamplingParams::default()
    };
    let mut e = engine(
        common::QWEN,
        Some(DraftFrom::Model(common::model(common::QWEN))),
        2,
    );
    let prompt = e.encode("My favourite colour is", true).unwrap();
    let opts = GenerateOptions {
        max_tokens: 3,
        ignore_eog: true,
        logprobs: Some(3),
        ..Default::default()
    };
    let mut seq = e
        .new_sequence(&prompt, Sampler::new(params(0)), opts.clone())
        .unwrap();
    let mut counts = std::collections::BTreeMap::<Vec<u32>, usize>::new();
    let mut first_logprobs = None;
    const N: u64 = 700;
    let mut rounds = 0;
    for seed in 0..N {
        seq.restart(&prompt, Sampler::new(params(seed)), opts.clone())
            .unwrap();
        let mut events = Vec::new();
        while seq.finished().is_none() {
            e.step(&mut [&mut seq], &mut |_, ev| {
                if ev.logprob.is_some() {
                    events.push((ev.token, ev.logprob.clone().unwrap()));
                }
                true
            })
            .unwrap();
        }
        rounds += seq.spec().rounds;
        first_logprobs.get_or_insert(events[0].1.top.clone());
        *counts.entry(seq.tokens().to_vec()).or_default() += 1;
    }
    assert!(
        rounds as u64 >= N,
        "the draft was not verified: {rounds} rounds"
    );
    e.release(seq);
    // the target's probabilities, one token at a time with no draft
    e.set_drafter(None);
    let p_top3 = |top: &[(u32, f32)]| {
        let z: f64 = top.iter().map(|t| (t.1 as f64).exp()).sum();
        top.iter()
            .map(|t| (t.0, (t.1 as f64).exp() / z))
            .collect::<Vec<_>>()
    };
    let top_after = |e: &mut Engine, text: &[u32]| {
        let o = GenerateOptions {
            max_tokens: 1,
            logprobs: Some(3),
            ignore_eog: true,
            ..Default::default()
        };
        let mut top = Vec::new();
        e.generate(text, &mut Sampler::greedy(), &o, &mut |ev| {
            if let Some(l) = &ev.logprob {
                top = l.top.clone();
            }
            true
        })
        .unwrap();
        p_top3(&top)
    };
    let mut expected = std::collections::BTreeMap::<Vec<u32>, f64>::new();
    for (t1, p1) in p_top3(&first_logprobs.unwrap()) {
        let mut ctx = prompt.clone();
        ctx.push(t1);
        for (t2, p2) in top_after(&mut e, &ctx) {
            let mut ctx2 = ctx.clone();
            ctx2.push(t2);
            for (t3, p3) in top_after(&mut e, &ctx2) {
                expected.insert(vec![t1, t2, t3], p1 * p2 * p3);
            }
        }
    }
    // cells with a small expectation are pooled into one
    let (mut chi2, mut cells, mut pooled_obs, mut pooled_exp) = (0.0, 0, 0.0, 0.0);
    for (k, p) in &expected {
        let exp = p * N as f64;
        let obs = counts.get(k).copied().unwrap_or(0) as f64;
        if exp < 5.0 {
            pooled_obs += obs;
            pooled_exp += exp;
        } else {
            chi2 += (obs - exp).powi(2) / exp;
            cells += 1;
        }
    }
    let unexpected: usize = counts
        .iter()
        .filter(|(k, _)| !expected.contains_key(*k))
        .map(|(_, &n)| n)
        .sum();
    assert_eq!(unexpected, 0, "tokens outside the top-3 slice: {counts:?}");
    if pooled_exp > 0.0 {
        chi2 += (pooled_obs - pooled_exp).powi(2) / pooled_exp.max(1e-9);
        cells += 1;
    }
    let dof = cells - 1;
    // chi-square 0.999 quantiles for 1..=26 degrees of freedom
    const Q999: [f64; 26] = [
        10.83, 13.82, 16.27, 18.47, 20.52, 22.46, 24.32, 26.12, 27.88, 29.59, 31.26, 32.91, 34.53,
        36.12, 37.70, 39.25, 40.79, 42.31, 43.82, 45.31, 46.80, 48.27, 49.73, 51.18, 52.62, 54.05,
    ];
    eprintln!("chi2 {chi2:.2} with {dof} dof; observed {counts:?}; expected {expected:?}");
    assert!(
        dof >= 1,
        "the target's distribution is too peaked to test: {expected:?}"
    );
    assert!(
        chi2 < Q999[dof - 1],
        "chi2 {chi2:.2} >= {} ({dof} dof)",
        Q999[dof - 1]
    );
}

/// `serve --lookup`: two requests decoded together with drafts give the text each gets from a
/// plain server, and usage reports the speculation (its cost is in `usage.cost`).
#[test]
fn the_server_speculates_with_lookup_and_reports_it() {
    use common::server::Server;
    use serde_json::json;
    let prompt =
        "Repeat exactly: the cat sat on the mat, the cat sat on the mat, the cat sat on the mat,";
    let body = json!({"prompt": prompt, "max_tokens": 24, "temperature": 0}).to_string();
    let plain = Server::start(&["--parallel", "2"]);
    let (st, a) = plain.post("/v1/completions", &body);
    assert_eq!(st, 200, "{a}");
    assert!(a["usage"].get("speculative").is_none(), "{a}");
    drop(plain);
    let spec = Server::start(&["--parallel", "2", "--lookup", "3", "--draft-fixed"]);
    let both = std::thread::scope(|sc| {
        let h: Vec<_> = (0..2)
            .map(|_| sc.spawn(|| spec.post("/v1/completions", &body)))
            .collect();
        h.into_iter().map(|h| h.join().unwrap()).collect::<Vec<_>>()
    });
    for (st, b) in both {
        assert_eq!(st, 200, "{b}");
        assert_eq!(b["choices"][0]["text"], a["choices"][0]["text"]);
        let u = &b["usage"]["speculative"];
        assert_eq!(u["kind"], "lookup", "{b}");
        assert!(u["accepted"].as_u64().unwrap() > 0, "{u}");
        assert!(
            u["tokens_per_target_forward"].as_f64().unwrap() > 1.0,
            "{u}"
        );
        assert!(b["usage"]["cost"]["joules"].as_f64().unwrap() > 0.0);
    }
}

/// `tokenfab bench --prompts FILE --lookup N`: bench JSON with the added `speculative`
/// object (schema_version unchanged), the same tokens with and without drafts (the runner
/// refuses otherwise), and `tokenfab cost` reads the result like any decode test.
#[test]
fn the_speculative_benchmark_writes_bench_json_that_cost_reads() {
    let dir = std::env::temp_dir().join(format!("tf-spec-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let prompts = dir.join("prompts.json");
    std::fs::write(
        &prompts,
        r#"[{"name": "repeat", "kind": "rewrite", "prompt": "one two three four, one two three four, one two three four, one two"}]"#,
    )
    .unwrap();
    let tf = env!("CARGO_BIN_EXE_tokenfab");
    let model = common::model(common::GEMMA);
    let run = |extra: &[&str]| {
        std::process::Command::new(tf)
            .args([
                "bench",
                "-m",
                model.to_str().unwrap(),
                "-n",
                "12",
                "-r",
                "1",
                "-t",
                "2",
            ])
            .args(["--no-progress", "--backend", "cpu"])
            .args(extra)
            .output()
            .unwrap()
    };
    let out = run(&[
        "--prompts",
        prompts.to_str().unwrap(),
        "--lookup",
        "2",
        "-o",
        "json",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let r = &v[0];
    assert_eq!(r["schema_version"], 1);
    assert_eq!(r["test"], "spec:lookup repeat");
    let s = &r["speculative"];
    assert_eq!(s["kind"], "lookup");
    for k in [
        "plain_decode_tok_s",
        "speedup",
        "j_per_accepted_token",
        "bytes_per_accepted_token",
    ] {
        assert!(s[k].as_f64().unwrap() > 0.0, "{k}: {s}");
    }
    assert_eq!(r["decode_j_per_token"], s["j_per_accepted_token"]);
    let bench = dir.join("bench.json");
    std::fs::write(&bench, &out.stdout).unwrap();
    // in the temp dir: `cost` writes its plots to the working directory
    let cost = std::process::Command::new(tf)
        .current_dir(&dir)
        .args(["cost", bench.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(
        cost.status.success(),
        "{}",
        String::from_utf8_lossy(&cost.stderr)
    );
    // bad input: prompts without a drafter, a drafter without prompts, a bad file
    let err = |o: std::process::Output| {
        assert!(!o.status.success());
        String::from_utf8_lossy(&o.stderr).to_string()
    };
    assert!(err(run(&["--prompts", prompts.to_str().unwrap()])).contains("--draft"));
    assert!(err(run(&["--lookup", "2"])).contains("--prompts"));
    std::fs::write(&prompts, "not json").unwrap();
    assert!(err(run(&[
        "--prompts",
        prompts.to_str().unwrap(),
        "--lookup",
        "2"
    ]))
    .contains("JSON array"));
    assert!(err(run(&["--lookup", "2", "--draft", "x.gguf"])).contains("cannot be used with"));
    std::fs::remove_dir_all(&dir).ok();
}

/// `tokenfab run --lookup N --trace F`: the same text as without, a summary line with the
/// acceptance and the cost per accepted token, and the trace's summary carries them.
#[test]
fn run_with_lookup_prints_and_traces_the_speculation() {
    let tf = env!("CARGO_BIN_EXE_tokenfab");
    let model = common::model(common::GEMMA);
    let dir = std::env::temp_dir().join(format!("tf-spec-run-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let trace = dir.join("trace.jsonl");
    let run = |extra: &[&str]| {
        let p = "one two three four, one two three four, one two three four, one two";
        std::process::Command::new(tf)
            .args([
                "run",
                "-m",
                model.to_str().unwrap(),
                "-p",
                p,
                "-n",
                "16",
                "--temp",
                "0",
            ])
            .args(["-t", "2", "--backend", "cpu", "--ignore-eos"])
            .args(extra)
            .output()
            .unwrap()
    };
    let plain = run(&[]);
    let spec = run(&[
        "--lookup",
        "3",
        "--draft-fixed",
        "--trace",
        trace.to_str().unwrap(),
    ]);
    assert!(
        spec.status.success(),
        "{}",
        String::from_utf8_lossy(&spec.stderr)
    );
    assert_eq!(plain.stdout, spec.stdout);
    let err = String::from_utf8_lossy(&spec.stderr);
    assert!(err.contains("speculative (lookup):"), "{err}");
    assert!(
        err.contains("per accepted token (drafting included):"),
        "{err}"
    );
    let text = std::fs::read_to_string(&trace).unwrap();
    let summary: serde_json::Value = serde_json::from_str(text.lines().last().unwrap()).unwrap();
    let s = &summary["speculative"];
    assert_eq!(s["kind"], "lookup", "{summary}");
    assert!(s["drafted"].as_u64().unwrap() > 0, "{s}");
    assert!(s["j_per_accepted_token"].as_f64().unwrap() > 0.0, "{s}");
    assert!(s["bytes_per_accepted_token"].as_f64().unwrap() > 0.0, "{s}");
    // flags: both drafters, a missing draft model, a zero n-gram, an empty draft range
    let bad = |extra: &[&str], want: &str| {
        let o = run(extra);
        assert!(!o.status.success());
        let e = String::from_utf8_lossy(&o.stderr);
        assert!(e.contains(want), "{extra:?}: {e}");
    };
    bad(
        &["--lookup", "2", "--draft", "x.gguf"],
        "cannot be used with",
    );
    bad(&["--draft", "/nonexistent.gguf"], "does not exist");
    bad(&["--lookup", "0"], "at least 1");
    bad(&["--lookup", "2", "--draft-max", "0"], "--draft-max");
    bad(&["--lookup", "2", "--draft-min", "9"], "--draft-min");
    std::fs::remove_dir_all(&dir).ok();
}

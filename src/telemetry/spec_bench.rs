//! The speculative-decoding benchmark behind `tokenfab bench --prompts FILE --draft M` (or
//! `--lookup N`): each prompt is generated greedily, alternately without and with the
//! engine's drafter, and the medians over repetitions are compared — decode speed, and what
//! each accepted token cost (time, bytes, joules and dollars by the engine's price, the
//! drafting included). Greedy output is the same with and without drafts, so both runs
//! produce the same tokens and only their cost differs.
//!
//! Results are [`BenchResult`]s (`test` = `spec:<kind> <prompt name>`, the prompt's prefill
//! and the speculative decode) with the added `speculative` object, so `tokenfab cost` reads
//! them like any prefill + decode test: its decode cost is then per accepted token.

use super::bench::{BenchResult, Build, Machine, ModelMeta, SCHEMA_VERSION};
use super::stats::percentile;
use crate::engine::{Engine, EngineError};
use crate::generate::{GenerateOptions, Phase, SpecStats};
use crate::sampling::Sampler;
use serde::Deserialize;

/// One prompt of the benchmark.
#[derive(Clone, Debug, Deserialize)]
pub struct SpecPrompt {
    pub name: String,
    /// A group for the report (`code`, `prose`, `rewrite`).
    #[serde(default)]
    pub kind: String,
    pub prompt: String,
}

/// One generation's measurements.
#[derive(Clone, Copy, Debug, Default)]
struct RunCost {
    decode_tok_s: f64,
    tokens: usize,
    seconds: f64,
    bytes: f64,
    joules: f64,
    usd: f64,
    spec: SpecStats,
    prefill_tok_s: f64,
    prefill_j_per_token: f64,
    ttft_ms: f64,
}

fn generate_once(
    e: &mut Engine,
    prompt: &[u32],
    n: usize,
    tokens: &mut Vec<u32>,
) -> Result<RunCost, EngineError> {
    let pricer = e.pricer();
    let mut c = RunCost::default();
    let opts = GenerateOptions {
        max_tokens: n,
        ignore_eog: true,
        ..Default::default()
    };
    let mut prefill_j = 0.0;
    let s = e.generate(prompt, &mut Sampler::greedy(), &opts, &mut |ev| {
        if ev.phase == Phase::Prefill {
            prefill_j += pricer.cost(ev).joules;
        } else if !ev.flush {
            let cost = pricer.cost(ev);
            c.seconds += ev.duration.as_secs_f64();
            c.bytes += ev.traffic.bytes() as f64;
            c.joules += cost.joules;
            c.usd += cost.usd;
        }
        true
    })?;
    c.tokens = s.n_generated;
    c.decode_tok_s = s.decode_tok_s();
    c.spec = s.spec;
    c.prefill_tok_s = s.prefill_tok_s();
    c.prefill_j_per_token = prefill_j / s.n_prompt.max(1) as f64;
    c.ttft_ms = s.ttft.as_secs_f64() * 1e3;
    *tokens = s.tokens;
    Ok(c)
}

fn median(v: &[f64]) -> f64 {
    percentile(v, 50.0).unwrap_or(0.0)
}

/// Runs every prompt `reps` times without and with `engine`'s drafter (which must be set),
/// `n` generated tokens each; `on_rep` after each pair. Refuses a drafter whose output
/// differs from plain greedy decoding (it cannot, by construction: the check guards it).
pub fn run(
    engine: &mut Engine,
    prompts: &[SpecPrompt],
    n: usize,
    reps: usize,
    on_rep: &mut dyn FnMut(&str),
) -> Result<Vec<BenchResult>, EngineError> {
    let Some(drafter) = engine.take_drafter() else {
        return Err(EngineError::Input(
            "the speculative benchmark needs --draft or --lookup".into(),
        ));
    };
    let kind = drafter.kind();
    let draft_opts = *drafter.options();
    let mut drafter = Some(drafter);
    let meta = ModelMeta::of(engine.model().file());
    let backend = engine.backend_name();
    let mut out = Vec::new();
    for p in prompts {
        let ids = engine.encode(&p.prompt, true)?;
        let (mut plain, mut spec) = (Vec::new(), Vec::new());
        for _ in 0..=reps {
            // warm-up first, then timed pairs
            let (mut a, mut b) = (Vec::new(), Vec::new());
            let pc = generate_once(engine, &ids, n, &mut a)?;
            engine.set_drafter(drafter.take());
            let sc = generate_once(engine, &ids, n, &mut b);
            drafter = engine.take_drafter();
            let sc = sc?;
            if a != b {
                return Err(EngineError::Input(format!(
                    "{}: speculative output differs from plain greedy decoding",
                    p.name
                )));
            }
            plain.push(pc);
            spec.push(sc);
            on_rep(&p.name);
        }
        plain.remove(0);
        spec.remove(0);
        let med = |v: &[RunCost], f: &dyn Fn(&RunCost) -> f64| {
            median(&v.iter().map(f).collect::<Vec<_>>())
        };
        let per =
            |v: &[RunCost], f: &dyn Fn(&RunCost) -> f64| med(v, &|c| f(c) / c.tokens.max(1) as f64);
        let plain_tps = med(&plain, &|c| c.decode_tok_s);
        let spec_tps = med(&spec, &|c| c.decode_tok_s);
        let stats = spec.last().map(|c| c.spec).unwrap_or_default();
        let mut v = stats.json(kind);
        v["prompt"] = p.name.clone().into();
        v["group"] = p.kind.clone().into();
        v["draft_max"] = draft_opts.max.into();
        v["adaptive"] = draft_opts.adaptive.into();
        v["plain_decode_tok_s"] = plain_tps.into();
        v["speedup"] = (spec_tps / plain_tps.max(1e-12)).into();
        v["plain_j_per_token"] = per(&plain, &|c| c.joules).into();
        v["j_per_accepted_token"] = per(&spec, &|c| c.joules).into();
        v["plain_bytes_per_token"] = per(&plain, &|c| c.bytes).into();
        v["bytes_per_accepted_token"] = per(&spec, &|c| c.bytes).into();
        v["usd_per_mtok_accepted"] = (per(&spec, &|c| c.usd) * 1e6).into();
        v["plain_usd_per_mtok"] = (per(&plain, &|c| c.usd) * 1e6).into();
        let samples: Vec<f64> = spec.iter().map(|c| c.decode_tok_s).collect();
        out.push(BenchResult {
            schema_version: SCHEMA_VERSION,
            model: meta.clone(),
            backend: backend.clone(),
            threads: engine.threads(),
            test: format!("spec:{kind} {}", p.name),
            n_prompt: ids.len(),
            n_gen: n,
            depth: 0,
            repetitions: reps,
            tok_s_mean: super::stats::mean(&samples).unwrap_or(0.0),
            tok_s_stddev: super::stats::stddev(&samples).unwrap_or(0.0),
            samples_tok_s: samples,
            prefill_tok_s: Some(med(&spec, &|c| c.prefill_tok_s)),
            decode_tok_s: Some(spec_tps),
            ttft_ms: Some(med(&spec, &|c| c.ttft_ms)),
            itl_p50_ms: None,
            itl_p99_ms: None,
            bytes_per_token: per(&spec, &|c| c.bytes),
            gb_s: med(&spec, &|c| c.bytes / c.seconds.max(1e-12)) / 1e9,
            peak_gb_s: None,
            mbu_pct: None,
            prefill_j_per_token: Some(med(&spec, &|c| c.prefill_j_per_token)),
            decode_j_per_token: Some(per(&spec, &|c| c.joules)),
            energy_source: engine.energy_source().to_string(),
            energy_detail: "estimate per token event (the engine's price)".into(),
            peak_rss_mb: super::bench::peak_rss_mb(),
            model_huge_pages_pct: None,
            speculative: Some(v),
            machine: Machine::here(),
            build: Build::here(),
            timestamp: std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_secs()),
        });
    }
    engine.set_drafter(drafter);
    Ok(out)
}

/// A Markdown table of speculative results: plain vs speculative decode speed, acceptance
/// and the cost per accepted token.
pub fn to_markdown(results: &[BenchResult]) -> String {
    let mut s = String::from(
        "| prompt | group | plain tok/s | spec tok/s | speed-up | accepted/drafted | tokens/target pass | J/token plain | J/accepted token | MB/accepted token |\n|---|---|---|---|---|---|---|---|---|---|\n",
    );
    for r in results {
        let Some(v) = &r.speculative else { continue };
        let f = |k: &str| v[k].as_f64().unwrap_or(f64::NAN);
        s.push_str(&format!(
            "| {} | {} | {:.1} | {:.1} | {:.2}x | {}/{} | {:.2} | {:.4} | {:.4} | {:.0} |\n",
            v["prompt"].as_str().unwrap_or(""),
            v["group"].as_str().unwrap_or(""),
            f("plain_decode_tok_s"),
            r.decode_tok_s.unwrap_or(0.0),
            f("speedup"),
            v["accepted"],
            v["drafted"],
            f("tokens_per_target_forward"),
            f("plain_j_per_token"),
            f("j_per_accepted_token"),
            f("bytes_per_accepted_token") / 1e6,
        ));
    }
    s
}

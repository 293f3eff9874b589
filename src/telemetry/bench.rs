//! `tokenfab bench`: llama-bench-style speed tests (pp N, tg N, pp N + tg M, at a context depth)
//! with tokenfab's extras per test — TTFT, inter-token latency percentiles, bytes per token,
//! achieved GB/s and MBU, J/token for prefill and decode with the energy source, peak RSS —
//! and the machine and build they ran on.
//!
//! The JSON form ([`BenchResult`], `schema_version` [`SCHEMA_VERSION`]) is the input of
//! `tokenfab cost`; fields are only ever added. The schema is documented in README.md.

use super::energy::estimate::EnergyModel;
use super::energy::EnergyMeter;
use super::recorder::dram_bytes;
use super::stats::{mean, percentile, stddev};
use crate::gguf::GgufFile;
use crate::model::{Logits, Model, ModelError};
use serde::{Deserialize, Serialize};
use std::time::Instant;

pub const SCHEMA_VERSION: u32 = 1;

/// One test, as llama-bench names them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TestKind {
    /// Prefill of a prompt of N tokens (`pp N`).
    Prefill(usize),
    /// Generation of N tokens one at a time (`tg N`).
    Decode(usize),
    /// Prefill of P tokens then generation of N (`pp P + tg N`).
    PrefillDecode(usize, usize),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TestSpec {
    pub kind: TestKind,
    /// Tokens already in the context before the test (untimed).
    pub depth: usize,
}

impl TestSpec {
    pub fn name(&self) -> String {
        let base = match self.kind {
            TestKind::Prefill(p) => format!("pp{p}"),
            TestKind::Decode(n) => format!("tg{n}"),
            TestKind::PrefillDecode(p, n) => format!("pp{p}+tg{n}"),
        };
        if self.depth > 0 {
            format!("{base} @ d{}", self.depth)
        } else {
            base
        }
    }

    /// Positions the test needs in the KV cache.
    pub fn ctx_needed(&self) -> usize {
        self.depth
            + match self.kind {
                TestKind::Prefill(p) => p,
                TestKind::Decode(n) => n,
                TestKind::PrefillDecode(p, n) => p + n,
            }
    }
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct ModelMeta {
    pub path: String,
    pub name: String,
    pub arch: String,
    /// e.g. `Q4_K - Medium` (from `general.file_type`).
    pub file_type: String,
    pub size_bytes: u64,
    pub params: u64,
}

impl ModelMeta {
    pub fn of(f: &GgufFile) -> Self {
        let md = f.metadata();
        let ft = md.opt_u64("general.file_type").ok().flatten();
        ModelMeta {
            path: f.path().display().to_string(),
            name: md
                .opt_str("general.name")
                .ok()
                .flatten()
                .unwrap_or("")
                .to_string(),
            arch: md
                .opt_str("general.architecture")
                .ok()
                .flatten()
                .unwrap_or("")
                .to_string(),
            file_type: ft.map_or("unknown".into(), file_type_name),
            size_bytes: f.tensors().iter().map(|t| t.n_bytes).sum(),
            params: f.tensors().iter().map(|t| t.n_elements()).sum(),
        }
    }
}

/// llama.cpp's names for `general.file_type` values.
pub fn file_type_name(ft: u64) -> String {
    match ft {
        0 => "F32",
        1 => "F16",
        2 => "Q4_0",
        3 => "Q4_1",
        7 => "Q8_0",
        8 => "Q5_0",
        9 => "Q5_1",
        10 => "Q2_K - Medium",
        11 => "Q3_K - Small",
        12 => "Q3_K - Medium",
        13 => "Q3_K - Large",
        14 => "Q4_K - Small",
        15 => "Q4_K - Medium",
        16 => "Q5_K - Small",
        17 => "Q5_K - Medium",
        18 => "Q6_K",
        32 => "BF16",
        other => return format!("file type {other}"),
    }
    .to_string()
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct Machine {
    pub cpu: String,
    pub logical_cores: usize,
    pub isa: String,
    pub ram_bytes: Option<u64>,
    pub os: String,
}

impl Machine {
    pub fn here() -> Self {
        let c = super::probe::cpu_info();
        let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease")
            .map(|s| format!(" {}", s.trim()))
            .unwrap_or_default();
        Machine {
            cpu: c.model,
            logical_cores: c.logical_cores,
            isa: c.isa,
            ram_bytes: c.ram_bytes,
            os: format!("{}{kernel}", std::env::consts::OS),
        }
    }
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct Build {
    pub version: String,
    pub git: String,
    pub profile: String,
}

impl Build {
    pub fn here() -> Self {
        Build {
            version: env!("CARGO_PKG_VERSION").to_string(),
            git: option_env!("TOKENFAB_GIT").unwrap_or("unknown").to_string(),
            profile: if cfg!(debug_assertions) {
                "debug"
            } else {
                "release"
            }
            .to_string(),
        }
    }
}

/// The result of one test over its repetitions. Means are over repetitions.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct BenchResult {
    pub schema_version: u32,
    pub model: ModelMeta,
    pub backend: String,
    pub threads: usize,
    pub test: String,
    pub n_prompt: usize,
    pub n_gen: usize,
    pub depth: usize,
    pub repetitions: usize,
    /// Tokens per second of each repetition ((prompt + generated) / time).
    pub samples_tok_s: Vec<f64>,
    pub tok_s_mean: f64,
    pub tok_s_stddev: f64,
    /// Prefill tokens per second (pp and pp+tg tests).
    pub prefill_tok_s: Option<f64>,
    /// Generation tokens per second (tg and pp+tg tests).
    pub decode_tok_s: Option<f64>,
    /// Time to the first generated token: prefill plus sampling (pp and pp+tg tests).
    pub ttft_ms: Option<f64>,
    pub itl_p50_ms: Option<f64>,
    pub itl_p99_ms: Option<f64>,
    /// Weight + KV-cache bytes per token of the test (the DRAM-relevant traffic).
    pub bytes_per_token: f64,
    /// Those bytes per second.
    pub gb_s: f64,
    pub peak_gb_s: Option<f64>,
    pub mbu_pct: Option<f64>,
    pub prefill_j_per_token: Option<f64>,
    pub decode_j_per_token: Option<f64>,
    /// `measured:nvml`, `measured:rapl`, `measured:battery` or `estimated:model`.
    pub energy_source: String,
    pub energy_detail: String,
    pub peak_rss_mb: Option<f64>,
    /// Share of the model file's resident mapping that the page cache maps 2 MiB at a time,
    /// read after the test (`crate::gguf::page_cache`: decode is a few per cent faster near
    /// 100 %). CPU backend on Linux only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model_huge_pages_pct: Option<f64>,
    /// Speculative decoding tests only ([`super::spec_bench`]): the drafter, the prompt, its
    /// counters, the plain decode speed it is compared with and the cost per accepted token
    /// (drafting included). `decode_tok_s` and `decode_j_per_token` are then the speculative
    /// run's, per generated (= accepted) token.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub speculative: Option<serde_json::Value>,
    pub machine: Machine,
    pub build: Build,
    /// Seconds since the Unix epoch.
    pub timestamp: u64,
}

/// Energy for bench windows: a meter's counter difference, or the estimate.
pub struct EnergyProbe {
    pub meter: Option<Box<dyn EnergyMeter>>,
    pub model: EnergyModel,
}

impl EnergyProbe {
    pub fn label(&self) -> &'static str {
        self.meter
            .as_ref()
            .map_or(super::energy::SourceKind::Estimate, |m| m.kind())
            .label()
    }

    pub fn detail(&self) -> String {
        match &self.meter {
            Some(m) => format!("{}; counter read around each timed phase", m.describe()),
            None => format!(
                "{}: {:.2} W static, {} pJ/byte, {} pJ/FLOP ({}, {})",
                self.model.device.id,
                self.model.p_static_w,
                self.model.device.e_mem_pj_per_byte,
                self.model.device.e_op_pj_per_flop,
                self.model.device.source,
                self.model.device.as_of
            ),
        }
    }

    fn read(&mut self) -> Option<f64> {
        self.meter.as_mut().and_then(|m| m.read_j().ok())
    }
}

/// Deterministic pseudo-random token ids (llama-bench also feeds random tokens).
struct Tokens(u64, u32);

impl Tokens {
    fn next(&mut self) -> u32 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        ((self.0 >> 33) % self.1 as u64) as u32
    }
    fn take(&mut self, n: usize) -> Vec<u32> {
        (0..n).map(|_| self.next()).collect()
    }
}

/// Time, traffic and energy of one timed phase (a prefill, or a run of decode steps).
#[derive(Clone, Debug)]
pub struct PhaseTiming {
    pub seconds: f64,
    pub tokens: usize,
    pub dram_bytes: u64,
    pub joules: f64,
}

/// One repetition of a test.
#[derive(Clone, Debug)]
pub struct Rep {
    pub prefill: Option<PhaseTiming>,
    pub decode: Option<PhaseTiming>,
    /// Duration of each decode step, seconds.
    pub steps_s: Vec<f64>,
}

/// Runs `work`, returning its time, DRAM bytes and energy.
fn phase(
    m: &mut Model,
    e: &mut EnergyProbe,
    tokens: usize,
    work: &mut dyn FnMut(&mut Model) -> Result<Vec<f64>, ModelError>,
) -> Result<(PhaseTiming, Vec<f64>), ModelError> {
    let l0 = m.ops().ledger().total();
    let j0 = e.read();
    let t0 = Instant::now();
    let steps = work(m)?;
    let seconds = t0.elapsed().as_secs_f64();
    let j1 = e.read();
    let t = m.ops().ledger().total() - l0;
    let joules = match (j0, j1) {
        (Some(a), Some(b)) => b - a,
        _ => e.model.estimate(seconds, t.bytes(), t.flops).total_j(),
    };
    Ok((
        PhaseTiming {
            seconds,
            tokens,
            dram_bytes: dram_bytes(&t),
            joules,
        },
        steps,
    ))
}

/// Runs one test: a warm-up, then `reps` timed repetitions.
pub fn run_test(
    m: &mut Model,
    spec: TestSpec,
    reps: usize,
    energy: &mut EnergyProbe,
    on_rep: &mut dyn FnMut(),
) -> Result<Vec<Rep>, ModelError> {
    if spec.ctx_needed() > m.ctx() {
        return Err(ModelError::ContextFull {
            needed: spec.ctx_needed(),
            ctx: m.ctx(),
        });
    }
    let vocab = m.config.n_vocab;
    let mut rng = Tokens(0x5eed ^ spec.ctx_needed() as u64, vocab as u32);
    let mut out = Vec::new();
    let cache = m.new_cache(spec.ctx_needed())?;
    let cache = &cache;
    for rep in 0..=reps {
        if spec.depth > 0 {
            let fill = rng.take(spec.depth);
            m.forward(cache, &fill, 0, Logits::Last)?;
        }
        let (p, n) = match spec.kind {
            TestKind::Prefill(p) => (p, 0),
            TestKind::Decode(n) => (0, n),
            TestKind::PrefillDecode(p, n) => (p, n),
        };
        let mut pos = spec.depth;
        let mut next = rng.next();
        let pre = if p > 0 {
            let prompt = rng.take(p);
            let (ph, _) = phase(m, energy, p, &mut |m| {
                let l = m.forward(cache, &prompt, pos, Logits::Last)?;
                next = m.ops().argmax(l, 0, vocab)?;
                Ok(Vec::new())
            })?;
            pos += p;
            Some(ph)
        } else {
            None
        };
        let dec = if n > 0 {
            let (ph, steps) = phase(m, energy, n, &mut |m| {
                let mut steps = Vec::with_capacity(n);
                let mut tok = next;
                for i in 0..n {
                    let t = Instant::now();
                    let l = m.forward(cache, &[tok], pos + i, Logits::Last)?;
                    tok = m.ops().argmax(l, 0, vocab)?;
                    steps.push(t.elapsed().as_secs_f64());
                }
                Ok(steps)
            })?;
            Some((ph, steps))
        } else {
            None
        };
        if rep > 0 {
            let (decode, steps_s) = match dec {
                Some((d, s)) => (Some(d), s),
                None => (None, Vec::new()),
            };
            out.push(Rep {
                prefill: pre,
                decode,
                steps_s,
            });
        }
        on_rep();
    }
    Ok(out)
}

/// Builds the result of a test from its repetitions.
#[allow(clippy::too_many_arguments)]
pub fn summarize(
    model: ModelMeta,
    backend: String,
    threads: usize,
    spec: TestSpec,
    reps: Vec<Rep>,
    energy: &EnergyProbe,
    peak_gb_s: Option<f64>,
    peak_rss_mb: Option<f64>,
) -> BenchResult {
    let (n_prompt, n_gen) = match spec.kind {
        TestKind::Prefill(p) => (p, 0),
        TestKind::Decode(n) => (0, n),
        TestKind::PrefillDecode(p, n) => (p, n),
    };
    let samples: Vec<f64> = reps
        .iter()
        .map(|r| {
            let t = r.prefill.as_ref().map_or(0.0, |x| x.seconds)
                + r.decode.as_ref().map_or(0.0, |x| x.seconds);
            (n_prompt + n_gen) as f64 / t.max(1e-12)
        })
        .collect();
    let pre: Vec<&PhaseTiming> = reps.iter().filter_map(|r| r.prefill.as_ref()).collect();
    let dec: Vec<&PhaseTiming> = reps.iter().filter_map(|r| r.decode.as_ref()).collect();
    let rate = |v: &[&PhaseTiming]| {
        mean(
            &v.iter()
                .map(|p| p.tokens as f64 / p.seconds.max(1e-12))
                .collect::<Vec<_>>(),
        )
    };
    let jpt = |v: &[&PhaseTiming]| {
        mean(
            &v.iter()
                .map(|p| p.joules / p.tokens.max(1) as f64)
                .collect::<Vec<_>>(),
        )
    };
    let all: Vec<&PhaseTiming> = pre.iter().chain(dec.iter()).copied().collect();
    let bytes: f64 = all.iter().map(|p| p.dram_bytes as f64).sum();
    let tokens: f64 = all.iter().map(|p| p.tokens as f64).sum();
    let seconds: f64 = all.iter().map(|p| p.seconds).sum();
    let gb_s = bytes / seconds.max(1e-12) / 1e9;
    let steps_ms: Vec<f64> = reps
        .iter()
        .flat_map(|r| r.steps_s.iter().map(|s| s * 1e3))
        .collect();
    BenchResult {
        schema_version: SCHEMA_VERSION,
        model,
        backend,
        threads,
        test: spec.name(),
        n_prompt,
        n_gen,
        depth: spec.depth,
        repetitions: reps.len(),
        tok_s_mean: mean(&samples).unwrap_or(0.0),
        tok_s_stddev: stddev(&samples).unwrap_or(0.0),
        samples_tok_s: samples,
        prefill_tok_s: rate(&pre),
        decode_tok_s: rate(&dec),
        ttft_ms: mean(&pre.iter().map(|p| p.seconds * 1e3).collect::<Vec<_>>()),
        itl_p50_ms: percentile(&steps_ms, 50.0),
        itl_p99_ms: percentile(&steps_ms, 99.0),
        bytes_per_token: bytes / tokens.max(1.0),
        gb_s,
        peak_gb_s,
        mbu_pct: peak_gb_s.and_then(|p| super::probe::utilization(gb_s, p)),
        prefill_j_per_token: jpt(&pre),
        decode_j_per_token: jpt(&dec),
        energy_source: energy.label().to_string(),
        energy_detail: energy.detail(),
        peak_rss_mb,
        model_huge_pages_pct: None,
        speculative: None,
        machine: Machine::here(),
        build: Build::here(),
        timestamp: std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs()),
    }
}

fn opt(v: Option<f64>, prec: usize) -> String {
    v.map_or("-".into(), |x| format!("{x:.prec$}"))
}

/// A llama-bench-style Markdown table with tokenfab's extra columns.
/// Reads `tokenfab bench -o json` output: a JSON array of results, or one result per line
/// (`-o jsonl`, blank lines skipped). The input of `tokenfab cost`.
pub fn parse_results(text: &str) -> Result<Vec<BenchResult>, serde_json::Error> {
    let trimmed = text.trim_start();
    if trimmed.starts_with('[') {
        serde_json::from_str(trimmed)
    } else {
        trimmed
            .lines()
            .filter(|l| !l.trim().is_empty())
            .map(serde_json::from_str)
            .collect()
    }
}

pub fn to_markdown(results: &[BenchResult]) -> String {
    let mut s = String::from(
        "| model | size | params | backend | threads | test | t/s | ttft ms | itl p50/p99 ms | MB/tok | GB/s | MBU % | J/tok prefill | J/tok decode | energy | peak RSS MB |\n\
         | --- | ---: | ---: | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- | ---: |\n",
    );
    for r in results {
        s.push_str(&format!(
            "| {} {} | {:.2} MiB | {:.2} M | {} | {} | {} | {:.2} ± {:.2} | {} | {} / {} | {:.1} | {:.1} | {} | {} | {} | {} | {} |\n",
            r.model.arch,
            r.model.file_type,
            r.model.size_bytes as f64 / (1u64 << 20) as f64,
            r.model.params as f64 / 1e6,
            r.backend,
            r.threads,
            r.test,
            r.tok_s_mean,
            r.tok_s_stddev,
            opt(r.ttft_ms, 1),
            opt(r.itl_p50_ms, 1),
            opt(r.itl_p99_ms, 1),
            r.bytes_per_token / 1e6,
            r.gb_s,
            opt(r.mbu_pct, 0),
            opt(r.prefill_j_per_token, 4),
            opt(r.decode_j_per_token, 4),
            r.energy_source,
            opt(r.peak_rss_mb, 0),
        ));
    }
    s
}

/// CSV with one header row; the columns are [`BenchResult`]'s flat fields.
pub fn to_csv(results: &[BenchResult]) -> String {
    let mut s = String::from(
        "model,file_type,size_bytes,params,backend,threads,test,n_prompt,n_gen,depth,repetitions,tok_s_mean,tok_s_stddev,prefill_tok_s,decode_tok_s,ttft_ms,itl_p50_ms,itl_p99_ms,bytes_per_token,gb_s,peak_gb_s,mbu_pct,prefill_j_per_token,decode_j_per_token,energy_source,peak_rss_mb,cpu,timestamp\n",
    );
    let o = |v: Option<f64>| v.map_or(String::new(), |x| x.to_string());
    let q = |t: &str| format!("\"{}\"", t.replace('"', "\"\""));
    for r in results {
        s.push_str(&format!(
            "{},{},{},{},{},{},{},{},{},{},{},{},{},{},{},{},{},{},{},{},{},{},{},{},{},{},{},{}\n",
            q(&r.model.path),
            q(&r.model.file_type),
            r.model.size_bytes,
            r.model.params,
            q(&r.backend),
            r.threads,
            q(&r.test),
            r.n_prompt,
            r.n_gen,
            r.depth,
            r.repetitions,
            r.tok_s_mean,
            r.tok_s_stddev,
            o(r.prefill_tok_s),
            o(r.decode_tok_s),
            o(r.ttft_ms),
            o(r.itl_p50_ms),
            o(r.itl_p99_ms),
            r.bytes_per_token,
            r.gb_s,
            o(r.peak_gb_s),
            o(r.mbu_pct),
            o(r.prefill_j_per_token),
            o(r.decode_j_per_token),
            q(&r.energy_source),
            o(r.peak_rss_mb),
            q(&r.machine.cpu),
            r.timestamp
        ));
    }
    s
}

/// Peak resident set size of this process in MB (VmHWM).
pub fn peak_rss_mb() -> Option<f64> {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse::<f64>().ok())
                .map(|kb| kb / 1024.0)
        })
}

/// Resets the peak RSS counter (Linux ≥ 4.0), so each model's peak is its own.
pub fn reset_peak_rss() {
    let _ = std::fs::write("/proc/self/clear_refs", "5");
}

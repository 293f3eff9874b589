//! `tokenfab bench`: llama-bench-compatible flags (`-m`, `-p`, `-n`, `-pg`, `-d`, `-r`, `-t`,
//! `-o md|json|csv|jsonl`) over tokenfab's bench runner, with a progress bar.

use anyhow::{bail, Context, Result};
use clap::Args;
use indicatif::{ProgressBar, ProgressStyle};
use std::io::Write;
use std::path::PathBuf;
use tokenfab::backend::{BackendKind, BackendSpec};
use tokenfab::model::LoadOptions;
use tokenfab::telemetry::bench::{self, BenchResult, ModelMeta, TestKind, TestSpec};

#[derive(Args, Debug)]
pub struct BenchArgs {
    /// GGUF model(s) (repeatable or comma-separated; default: the default model).
    #[arg(short = 'm', long = "model", value_delimiter = ',')]
    pub models: Vec<PathBuf>,
    /// Prompt lengths for prefill tests (0 = none).
    #[arg(
        short = 'p',
        long = "n-prompt",
        value_delimiter = ',',
        default_value = "512"
    )]
    pub n_prompt: Vec<usize>,
    /// Generation lengths for decode tests (0 = none).
    #[arg(
        short = 'n',
        long = "n-gen",
        value_delimiter = ',',
        default_value = "128"
    )]
    pub n_gen: Vec<usize>,
    /// Prefill + generation tests, `P,N` (repeatable; `-pg` is accepted too).
    #[arg(long = "pg")]
    pub pg: Vec<String>,
    /// Context depths already filled before each test.
    #[arg(
        short = 'd',
        long = "n-depth",
        value_delimiter = ',',
        default_value = "0"
    )]
    pub depth: Vec<usize>,
    /// Timed repetitions per test (after one warm-up).
    #[arg(short = 'r', long = "repetitions", default_value_t = 5)]
    pub reps: usize,
    /// Thread counts (default: all cores).
    #[arg(short = 't', long = "threads", value_delimiter = ',')]
    pub threads: Vec<usize>,
    /// Backend: auto (wgpu on a discrete GPU, else cpu), cpu, wgpu, cuda, or reference (exact
    /// f64 arithmetic, slow: for measuring the others).
    #[arg(long = "backend", default_value = "auto")]
    pub backend: String,
    /// Output format: md, json, csv or jsonl.
    #[arg(short = 'o', long = "output", default_value = "md")]
    pub output: String,
    /// No progress bar.
    #[arg(long = "no-progress")]
    pub no_progress: bool,
    /// Evict each model file from the page cache before loading it, so it is read back afresh
    /// (Linux: in 2 MiB folios where the file system has large folios; a file written on this
    /// machine otherwise stays in 4 KiB pages, and decode is a few per cent slower): the same
    /// start for every run without root's drop_caches. Re-reads the file from disk.
    #[arg(long = "recache")]
    pub recache: bool,
    /// Keep an interleaved copy of the Q4_K matrices for the CPU's eight-row decode kernel (as
    /// llama.cpp's default repack): faster decode, logits that differ in the last bits; the
    /// originals leave memory as they are copied (2.8 % more bytes for those weights), the load
    /// takes longer.
    #[arg(long = "repack")]
    pub repack: bool,
    /// Per-kernel GPU time of all the runs (wgpu: timestamps; cuda: ops timed by synchronizing,
    /// which slows them), printed to stderr after each model's results.
    #[arg(long = "profile")]
    pub profile: bool,
    /// Time the wgpu matrix kernels alone on the matrix shapes of these synthetic presets
    /// (see `tokenfab synth`): decode (1 token) and each `-p` length; no model file needed.
    #[arg(long = "kernels", value_delimiter = ',')]
    pub kernels: Vec<String>,
    /// Weight types for `--kernels`.
    #[arg(long = "kernel-types", value_delimiter = ',', default_value = "q4_K")]
    pub kernel_types: Vec<String>,
    /// Calls per decode kernel for `--kernels` (prefill kernels: a tenth).
    #[arg(long = "kernel-reps", default_value_t = 100)]
    pub kernel_reps: usize,
    /// Load-test an OpenAI-compatible server at this URL instead (tokenfab serve, llama-server,
    /// vLLM, a cloud API): streaming completions of -n tokens at each --concurrency level.
    #[arg(long = "endpoint")]
    pub endpoint: Option<String>,
    /// Concurrent clients for --endpoint, one level after another.
    #[arg(long = "concurrency", value_delimiter = ',', default_value = "1,2,4,8")]
    pub concurrency: Vec<usize>,
    /// Requests per --concurrency level (at least the level).
    #[arg(long = "requests", default_value_t = 16)]
    pub requests: usize,
    /// Bearer token for --endpoint.
    #[arg(long = "api-key")]
    pub api_key: Option<String>,
    /// `model` field of --endpoint requests (some servers require one).
    #[arg(long = "endpoint-model")]
    pub endpoint_model: Option<String>,
    #[command(flatten)]
    pub energy: super::energy::EnergyArgs,
    /// Speculative decoding benchmark (with --draft or --lookup): a JSON array of
    /// {"name", "kind", "prompt"}; each prompt is generated greedily (-n tokens, -r times)
    /// without and with drafts.
    #[arg(long = "prompts")]
    pub prompts: Option<PathBuf>,
    #[command(flatten)]
    pub draft: super::draft::DraftArgs,
}

fn tests(a: &BenchArgs) -> Result<Vec<TestSpec>> {
    let mut kinds = Vec::new();
    kinds.extend(
        a.n_prompt
            .iter()
            .filter(|&&p| p > 0)
            .map(|&p| TestKind::Prefill(p)),
    );
    kinds.extend(
        a.n_gen
            .iter()
            .filter(|&&n| n > 0)
            .map(|&n| TestKind::Decode(n)),
    );
    for pg in &a.pg {
        let parts: Vec<&str> = pg.split(',').collect();
        let parsed = match parts.as_slice() {
            [p, n] => p
                .trim()
                .parse::<usize>()
                .ok()
                .zip(n.trim().parse::<usize>().ok()),
            _ => None,
        };
        match parsed {
            Some((p, n)) if p > 0 && n > 0 => kinds.push(TestKind::PrefillDecode(p, n)),
            _ => bail!("-pg takes two positive numbers, PROMPT,GEN (got {pg:?})"),
        }
    }
    if kinds.is_empty() {
        bail!("nothing to run: give a positive -p, -n or -pg");
    }
    Ok(a.depth
        .iter()
        .flat_map(|&d| kinds.iter().map(move |&k| TestSpec { kind: k, depth: d }))
        .collect())
}

pub fn run(a: BenchArgs) -> Result<()> {
    if !a.kernels.is_empty() {
        return super::kernels::run(&a);
    }
    if let Some(endpoint) = &a.endpoint {
        return load(&a, endpoint);
    }
    if let Some(draft) = a.draft.spec()? {
        return speculative(&a, draft);
    }
    if a.prompts.is_some() {
        bail!("--prompts is for the speculative benchmark: add --draft MODEL or --lookup N");
    }
    if !matches!(a.output.as_str(), "md" | "json" | "csv" | "jsonl") {
        bail!("-o must be md, json, csv or jsonl (got {:?})", a.output);
    }
    let kind: BackendKind = a.backend.parse()?;
    if a.reps == 0 {
        bail!("-r must be at least 1");
    }
    let specs = tests(&a)?;
    let models: Vec<PathBuf> = if a.models.is_empty() {
        vec![super::resolve_model(None)?]
    } else {
        a.models
            .iter()
            .map(|m| super::resolve_model(Some(m)))
            .collect::<Result<_>>()?
    };
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let threads: Vec<usize> = if a.threads.is_empty() {
        vec![cores]
    } else {
        a.threads.clone()
    };
    if threads.contains(&0) {
        bail!("-t must be at least 1");
    }
    if let Some(&most) = threads.iter().max() {
        super::warn_oversubscribed(most);
    }
    let total = (models.len() * threads.len() * specs.len() * (a.reps + 1)) as u64;
    let bar = if a.no_progress {
        ProgressBar::hidden()
    } else {
        ProgressBar::new(total)
    };
    bar.set_style(
        ProgressStyle::with_template("{spinner} [{elapsed_precise}] {bar:30} {pos}/{len} {msg}")
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    let flags = RunFlags {
        profile: a.profile,
        recache: a.recache,
        repack: a.repack,
    };
    let results = run_all(
        kind, &models, &threads, &specs, a.reps, &a.energy, &bar, flags,
    )?;
    bar.finish_and_clear();
    let mut out = std::io::stdout().lock();
    match a.output.as_str() {
        "json" | "jsonl" => write_json(&mut out, &a.output, &results)?,
        "csv" => write!(out, "{}", bench::to_csv(&results))?,
        _ => {
            write!(out, "{}", bench::to_markdown(&results))?;
            if let Some(r) = results.first() {
                writeln!(out)?;
                writeln!(out, "energy: {} — {}", r.energy_source, r.energy_detail)?;
                writeln!(
                    out,
                    "machine: {} ({} cores, {}), {}; tokenfab {} ({}, {}); MBU against {} GB/s measured peak read bandwidth",
                    r.machine.cpu,
                    r.machine.logical_cores,
                    r.machine.isa,
                    r.machine.os,
                    r.build.version,
                    r.build.git,
                    r.build.profile,
                    r.peak_gb_s.map_or("an unknown".into(), |p| format!("{p:.1}")),
                )?;
                for line in page_cache_lines(&results) {
                    writeln!(out, "{line}")?;
                }
                let fastest = results.iter().map(|r| r.gb_s).fold(0.0, f64::max);
                if let Some(note) = r
                    .peak_gb_s
                    .and_then(|p| tokenfab::telemetry::probe::impossible_peak(fastest, p))
                {
                    writeln!(out, "{note}")?;
                    eprintln!("tokenfab bench: {note}");
                }
            }
        }
    }
    Ok(())
}

/// One line per model file: how much of its mapping the page cache maps 2 MiB at a time (the
/// last test's reading), with what to do when it is low.
fn page_cache_lines(results: &[BenchResult]) -> Vec<String> {
    let mut seen = std::collections::BTreeMap::new();
    for r in results {
        if let Some(p) = r.model_huge_pages_pct {
            seen.insert(r.model.path.as_str(), (r.model.name.as_str(), p));
        }
    }
    seen.into_values()
        .map(|(name, p)| {
            let hint = if p < 50.0 {
                " — low: the file is cached in small pages (written on this machine, or read in pieces); decode reads it a few per cent slower than a freshly read file; --recache evicts it before loading"
            } else {
                ""
            };
            format!("page cache: {name}: {p:.0} % of the mapped model in 2 MiB pages{hint}")
        })
        .collect()
}

/// Bench results as one JSON array (`json`) or one object per line (`jsonl`).
fn write_json(out: &mut impl Write, format: &str, results: &[BenchResult]) -> Result<()> {
    if format == "jsonl" {
        for r in results {
            writeln!(out, "{}", serde_json::to_string(r)?)?;
        }
    } else {
        writeln!(out, "{}", serde_json::to_string_pretty(results)?)?;
    }
    Ok(())
}

/// How `run_all` loads and times each model (`--profile`, `--recache`, `--repack`).
#[derive(Clone, Copy, Default)]
pub struct RunFlags {
    pub profile: bool,
    pub recache: bool,
    pub repack: bool,
}

/// Runs every spec on every model and thread count.
#[allow(clippy::too_many_arguments)]
pub fn run_all(
    kind: BackendKind,
    models: &[PathBuf],
    threads: &[usize],
    specs: &[TestSpec],
    reps: usize,
    energy: &super::energy::EnergyArgs,
    bar: &ProgressBar,
    RunFlags {
        profile,
        recache,
        repack,
    }: RunFlags,
) -> Result<Vec<BenchResult>> {
    let ctx = specs.iter().map(|s| s.ctx_needed()).max().unwrap_or(1);
    let batch = specs
        .iter()
        .map(|s| match s.kind {
            TestKind::Prefill(p) | TestKind::PrefillDecode(p, _) => p.max(s.depth),
            TestKind::Decode(_) => s.depth,
        })
        .max()
        .unwrap_or(512)
        .clamp(1, 512);

    let mut results: Vec<BenchResult> = Vec::new();
    for path in models {
        if recache {
            tokenfab::gguf::page_cache::evict(path)
                .with_context(|| format!("--recache: cannot evict {}", path.display()))?;
        }
        for &t in threads {
            bench::reset_peak_rss();
            bar.set_message(format!("loading {}", path.display()));
            let spec = BackendSpec {
                kind,
                threads: t,
                profile,
                gpu: super::gpu_options(),
            };
            let mut model = super::run::load_model(
                path,
                &spec,
                &LoadOptions {
                    ctx,
                    batch,
                    logit_rows: 1,
                    n_seq: 1,
                    // a speed measurement of one sequence: prefill through the tiled GEMM
                    batch_invariant: false,
                    repack,
                    ..LoadOptions::default()
                },
            )?;
            let meta = ModelMeta::of(model.file());
            let gpu = model.ops().backend().energy_gpu();
            let mut energy = super::energy::bench_probe(energy, t, gpu)?;
            let backend = model.ops().name();
            // MBU needs the device's measured peak (cached after the first measurement)
            bar.set_message("measuring peak bandwidth");
            let on_cpu = model.ops().backend_mut().adapter_name().is_none();
            let peak = if on_cpu {
                tokenfab::telemetry::probe::cpu_peak(t, true)
            } else {
                tokenfab::telemetry::probe::gpu_peak(
                    model.ops().backend_mut(),
                    tokenfab::telemetry::probe::Measure::IfMissing,
                )
            }
            .map(|(g, _)| g);
            for spec in specs {
                bar.set_message(format!("{} {}", meta.name, spec.name()));
                let reps =
                    bench::run_test(&mut model, *spec, reps, &mut energy, &mut || bar.inc(1))
                        .with_context(|| format!("{} on {}", spec.name(), path.display()))?;
                let mut r = bench::summarize(
                    meta.clone(),
                    backend.clone(),
                    t,
                    *spec,
                    reps,
                    &energy,
                    peak,
                    bench::peak_rss_mb(),
                );
                if on_cpu {
                    r.model_huge_pages_pct = model.file().residency().and_then(|r| r.huge_pct());
                }
                results.push(r);
            }
            if let Some(kernels) = model.ops().take_profile() {
                bar.suspend(|| {
                    eprintln!("tokenfab: profile of {} ({backend})", path.display());
                    eprint!("{}", super::profile::table(&kernels, model.ops()));
                });
            }
        }
    }
    Ok(results)
}

/// A quick bench of one model (used by `tokenfab cost -m`): prefill tests of `p` tokens and
/// decode tests of `n`, `reps` repetitions, no progress bar.
pub fn measure(
    model: &std::path::Path,
    threads: usize,
    p: &[usize],
    n: &[usize],
    reps: usize,
    energy: &super::energy::EnergyArgs,
) -> Result<Vec<BenchResult>> {
    let specs: Vec<TestSpec> = p
        .iter()
        .map(|&p| TestKind::Prefill(p))
        .chain(n.iter().map(|&n| TestKind::Decode(n)))
        .map(|kind| TestSpec { kind, depth: 0 })
        .collect();
    run_all(
        BackendKind::Cpu,
        &[model.to_path_buf()],
        &[threads],
        &specs,
        reps,
        energy,
        &ProgressBar::hidden(),
        RunFlags::default(),
    )
}

/// `--draft`/`--lookup`: the speculative benchmark (`tokenfab::telemetry::spec_bench`).
fn speculative(a: &BenchArgs, draft: tokenfab::engine::DraftSpec) -> Result<()> {
    use tokenfab::telemetry::spec_bench::{self, SpecPrompt};
    let Some(file) = &a.prompts else {
        bail!("the speculative benchmark needs --prompts FILE (a JSON array of {{\"name\", \"kind\", \"prompt\"}})");
    };
    let text = std::fs::read_to_string(file)
        .with_context(|| format!("cannot read prompts file {}", file.display()))?;
    let prompts: Vec<SpecPrompt> = serde_json::from_str(&text).with_context(|| {
        format!(
            "{}: expected a JSON array of {{\"name\", \"kind\", \"prompt\"}}",
            file.display()
        )
    })?;
    if prompts.is_empty() {
        bail!("{}: no prompts", file.display());
    }
    if a.models.len() > 1 || a.threads.len() > 1 || a.n_gen.len() > 1 {
        bail!("the speculative benchmark takes one -m, one -t and one -n");
    }
    if a.reps == 0 {
        bail!("-r must be at least 1");
    }
    let n = a.n_gen.first().copied().unwrap_or(128);
    if n == 0 {
        bail!("-n must be at least 1");
    }
    let threads = a.threads.first().copied().unwrap_or(0);
    super::warn_oversubscribed(threads);
    let opts = tokenfab::engine::EngineOptions {
        backend: super::backend_spec(&a.backend, threads, false)?,
        load: LoadOptions {
            ctx: 2048,
            ..LoadOptions::default()
        },
        energy: a.energy.options()?,
        threads,
        draft: Some(draft),
        ..Default::default()
    };
    let model = super::resolve_model(a.models.first().map(|p| p.as_path()))?;
    let mut engine = tokenfab::engine::Engine::load(&model, &opts)?;
    let bar = if a.no_progress {
        ProgressBar::hidden()
    } else {
        ProgressBar::new((prompts.len() * (a.reps + 1)) as u64)
    };
    let results = spec_bench::run(&mut engine, &prompts, n, a.reps, &mut |name| {
        bar.set_message(name.to_string());
        bar.inc(1);
    })?;
    bar.finish_and_clear();
    let mut out = std::io::stdout().lock();
    match a.output.as_str() {
        "json" | "jsonl" => write_json(&mut out, &a.output, &results)?,
        "md" => {
            write!(out, "{}", spec_bench::to_markdown(&results))?;
            if let Some(r) = results.first() {
                writeln!(
                    out,
                    "\n{} on {} ({} threads); {} generated tokens per run, median of {} runs each way; energy: {}",
                    r.model.name, r.backend, r.threads, n, a.reps, r.energy_source
                )?;
            }
        }
        o => bail!("-o {o}: the speculative benchmark writes md, json or jsonl"),
    }
    Ok(())
}

/// `--endpoint`: the load generator (`tokenfab::loadgen`).
fn load(a: &BenchArgs, endpoint: &str) -> Result<()> {
    let json = match a.output.as_str() {
        "md" => false,
        "json" => true,
        o => anyhow::bail!("-o {o}: --endpoint writes md or json"),
    };
    let opts = tokenfab::loadgen::LoadOptions {
        endpoint: endpoint.to_string(),
        api_key: a.api_key.clone(),
        model: a.endpoint_model.clone(),
        concurrency: a.concurrency.clone(),
        requests: a.requests,
        max_tokens: a.n_gen.first().copied().filter(|&n| n > 0).unwrap_or(128),
        prompt: "Request {i}. Write a long story about a lighthouse keeper.".into(),
        timeout: std::time::Duration::from_secs(600),
    };
    let levels = tokenfab::loadgen::run(&opts, &mut |l| {
        if !a.no_progress {
            eprintln!(
                "tokenfab bench: {} concurrent: {:.1} tok/s aggregate, {} failed",
                l.concurrency, l.aggregate_tok_s, l.failed
            );
        }
    })?;
    if json {
        let report = tokenfab::loadgen::LoadReport {
            endpoint: endpoint.to_string(),
            max_tokens: opts.max_tokens,
            levels,
        };
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print!("{}", tokenfab::loadgen::table(&levels));
        if let Some(src) = levels.iter().find_map(|l| l.energy_source.as_deref()) {
            println!("\nenergy: {src} (from the server's usage.cost)");
        }
    }
    Ok(())
}

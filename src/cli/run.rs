//! `tokenfab run`: generate a continuation, streaming only the generated text to stdout and a
//! summary line (tokens, load time, prefill and decode speed) to stderr.

use anyhow::{bail, Context, Result};
use clap::Args;
use std::io::Write;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;
use tokenfab::backend::BackendSpec;
use tokenfab::engine::{Engine, EngineOptions};
use tokenfab::generate::{GenerateOptions, StopReason};
use tokenfab::model::{LoadOptions, Model};
use tokenfab::sampling::{Sampler, SamplingParams};
use tokenfab::tokenizer::chat::Message;
use tokenfab::tokenizer::Tokenizer;

#[derive(Args, Debug)]
pub struct RunArgs {
    /// The prompt (or use -p / -f).
    pub prompt: Option<String>,
    /// The prompt.
    #[arg(short = 'p', long = "prompt", conflicts_with = "prompt")]
    pub prompt_flag: Option<String>,
    /// Read the prompt from a file.
    #[arg(short = 'f', long = "file", conflicts_with_all = ["prompt", "prompt_flag"])]
    pub prompt_file: Option<PathBuf>,
    /// GGUF model file (default: Gemma 3 270M Q4_K_M in models/).
    #[arg(short = 'm', long = "model")]
    pub model: Option<PathBuf>,
    /// Number of tokens to generate.
    #[arg(short = 'n', long = "n-predict", default_value_t = 128)]
    pub n_predict: usize,
    /// CPU threads (default: all cores).
    #[arg(short = 't', long = "threads", default_value_t = 0)]
    pub threads: usize,
    /// Backend: auto (wgpu on a discrete GPU, else cpu), cpu, wgpu, cuda, or reference (exact
    /// f64 arithmetic, slow: for measuring the others).
    #[arg(long = "backend", default_value = "auto")]
    pub backend: String,
    /// Time every GPU kernel (timestamps) and print time and GB/s per kernel (wgpu).
    #[arg(long = "profile")]
    pub profile: bool,
    /// Context size in tokens (default: min(4096, the model's training context)).
    #[arg(short = 'c', long = "ctx-size", default_value_t = 0)]
    pub ctx_size: usize,
    /// Prompt tokens processed per forward pass.
    #[arg(short = 'b', long = "batch-size", default_value_t = 512)]
    pub batch_size: usize,
    /// Keep the whole context's keys and values in sliding-window layers too (as llama.cpp's
    /// `--swa-full`); by default they keep a ring of window + batch positions.
    #[arg(long = "swa-full")]
    pub swa_full: bool,
    /// Keep an interleaved copy of the Q4_K matrices for the CPU's eight-row decode kernel (as
    /// llama.cpp's default repack): logits that differ in the last bits, decode faster where the
    /// kernel and not memory sets the pace; the originals leave memory as they are copied (2.8 %
    /// more bytes for those weights), the load takes longer.
    #[arg(long = "repack")]
    pub repack: bool,
    /// Temperature; 0 = greedy.
    #[arg(long = "temp", default_value_t = 0.8)]
    pub temp: f32,
    /// Top-k sampling (0 = off).
    #[arg(long = "top-k", default_value_t = 40)]
    pub top_k: usize,
    /// Top-p (nucleus) sampling (1.0 = off).
    #[arg(long = "top-p", default_value_t = 0.95)]
    pub top_p: f32,
    /// Min-p sampling (0.0 = off).
    #[arg(long = "min-p", default_value_t = 0.05)]
    pub min_p: f32,
    /// Penalty for repeating recent tokens (1.0 = off).
    #[arg(long = "repeat-penalty", default_value_t = 1.0)]
    pub repeat_penalty: f32,
    /// How many recent tokens the repeat penalty considers.
    #[arg(long = "repeat-last-n", default_value_t = 64)]
    pub repeat_last_n: usize,
    /// RNG seed (default: random; printed in the summary).
    #[arg(short = 's', long = "seed")]
    pub seed: Option<u64>,
    /// Stop when this text appears (repeatable); it is not printed.
    #[arg(long = "stop")]
    pub stop: Vec<String>,
    /// Do not add BOS to the prompt.
    #[arg(long = "no-bos")]
    pub no_bos: bool,
    /// Format the prompt with the model's chat template (from its GGUF metadata).
    #[arg(long = "chat")]
    pub chat: bool,
    /// System message for --chat.
    #[arg(long = "system", requires = "chat")]
    pub system: Option<String>,
    /// Keep generating after an end-of-generation token.
    #[arg(long = "ignore-eos")]
    pub ignore_eos: bool,
    /// Write one JSON line per prompt and generated token (time, bytes, FLOPs, energy), then a
    /// summary line, to this file.
    #[arg(long = "trace")]
    pub trace: Option<PathBuf>,
    #[command(flatten)]
    pub energy: super::energy::EnergyArgs,
    #[command(flatten)]
    pub draft: super::draft::DraftArgs,
}

/// A run, validated.
struct RunConfig {
    model: PathBuf,
    prompt: String,
    sampling: SamplingParams,
    seed_given: bool,
    gen: GenerateOptions,
    load: LoadOptions,
    threads: usize,
    backend: BackendSpec,
    add_bos: bool,
    chat: Option<Vec<Message>>,
    trace: Option<PathBuf>,
    energy: super::energy::EnergyArgs,
    draft: Option<tokenfab::engine::DraftSpec>,
}

impl RunConfig {
    fn from_args(a: RunArgs) -> Result<Self> {
        let prompt = match (a.prompt, a.prompt_flag, a.prompt_file) {
            (Some(p), None, None) | (None, Some(p), None) => p,
            (None, None, Some(f)) => std::fs::read_to_string(&f)
                .with_context(|| format!("cannot read prompt file {}", f.display()))?,
            (None, None, None) => {
                bail!("no prompt: give one as an argument, with -p, or with -f FILE")
            }
            _ => bail!("give the prompt only once (argument, -p or -f)"),
        };
        let seed_given = a.seed.is_some();
        let seed = a.seed.unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_nanos() as u64)
        });
        let sampling = SamplingParams {
            temperature: a.temp,
            top_k: a.top_k,
            top_p: a.top_p,
            min_p: a.min_p,
            repeat_penalty: a.repeat_penalty,
            repeat_last_n: a.repeat_last_n,
            seed,
            ..SamplingParams::default()
        };
        sampling.validate().map_err(anyhow::Error::msg)?;
        if a.batch_size == 0 {
            bail!("--batch-size must be at least 1");
        }
        let chat = a.chat.then(|| {
            let mut m = Vec::new();
            if let Some(s) = &a.system {
                m.push(Message::new("system", s));
            }
            m.push(Message::new("user", &prompt));
            m
        });
        let draft = a.draft.spec()?;
        Ok(RunConfig {
            model: super::resolve_model(a.model.as_deref())?,
            prompt,
            sampling,
            seed_given,
            gen: GenerateOptions {
                max_tokens: a.n_predict,
                stop: a.stop,
                ignore_eog: a.ignore_eos,
                ..GenerateOptions::default()
            },
            load: LoadOptions {
                ctx: a.ctx_size,
                batch: a.batch_size,
                logit_rows: 1,
                n_seq: 1,
                // one sequence: only speculative decoding compares a token's logits across
                // batch sizes (verification rows against plain decoding)
                batch_invariant: draft.is_some(),
                window_ring: !a.swa_full,
                repack: a.repack,
            },
            threads: a.threads,
            backend: super::backend_spec(&a.backend, a.threads, a.profile)?,
            add_bos: !a.no_bos,
            chat,
            trace: a.trace,
            energy: a.energy,
            draft,
        })
    }
}

/// Loads only the model (benchmarks need no tokenizer; synthetic models have none).
pub fn load_model(
    path: &std::path::Path,
    backend: &BackendSpec,
    opts: &LoadOptions,
) -> Result<Model> {
    let file = super::open_gguf(path)?;
    file.prefetch();
    let mut model = Model::load(file, backend.open()?, opts)
        .with_context(|| format!("cannot load model {}", path.display()))?;
    if backend.times_ops_by_sync() {
        model.ops().time_ops_by_sync(true);
    }
    Ok(model)
}

/// Loads the tokenizer and the model concurrently (see [`Engine::load`]).
pub fn load(
    path: &std::path::Path,
    backend: &BackendSpec,
    opts: &LoadOptions,
) -> Result<(Arc<Tokenizer>, Model)> {
    let eo = EngineOptions {
        backend: backend.clone(),
        load: opts.clone(),
        ..EngineOptions::default()
    };
    Ok(Engine::load(path, &eo)?.into_parts())
}

pub fn run(a: RunArgs) -> Result<()> {
    let cfg = RunConfig::from_args(a)?;
    super::warn_oversubscribed(cfg.threads);
    let t0 = Instant::now();
    let opts = EngineOptions {
        backend: cfg.backend,
        load: cfg.load.clone(),
        energy: cfg.energy.options()?,
        threads: cfg.threads,
        draft: cfg.draft.clone(),
        ..EngineOptions::default()
    };
    let mut engine = Engine::load(&cfg.model, &opts)?;
    let load_time = t0.elapsed();

    let prompt = match &cfg.chat {
        Some(messages) => engine.chat_prompt(messages, cfg.add_bos)?,
        None => engine.encode(&cfg.prompt, cfg.add_bos)?,
    };
    let mut sampler = Sampler::new(cfg.sampling.clone());
    let threads = engine.threads();
    let gpu = engine.model().ops().backend().energy_gpu();
    let (mut recorder, _) = super::energy::recorder(&cfg.energy, threads, gpu)?;
    // open the trace file before generating, so a bad path fails fast
    let mut trace = match &cfg.trace {
        Some(p) => Some(std::io::BufWriter::new(
            std::fs::File::create(p)
                .with_context(|| format!("cannot create trace file {}", p.display()))?,
        )),
        None => None,
    };
    let mut out = std::io::stdout().lock();
    let mut pipe_closed = false;
    recorder.start();
    // what the generated tokens cost, drafting included (speculative decoding's "per
    // accepted token")
    let pricer = engine.pricer();
    let (mut gen_j, mut gen_usd, mut gen_bytes) = (0.0, 0.0, 0u64);
    let summary = engine.generate(&prompt, &mut sampler, &cfg.gen, &mut |ev| {
        recorder.observe(ev);
        if ev.phase == tokenfab::generate::Phase::Decode && !ev.flush {
            let c = pricer.cost(ev);
            gen_j += c.joules;
            gen_usd += c.usd;
            gen_bytes += ev.traffic.bytes();
        }
        if ev.text.is_empty() {
            return true;
        }
        match out.write_all(ev.text.as_bytes()).and_then(|_| out.flush()) {
            Ok(()) => true,
            Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => {
                pipe_closed = true;
                false
            }
            Err(_) => false,
        }
    })?;
    if !pipe_closed {
        let _ = writeln!(out);
    }
    let stop = match summary.stop {
        StopReason::Length => "token limit",
        StopReason::EndOfGeneration => "end of generation",
        StopReason::StopString => "stop string",
        StopReason::ContextFull => "context full",
        StopReason::Cancelled => "output closed",
        StopReason::Budget(_) => "budget spent",
    };
    let seed = if cfg.sampling.temperature > 0.0 {
        format!(
            " | seed {}{}",
            cfg.sampling.seed,
            if cfg.seed_given { "" } else { " (random)" }
        )
    } else {
        String::new()
    };
    eprintln!(
        "tokenfab: prompt {} tokens, generated {} tokens ({stop}) | load {:.2} s | ttft {:.3} s | prefill {:.1} tok/s | decode {:.1} tok/s | {}{seed}",
        summary.n_prompt,
        summary.n_generated,
        load_time.as_secs_f64(),
        summary.ttft.as_secs_f64(),
        summary.prefill_tok_s(),
        summary.decode_tok_s(),
        engine.model().ops().name(),
    );
    let spec = engine.drafter().map(|d| d.kind());
    let per_token = |x: f64| x / summary.n_generated.max(1) as f64;
    let accepted = (
        per_token(gen_j),
        per_token(gen_bytes as f64),
        per_token(gen_usd),
    );
    if let Some(kind) = spec {
        eprintln!(
            "tokenfab: {}",
            super::draft::summary_line(kind, &summary.spec)
        );
        eprintln!(
            "tokenfab: per accepted token (drafting included): {:.4} J, {:.1} MB, ${:.3e} [{}]",
            accepted.0,
            accepted.1 / 1e6,
            accepted.2,
            engine.energy_source()
        );
    }
    // the device's measured peak bandwidth (cached by `tokenfab probe` or `bench`)
    let peak = engine.peak_bandwidth();
    let (report, records) = recorder.finish(peak);
    for line in report.summary_lines() {
        eprintln!("tokenfab: {line}");
    }
    let ops = engine.model().ops();
    if let Some(kernels) = ops.take_profile() {
        eprint!("{}", super::profile::table(&kernels, ops));
    }
    if let (Some(w), Some(p)) = (trace.as_mut(), &cfg.trace) {
        use std::io::Write as _;
        let io =
            |e: std::io::Error| anyhow::anyhow!("cannot write trace file {}: {e}", p.display());
        for r in &records {
            let mut v = serde_json::to_value(r)?;
            v["type"] = "token".into();
            writeln!(w, "{}", serde_json::to_string(&v)?).map_err(io)?;
        }
        let mut v = serde_json::to_value(&report)?;
        v["type"] = "summary".into();
        if let Some(kind) = spec {
            let mut sv = summary.spec.json(kind);
            sv["j_per_accepted_token"] = accepted.0.into();
            sv["bytes_per_accepted_token"] = accepted.1.into();
            sv["usd_per_accepted_token"] = accepted.2.into();
            v["speculative"] = sv;
        }
        writeln!(w, "{}", serde_json::to_string(&v)?).map_err(io)?;
        w.flush().map_err(io)?;
    }
    Ok(())
}

//! The command line: clap definitions of every subcommand, turned into validated configs
//! before any work starts. One file per subcommand.

pub mod bench;
pub mod cost;
pub mod draft;
pub mod energy;
pub mod eval;
pub mod info;
pub mod kernels;
pub mod perplexity;
pub mod probe;
pub mod profile;
pub mod quantize;
pub mod run;
pub mod serve;
pub mod synth;
pub mod tokenize;
pub mod tradeoff;

use anyhow::{bail, Context, Result};
use clap::{Parser, Subcommand};
use std::path::{Path, PathBuf};

/// tokenfab: run quantized LLMs locally and see what every token cost.
#[derive(Parser, Debug)]
#[command(name = "tokenfab", version, about, long_about = None)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Generate text from a prompt (streams the continuation to stdout).
    Run(Box<run::RunArgs>),
    /// Serve the model over an OpenAI-compatible HTTP API (many requests decoded together).
    Serve(Box<serve::ServeArgs>),
    /// Print the token ids of a text as a JSON array.
    Tokenize(tokenize::TokenizeArgs),
    /// Describe a GGUF model: architecture, hyper-parameters, tensors, bytes per token.
    Info(info::InfoArgs),
    /// List devices and energy sensors; measure and cache peak memory bandwidth.
    Probe(probe::ProbeArgs),
    /// Measure prefill/decode speed, latency, memory traffic and energy (llama-bench flags).
    Bench(Box<bench::BenchArgs>),
    /// Cost per token here vs cloud APIs and GPU rental, from bench results (table, JSON, plots).
    Cost(Box<cost::CostArgs>),
    /// Perplexity of a text (llama-perplexity's method), optionally KL divergence vs a reference.
    Perplexity(perplexity::PerplexityArgs),
    /// Rewrite a GGUF with another quantization mix (q8_0, q4_k_m, ...), llama-quantize style.
    Quantize(quantize::QuantizeArgs),
    /// Write a GGUF with random weights and a real model's shapes (for speed tests).
    Synth(synth::SynthArgs),
    /// Quantize to several mixes and compare size, perplexity, KLD, speed, energy and cost.
    Tradeoff(Box<tradeoff::TradeoffArgs>),
    /// Run a task suite (HumanEval) in a sandbox: pass rate and cost per accepted output under
    /// retries and small → large cascades.
    Eval(Box<eval::EvalArgs>),
}

pub fn dispatch(cli: Cli) -> Result<()> {
    match cli.command {
        Command::Run(a) => run::run(*a),
        Command::Serve(a) => serve::run(*a),
        Command::Tokenize(a) => tokenize::run(a),
        Command::Info(a) => info::run(a),
        Command::Probe(a) => probe::run(a),
        Command::Bench(a) => bench::run(*a),
        Command::Cost(a) => cost::run(*a),
        Command::Perplexity(a) => perplexity::run(a),
        Command::Quantize(a) => quantize::run(a),
        Command::Synth(a) => synth::run(a),
        Command::Tradeoff(a) => tradeoff::run(*a),
        Command::Eval(a) => eval::run(*a),
    }
}

/// GPU settings from the environment (the CLI's edge; the library takes them as options):
/// `TOKENFAB_WGPU_ADAPTER=substring` picks a wgpu adapter by name, `TOKENFAB_WGPU_SUBGROUPS=0`
/// and `TOKENFAB_WGPU_F16=0` force the fallbacks, `TOKENFAB_WGPU_KERNELS=legacy` the general
/// kernel with one dispatch per op, `TOKENFAB_CUDA_EVENTS=1` keeps cudarc's CUDA events.
pub fn gpu_options() -> tokenfab::backend::GpuOptions {
    let var = |k: &str| std::env::var(k).ok();
    let off = |k: &str| var(k).is_some_and(|v| v == "0");
    tokenfab::backend::GpuOptions {
        adapter: var("TOKENFAB_WGPU_ADAPTER").filter(|s| !s.is_empty()),
        subgroups: !off("TOKENFAB_WGPU_SUBGROUPS"),
        f16_kv: !off("TOKENFAB_WGPU_F16"),
        fast_kernels: var("TOKENFAB_WGPU_KERNELS").is_none_or(|v| v != "legacy"),
        cuda_events: var("TOKENFAB_CUDA_EVENTS").is_some(),
    }
}

/// File name of the default model (Gemma 3 270M, Q4_K_M).
pub const DEFAULT_MODEL: &str = "gemma-3-270m-q4_k_m.gguf";

/// The model to use: `-m PATH` if given, else `$TOKENFAB_MODEL`, else the default model in
/// `./models/` or in the source checkout's `models/`. A missing file is an error that says
/// exactly how to get it.
/// Warns when `-t` asks for more threads than the machine has logical cores: they share the
/// cores (usually slower), and the energy estimate charges static power for the cores only.
pub fn warn_oversubscribed(threads: usize) {
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    if threads > cores {
        eprintln!(
            "tokenfab: warning: -t {threads} is more threads than this machine's {cores} logical \
             cores; they share the cores, and energy is estimated for {cores}"
        );
    }
}

pub fn resolve_model(arg: Option<&Path>) -> Result<PathBuf> {
    if let Some(p) = arg {
        if !p.exists() {
            bail!("model file {} does not exist", p.display());
        }
        return Ok(p.to_path_buf());
    }
    if let Some(p) = std::env::var_os("TOKENFAB_MODEL") {
        let p = PathBuf::from(p);
        if !p.exists() {
            bail!("TOKENFAB_MODEL={} does not exist", p.display());
        }
        return Ok(p);
    }
    let candidates = [
        PathBuf::from("models").join(DEFAULT_MODEL),
        PathBuf::from(env!("CARGO_MANIFEST_DIR"))
            .join("models")
            .join(DEFAULT_MODEL),
    ];
    for c in &candidates {
        if c.exists() {
            return Ok(c.clone());
        }
    }
    bail!(
        "the default model ({DEFAULT_MODEL}) is not downloaded.\n\
         Get it with:   scripts/fetch-models.sh gemma   (from the tokenfab checkout; needs pip)\n\
         or pass another GGUF file with -m PATH."
    )
}

/// `--backend NAME` with its threads (and `--profile`) as a backend spec.
pub fn backend_spec(
    name: &str,
    threads: usize,
    profile: bool,
) -> Result<tokenfab::backend::BackendSpec> {
    Ok(tokenfab::backend::BackendSpec {
        kind: name.parse::<tokenfab::backend::BackendKind>()?,
        threads,
        profile,
        gpu: gpu_options(),
    })
}

/// The models directory: `models/` here if it exists, else the checkout's (`TOKENFAB_MODELS_DIR`
/// first).
pub fn models_dir() -> PathBuf {
    if let Some(d) = std::env::var_os("TOKENFAB_MODELS_DIR") {
        return PathBuf::from(d);
    }
    let here = PathBuf::from("models");
    if here.is_dir() {
        return here;
    }
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("models")
}

/// Opens a GGUF file with a helpful error.
pub fn open_gguf(path: &Path) -> Result<std::sync::Arc<tokenfab::gguf::GgufFile>> {
    let f = tokenfab::gguf::GgufFile::open(path)
        .with_context(|| format!("cannot load model {}", path.display()))?;
    Ok(std::sync::Arc::new(f))
}

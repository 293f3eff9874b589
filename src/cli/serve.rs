//! `tokenfab serve`: the OpenAI-compatible server (`tokenfab::server`) on the default or a
//! given model; flags follow llama-server's where they exist.

use anyhow::{bail, Result};
use clap::Args;
use std::path::PathBuf;
use tokenfab::engine::{Engine, EngineOptions};
use tokenfab::model::LoadOptions;
use tokenfab::server::{serve, ServeOptions};

#[derive(Args, Debug)]
pub struct ServeArgs {
    /// GGUF model file (default: Gemma 3 270M Q4_K_M in models/).
    #[arg(short = 'm', long = "model")]
    pub model: Option<PathBuf>,
    /// Address to listen on.
    #[arg(long = "host", default_value = "127.0.0.1")]
    pub host: String,
    /// Port to listen on (0: any free port; the address is printed).
    #[arg(long = "port", default_value_t = 8080)]
    pub port: u16,
    /// Requests decoded together (slots); more wait in the queue.
    #[arg(
        short = 'n',
        long = "parallel",
        visible_alias = "np",
        default_value_t = 4
    )]
    pub parallel: usize,
    /// Context size of each slot in tokens (default: min(4096, the model's training context)).
    #[arg(short = 'c', long = "ctx-size", default_value_t = 0)]
    pub ctx_size: usize,
    /// Most tokens per step: decode tokens first, prompt chunks in the room left.
    #[arg(short = 'b', long = "batch-size", default_value_t = 256)]
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
    /// Prefill prompt chunks of 16+ tokens through the CPU's tiled GEMM (2–2.5× faster) at the
    /// price of batch invariance: a request's logits may then differ in the last bits with
    /// what it is batched with (greedy answers of chaotic models can change with load).
    #[arg(long = "prefill-gemm")]
    pub prefill_gemm: bool,
    /// Requests that may wait for a slot; beyond that, 503 with Retry-After.
    #[arg(long = "max-queue", default_value_t = 64)]
    pub max_queue: usize,
    /// Require `Authorization: Bearer KEY` (every endpoint but /health).
    #[arg(long = "api-key")]
    pub api_key: Option<String>,
    /// CPU threads (default: all cores).
    #[arg(short = 't', long = "threads", default_value_t = 0)]
    pub threads: usize,
    /// Backend: auto (wgpu on a discrete GPU, else cpu), cpu, wgpu, cuda, or reference (exact
    /// f64 arithmetic, slow: for measuring the others).
    #[arg(long = "backend", default_value = "auto")]
    pub backend: String,
    #[command(flatten)]
    pub energy: super::energy::EnergyArgs,
    #[command(flatten)]
    pub draft: super::draft::DraftArgs,
}

pub fn run(a: ServeArgs) -> Result<()> {
    if a.parallel == 0 {
        bail!("--parallel must be at least 1");
    }
    if a.batch_size < a.parallel {
        bail!(
            "--batch-size ({}) must be at least --parallel ({}): every slot needs room for its decode token",
            a.batch_size,
            a.parallel
        );
    }
    let path = super::resolve_model(a.model.as_deref())?;
    super::warn_oversubscribed(a.threads);
    let opts = EngineOptions {
        backend: super::backend_spec(&a.backend, a.threads, false)?,
        load: LoadOptions {
            ctx: a.ctx_size,
            batch: a.batch_size,
            logit_rows: a.parallel,
            n_seq: a.parallel,
            batch_invariant: !a.prefill_gemm,
            window_ring: !a.swa_full,
            repack: a.repack,
        },
        energy: a.energy.options()?,
        threads: a.threads,
        draft: a.draft.spec()?,
        step_tokens: a.batch_size,
        ..EngineOptions::default()
    };
    let engine = Engine::load(&path, &opts)?;
    let (name, ctx, backend) = (engine.name(), engine.ctx(), engine_backend(&engine));
    let serve_opts = ServeOptions {
        host: a.host,
        port: a.port,
        parallel: a.parallel,
        max_queue: a.max_queue,
        api_key: a.api_key,
    };
    serve(engine, &serve_opts, |addr| {
        eprintln!(
            "tokenfab serve: listening on http://{addr} | {name} | {} slots of {ctx} tokens | {backend}",
            serve_opts.parallel
        );
    })?;
    Ok(())
}

fn engine_backend(e: &Engine) -> String {
    e.backend_name()
}

//! `tokenfab perplexity`: perplexity as llama-perplexity computes it, with the running
//! estimate, the final `PPL = X +/- Y`, timing, and KL divergence against a saved reference.

use anyhow::{bail, Context, Result};
use clap::Args;
use std::io::Write;
use std::path::PathBuf;
use tokenfab::eval::kld::{KldBase, KldCompare};
use tokenfab::eval::perplexity::{perplexity, KldMode, PerplexityOptions};
use tokenfab::model::LoadOptions;

#[derive(Args, Debug)]
pub struct PerplexityArgs {
    /// GGUF model (default: the default model).
    #[arg(short = 'm', long = "model")]
    pub model: Option<PathBuf>,
    /// Text file to score.
    #[arg(short = 'f', long = "file")]
    pub file: PathBuf,
    /// Chunk size (tokens of context per chunk; the second half is scored).
    #[arg(short = 'c', long = "ctx-size", default_value_t = 512)]
    pub ctx: usize,
    /// Score at most this many chunks.
    #[arg(long = "chunks")]
    pub chunks: Option<usize>,
    /// CPU threads (default: all cores).
    #[arg(short = 't', long = "threads", default_value_t = 0)]
    pub threads: usize,
    /// Backend: cpu, wgpu, cuda, or reference (exact f64 arithmetic, ~4× slower than cpu:
    /// save its distributions with --kl-divergence-base to measure another backend against
    /// the model's exact numbers).
    #[arg(long = "backend", default_value = "cpu")]
    pub backend: String,
    /// Save this model's token distributions (top-K + rest) as the KL-divergence reference.
    #[arg(long = "kl-divergence-base", conflicts_with = "kld")]
    pub kld_base: Option<PathBuf>,
    /// Compare against a reference saved with --kl-divergence-base.
    #[arg(long = "kl-divergence", id = "kld")]
    pub kld: Option<PathBuf>,
    /// Log-probabilities kept per position in the reference.
    #[arg(long = "kld-top-k", default_value_t = 32)]
    pub top_k: usize,
    /// Print the result as JSON.
    #[arg(long)]
    pub json: bool,
}

pub fn run(a: PerplexityArgs) -> Result<()> {
    let path = super::resolve_model(a.model.as_deref())?;
    let text = std::fs::read_to_string(&a.file)
        .with_context(|| format!("cannot read text file {}", a.file.display()))?;
    if a.ctx < 4 {
        bail!("-c must be at least 4");
    }
    let (tk, mut model) = super::run::load(
        &path,
        &super::backend_spec(&a.backend, a.threads, false)?,
        &LoadOptions {
            ctx: a.ctx,
            batch: a.ctx,
            logit_rows: 32.min(a.ctx),
            n_seq: 1,
            // scoring: every chunk is one batch, nothing is compared across batch sizes
            batch_invariant: false,
            ..LoadOptions::default()
        },
    )?;
    let mut base = a.kld_base.as_ref().map(|p| KldBase::new(p, a.top_k));
    let mut cmp = match &a.kld {
        Some(p) => Some(KldCompare::open(p)?),
        None => None,
    };
    let mode = match (&mut base, &mut cmp) {
        (Some(b), _) => KldMode::Save(b),
        (_, Some(c)) => KldMode::Compare(c),
        _ => KldMode::None,
    };
    let opts = PerplexityOptions {
        n_ctx: a.ctx,
        max_chunks: a.chunks,
    };
    let mut err = std::io::stderr().lock();
    let json = a.json;
    let report = perplexity(&mut model, &tk, &text, &opts, mode, &mut |i, ppl| {
        if !json {
            let _ = write!(err, "[{i}]{ppl:.4},");
            let _ = err.flush();
        }
    })?;
    drop(err);
    let mut out = std::io::stdout().lock();
    let kld = match cmp {
        Some(c) => Some(c.finish()?),
        None => None,
    };
    if let Some(b) = base {
        let n = b.finish()?;
        eprintln!(
            "\nsaved {n} positions (top-{} log-probabilities + rest) to {}",
            a.top_k,
            a.kld_base
                .as_ref()
                .map_or(String::new(), |p| p.display().to_string())
        );
    }
    if json {
        let v = serde_json::json!({ "model": path.display().to_string(), "perplexity": report, "kl_divergence": kld });
        writeln!(out, "{}", serde_json::to_string_pretty(&v)?)?;
        return Ok(());
    }
    writeln!(out)?;
    writeln!(
        out,
        "Final estimate: PPL = {:.4} +/- {:.5}",
        report.ppl, report.ppl_stderr
    )?;
    writeln!(
        out,
        "{} chunks of {} tokens, {} scored, {:.1} s ({:.1} tok/s)",
        report.n_chunks,
        report.n_ctx,
        report.tokens_scored,
        report.seconds,
        report.tokens_per_second
    )?;
    if let Some(k) = kld {
        writeln!(
            out,
            "KL divergence vs {} ({} positions):",
            a.kld
                .as_ref()
                .map_or(String::new(), |p| p.display().to_string()),
            k.positions
        )?;
        writeln!(out, "  Mean    KLD: {:.6}", k.mean_kld)?;
        writeln!(out, "  Maximum KLD: {:.6}", k.max_kld)?;
        writeln!(out, "  99.0%   KLD: {:.6}", k.p99_kld)?;
        writeln!(out, "  90.0%   KLD: {:.6}", k.p90_kld)?;
        writeln!(out, "  Median  KLD: {:.6}", k.median_kld)?;
        writeln!(out, "  Same top p: {:.3} %", k.same_top_pct)?;
        writeln!(
            out,
            "  Same top p where the reference leads by >= {} nats: {:.3} % of {} positions",
            tokenfab::eval::kld::CLEAR_GAP,
            k.same_top_clear_pct,
            k.clear_positions
        )?;
        writeln!(out, "  Mean    Δp: {:.3} %", 100.0 * k.mean_delta_p)?;
        writeln!(out, "  RMS     Δp: {:.3} %", 100.0 * k.rms_delta_p)?;
        writeln!(out, "  ({})", k.method)?;
    }
    Ok(())
}

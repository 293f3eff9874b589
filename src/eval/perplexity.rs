//! Perplexity as `llama-perplexity` computes it: the text is tokenized once (BOS as the model
//! says), cut into chunks of `n_ctx` tokens (the first token of each chunk replaced by BOS when
//! the model adds one), each chunk evaluated from an empty context, and only its second half
//! scored — the logits at positions `n_ctx/2 .. n_ctx-1` predicting the next token. The result
//! is `exp(mean NLL)` with standard error `sqrt(var(NLL)/(N-1)) · PPL`.

use super::kld::{KldBase, KldCompare};
use super::log_softmax_at;
use crate::model::{Model, ModelError};
use crate::tokenizer::Tokenizer;
use rayon::prelude::*;
use serde::Serialize;
use std::time::Instant;

#[derive(Debug, thiserror::Error)]
pub enum EvalError {
    #[error(transparent)]
    Model(#[from] ModelError),
    #[error(transparent)]
    Tokenizer(#[from] crate::tokenizer::TokenizerError),
    #[error("{0}")]
    Input(String),
    #[error("{file}: {msg}")]
    File { file: String, msg: String },
}

/// How to run.
#[derive(Clone, Debug)]
pub struct PerplexityOptions {
    pub n_ctx: usize,
    /// Evaluate at most this many chunks (all when `None`).
    pub max_chunks: Option<usize>,
}

#[derive(Clone, Debug, Serialize)]
pub struct PerplexityReport {
    pub n_ctx: usize,
    pub n_chunks: usize,
    pub tokens_scored: usize,
    pub ppl: f64,
    /// Standard error of the PPL estimate.
    pub ppl_stderr: f64,
    /// Running estimate after each chunk.
    pub running: Vec<f64>,
    pub seconds: f64,
    pub tokens_per_second: f64,
}

/// What to do with the per-position distributions besides the PPL.
pub enum KldMode<'a> {
    None,
    /// Record this model's distributions as the reference.
    Save(&'a mut KldBase),
    /// Compare against a saved reference.
    Compare(&'a mut KldCompare),
}

/// Runs perplexity over `text`; `progress(chunk, running_ppl)` after each chunk.
pub fn perplexity(
    model: &mut Model,
    tokenizer: &Tokenizer,
    text: &str,
    opts: &PerplexityOptions,
    mut kld: KldMode,
    progress: &mut dyn FnMut(usize, f64),
) -> Result<PerplexityReport, EvalError> {
    let n_ctx = opts.n_ctx;
    if n_ctx < 4 {
        return Err(EvalError::Input(format!(
            "-c must be at least 4 (got {n_ctx})"
        )));
    }
    if n_ctx > model.batch() || n_ctx > model.ctx() {
        return Err(EvalError::Input(format!(
            "-c {n_ctx} exceeds the batch ({}) or context ({}) the model was loaded with",
            model.batch(),
            model.ctx()
        )));
    }
    let tokens = tokenizer.encode(text, true)?;
    let available = tokens.len() / n_ctx;
    let n_chunks = opts.max_chunks.map_or(available, |m| m.min(available));
    if n_chunks == 0 {
        return Err(EvalError::Input(format!(
            "the text has {} tokens, fewer than one chunk of {n_ctx}: use a longer text or a smaller -c",
            tokens.len()
        )));
    }
    if let KldMode::Compare(c) = &kld {
        c.check(&tokens[..n_chunks * n_ctx], model.config.n_vocab, n_ctx)?;
    }
    if let KldMode::Save(b) = &mut kld {
        b.start(&tokens[..n_chunks * n_ctx], model.config.n_vocab, n_ctx);
    }
    let bos = tokenizer.bos().filter(|_| tokenizer.adds_bos());
    let first = n_ctx / 2;
    let (mut nll, mut nll2, mut count) = (0f64, 0f64, 0usize);
    let mut running = Vec::with_capacity(n_chunks);
    let start = Instant::now();
    let cache = model.new_cache(n_ctx)?;
    for c in 0..n_chunks {
        let mut chunk = tokens[c * n_ctx..(c + 1) * n_ctx].to_vec();
        if let Some(b) = bos {
            chunk[0] = b;
        }
        // logits at rows first..n_ctx-1 predict the tokens one position later
        let targets = &tokens[c * n_ctx + first + 1..(c + 1) * n_ctx];
        let mut rows_lp: Vec<(f64, usize)> = Vec::with_capacity(targets.len());
        let kld_ref = &mut kld;
        model.score(
            &cache,
            &chunk,
            0,
            first..n_ctx - 1,
            &mut |row0, n, logits| {
                let vocab = logits.len() / n;
                let results: Vec<(f64, usize)> = (0..n)
                    .into_par_iter()
                    .map(|r| {
                        let tgt = targets[row0 + r - first] as usize;
                        log_softmax_at(&logits[r * vocab..(r + 1) * vocab], tgt)
                    })
                    .collect();
                let tgts = &targets[row0 - first..row0 - first + n];
                match kld_ref {
                    KldMode::None => {}
                    KldMode::Save(b) => b.record_rows(logits, tgts),
                    KldMode::Compare(cmp) => cmp.compare_rows(logits, tgts),
                }
                rows_lp.extend(results);
            },
        )?;
        for (lp, _) in &rows_lp {
            nll -= lp;
            nll2 += lp * lp;
            count += 1;
        }
        let ppl = (nll / count as f64).exp();
        running.push(ppl);
        progress(c + 1, ppl);
    }
    model.release_cache(cache);
    let seconds = start.elapsed().as_secs_f64();
    let mean = nll / count as f64;
    let var = nll2 / count as f64 - mean * mean;
    let ppl = mean.exp();
    let stderr = if var > 0.0 && count > 1 {
        (var / (count - 1) as f64).sqrt() * ppl
    } else {
        0.0
    };
    Ok(PerplexityReport {
        n_ctx,
        n_chunks,
        tokens_scored: count,
        ppl,
        ppl_stderr: stderr,
        running,
        seconds,
        tokens_per_second: (n_chunks * n_ctx) as f64 / seconds.max(1e-9),
    })
}

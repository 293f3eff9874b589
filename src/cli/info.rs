//! `tokenfab info`: what a GGUF file holds and what running it costs per token.

use anyhow::Result;
use clap::Args;
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::io::Write;
use std::path::PathBuf;
use tokenfab::gguf::GgmlType;
use tokenfab::model::{kv_bytes_per_token, weight_bytes_per_token, Config};

#[derive(Args, Debug)]
pub struct InfoArgs {
    /// GGUF file (default: the default model).
    pub path: Option<PathBuf>,
    /// Also list every metadata key.
    #[arg(long)]
    pub metadata: bool,
    /// Decode every block of every tensor and report non-finite values (corrupted scales);
    /// fails when there are any. Reads the whole file.
    #[arg(long)]
    pub validate: bool,
}

fn mb(bytes: u64) -> String {
    format!("{:.1} MB", bytes as f64 / 1e6)
}

pub fn run(a: InfoArgs) -> Result<()> {
    let path = super::resolve_model(a.path.as_deref())?;
    let f = super::open_gguf(&path)?;
    let md = f.metadata();
    let mut s = String::new();
    writeln!(
        s,
        "file          {} ({}, GGUF v{}, {} tensors, {} metadata keys, alignment {})",
        path.display(),
        mb(f.file_size()),
        f.version(),
        f.tensors().len(),
        md.len(),
        f.alignment()
    )?;
    match Config::from_gguf(&f) {
        Ok(c) => {
            writeln!(s, "architecture  {} ({})", c.arch.name(), c.name)?;
            writeln!(
                s,
                "shape         {} layers, embedding {}, feed-forward {}, heads {} (KV {}), head dim {}, vocab {}",
                c.n_layer, c.n_embd, c.n_ff, c.n_head, c.n_head_kv, c.head_dim, c.n_vocab
            )?;
            let mut att = format!(
                "context {} (trained), RoPE base {}, RMS eps {}",
                c.ctx_train, c.rope_base, c.eps
            );
            if let Some(w) = c.sliding_window {
                write!(
                    att,
                    ", sliding window {w} on {} of every {} layers (RoPE base {})",
                    c.swa_pattern - 1,
                    c.swa_pattern,
                    c.rope_base_swa
                )?;
            }
            writeln!(s, "attention     {att}")?;
            writeln!(
                s,
                "per token     {} of weights read per decoded token; KV cache {:.1} KiB per token of context (f16)",
                mb(weight_bytes_per_token(&f)),
                kv_bytes_per_token(&c) as f64 / 1024.0
            )?;
        }
        Err(e) => writeln!(s, "architecture  not runnable by tokenfab: {e}")?,
    }
    if let Ok(model) = md.get_str("tokenizer.ggml.model") {
        let n = md
            .get_array("tokenizer.ggml.tokens")
            .map(|a| a.len())
            .unwrap_or(0);
        let bos = md.opt_u64("tokenizer.ggml.bos_token_id").ok().flatten();
        let add_bos = md.opt_bool("tokenizer.ggml.add_bos_token").ok().flatten();
        writeln!(
            s,
            "tokenizer     {model} (pre: {}), {n} tokens, BOS {} ({}), EOS {}, chat template: {}",
            md.opt_str("tokenizer.ggml.pre")
                .ok()
                .flatten()
                .unwrap_or("-"),
            bos.map_or("-".into(), |b| b.to_string()),
            if add_bos.unwrap_or(model == "llama") {
                "added"
            } else {
                "not added"
            },
            md.opt_u64("tokenizer.ggml.eos_token_id")
                .ok()
                .flatten()
                .map_or("-".into(), |b| b.to_string()),
            if md.get("tokenizer.chat_template").is_some() {
                "yes"
            } else {
                "no"
            }
        )?;
    }
    let mut by_type: BTreeMap<GgmlType, (usize, u64, u64)> = BTreeMap::new();
    for t in f.tensors() {
        let e = by_type.entry(t.dtype).or_default();
        e.0 += 1;
        e.1 += t.n_bytes;
        e.2 += t.n_elements();
    }
    writeln!(s, "tensors       by type:")?;
    for (t, (n, bytes, elems)) in &by_type {
        writeln!(
            s,
            "  {:<6} {:>4} tensors  {:>10}  {:>12} weights  {:.2} bits/weight",
            t.name(),
            n,
            mb(*bytes),
            elems,
            t.bits_per_weight()
        )?;
    }
    if a.metadata {
        writeln!(s, "metadata:")?;
        for (k, v) in md.iter() {
            writeln!(s, "  {k} = {v}")?;
        }
    }
    let bad = if a.validate {
        let t0 = std::time::Instant::now();
        let bad = tokenfab::model::validate::validate(&f);
        let secs = t0.elapsed().as_secs_f64();
        if bad.is_empty() {
            writeln!(
                s,
                "validate      every block of the {} tensors decodes to finite numbers ({secs:.1} s)",
                f.tensors().len()
            )?;
        }
        bad
    } else {
        Vec::new()
    };
    std::io::stdout().lock().write_all(s.as_bytes())?;
    if !bad.is_empty() {
        let list: Vec<String> = bad.iter().map(|b| format!("  {b}")).collect();
        anyhow::bail!(
            "{}: {} tensor(s) hold non-finite values (a corrupted file?):\n{}",
            path.display(),
            bad.len(),
            list.join("\n")
        );
    }
    Ok(())
}

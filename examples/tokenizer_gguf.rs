//! Writes a GGUF with no tensors that holds a model's whole `tokenizer.*` metadata: what
//! `tokenfab synth --tokenizer-from` reads, in a few MB instead of the model's hundreds. The
//! GPU check (`scripts/device-pack.sh`) carries the Qwen file's tokenizer this way to rebuild,
//! byte for byte, the synthetic files llama.cpp was recorded on (`tests/data/synth/`), where
//! the real model does not fit the bundle.
//!
//! Usage: cargo run --release --example tokenizer_gguf -- MODEL.gguf OUT.gguf

use anyhow::{bail, Context, Result};
use tokenfab::gguf::{GgufFile, GgufWriter};

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [model, out] = args.as_slice() else {
        bail!("usage: tokenizer_gguf MODEL.gguf OUT.gguf");
    };
    let f = GgufFile::open(model).with_context(|| format!("cannot open {model}"))?;
    let mut w = GgufWriter::new();
    let mut n = 0;
    for (k, v) in f
        .metadata()
        .iter()
        .filter(|(k, _)| k.starts_with("tokenizer."))
    {
        w.set(k, v.clone());
        n += 1;
    }
    if n == 0 {
        bail!("{model} has no tokenizer metadata");
    }
    let bytes = w.to_bytes().context("writing the GGUF")?;
    std::fs::write(out, &bytes).with_context(|| format!("cannot write {out}"))?;
    eprintln!("{out}: {n} tokenizer keys, {} bytes", bytes.len());
    Ok(())
}

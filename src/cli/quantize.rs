//! `tokenfab quantize IN OUT --type MIX`: requantize a GGUF file, llama-quantize style.

use anyhow::{bail, Context, Result};
use clap::Args;
use indicatif::{ProgressBar, ProgressStyle};
use std::path::PathBuf;
use tokenfab::gguf::GgmlType;
use tokenfab::quantize::{quantize_file, Mix, PlanOptions};

#[derive(Args, Debug)]
pub struct QuantizeArgs {
    /// Source GGUF.
    pub input: PathBuf,
    /// Output GGUF (written to OUTPUT.gguf.tmp, then renamed).
    pub output: PathBuf,
    /// Mix: f16, bf16, q8_0, q4_0, q4_1, q5_0, q5_1, q2_k, q3_k_m, q4_k_s, q4_k_m, q5_k_m, q6_k.
    #[arg(long = "type")]
    pub mix: String,
    /// Every quantizable tensor gets the mix's base type (no per-tensor rules).
    #[arg(long)]
    pub pure: bool,
    /// Type of the output matrix.
    #[arg(long = "output-tensor-type")]
    pub output_type: Option<String>,
    /// Type of the token embeddings.
    #[arg(long = "token-embedding-type")]
    pub token_embedding_type: Option<String>,
    /// REGEX=TYPE: tensors whose name matches get TYPE (repeatable; the first match wins).
    #[arg(long = "tensor-type")]
    pub tensor_type: Vec<String>,
    /// Replace OUTPUT if it exists.
    #[arg(long)]
    pub force: bool,
}

fn ty(s: &str, flag: &str) -> Result<GgmlType> {
    let t = GgmlType::from_name(s).with_context(|| format!("{flag}: unknown type {s:?}"))?;
    if tokenfab::quantize::convert::candle_type(t).is_none() {
        bail!("{flag}: tokenfab cannot write {t} tensors");
    }
    Ok(t)
}

pub fn plan_options(a: &QuantizeArgs) -> Result<PlanOptions> {
    let mut tensor_types = Vec::new();
    for spec in &a.tensor_type {
        let (re, t) = spec
            .rsplit_once('=')
            .with_context(|| format!("--tensor-type takes REGEX=TYPE (got {spec:?})"))?;
        let re =
            regex::Regex::new(re).with_context(|| format!("--tensor-type: bad regex {re:?}"))?;
        tensor_types.push((re, ty(t, "--tensor-type")?));
    }
    Ok(PlanOptions {
        pure: a.pure,
        output_type: a
            .output_type
            .as_deref()
            .map(|s| ty(s, "--output-tensor-type"))
            .transpose()?,
        token_embedding_type: a
            .token_embedding_type
            .as_deref()
            .map(|s| ty(s, "--token-embedding-type"))
            .transpose()?,
        tensor_types,
    })
}

pub fn run(a: QuantizeArgs) -> Result<()> {
    let mix = Mix::parse(&a.mix).with_context(|| {
        let names: Vec<&str> = Mix::ALL.iter().map(|m| m.name()).collect();
        format!("--type {:?} is not one of {}", a.mix, names.join(", "))
    })?;
    let opts = plan_options(&a)?;
    if a.output.exists() && !a.force {
        bail!("{} exists (use --force to replace it)", a.output.display());
    }
    if a.output.canonicalize().ok() == a.input.canonicalize().ok() && a.output.exists() {
        bail!("input and output are the same file");
    }
    let src = super::open_gguf(&a.input)?;
    if src.tensors().iter().any(|t| t.dtype.is_quantized()) {
        eprintln!(
            "tokenfab quantize: warning: {} is already quantized; the result's quality is bounded by it (quantize from an F16/BF16/F32 file when you can)",
            a.input.display()
        );
    }
    let bar = ProgressBar::new(src.file_size());
    bar.set_style(
        ProgressStyle::with_template("{bar:40} {bytes}/{total_bytes} {msg}")
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    bar.set_message(format!("-> {}", mix.name()));
    let t0 = std::time::Instant::now();
    let s = quantize_file(&src, &a.output, mix, &opts, &mut |done, _| {
        bar.set_position(done)
    })?;
    bar.finish_and_clear();
    let types: Vec<String> = s.types.iter().map(|(t, n)| format!("{t}: {n}")).collect();
    eprintln!(
        "tokenfab quantize: {} -> {} ({}) in {:.1} s: {} tensors ({} requantized), {:.1} MB -> {:.1} MB, {:.2} bits/weight; types {}",
        a.input.display(),
        a.output.display(),
        mix.name(),
        t0.elapsed().as_secs_f64(),
        s.tensors,
        s.requantized,
        s.bytes_in as f64 / 1e6,
        s.bytes_out as f64 / 1e6,
        s.bits_per_weight,
        types.join(", ")
    );
    Ok(())
}

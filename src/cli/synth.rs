//! `tokenfab synth --preset NAME --type TYPE -o FILE`: a GGUF with random weights and a real
//! model's shapes (see `tokenfab::synth`).

use anyhow::{bail, Context, Result};
use clap::Args;
use indicatif::{ProgressBar, ProgressStyle};
use std::path::PathBuf;
use tokenfab::gguf::GgmlType;
use tokenfab::synth::{self, PRESETS};

#[derive(Args, Debug)]
pub struct SynthArgs {
    /// Shape preset: gemma3-270m, qwen2.5-0.5b, qwen3-0.6b, llama-3.2-1b, llama-3.1-8b.
    #[arg(long)]
    pub preset: String,
    /// Type of the matrices (f32, f16, bf16, q4_0, q4_1, q5_0, q5_1, q8_0, q2_k … q6_k);
    /// rows that are not whole blocks get llama.cpp's fallback type.
    #[arg(long = "type", default_value = "q4_k")]
    pub dtype: String,
    /// Output GGUF (written to OUTPUT.gguf.tmp, then renamed).
    #[arg(short = 'o', long = "output")]
    pub output: PathBuf,
    /// RNG seed.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Replace OUTPUT if it exists.
    #[arg(long)]
    pub force: bool,
    /// Copy the tokenizer (every `tokenizer.*` key) of this real model, so llama.cpp can
    /// tokenize for the file; the vocabulary size becomes that tokenizer's.
    #[arg(long = "tokenizer-from")]
    pub tokenizer_from: Option<PathBuf>,
    /// Multiply the scale of the Q and K projections: peaked attention, so position encoding
    /// shows in the logits (1 = every matrix at the same RMS; the llama.cpp checks use 2).
    #[arg(long = "qk-gain", default_value_t = 1.0)]
    pub qk_gain: f32,
    /// Fewer layers than the preset's (the same shapes; a smaller file for checks).
    #[arg(long = "layers")]
    pub layers: Option<usize>,
    /// The attention window of the preset's windowed layers (Gemma 3/2: some layers,
    /// Mistral: all), e.g. smaller than a test's context so the window matters.
    #[arg(long = "sliding-window")]
    pub sliding_window: Option<usize>,
}

pub fn run(a: SynthArgs) -> Result<()> {
    let mut p = *synth::preset(&a.preset).with_context(|| {
        let names: Vec<&str> = PRESETS.iter().map(|p| p.name).collect();
        format!("--preset {:?} is not one of {}", a.preset, names.join(", "))
    })?;
    if !(a.qk_gain.is_finite() && a.qk_gain > 0.0 && a.qk_gain <= 64.0) {
        bail!("--qk-gain must be in (0, 64] (got {})", a.qk_gain);
    }
    p.qk_gain = a.qk_gain;
    if let Some(n) = a.layers {
        if n == 0 || n > p.n_layer {
            bail!(
                "--layers must be in 1..={} for {} (got {n})",
                p.n_layer,
                p.name
            );
        }
        p.n_layer = n;
    }
    if let Some(w) = a.sliding_window {
        if p.sliding_window.is_none() {
            bail!("--sliding-window: {} has no windowed layers", p.name);
        }
        if w == 0 {
            bail!("--sliding-window must be at least 1");
        }
        p.sliding_window = Some(w);
    }
    let p = &p;
    let t = GgmlType::from_name(&a.dtype)
        .with_context(|| format!("--type: unknown type {:?}", a.dtype))?;
    if a.output.exists() && !a.force {
        bail!("{} exists (use --force to replace it)", a.output.display());
    }
    let bar = ProgressBar::new(0);
    bar.set_style(
        ProgressStyle::with_template("{bar:40} {bytes}/{total_bytes} {msg}")
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    bar.set_message(format!("{} {t}", p.name));
    let t0 = std::time::Instant::now();
    let source = match &a.tokenizer_from {
        Some(path) => Some(super::open_gguf(path)?),
        None => None,
    };
    let md = source.as_ref().map(|f| f.metadata());
    let s = synth::write_with_tokenizer(p, t, &a.output, a.seed, md, &mut |done, total| {
        bar.set_length(total);
        bar.set_position(done)
    })?;
    bar.finish_and_clear();
    eprintln!(
        "tokenfab synth: {} ({} {}, {} tensors, {:.2} B params, {:.1} MiB) in {:.1} s",
        a.output.display(),
        s.preset,
        s.dtype,
        s.tensors,
        s.params as f64 / 1e9,
        s.bytes as f64 / (1u64 << 20) as f64,
        t0.elapsed().as_secs_f64()
    );
    Ok(())
}

//! Synthetic models: GGUF files with random weights and the real shapes of known models
//! (`tokenfab synth --preset NAME --type q4_k -o FILE`), so speed can be measured where the
//! real files cannot travel (the GPU machine) and at sizes we do not ship (Llama 3.1 8B).
//!
//! Quantized blocks are random bytes with their scale fields set so weights have an RMS of
//! about 1/sqrt(cols) (activations stay finite through many layers); norms are 1, biases 0.
//! Matrices whose rows are not whole blocks of the requested type get llama.cpp's fallback
//! type. The tokenizer is `none` (llama.cpp's no-vocab model) with `{arch}.vocab_size` set;
//! the file is a valid GGUF v3 for any reader and loads in tokenfab.

use crate::gguf::{GgmlType, GgufErrorKind, GgufWriter, Value};
use crate::quantize::plan::fallback_for_cols;
use half::f16;
use rand::{Rng, RngCore, SeedableRng};
use std::path::Path;

/// The shape of a known model.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Preset {
    pub name: &'static str,
    pub arch: &'static str,
    pub n_embd: usize,
    pub n_layer: usize,
    pub n_head: usize,
    pub n_head_kv: usize,
    pub head_dim: usize,
    pub n_ff: usize,
    pub n_vocab: usize,
    pub ctx: usize,
    pub rope_base: f32,
    pub eps: f32,
    /// Output projection shares the embedding matrix.
    pub tied: bool,
    /// Llama 3.1/3.2's RoPE scaling as the published files carry it: `rope_freqs.weight`,
    /// one divisor per pair (see [`llama3_rope_divisors`]).
    pub rope_freqs: bool,
    /// Multiplies the scale of the Q and K projections (1 = the RMS of every matrix). Random
    /// weights give nearly uniform attention, where positions barely matter; at a gain of 2
    /// attention is peaked and a wrong RoPE shows in the logits (the llama.cpp checks use it).
    pub qk_gain: f32,
    /// The attention window of windowed layers (`{arch}.attention.sliding_window`): Gemma 3
    /// and 2 window some layers, a Mistral-style Llama every layer.
    pub sliding_window: Option<usize>,
    /// Gemma 2's soft caps of attention scores and of logits.
    pub softcap: Option<(f32, f32)>,
    /// Partial rotary: RoPE over this many of each head's dimensions (`None`: all).
    pub n_rot: Option<usize>,
}

/// Shapes from the models' published configs (Hugging Face config.json).
pub const PRESETS: [Preset; 9] = [
    Preset {
        name: "gemma3-270m",
        arch: "gemma3",
        n_embd: 640,
        n_layer: 18,
        n_head: 4,
        n_head_kv: 1,
        head_dim: 256,
        n_ff: 2048,
        n_vocab: 262_144,
        ctx: 32_768,
        rope_base: 1_000_000.0,
        eps: 1e-6,
        tied: true,
        rope_freqs: false,
        qk_gain: 1.0,
        sliding_window: Some(512),
        softcap: None,
        n_rot: None,
    },
    Preset {
        name: "qwen2.5-0.5b",
        arch: "qwen2",
        n_embd: 896,
        n_layer: 24,
        n_head: 14,
        n_head_kv: 2,
        head_dim: 64,
        n_ff: 4864,
        n_vocab: 151_936,
        ctx: 32_768,
        rope_base: 1_000_000.0,
        eps: 1e-6,
        tied: true,
        rope_freqs: false,
        qk_gain: 1.0,
        sliding_window: None,
        softcap: None,
        n_rot: None,
    },
    Preset {
        name: "llama-3.2-1b",
        arch: "llama",
        n_embd: 2048,
        n_layer: 16,
        n_head: 32,
        n_head_kv: 8,
        head_dim: 64,
        n_ff: 8192,
        n_vocab: 128_256,
        ctx: 131_072,
        rope_base: 500_000.0,
        eps: 1e-5,
        tied: true,
        rope_freqs: true,
        qk_gain: 1.0,
        sliding_window: None,
        softcap: None,
        n_rot: None,
    },
    Preset {
        name: "llama-3.1-8b",
        arch: "llama",
        n_embd: 4096,
        n_layer: 32,
        n_head: 32,
        n_head_kv: 8,
        head_dim: 128,
        n_ff: 14_336,
        n_vocab: 128_256,
        ctx: 131_072,
        rope_base: 500_000.0,
        eps: 1e-5,
        tied: false,
        rope_freqs: true,
        qk_gain: 1.0,
        sliding_window: None,
        softcap: None,
        n_rot: None,
    },
    Preset {
        name: "qwen3-0.6b",
        arch: "qwen3",
        n_embd: 1024,
        n_layer: 28,
        n_head: 16,
        n_head_kv: 8,
        head_dim: 128,
        n_ff: 3072,
        n_vocab: 151_936,
        ctx: 40_960,
        rope_base: 1_000_000.0,
        eps: 1e-6,
        tied: true,
        rope_freqs: false,
        qk_gain: 1.0,
        sliding_window: None,
        softcap: None,
        n_rot: None,
    },
    Preset {
        name: "gemma-2-2b",
        arch: "gemma2",
        n_embd: 2304,
        n_layer: 26,
        n_head: 8,
        n_head_kv: 4,
        head_dim: 256,
        n_ff: 9216,
        n_vocab: 256_000,
        ctx: 8192,
        rope_base: 10_000.0,
        eps: 1e-6,
        tied: true,
        rope_freqs: false,
        qk_gain: 1.0,
        sliding_window: Some(4096),
        softcap: Some((50.0, 30.0)),
        n_rot: None,
    },
    Preset {
        name: "mistral-7b",
        arch: "llama",
        n_embd: 4096,
        n_layer: 32,
        n_head: 32,
        n_head_kv: 8,
        head_dim: 128,
        n_ff: 14_336,
        n_vocab: 32_000,
        ctx: 32_768,
        rope_base: 10_000.0,
        eps: 1e-5,
        tied: false,
        rope_freqs: false,
        qk_gain: 1.0,
        sliding_window: Some(4096),
        softcap: None,
        n_rot: None,
    },
    // fused Q‖K‖V and gate‖up, LongRoPE (short/long divisors, magnitude factor) from 4096
    // original positions
    Preset {
        name: "phi-3.5-mini",
        arch: "phi3",
        n_embd: 3072,
        n_layer: 32,
        n_head: 32,
        n_head_kv: 32,
        head_dim: 96,
        n_ff: 8192,
        n_vocab: 32_064,
        ctx: 131_072,
        rope_base: 10_000.0,
        eps: 1e-5,
        tied: false,
        rope_freqs: false,
        qk_gain: 1.0,
        sliding_window: None,
        softcap: None,
        n_rot: None,
    },
    // Phi-3.5-mini's layout with grouped KV heads, a tied embedding, a 200k vocabulary and
    // partial rotary: RoPE over 96 of each head's 128 dimensions
    Preset {
        name: "phi-4-mini",
        arch: "phi3",
        n_embd: 3072,
        n_layer: 32,
        n_head: 24,
        n_head_kv: 8,
        head_dim: 128,
        n_ff: 8192,
        n_vocab: 200_064,
        ctx: 131_072,
        rope_base: 10_000.0,
        eps: 1e-5,
        tied: true,
        rope_freqs: false,
        qk_gain: 1.0,
        sliding_window: None,
        softcap: None,
        n_rot: Some(96),
    },
];

/// Phi-3.5's original context (LongRoPE's short divisors up to it, the long ones beyond).
pub const PHI3_ORIGINAL_CTX: usize = 4096;

/// LongRoPE's magnitude factor for a context `ctx` stretched from `orig` (Phi-3's
/// `sqrt(1 + ln(ctx / orig) / ln(orig))`, as the conversion writes `rope.scaling.attn_factor`).
pub fn longrope_attn_factor(ctx: usize, orig: usize) -> f32 {
    let (c, o) = (ctx as f64, orig as f64);
    (1.0 + (c / o).ln() / o.ln()).sqrt() as f32
}

/// Llama 3.1/3.2's frequency divisors for heads of `head_dim` at `base` (Hugging Face's
/// `rope_type: llama3` with factor 32, low/high frequency factors 1 and 4 over 8192 original
/// positions, as `convert_hf_to_gguf.py` turns it into `rope_freqs.weight`): long wavelengths
/// are divided by 32, short ones kept, the band between blended.
pub fn llama3_rope_divisors(head_dim: usize, base: f32) -> Vec<f32> {
    let (factor, low, high, old_ctx) = (32.0f64, 1.0f64, 4.0f64, 8192.0f64);
    let (low_wavelen, high_wavelen) = (old_ctx / low, old_ctx / high);
    (0..head_dim / 2)
        .map(|i| {
            let freq = (base as f64).powf(-2.0 * i as f64 / head_dim as f64);
            let wavelen = 2.0 * std::f64::consts::PI / freq;
            let d = if wavelen < high_wavelen {
                1.0
            } else if wavelen > low_wavelen {
                factor
            } else {
                let smooth = (old_ctx / wavelen - low) / (high - low);
                1.0 / ((1.0 - smooth) / factor + smooth)
            };
            d as f32
        })
        .collect()
}

/// Finds a preset by name.
pub fn preset(name: &str) -> Option<&'static Preset> {
    PRESETS.iter().find(|p| p.name.eq_ignore_ascii_case(name))
}

/// What was written.
#[derive(Clone, Debug, serde::Serialize)]
pub struct SynthSummary {
    pub preset: String,
    pub dtype: String,
    pub tensors: usize,
    pub params: u64,
    pub bytes: u64,
}

#[derive(Debug, thiserror::Error)]
pub enum SynthError {
    #[error("type {0} cannot be synthesized (supported: f32, f16, bf16, q4_0, q4_1, q5_0, q5_1, q8_0, q2_K, q3_K, q4_K, q5_K, q6_K)")]
    Type(GgmlType),
    #[error("cannot write {file}: {msg}")]
    Write { file: String, msg: String },
}

/// The distinct matrix shapes one decode step of `p` multiplies by, as (names, rows, cols) in
/// layer order — what `tokenfab bench --kernels` times. The output projection is the
/// embedding matrix when tied; the embedding itself is only gathered from.
pub fn matrix_shapes(p: &Preset) -> Vec<(String, usize, usize)> {
    let mut out: Vec<(String, usize, usize)> = Vec::new();
    for (name, dims, matrix) in tensors(p) {
        if !matrix || dims.len() != 2 || (name == "token_embd.weight" && !p.tied) {
            continue;
        }
        let short = match name.as_str() {
            "token_embd.weight" | "output.weight" => "output",
            n if n.ends_with("attn_output.weight") => "o",
            n => n
                .split('.')
                .nth(2)
                .unwrap_or(n)
                .trim_start_matches("attn_")
                .trim_start_matches("ffn_"),
        };
        let (rows, cols) = (dims[1] as usize, dims[0] as usize);
        match out.iter_mut().find(|(_, r, c)| (*r, *c) == (rows, cols)) {
            Some((names, _, _)) if !names.split('/').any(|n| n == short) => {
                names.push('/');
                names.push_str(short);
            }
            Some(_) => {}
            None => out.push((short.to_string(), rows, cols)),
        }
    }
    // the tied output projection comes last, as in the forward pass
    out.sort_by_key(|(n, _, _)| n == "output");
    out
}

/// (name, dims as GGUF stores them: [cols, rows], matrix?)
fn tensors(p: &Preset) -> Vec<(String, Vec<u64>, bool)> {
    let (d, ff, hd) = (p.n_embd as u64, p.n_ff as u64, p.head_dim as u64);
    let (q, kv) = (
        (p.n_head * p.head_dim) as u64,
        (p.n_head_kv * p.head_dim) as u64,
    );
    let mut v = vec![(
        "token_embd.weight".to_string(),
        vec![d, p.n_vocab as u64],
        true,
    )];
    let phi3 = p.arch == "phi3";
    for i in 0..p.n_layer {
        let mut t = |name: &str, dims: Vec<u64>| {
            let m = dims.len() == 2;
            v.push((format!("blk.{i}.{name}"), dims, m))
        };
        t("attn_norm.weight", vec![d]);
        if phi3 {
            t("attn_qkv.weight", vec![d, q + 2 * kv]);
        } else {
            t("attn_q.weight", vec![d, q]);
            t("attn_k.weight", vec![d, kv]);
            t("attn_v.weight", vec![d, kv]);
        }
        if p.arch == "qwen2" {
            t("attn_q.bias", vec![q]);
            t("attn_k.bias", vec![kv]);
            t("attn_v.bias", vec![kv]);
        }
        if p.arch == "gemma3" || p.arch == "qwen3" {
            t("attn_q_norm.weight", vec![hd]);
            t("attn_k_norm.weight", vec![hd]);
        }
        if p.arch == "gemma3" || p.arch == "gemma2" {
            t("post_attention_norm.weight", vec![d]);
            t("post_ffw_norm.weight", vec![d]);
        }
        t("attn_output.weight", vec![q, d]);
        t("ffn_norm.weight", vec![d]);
        if phi3 {
            t("ffn_up.weight", vec![d, 2 * ff]);
        } else {
            t("ffn_gate.weight", vec![d, ff]);
            t("ffn_up.weight", vec![d, ff]);
        }
        t("ffn_down.weight", vec![ff, d]);
    }
    if phi3 {
        let pairs = p.n_rot.map_or(hd, |r| r as u64) / 2;
        v.push(("rope_factors_long.weight".to_string(), vec![pairs], false));
        v.push(("rope_factors_short.weight".to_string(), vec![pairs], false));
    }
    v.push(("output_norm.weight".to_string(), vec![d], false));
    if p.rope_freqs {
        v.push(("rope_freqs.weight".to_string(), vec![hd / 2], false));
    }
    if !p.tied {
        v.push(("output.weight".to_string(), vec![d, p.n_vocab as u64], true));
    }
    v
}

/// Offsets of the f16 scale fields in one block, with the divisor of the target RMS that
/// gives each (so `d ≈ rms / divisor`); a negative divisor marks a min stored as `-d·k`.
fn scale_fields(t: GgmlType) -> &'static [(usize, f32)] {
    use GgmlType::*;
    match t {
        Q4_0 => &[(0, 4.6)],
        Q4_1 => &[(0, 4.6), (2, -7.5)],
        Q5_0 => &[(0, 9.2)],
        Q5_1 => &[(0, 9.2), (2, -15.5)],
        Q8_0 => &[(0, 74.0)],
        Q2_K => &[(80, 9.8)],
        Q3_K => &[(108, 40.0)],
        Q4_K => &[(0, 168.0)],
        Q5_K => &[(0, 337.0)],
        Q6_K => &[(208, 1300.0)],
        _ => &[],
    }
}

/// Makes a random Q2_K, Q4_K or Q5_K block zero-mean, as trained weights are: each
/// sub-block's min equals its scale and `dmin = d · (largest quant) / 2`, so a value is
/// `d · scale · (q − qmax/2)`. With independent random mins the weights average ~0.9 of their
/// RMS: activations then grow layer by layer (block sums of 10⁵ in an 8B model's FFN, past
/// the f16 range of the block sums that ggml's CUDA kernels keep, hence NaN there).
fn zero_mean_k(t: GgmlType, block: &mut [u8], d: f32) {
    let (qmax, dmin_at) = match t {
        GgmlType::Q2_K => {
            // 16 bytes: scale in the low nibble, min in the high one
            for b in &mut block[..16] {
                *b = (*b & 0x0f) * 0x11;
            }
            (3.0, 82)
        }
        GgmlType::Q4_K | GgmlType::Q5_K => {
            // 12 bytes of 6-bit scales and mins (ggml's get_scale_min_k4): sub-block j < 4
            // has its scale in byte j's low 6 bits and its min in byte j+4's; j >= 4 has them
            // in byte j+4's low and high nibbles, topped by the high 2 bits of bytes j-4 and
            // j. Mins equal to scales: byte j+4 = byte j, and both nibbles of bytes 8..12 alike
            let sc = &mut block[4..16];
            for j in 0..4 {
                sc[j + 4] = sc[j];
                sc[j + 8] = (sc[j + 8] & 0x0f) * 0x11;
            }
            (if t == GgmlType::Q4_K { 15.0 } else { 31.0 }, 2)
        }
        _ => return,
    };
    let dmin = f16::from_f32(d * qmax / 2.0).to_le_bytes();
    block[dmin_at..dmin_at + 2].copy_from_slice(&dmin);
}

/// Random bytes for `rows` rows of `cols` elements of type `t`.
fn random_rows(
    t: GgmlType,
    rows: usize,
    cols: usize,
    gain: f32,
    rng: &mut impl RngCore,
) -> Vec<u8> {
    let rms = gain / (cols as f32).sqrt();
    let n = rows * cols;
    match t {
        GgmlType::F32 => (0..n)
            .flat_map(|_| (rng.random_range(-1.7f32..1.7) * rms).to_le_bytes())
            .collect(),
        GgmlType::F16 => (0..n)
            .flat_map(|_| f16::from_f32(rng.random_range(-1.7f32..1.7) * rms).to_le_bytes())
            .collect(),
        GgmlType::BF16 => (0..n)
            .flat_map(|_| half::bf16::from_f32(rng.random_range(-1.7f32..1.7) * rms).to_le_bytes())
            .collect(),
        _ => {
            let bs = t.type_size();
            let mut v = vec![0u8; n / t.block_size() * bs];
            rng.fill_bytes(&mut v);
            let fields = scale_fields(t);
            for block in v.chunks_mut(bs) {
                let mut d = 0.0;
                for &(off, div) in fields {
                    let val = if div > 0.0 {
                        // ±30 % so blocks differ
                        let x = rms / div * (0.7 + 0.6 * (block[off + 1] as f32 / 255.0));
                        if d == 0.0 {
                            d = x;
                        }
                        x
                    } else {
                        -d * -div
                    };
                    block[off..off + 2].copy_from_slice(&f16::from_f32(val).to_le_bytes());
                }
                zero_mean_k(t, block, d);
            }
            v
        }
    }
}

/// Writes a synthetic `preset` model with matrices of type `dtype` to `out` (atomically:
/// a temporary file renamed into place). `progress(done, total)` reports bytes.
pub fn write(
    p: &Preset,
    dtype: GgmlType,
    out: &Path,
    seed: u64,
    progress: &mut dyn FnMut(u64, u64),
) -> Result<SynthSummary, SynthError> {
    write_with_tokenizer(p, dtype, out, seed, None, progress)
}

/// [`write`], with the `tokenizer.*` metadata of a real model (`tokenfab synth
/// --tokenizer-from FILE`) instead of no vocabulary, so llama.cpp can tokenize for the file;
/// the vocabulary size becomes that tokenizer's.
pub fn write_with_tokenizer(
    p: &Preset,
    dtype: GgmlType,
    out: &Path,
    seed: u64,
    tokenizer: Option<&crate::gguf::Metadata>,
    progress: &mut dyn FnMut(u64, u64),
) -> Result<SynthSummary, SynthError> {
    let mut p = *p;
    if let Some(md) = tokenizer {
        let n = md
            .get_array("tokenizer.ggml.tokens")
            .map_err(|e| SynthError::Write {
                file: out.display().to_string(),
                msg: format!("--tokenizer-from: {e}"),
            })?;
        p.n_vocab = n.len();
    }
    let p = &p;
    if !crate::backend::wgpu::GPU_TYPES.contains(&dtype) {
        return Err(SynthError::Type(dtype));
    }
    let werr = |msg: String| SynthError::Write {
        file: out.display().to_string(),
        msg,
    };
    let list = tensors(p);
    let types: Vec<GgmlType> = list
        .iter()
        .map(|(_, dims, m)| match m {
            true => fallback_for_cols(dims[0], dtype),
            false => GgmlType::F32,
        })
        .collect();
    let mut w = GgufWriter::new();
    let a = p.arch;
    let u = |v: usize| Value::U32(v as u32);
    w.set("general.architecture", Value::String(a.into()));
    w.set(
        "general.name",
        Value::String(format!("synthetic {} {dtype}", p.name)),
    );
    w.set("general.quantization_version", Value::U32(2));
    // llama_ftype of the closest pure mix, for readers that show it
    let ftype = match dtype {
        GgmlType::F32 => 0,
        GgmlType::F16 => 1,
        GgmlType::Q4_0 => 2,
        GgmlType::Q4_1 => 3,
        GgmlType::Q8_0 => 7,
        GgmlType::Q5_0 => 8,
        GgmlType::Q5_1 => 9,
        GgmlType::Q2_K => 10,
        GgmlType::Q3_K => 11,
        GgmlType::Q4_K => 14,
        GgmlType::Q5_K => 16,
        GgmlType::Q6_K => 18,
        _ => 32, // BF16
    };
    w.set("general.file_type", Value::U32(ftype));
    w.set("tokenfab.synthetic.preset", Value::String(p.name.into()));
    w.set("tokenfab.synthetic.seed", Value::U64(seed));
    w.set(&format!("{a}.context_length"), u(p.ctx));
    w.set(&format!("{a}.embedding_length"), u(p.n_embd));
    w.set(&format!("{a}.block_count"), u(p.n_layer));
    w.set(&format!("{a}.feed_forward_length"), u(p.n_ff));
    w.set(&format!("{a}.attention.head_count"), u(p.n_head));
    w.set(&format!("{a}.attention.head_count_kv"), u(p.n_head_kv));
    w.set(&format!("{a}.attention.key_length"), u(p.head_dim));
    w.set(&format!("{a}.attention.value_length"), u(p.head_dim));
    w.set(
        &format!("{a}.attention.layer_norm_rms_epsilon"),
        Value::F32(p.eps),
    );
    w.set(&format!("{a}.rope.freq_base"), Value::F32(p.rope_base));
    w.set(&format!("{a}.vocab_size"), u(p.n_vocab));
    if let Some(win) = p.sliding_window {
        w.set(&format!("{a}.attention.sliding_window"), u(win));
    }
    if a == "phi3" {
        let orig = PHI3_ORIGINAL_CTX;
        w.set(
            &format!("{a}.rope.dimension_count"),
            u(p.n_rot.unwrap_or(p.head_dim)),
        );
        w.set(
            &format!("{a}.rope.scaling.attn_factor"),
            Value::F32(longrope_attn_factor(p.ctx, orig)),
        );
        w.set(
            &format!("{a}.rope.scaling.original_context_length"),
            u(orig),
        );
    }
    if let Some((attn, logits)) = p.softcap {
        w.set(&format!("{a}.attn_logit_softcapping"), Value::F32(attn));
        w.set(&format!("{a}.final_logit_softcapping"), Value::F32(logits));
    }
    match tokenizer {
        Some(md) => {
            for (k, v) in md.iter().filter(|(k, _)| k.starts_with("tokenizer.")) {
                w.set(k, v.clone());
            }
        }
        None => {
            w.set("tokenizer.ggml.model", Value::String("none".into()));
        }
    }
    for ((name, dims, _), &t) in list.iter().zip(&types) {
        w.add_tensor_info(name, t, dims)
            .map_err(|e| werr(e.to_string()))?;
    }
    let sizes: Vec<u64> = list
        .iter()
        .zip(&types)
        .map(|((_, dims, _), &t)| {
            let rows: u64 = dims.iter().skip(1).product();
            t.row_bytes(dims[0]).unwrap_or(0) * rows
        })
        .collect();
    let total: u64 = sizes.iter().sum();
    let mut rng = rand::rngs::SmallRng::seed_from_u64(seed);
    let mut done = 0;
    let tmp = out.with_extension("gguf.tmp");
    let file = std::fs::File::create(&tmp).map_err(|e| werr(e.to_string()))?;
    let mut bw = std::io::BufWriter::with_capacity(8 << 20, file);
    let result = w.write_with(&mut bw, &mut |i| {
        let (name, dims, _) = &list[i];
        let cols = dims[0] as usize;
        let rows: usize = dims.iter().skip(1).product::<u64>() as usize;
        let bytes = if dims.len() == 1 {
            // norms 1, biases 0 (Gemma stores norm weights with the +1 applied)
            let v: Vec<f32> = match name.as_str() {
                "rope_freqs.weight" => llama3_rope_divisors(p.head_dim, p.rope_base),
                // LongRoPE's shapes: long divisors like Llama 3's (1 to 32), short ones mild
                "rope_factors_long.weight" => {
                    llama3_rope_divisors(p.n_rot.unwrap_or(p.head_dim), p.rope_base)
                }
                "rope_factors_short.weight" => (0..cols)
                    .map(|i| 1.0 + 0.5 * i as f32 / cols as f32)
                    .collect(),
                n if n.ends_with(".bias") => vec![0.0; cols],
                _ => vec![1.0; cols],
            };
            v.iter().flat_map(|x| x.to_le_bytes()).collect()
        } else {
            let qk = name.ends_with("attn_q.weight") || name.ends_with("attn_k.weight");
            let gain = if qk { p.qk_gain } else { 1.0 };
            if name.ends_with("attn_qkv.weight") {
                // Phi-3's fused Q‖K‖V: the gain on the Q and K rows
                let qk_rows = (p.n_head + p.n_head_kv) * p.head_dim;
                let mut b = random_rows(types[i], qk_rows, cols, p.qk_gain, &mut rng);
                b.extend(random_rows(types[i], rows - qk_rows, cols, 1.0, &mut rng));
                b
            } else {
                random_rows(types[i], rows, cols, gain, &mut rng)
            }
        };
        if bytes.len() as u64 != sizes[i] {
            return Err(GgufErrorKind::Write(format!(
                "tensor `{name}`: size mismatch"
            )));
        }
        done += sizes[i];
        progress(done, total);
        Ok(bytes)
    });
    let finish = result
        .map_err(|e| werr(e.to_string()))
        .and_then(|_| std::io::Write::flush(&mut bw).map_err(|e| werr(e.to_string())))
        .and_then(|_| std::fs::rename(&tmp, out).map_err(|e| werr(e.to_string())));
    if let Err(e) = finish {
        let _ = std::fs::remove_file(&tmp);
        return Err(e);
    }
    let params = list.iter().map(|(_, d, _)| d.iter().product::<u64>()).sum();
    Ok(SynthSummary {
        preset: p.name.into(),
        dtype: dtype.name().into(),
        tensors: list.len(),
        params,
        bytes: total,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Random blocks of every type decode to finite weights with an RMS near 1/sqrt(cols).
    #[test]
    fn random_blocks_have_the_intended_scale() {
        let (rows, cols) = (16, 1024);
        let mut rng = rand::rngs::SmallRng::seed_from_u64(1);
        for t in crate::backend::wgpu::GPU_TYPES {
            let bytes = random_rows(t, rows, cols, 1.0, &mut rng);
            assert_eq!(
                bytes.len() as u64,
                t.row_bytes(cols as u64).unwrap() * rows as u64
            );
            let mut v = vec![0f32; rows * cols];
            assert!(crate::quant::dequantize(t, &bytes, &mut v), "{t}");
            assert!(v.iter().all(|x| x.is_finite()), "{t}");
            let rms = (v.iter().map(|x| x * x).sum::<f32>() / v.len() as f32).sqrt();
            let want = 1.0 / (cols as f32).sqrt();
            assert!(
                rms > want / 3.0 && rms < want * 3.0,
                "{t}: rms {rms}, want ~{want}"
            );
            // near zero-mean like trained weights (k-quants with random mins averaged 0.9 of
            // the RMS; Q4_0's quants 0..15 around 8 leave -d/2, 0.11 of it); each row's
            // mean, as a dot product with a constant input sees it
            for row in v.chunks(cols) {
                let mean = row.iter().sum::<f32>() / cols as f32;
                assert!(mean.abs() < 0.2 * rms, "{t}: row mean {mean}, rms {rms}");
            }
        }
    }

    #[test]
    fn matrix_shapes_list_each_decode_matrix_once() {
        let p = preset("llama-3.1-8b").unwrap();
        let shapes = matrix_shapes(p);
        let want = [
            ("q/o", 4096, 4096),
            ("k/v", 1024, 4096),
            ("gate/up", 14336, 4096),
            ("down", 4096, 14336),
            ("output", 128256, 4096),
        ];
        let got: Vec<(&str, usize, usize)> = shapes
            .iter()
            .map(|(n, r, c)| (n.as_str(), *r, *c))
            .collect();
        assert_eq!(got, want);
        // tied: the embedding matrix is the output projection
        let tied = matrix_shapes(preset("llama-3.2-1b").unwrap());
        assert_eq!(tied.last().map(|s| (s.1, s.2)), Some((128256, 2048)));
    }

    #[test]
    fn presets_have_the_published_parameter_counts() {
        let params = |name: &str| {
            tensors(preset(name).unwrap())
                .iter()
                .map(|(_, d, _)| d.iter().product::<u64>())
                .sum::<u64>() as f64
                / 1e9
        };
        // Hugging Face model cards: 268 M, 494 M, 1.24 B, 8.03 B, 0.6 B (596 M with the
        // embedding, which Qwen3-0.6B ties), 3.84 B
        for (name, want) in [
            ("gemma3-270m", 0.268),
            ("qwen2.5-0.5b", 0.494),
            ("llama-3.2-1b", 1.236),
            ("llama-3.1-8b", 8.030),
            ("qwen3-0.6b", 0.596),
            ("phi-4-mini", 3.836),
        ] {
            let got = params(name);
            assert!((got - want).abs() / want < 0.01, "{name}: {got} B");
        }
        assert!(preset("nope").is_none());
    }

    /// Llama 3.2 1B's divisors (64-dim heads, base 500000), computed by hand from the formula
    /// (Python, f64): 15 pairs kept, three blended, the 14 longest wavelengths divided by 32.
    #[test]
    fn llama3_divisors_blend_between_1_and_32() {
        let d = llama3_rope_divisors(64, 500_000.0);
        assert_eq!(d.len(), 32);
        assert!(d[..15].iter().all(|&x| x == 1.0), "{d:?}");
        assert!(d[18..].iter().all(|&x| x == 32.0), "{d:?}");
        for (got, want) in d[15..18].iter().zip([1.651_329_2, 3.292_262, 9.666_729]) {
            assert!((got - want).abs() < 1e-5, "{d:?}");
        }
    }
}

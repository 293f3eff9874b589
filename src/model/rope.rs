//! RoPE tables as llama.cpp computes them (ggml's `ggml_rope_cache_init` / `rope_yarn`), built
//! once on the host and handed to the backend, which only stores or uploads them: the angle
//! of pair `i` of a head at position `p` is `p · base^(-2i/n_rot)`, divided by a frequency
//! factor (Llama 3's `rope_freqs.weight`), scaled by `freq_scale` (linear scaling) or blended
//! between the scaled and unscaled angle per pair (YaRN), with YaRN's magnitude correction on
//! cos and sin. The table is `[max_pos][head_dim / 2][cos, sin]`; with partial rotary
//! (`n_rot < head_dim`) the pairs past `n_rot / 2` hold `(1, 0)`: those dimensions pass
//! through (`crate::backend::Rope::pair` says which elements each pair is).
//!
//! Scaling types come from `{arch}.rope.scaling.*` as llama.cpp reads them: no type key means
//! linear (with `scaling.factor`, or 1), `none` means no scaling whatever the factor says.

use crate::gguf::Metadata;

/// YaRN's parameters (llama.cpp's `cparams.yarn_*`, with its defaults).
#[derive(Clone, Debug, PartialEq)]
pub struct Yarn {
    /// Weight of the unscaled angle in the blend (1 when the file asks for YaRN).
    pub ext_factor: f32,
    /// Magnitude multiplier before YaRN's own correction (see [`yarn_attn_factor`]).
    pub attn_factor: f32,
    pub beta_fast: f32,
    pub beta_slow: f32,
    /// The context the model was trained on before scaling.
    pub n_ctx_orig: usize,
}

/// What the table depends on.
#[derive(Clone, Debug, PartialEq)]
pub struct RopeSpec {
    pub head_dim: usize,
    /// Dimensions turned (`head_dim`, or fewer for partial rotary); ggml's `n_dims`.
    pub n_rot: usize,
    pub base: f32,
    /// 1 / the scaling factor (1 = none).
    pub freq_scale: f32,
    /// One divisor per rotated pair (`n_rot / 2`), from `rope_freqs.weight` (Llama 3) or
    /// `rope_factors_{short,long}.weight` (Phi-3's LongRoPE).
    pub factors: Option<Vec<f32>>,
    pub yarn: Option<Yarn>,
    /// Multiplies cos and sin (`rope.scaling.attn_factor` outside YaRN, which folds it into its
    /// own: Phi-3's LongRoPE magnitude, as llama.cpp's `yarn_attn_factor` applies it).
    pub attn_factor: f32,
}

/// How a file scales RoPE.
#[derive(Clone, Debug, PartialEq)]
pub enum Scaling {
    None,
    Linear { freq_scale: f32 },
    Yarn { freq_scale: f32, yarn: Yarn },
}

impl Scaling {
    /// Reads `{arch}.rope.scaling.*` (`ctx_train`: the default original context). An unknown
    /// type is an error naming it.
    pub fn from_metadata(md: &Metadata, arch: &str, ctx_train: usize) -> Result<Self, String> {
        let key = |k: &str| format!("{arch}.rope.scaling.{k}");
        let e = |e: crate::gguf::MetadataError| e.to_string();
        let kind = md.opt_str(&key("type")).map_err(e)?.unwrap_or("linear");
        let factor = md.opt_f32(&key("factor")).map_err(e)?.unwrap_or(0.0);
        let freq_scale = if factor > 0.0 { 1.0 / factor } else { 1.0 };
        match kind {
            "none" => Ok(Scaling::None),
            "linear" if freq_scale == 1.0 => Ok(Scaling::None),
            "linear" => Ok(Scaling::Linear { freq_scale }),
            "yarn" => {
                let n_ctx_orig = md
                    .opt_u64(&key("original_context_length"))
                    .map_err(e)?
                    .map_or(ctx_train, |v| v as usize);
                let attn = md.opt_f32(&key("attn_factor")).map_err(e)?.unwrap_or(1.0);
                let yarn = Yarn {
                    ext_factor: 1.0,
                    attn_factor: yarn_attn_factor(freq_scale) * attn,
                    beta_fast: md
                        .opt_f32(&key("yarn_beta_fast"))
                        .map_err(e)?
                        .unwrap_or(32.0),
                    beta_slow: md
                        .opt_f32(&key("yarn_beta_slow"))
                        .map_err(e)?
                        .unwrap_or(1.0),
                    n_ctx_orig,
                };
                Ok(Scaling::Yarn { freq_scale, yarn })
            }
            other => Err(format!(
                "RoPE scaling type {other:?} is not supported (supported: none, linear, yarn)"
            )),
        }
    }

    /// `{arch}.rope.scaling.attn_factor` where it multiplies the table directly: outside YaRN
    /// (which folds it into its own magnitude). 1 when absent.
    pub fn plain_attn_factor(md: &Metadata, arch: &str, s: &Scaling) -> Result<f32, String> {
        if matches!(s, Scaling::Yarn { .. }) {
            return Ok(1.0);
        }
        let f = md
            .opt_f32(&format!("{arch}.rope.scaling.attn_factor"))
            .map_err(|e| e.to_string())?
            .unwrap_or(1.0);
        if !(f.is_finite() && f > 0.0) {
            return Err(format!(
                "{arch}.rope.scaling.attn_factor is {f}, not a positive number"
            ));
        }
        Ok(f)
    }

    /// The spec for heads of `head_dim` at `base`.
    pub fn spec(&self, head_dim: usize, base: f32) -> RopeSpec {
        let mut s = RopeSpec::new(head_dim, base);
        match self {
            Scaling::None => {}
            Scaling::Linear { freq_scale } => s.freq_scale = *freq_scale,
            Scaling::Yarn { freq_scale, yarn } => {
                s.freq_scale = *freq_scale;
                s.yarn = Some(yarn.clone());
            }
        }
        s
    }
}

/// llama.cpp's `yarn_attn_factor` for a file without `rope_yarn_log_mul`: `get_mscale(factor)`
/// divided by the correction ggml applies again inside `rope_yarn`, so the two cancel and the
/// magnitude is ggml's `1 + 0.1 ln(factor)` alone.
fn yarn_attn_factor(freq_scale: f32) -> f32 {
    let factor = 1.0 / freq_scale;
    let mscale = if factor <= 1.0 {
        1.0
    } else {
        0.1 * factor.ln() + 1.0
    };
    mscale * (1.0 / (1.0 + 0.1 * factor.ln()))
}

impl RopeSpec {
    /// Unscaled RoPE.
    pub fn new(head_dim: usize, base: f32) -> Self {
        RopeSpec {
            head_dim,
            n_rot: head_dim,
            base,
            freq_scale: 1.0,
            factors: None,
            yarn: None,
            attn_factor: 1.0,
        }
    }

    /// YaRN's correction range: the pairs below `dims[0]` keep the unscaled angle, those above
    /// `dims[1]` the scaled one (ggml's `ggml_rope_yarn_corr_dims`).
    fn corr_dims(&self, y: &Yarn) -> [f32; 2] {
        let n_dims = self.n_rot as f32;
        let dim = |n_rot: f32| {
            n_dims * (y.n_ctx_orig as f32 / (n_rot * 2.0 * std::f32::consts::PI)).ln()
                / (2.0 * self.base.ln())
        };
        let start = dim(y.beta_fast).floor();
        let end = dim(y.beta_slow).ceil();
        [start.max(0.0), end.min(n_dims - 1.0)]
    }

    /// `(cos, sin)` for every pair of positions `0..max_pos`, in ggml's f32 arithmetic.
    pub fn table(&self, max_pos: usize) -> Vec<f32> {
        let half = self.n_rot / 2;
        let theta_scale = self.base.powf(-2.0 / self.n_rot as f32);
        let (ext_factor, mut mscale, corr) = match &self.yarn {
            Some(y) => (y.ext_factor, y.attn_factor, self.corr_dims(y)),
            None => (0.0, 1.0, [0.0, 0.0]),
        };
        if ext_factor != 0.0 {
            mscale *= 1.0 + 0.1 * (1.0 / self.freq_scale).ln();
        }
        mscale *= self.attn_factor;
        let mut out = Vec::with_capacity(max_pos * self.head_dim);
        for pos in 0..max_pos {
            let mut theta = pos as f32;
            for i in 0..half {
                let ff = self.factors.as_ref().map_or(1.0, |f| f[i]);
                let extrap = theta / ff;
                let interp = self.freq_scale * extrap;
                let t = if ext_factor != 0.0 {
                    let y = ((i as f32) - corr[0]) / (corr[1] - corr[0]).max(0.001);
                    let ramp = (1.0 - y.clamp(0.0, 1.0)) * ext_factor;
                    interp * (1.0 - ramp) + extrap * ramp
                } else {
                    interp
                };
                out.push(t.cos() * mscale);
                out.push(t.sin() * mscale);
                theta *= theta_scale;
            }
            // the dimensions partial rotary leaves alone
            for _ in half..self.head_dim / 2 {
                out.extend([1.0, 0.0]);
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// (cos, sin) of pair `i` at `pos` from a table.
    fn at(t: &[f32], hd: usize, pos: usize, i: usize) -> (f32, f32) {
        (t[pos * hd + 2 * i], t[pos * hd + 2 * i + 1])
    }

    #[test]
    fn plain_rope_turns_pair_i_by_pos_times_base_to_the_minus_2i_over_d() {
        let s = RopeSpec::new(8, 10_000.0);
        let t = s.table(50);
        assert_eq!(t.len(), 50 * 8);
        for (pos, i) in [(0, 0), (1, 0), (7, 1), (49, 3), (13, 2)] {
            let angle = pos as f64 * 10_000f64.powf(-2.0 * i as f64 / 8.0);
            let (c, s) = at(&t, 8, pos, i);
            assert!((c as f64 - angle.cos()).abs() < 2e-6, "{pos} {i}");
            assert!((s as f64 - angle.sin()).abs() < 2e-6, "{pos} {i}");
        }
    }

    /// Partial rotary (Phi-4-mini: 96 of 128): angles over `n_rot`, divisors per rotated pair,
    /// and `(1, 0)` for the pairs past them.
    #[test]
    fn partial_rotary_turns_n_rot_dimensions_and_leaves_the_rest() {
        let mut s = RopeSpec::new(8, 10_000.0);
        s.n_rot = 6;
        s.factors = Some(vec![1.0, 2.0, 4.0]);
        let t = s.table(30);
        assert_eq!(t.len(), 30 * 8);
        for pos in [0, 1, 17, 29] {
            for i in 0..3 {
                let angle = pos as f64 * 10_000f64.powf(-2.0 * i as f64 / 6.0) / [1.0, 2.0, 4.0][i];
                let (c, s) = at(&t, 8, pos, i);
                assert!((c as f64 - angle.cos()).abs() < 2e-6, "{pos} {i}");
                assert!((s as f64 - angle.sin()).abs() < 2e-6, "{pos} {i}");
            }
            assert_eq!(at(&t, 8, pos, 3), (1.0, 0.0));
        }
    }

    #[test]
    fn linear_scaling_and_frequency_factors_divide_the_angle() {
        let mut s = RopeSpec::new(4, 500_000.0);
        s.freq_scale = 0.25;
        s.factors = Some(vec![1.0, 8.0]);
        let t = s.table(40);
        for (pos, i) in [(3, 0), (39, 1), (20, 1)] {
            let ff = [1.0, 8.0][i];
            let angle = 0.25 * pos as f64 * 500_000f64.powf(-(2.0 * i as f64) / 4.0) / ff;
            let (c, s) = at(&t, 4, pos, i);
            assert!((c as f64 - angle.cos()).abs() < 2e-6, "{pos} {i}");
            assert!((s as f64 - angle.sin()).abs() < 2e-6, "{pos} {i}");
        }
    }

    /// YaRN by hand (f64, the formulas of jquesnelle/yarn as ggml writes them) for a 128-dim
    /// head, base 1e6, factor 4 over 32768 original positions: pairs below the correction
    /// range keep their angle, pairs above it are divided by 4, the ones between blend
    /// linearly, and every cos/sin is multiplied by 1 + 0.1 ln 4.
    #[test]
    fn yarn_blends_scaled_and_unscaled_angles_and_corrects_the_magnitude() {
        let (hd, base, factor, orig) = (128usize, 1e6f64, 4.0f64, 32768f64);
        let yarn = Yarn {
            ext_factor: 1.0,
            attn_factor: yarn_attn_factor(1.0 / factor as f32),
            beta_fast: 32.0,
            beta_slow: 1.0,
            n_ctx_orig: orig as usize,
        };
        assert!(
            (yarn.attn_factor - 1.0).abs() < 1e-6,
            "llama.cpp's factor cancels"
        );
        let s = Scaling::Yarn {
            freq_scale: (1.0 / factor) as f32,
            yarn,
        }
        .spec(hd, base as f32);
        let t = s.table(3000);
        let corr = |beta: f64| {
            hd as f64 * (orig / (beta * 2.0 * std::f64::consts::PI)).ln() / (2.0 * base.ln())
        };
        let (lo, hi) = (
            corr(32.0).floor().max(0.0),
            corr(1.0).ceil().min(hd as f64 - 1.0),
        );
        assert_eq!((lo, hi), (23.0, 40.0), "the range for these numbers");
        let mscale = 1.0 + 0.1 * factor.ln();
        let (mut kept, mut scaled, mut blended) = (0, 0, 0);
        for i in 0..hd / 2 {
            let ramp = 1.0 - ((i as f64 - lo) / (hi - lo)).clamp(0.0, 1.0);
            if ramp == 1.0 {
                kept += 1;
            } else if ramp == 0.0 {
                scaled += 1;
            } else {
                blended += 1;
            }
            for pos in [1usize, 100, 2999] {
                let extrap = pos as f64 * base.powf(-2.0 * i as f64 / hd as f64);
                let angle = extrap / factor * (1.0 - ramp) + extrap * ramp;
                let (c, s) = at(&t, hd, pos, i);
                // f32 angles of up to ~3000 rad: ~3e-4 of absolute rounding
                assert!((c as f64 - angle.cos() * mscale).abs() < 1e-3, "{pos} {i}");
                assert!((s as f64 - angle.sin() * mscale).abs() < 1e-3, "{pos} {i}");
            }
        }
        assert_eq!((kept, blended, scaled), (24, 16, 24));
    }

    #[test]
    fn scaling_types_from_metadata() {
        use crate::gguf::{GgufFile, GgufWriter, Value};
        let md = |kv: &[(&str, Value)]| {
            let mut w = GgufWriter::new();
            for (k, v) in kv {
                w.set(k, v.clone());
            }
            GgufFile::from_bytes("<t>", w.to_bytes().unwrap()).unwrap()
        };
        let f = md(&[]);
        assert_eq!(
            Scaling::from_metadata(f.metadata(), "llama", 8),
            Ok(Scaling::None)
        );
        // no type key: linear, as llama.cpp reads it
        let f = md(&[("llama.rope.scaling.factor", Value::F32(2.0))]);
        assert_eq!(
            Scaling::from_metadata(f.metadata(), "llama", 8),
            Ok(Scaling::Linear { freq_scale: 0.5 })
        );
        let f = md(&[
            ("llama.rope.scaling.type", Value::String("none".into())),
            ("llama.rope.scaling.factor", Value::F32(2.0)),
        ]);
        assert_eq!(
            Scaling::from_metadata(f.metadata(), "llama", 8),
            Ok(Scaling::None)
        );
        let f = md(&[
            ("qwen3.rope.scaling.type", Value::String("yarn".into())),
            ("qwen3.rope.scaling.factor", Value::F32(4.0)),
            (
                "qwen3.rope.scaling.original_context_length",
                Value::U32(32768),
            ),
        ]);
        match Scaling::from_metadata(f.metadata(), "qwen3", 131072) {
            Ok(Scaling::Yarn { freq_scale, yarn }) => {
                assert_eq!(freq_scale, 0.25);
                assert_eq!(
                    (yarn.n_ctx_orig, yarn.beta_fast, yarn.beta_slow),
                    (32768, 32.0, 1.0)
                );
            }
            other => panic!("{other:?}"),
        }
        let f = md(&[("phi3.rope.scaling.type", Value::String("longrope".into()))]);
        let e = Scaling::from_metadata(f.metadata(), "phi3", 8).unwrap_err();
        assert!(e.contains("\"longrope\" is not supported"), "{e}");
    }
}

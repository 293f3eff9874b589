//! The candle backend's composite ops: RMS norm, RoPE and attention written with candle-core
//! tensor ops (candle-core has no fused kernels for them; candle-nn's are not a dependency).

use super::{err, CandleBackend};
use crate::backend::{AttnParams, BackendError, Buf, KvBuf, Result, Rope, RopeLayout, Weight};
use candle_core::{DType, Tensor, D};

impl CandleBackend {
    pub(super) fn rms_norm_impl(
        &mut self,
        x: Buf,
        w: &Weight,
        out: Buf,
        rows: usize,
        eps: f32,
    ) -> Result<()> {
        let g = self.vector(w, "rms_norm")?.clone();
        let xs = self
            .view(x, 0, rows * w.cols)?
            .reshape((rows, w.cols))
            .map_err(err)?;
        let ms = xs.sqr().map_err(err)?.mean_keepdim(1).map_err(err)?;
        let inv = (ms + eps as f64)
            .map_err(err)?
            .sqrt()
            .map_err(err)?
            .recip()
            .map_err(err)?;
        let y = xs
            .broadcast_mul(&inv)
            .map_err(err)?
            .broadcast_mul(&g)
            .map_err(err)?;
        self.store(out, 0, &y)
    }

    pub(super) fn rope_impl(
        &mut self,
        x: Buf,
        rope: &Rope,
        n: usize,
        heads: usize,
        pos0: usize,
    ) -> Result<()> {
        if pos0 + n > rope.max_pos {
            return Err(BackendError::Invalid(format!(
                "rope: position {} beyond the table's {}",
                pos0 + n,
                rope.max_pos
            )));
        }
        let (hd, half) = (rope.head_dim, rope.head_dim / 2);
        let t = &self.ropes[rope.id as usize];
        let cos = t.cos.narrow(0, pos0, n).map_err(err)?;
        let sin = t.sin.narrow(0, pos0, n).map_err(err)?;
        let xs = self.view(x, 0, n * heads * hd)?;
        let y = match rope.layout {
            RopeLayout::Neox => {
                let xs = xs.reshape((n, heads, 2, half)).map_err(err)?;
                let (c, s) = (
                    cos.reshape((n, 1, half)).map_err(err)?,
                    sin.reshape((n, 1, half)).map_err(err)?,
                );
                let x0 = xs.narrow(2, 0, 1).map_err(err)?.squeeze(2).map_err(err)?;
                let x1 = xs.narrow(2, 1, 1).map_err(err)?.squeeze(2).map_err(err)?;
                rotate(&x0, &x1, &c, &s, 2)?
            }
            RopeLayout::Norm => {
                let xs = xs.reshape((n, heads, half, 2)).map_err(err)?;
                let (c, s) = (
                    cos.reshape((n, 1, half)).map_err(err)?,
                    sin.reshape((n, 1, half)).map_err(err)?,
                );
                let x0 = xs.narrow(3, 0, 1).map_err(err)?.squeeze(3).map_err(err)?;
                let x1 = xs.narrow(3, 1, 1).map_err(err)?.squeeze(3).map_err(err)?;
                rotate(&x0, &x1, &c, &s, 3)?
            }
        };
        self.store(x, 0, &y)
    }

    pub(super) fn attention_impl(
        &mut self,
        q: Buf,
        k: KvBuf,
        v: KvBuf,
        out: Buf,
        p: &AttnParams,
    ) -> Result<()> {
        if p.n_head_kv == 0 || p.n_head % p.n_head_kv != 0 {
            return Err(BackendError::Invalid(format!(
                "attention: {} heads over {} KV heads",
                p.n_head, p.n_head_kv
            )));
        }
        let (n, nh, nkv, hd) = (p.n_tokens, p.n_head, p.n_head_kv, p.head_dim);
        let kvd = nkv * hd;
        let end = p.pos0 + n;
        if end * kvd > k.len || end * kvd > v.len {
            return Err(BackendError::Invalid("attention: past the KV cache".into()));
        }
        // keys any query of this call can see
        let lo = p.window.map_or(0, |w| (p.pos0 + 1).saturating_sub(w));
        let len = end - lo;
        let group = nh / nkv;
        let kv = |c: &Tensor| -> Result<Tensor> {
            // [len, nkv, hd] -> [nh, len, hd], each KV head repeated for its query group
            c.narrow(0, lo * kvd, len * kvd)
                .and_then(|t| t.to_dtype(DType::F32))
                .and_then(|t| t.reshape((len, nkv, 1, hd)))
                .and_then(|t| t.broadcast_as((len, nkv, group, hd)))
                .and_then(|t| t.reshape((len, nh, hd)))
                .and_then(|t| t.transpose(0, 1))
                .and_then(|t| t.contiguous())
                .map_err(err)
        };
        let keys = kv(&self.kv[k.id as usize])?;
        let vals = kv(&self.kv[v.id as usize])?;
        let qs = self
            .view(q, 0, n * nh * hd)?
            .reshape((n, nh, hd))
            .and_then(|t| t.transpose(0, 1))
            .and_then(|t| t.contiguous())
            .map_err(err)?;
        // causal + window mask, [n, len]: query i (position pos0 + i) sees key lo + j
        let mask: Vec<f32> = (0..n)
            .flat_map(|i| {
                let pos = p.pos0 + i;
                let first = p.window.map_or(0, |w| (pos + 1).saturating_sub(w));
                (0..len).map(move |j| {
                    let kp = lo + j;
                    if kp <= pos && kp >= first {
                        0.0
                    } else {
                        f32::NEG_INFINITY
                    }
                })
            })
            .collect();
        let mask = Tensor::from_vec(mask, (n, len), &self.device).map_err(err)?;
        let scores = qs
            .matmul(&keys.t().map_err(err)?)
            .and_then(|s| s.affine(p.scale as f64, 0.0))
            .and_then(|s| s.broadcast_add(&mask))
            .map_err(err)?;
        let max = scores.max_keepdim(D::Minus1).map_err(err)?;
        let e = scores
            .broadcast_sub(&max)
            .and_then(|s| s.exp())
            .map_err(err)?;
        let z = e.sum_keepdim(D::Minus1).map_err(err)?;
        let probs = e.broadcast_div(&z).map_err(err)?;
        let y = probs
            .matmul(&vals)
            .and_then(|t| t.transpose(0, 1))
            .and_then(|t| t.contiguous())
            .map_err(err)?;
        self.store(out, 0, &y)
    }
}

/// `(x0·c − x1·s, x0·s + x1·c)` stacked back on `dim` (the pair axis of the layout).
fn rotate(x0: &Tensor, x1: &Tensor, c: &Tensor, s: &Tensor, dim: usize) -> Result<Tensor> {
    let a = (x0.broadcast_mul(c).map_err(err)? - x1.broadcast_mul(s).map_err(err)?).map_err(err)?;
    let b = (x0.broadcast_mul(s).map_err(err)? + x1.broadcast_mul(c).map_err(err)?).map_err(err)?;
    Tensor::stack(&[a, b], dim).map_err(err)
}

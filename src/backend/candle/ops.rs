//! The candle backend's composite ops: RMS norm, RoPE and attention. RMS norm, RoPE and the
//! softmax are candle-nn's fused kernels (one launch each on CUDA); attention multiplies each
//! KV head with its whole query group at once, so grouped heads are never copied out.

use super::{err, CandleBackend};
use crate::backend::{
    kv_row, AttnParams, BackendError, Buf, KvBuf, Result, Rope, RopeLayout, Weight,
};
use candle_core::{DType, Tensor};

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
        let y = candle_nn::ops::rms_norm(&xs, &g, eps).map_err(err)?;
        self.store(out, 0, &y)
    }

    pub(super) fn rope_impl(
        &mut self,
        x: Buf,
        rope: &Rope,
        row0: usize,
        n: usize,
        heads: usize,
        pos0: usize,
    ) -> Result<()> {
        // positions were checked by `Ops`
        let (hd, nr) = (rope.head_dim, rope.n_rot);
        let t = &self.ropes[rope.id as usize];
        // the rotated pairs' columns (partial rotary: the first n_rot / 2)
        let cols = |t: &candle_core::Tensor| {
            t.narrow(0, pos0, n)
                .and_then(|t| t.narrow(1, 0, nr / 2))
                .and_then(|t| t.contiguous())
        };
        let (cos, sin) = (cols(&t.cos), cols(&t.sin));
        let (cos, sin) = (cos.map_err(err)?, sin.map_err(err)?);
        let off = row0 * heads * hd;
        let all = self.view(x, off, n * heads * hd)?;
        // partial rotary: rope over each head's first n_rot dimensions, the rest as they are
        let (xs, pass) = if nr < hd {
            let heads_view = all.reshape((n * heads, hd)).map_err(err)?;
            let r = heads_view.narrow(1, 0, nr).and_then(|t| t.contiguous());
            let p = heads_view.narrow(1, nr, hd - nr);
            (r.map_err(err)?, Some(p.map_err(err)?))
        } else {
            (all, None)
        };
        let hd = nr;
        let y = match rope.layout {
            // [tokens, heads, head_dim] is candle-nn's `thd` layout
            RopeLayout::Neox => xs
                .reshape((1, n, heads, hd))
                .and_then(|t| candle_nn::rotary_emb::rope_thd(&t, &cos, &sin))
                .map_err(err)?,
            // adjacent pairs: candle-nn has them for [heads, tokens, head_dim] only
            RopeLayout::Norm if n == 1 => xs
                .reshape((1, heads, 1, hd))
                .and_then(|t| candle_nn::rotary_emb::rope_i(&t, &cos, &sin))
                .map_err(err)?,
            RopeLayout::Norm => xs
                .reshape((n, heads, hd))
                .and_then(|t| t.transpose(0, 1))
                .and_then(|t| t.contiguous())
                .and_then(|t| t.reshape((1, heads, n, hd)))
                .and_then(|t| candle_nn::rotary_emb::rope_i(&t, &cos, &sin))
                .and_then(|t| t.reshape((heads, n, hd)))
                .and_then(|t| t.transpose(0, 1))
                .map_err(err)?,
        };
        let y = match pass {
            Some(p) => y
                .reshape((n * heads, hd))
                .and_then(|y| candle_core::Tensor::cat(&[&y, &p], 1))
                .map_err(err)?,
            None => y,
        };
        self.store(x, off, &y)
    }

    pub(super) fn attention_impl(
        &mut self,
        q: Buf,
        k: KvBuf,
        v: KvBuf,
        out: Buf,
        p: &AttnParams,
    ) -> Result<()> {
        if p.n_head_kv == 0 || !p.n_head.is_multiple_of(p.n_head_kv) {
            return Err(BackendError::Invalid(format!(
                "attention: {} heads over {} KV heads",
                p.n_head, p.n_head_kv
            )));
        }
        let (n, nh, nkv, hd) = (p.n_tokens, p.n_head, p.n_head_kv, p.head_dim);
        let kvd = nkv * hd;
        let end = p.pos0 + n;
        // keys any query of this call can see
        let lo = p.window.map_or(0, |w| (p.pos0 + 1).saturating_sub(w));
        let len = end - lo;
        let held = |b: KvBuf| match b.ring {
            true => len <= b.rows(kvd),
            false => end <= b.rows(kvd),
        };
        if kvd == 0 || !held(k) || !held(v) {
            return Err(BackendError::Invalid("attention: past the KV cache".into()));
        }
        let group = nh / nkv;
        // positions lo..end in order: one run of rows, or in a ring that wrapped, its tail
        // and then its head
        let rows = |c: &Tensor, b: KvBuf| -> candle_core::Result<Tensor> {
            let r = b.rows(kvd);
            let start = if b.ring { kv_row(lo, r) } else { lo };
            if start + len <= r {
                return c.narrow(0, start * kvd, len * kvd);
            }
            let tail = c.narrow(0, start * kvd, (r - start) * kvd)?;
            let head = c.narrow(0, 0, (start + len - r) * kvd)?;
            Tensor::cat(&[&tail, &head], 0)
        };
        // [len, nkv, hd] f16 -> [nkv, len, hd] f32
        let kv = |b: KvBuf| -> Result<Tensor> {
            rows(&self.kv[b.id as usize], b)
                .and_then(|t| t.to_dtype(DType::F32))
                .and_then(|t| t.reshape((len, nkv, hd)))
                .and_then(|t| t.transpose(0, 1))
                .and_then(|t| t.contiguous())
                .map_err(err)
        };
        let keys = kv(k)?;
        let vals = kv(v)?;
        // queries [n, nkv, group, hd] -> [nkv, n * group, hd]: row r is token r / group
        let q_off = p.row0 * nh * hd;
        let qs = self.view(q, q_off, n * nh * hd)?;
        let qs = if n == 1 {
            qs.reshape((nkv, group, hd)).map_err(err)?
        } else {
            qs.reshape((n, nkv, group * hd))
                .and_then(|t| t.transpose(0, 1))
                .and_then(|t| t.contiguous())
                .and_then(|t| t.reshape((nkv, n * group, hd)))
                .map_err(err)?
        };
        let mut scores = qs
            .matmul(&keys.t().map_err(err)?)
            .and_then(|s| s.affine(p.scale as f64, 0.0))
            .map_err(err)?;
        if let Some(c) = p.softcap {
            let c = c as f64;
            scores = scores
                .affine(1.0 / c, 0.0)
                .and_then(|t| t.tanh())
                .and_then(|t| t.affine(c, 0.0))
                .map_err(err)?;
        }
        // one token sees every key from `lo` on; a batch needs the causal + window mask
        if n > 1 {
            let mask: Vec<f32> = (0..n)
                .flat_map(|i| {
                    let pos = p.pos0 + i;
                    let first = p.window.map_or(0, |w| (pos + 1).saturating_sub(w));
                    (0..group).flat_map(move |_| {
                        (0..len).map(move |j| {
                            let kp = lo + j;
                            if kp <= pos && kp >= first {
                                0.0
                            } else {
                                f32::NEG_INFINITY
                            }
                        })
                    })
                })
                .collect();
            let mask = Tensor::from_vec(mask, (n * group, len), &self.device).map_err(err)?;
            scores = scores.broadcast_add(&mask).map_err(err)?;
        }
        let probs = candle_nn::ops::softmax_last_dim(&scores).map_err(err)?;
        let y = probs.matmul(&vals).map_err(err)?; // [nkv, n * group, hd]
        let y = if n == 1 {
            y
        } else {
            y.reshape((nkv, n, group * hd))
                .and_then(|t| t.transpose(0, 1))
                .map_err(err)?
        };
        self.store(out, q_off, &y)
    }
}

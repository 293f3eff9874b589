//! The buffers a forward pass runs in, allocated once at load: the KV cache (one K and one V
//! buffer per layer, `[ctx, n_head_kv * head_dim]`) and scratch activations sized for the
//! largest batch.

use super::{Config, ModelError};
use crate::backend::{Buf, KvBuf, Ops, RopeKv};

pub struct KvCache {
    pub k: Vec<KvBuf>,
    pub v: Vec<KvBuf>,
    pub ctx: usize,
}

impl KvCache {
    pub fn new(ops: &mut Ops, c: &Config, ctx: usize) -> Result<Self, ModelError> {
        let len = ctx * c.kv_dim();
        let mut k = Vec::with_capacity(c.n_layer);
        let mut v = Vec::with_capacity(c.n_layer);
        for _ in 0..c.n_layer {
            k.push(ops.alloc_kv(len)?);
            v.push(ops.alloc_kv(len)?);
        }
        Ok(KvCache { k, v, ctx })
    }

    /// Layer `il`'s caches, for `n` tokens at positions `pos0..` ([`Ops::rope_store_kv`]).
    pub fn at(&self, c: &Config, il: usize, n: usize, pos0: usize) -> RopeKv {
        RopeKv {
            n,
            n_head: c.n_head,
            n_head_kv: c.n_head_kv,
            pos0,
            k_cache: self.k[il],
            v_cache: self.v[il],
        }
    }
}

/// Activations for up to `batch` tokens.
pub struct Scratch {
    /// residual stream `[batch, n_embd]`
    pub x: Buf,
    /// normed input / block output `[batch, n_embd]`
    pub xb: Buf,
    /// queries `[batch, n_head * head_dim]`
    pub q: Buf,
    /// keys, values `[batch, n_head_kv * head_dim]`
    pub k: Buf,
    pub v: Buf,
    /// attention output `[batch, n_head * head_dim]`
    pub att: Buf,
    /// feed-forward gate and up `[batch, n_ff]`
    pub hb: Buf,
    pub hb2: Buf,
    /// final-normed rows whose logits are wanted `[logit_rows, n_embd]`
    pub out: Buf,
    /// logits `[logit_rows, n_vocab]`
    pub logits: Buf,
}

impl Scratch {
    pub fn new(
        ops: &mut Ops,
        c: &Config,
        batch: usize,
        logit_rows: usize,
    ) -> Result<Self, ModelError> {
        Ok(Scratch {
            x: ops.alloc(batch * c.n_embd)?,
            xb: ops.alloc(batch * c.n_embd)?,
            q: ops.alloc(batch * c.q_dim())?,
            k: ops.alloc(batch * c.kv_dim())?,
            v: ops.alloc(batch * c.kv_dim())?,
            att: ops.alloc(batch * c.q_dim())?,
            hb: ops.alloc(batch * c.n_ff)?,
            hb2: ops.alloc(batch * c.n_ff)?,
            out: ops.alloc(logit_rows * c.n_embd)?,
            logits: ops.alloc(logit_rows * c.n_vocab)?,
        })
    }
}

//! The buffers a forward pass runs in, allocated once: a sequence's KV cache (one K and one V
//! buffer per layer, `[ctx, n_head_kv * head_dim]`; one per sequence, made with
//! [`super::Model::new_cache`]) and the model's scratch activations sized for the largest
//! batch (shared by every sequence of a batch).

use super::{batch::Segment, Config, ModelError};
use crate::backend::{Buf, KvBuf, Ops, RopeKv};

/// One sequence's keys and values for positions `0..ctx`.
pub struct KvCache {
    pub k: Vec<KvBuf>,
    pub v: Vec<KvBuf>,
    /// Positions this sequence may use.
    pub ctx: usize,
    capacity: usize,
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
        Ok(KvCache {
            k,
            v,
            ctx,
            capacity: ctx,
        })
    }

    /// Positions the buffers can hold (at least `ctx`; more for a recycled cache).
    pub fn capacity(&self) -> usize {
        self.capacity
    }

    /// Layer `il`'s caches, for the tokens of segment `s` ([`Ops::rope_store_kv`]).
    pub fn at(&self, c: &Config, il: usize, s: &Segment) -> RopeKv {
        RopeKv {
            row0: s.row0,
            n: s.n,
            n_head: c.n_head,
            n_head_kv: c.n_head_kv,
            pos0: s.pos0,
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
    /// Bytes the scratch buffers of [`Scratch::new`] take (f32).
    pub fn bytes(c: &Config, batch: usize, logit_rows: usize) -> u64 {
        let per_token = 2 * c.n_embd + 2 * c.q_dim() + 2 * c.kv_dim() + 2 * c.n_ff;
        4 * (batch * per_token + logit_rows * (c.n_embd + c.n_vocab)) as u64
    }

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

//! The buffers a forward pass runs in, allocated once: a sequence's KV cache (one K and one V
//! buffer per layer, `[ctx, n_head_kv * head_dim]` — for a sliding-window layer a ring of
//! window + batch rows; one per sequence, made with [`super::Model::new_cache`]) and the
//! model's scratch activations sized for the largest batch (shared by every sequence of a
//! batch).
//!
//! A ring holds the last `rows` positions written. Continuing a sequence never loses what it
//! needs (a query sees `window` positions, a batch adds at most `batch`), but going back — a
//! reused prompt prefix, a rejected speculative draft — is safe only while the positions
//! written since have not wrapped over the window before the restart: [`KvCache::reusable`]
//! says how far back a sequence can go, and a forward pass that starts further back is refused.

use super::{batch::Segment, Config, ModelError};
use crate::backend::{Buf, KvBuf, Ops, RopeKv};
use std::sync::atomic::{AtomicUsize, Ordering};

/// One sequence's keys and values for positions `0..ctx`.
pub struct KvCache {
    pub k: Vec<KvBuf>,
    pub v: Vec<KvBuf>,
    /// Positions this sequence may use.
    pub ctx: usize,
    capacity: usize,
    /// Per layer: `(window, rows)` where the layer's buffers are a ring of `rows` positions.
    rings: Vec<Option<(usize, usize)>>,
    /// One past the highest position written since the sequence last started at position 0.
    written: AtomicUsize,
}

impl KvCache {
    /// Buffers for `ctx` positions; with `ring` (and a backend that can), each sliding-window
    /// layer gets `window + batch` rows where that is fewer than `ctx` (`batch`: the most
    /// tokens one forward pass writes).
    pub fn new(
        ops: &mut Ops,
        c: &Config,
        ctx: usize,
        batch: usize,
        ring: bool,
    ) -> Result<Self, ModelError> {
        let row = c.kv_dim();
        let mut k = Vec::with_capacity(c.n_layer);
        let mut v = Vec::with_capacity(c.n_layer);
        let mut rings = Vec::with_capacity(c.n_layer);
        for il in 0..c.n_layer {
            let layer_ring = Self::ring(c, il, ctx, batch, ring && ops.kv_ring());
            let rows = layer_ring.map_or(ctx, |(_, rows)| rows);
            k.push(ops.alloc_kv(rows * row, layer_ring.is_some())?);
            v.push(ops.alloc_kv(rows * row, layer_ring.is_some())?);
            rings.push(layer_ring);
        }
        Ok(KvCache {
            k,
            v,
            ctx,
            capacity: ctx,
            rings,
            written: AtomicUsize::new(0),
        })
    }

    /// Layer `il`'s ring, `(window, rows)`, where it is windowed, rings are on, and
    /// `window + batch` rows are fewer than `ctx`.
    fn ring(c: &Config, il: usize, ctx: usize, batch: usize, ring: bool) -> Option<(usize, usize)> {
        match c.window(il) {
            Some(w) if ring && w + batch < ctx => Some((w, w + batch)),
            _ => None,
        }
    }

    /// Elements of K and V the caches [`KvCache::new`] makes would hold, all layers.
    pub fn elements_for(c: &Config, ctx: usize, batch: usize, ring: bool) -> usize {
        (0..c.n_layer)
            .map(|il| Self::ring(c, il, ctx, batch, ring).map_or(ctx, |(_, rows)| rows))
            .sum::<usize>()
            * 2
            * c.kv_dim()
    }

    /// Positions the buffers can hold (at least `ctx`; more for a recycled cache).
    pub fn capacity(&self) -> usize {
        self.capacity
    }

    /// Elements of K and V the buffers hold, all layers (a ring counts its rows only).
    pub fn elements(&self) -> usize {
        self.k.iter().chain(&self.v).map(|b| b.len).sum()
    }

    /// Whether any layer keeps a ring shorter than the context.
    pub fn has_ring(&self) -> bool {
        self.rings.iter().any(Option::is_some)
    }

    /// How many leading positions of the `keep` this sequence holds it can continue from:
    /// `keep` when every ring still holds the window before position `keep` (no position
    /// written since wrapped over it), else 0 (start again).
    pub fn reusable(&self, keep: usize) -> usize {
        let written = self.written.load(Ordering::Relaxed);
        let intact = self
            .rings
            .iter()
            .flatten()
            .all(|&(w, rows)| (keep + 1).saturating_sub(w) + rows >= written);
        if intact {
            keep
        } else {
            0
        }
    }

    /// Admits a forward pass writing positions `pos0..pos0 + n`: within the context, and not
    /// further back than [`KvCache::reusable`] allows.
    pub(super) fn admit(&self, pos0: usize, n: usize) -> Result<(), ModelError> {
        if pos0 + n > self.ctx {
            return Err(ModelError::ContextFull {
                needed: pos0 + n,
                ctx: self.ctx,
            });
        }
        if pos0 == 0 {
            self.written.store(n, Ordering::Relaxed);
            return Ok(());
        }
        if self.reusable(pos0) != pos0 {
            return Err(ModelError::KvOverwritten {
                pos0,
                written: self.written.load(Ordering::Relaxed),
            });
        }
        self.written.fetch_max(pos0 + n, Ordering::Relaxed);
        Ok(())
    }

    /// Forgets what was written (a recycled cache starts at position 0).
    pub(super) fn reset(&mut self, ctx: usize) {
        self.ctx = ctx;
        *self.written.get_mut() = 0;
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

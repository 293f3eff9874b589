//! [`Ops`]: the dispatch layer models call. Each op checks its shapes, records the bytes it
//! moves and the FLOPs it performs in the [`Ledger`], then forwards to the backend. This is
//! the one place every op of every architecture passes through, so every backend gets the
//! memory-traffic accounting for free.

use super::*;
use crate::telemetry::ledger::{Ledger, OpName, Traffic, GLU_FLOPS_PER_ELEMENT};
use std::sync::Arc;

/// A backend behind the op-level API the models use.
pub struct Ops {
    backend: Box<dyn Backend>,
    ledger: Ledger,
    timing: Option<SyncTiming>,
    /// The layer the model is in ([`Ops::tag_layer`]), for errors.
    layer: Option<usize>,
}

/// `--profile` for backends without GPU timestamps (cuda): the device is synchronized before
/// every op, and the wall time from one op's start to the next op's start is that op's. The
/// synchronization itself makes a run slower; the shares are what it is for.
#[derive(Default)]
struct SyncTiming {
    current: Option<(OpName, std::time::Instant)>,
    totals: Vec<(OpName, u64, f64)>,
}

impl SyncTiming {
    fn close(&mut self) {
        if let Some((op, t0)) = self.current.take() {
            let ns = t0.elapsed().as_nanos() as f64;
            match self.totals.iter_mut().find(|t| t.0 == op) {
                Some(t) => {
                    t.1 += 1;
                    t.2 += ns;
                }
                None => self.totals.push((op, 1, ns)),
            }
        }
    }
}

const F32: u64 = 4;

/// Activation traffic: `read` f32 elements in, `write` out, `flops`.
fn act(read: usize, write: usize, flops: usize) -> Traffic {
    Traffic {
        act_read_bytes: read as u64 * F32,
        act_write_bytes: write as u64 * F32,
        flops: flops as u64,
        ..Default::default()
    }
}

fn check(cond: bool, what: impl FnOnce() -> String) -> Result<()> {
    if cond {
        Ok(())
    } else {
        Err(BackendError::Invalid(what()))
    }
}

impl Ops {
    pub fn new(backend: Box<dyn Backend>) -> Self {
        Ops {
            backend,
            ledger: Ledger::default(),
            timing: None,
            layer: None,
        }
    }

    /// Times every op by synchronizing the device around it (see [`SyncTiming`]); for
    /// `--profile` on backends whose [`Backend::take_profile`] has nothing.
    pub fn time_ops_by_sync(&mut self, on: bool) {
        self.timing = on.then(SyncTiming::default);
    }

    /// How [`Ops::take_profile`] measures: for the profile table's header.
    pub fn profile_method(&self) -> &'static str {
        match self.timing {
            Some(_) => "wall time per op, device synchronized around each",
            None => "kernel timestamps",
        }
    }

    /// Per-kernel (or, when timed by sync, per-op) times since the last call.
    pub fn take_profile(&mut self) -> Option<Vec<KernelTime>> {
        let Some(timing) = &mut self.timing else {
            return self.backend.take_profile();
        };
        let _ = self.backend.sync();
        timing.close();
        let mut totals = std::mem::take(&mut timing.totals);
        totals.sort_by(|a, b| b.2.total_cmp(&a.2));
        Some(
            totals
                .into_iter()
                .map(|(op, calls, ns)| KernelTime {
                    name: format!("{} (synced)", op.name()),
                    op,
                    calls,
                    ns,
                })
                .collect(),
        )
    }

    /// Bytes and FLOPs of every op dispatched so far.
    pub fn ledger(&self) -> &Ledger {
        &self.ledger
    }

    /// The ops that follow are sequence `seq`'s own (its index in a batch), or shared by the
    /// whole batch (`None`): see [`Ledger::set_tag`].
    pub fn tag_sequence(&mut self, seq: Option<usize>) {
        self.ledger.set_tag(seq);
    }

    /// The layer the following ops belong to (`None`: outside the layers), named when an
    /// input turns out not to be finite.
    pub fn tag_layer(&mut self, layer: Option<usize>) {
        self.layer = layer;
    }

    /// Every matrix product's input is checked before use: quantizing activations to 8 bits
    /// (the CPU kernels) would turn a NaN into an ordinary number and hide a corrupted weight
    /// block behind plausible text.
    fn guard_input(&mut self, x: Buf, n: usize, cols: usize) -> Result<()> {
        let layer = self.layer;
        self.check_finite(x, n, cols, || match layer {
            Some(l) => format!("the input of a matrix product in layer {l}"),
            None => "the input of the output projection".into(),
        })
    }

    /// Each sequence's own traffic since the last call (see [`Ledger::take_tagged`]).
    pub fn take_sequence_traffic(&mut self) -> Vec<Traffic> {
        self.ledger.take_tagged()
    }

    fn record(&mut self, op: OpName, t: Traffic) {
        self.ledger.record(op, t);
        if let Some(timing) = &mut self.timing {
            let _ = self.backend.sync();
            timing.close();
            timing.current = Some((op, std::time::Instant::now()));
        }
    }

    pub fn backend(&self) -> &dyn Backend {
        self.backend.as_ref()
    }

    pub fn backend_mut(&mut self) -> &mut dyn Backend {
        self.backend.as_mut()
    }

    pub fn executor(&self) -> Arc<dyn Executor> {
        self.backend.executor()
    }

    pub fn name(&self) -> String {
        self.backend.name()
    }

    pub fn alloc(&mut self, len: usize) -> Result<Buf> {
        self.backend.alloc(len)
    }

    /// A zeroed KV-cache buffer of `len` elements; `ring`: positions wrap around its rows
    /// (only where the backend [`Backend::kv_ring`]s).
    pub fn alloc_kv(&mut self, len: usize, ring: bool) -> Result<KvBuf> {
        check(!ring || self.backend.kv_ring(), || {
            format!("{}: no ring KV caches", self.backend.name())
        })?;
        let mut b = self.backend.alloc_kv(len)?;
        b.ring = ring;
        Ok(b)
    }

    /// Whether the backend can hold sliding-window caches as rings ([`Backend::kv_ring`]).
    pub fn kv_ring(&self) -> bool {
        self.backend.kv_ring()
    }

    /// Hands the backend a RoPE table built on the host (see [`Backend::rope_table`]).
    pub fn rope_table(
        &mut self,
        layout: RopeLayout,
        head_dim: usize,
        n_rot: usize,
        table: Vec<f32>,
    ) -> Result<Rope> {
        check(head_dim.is_multiple_of(2) && head_dim > 0, || {
            format!("rope: odd head_dim {head_dim}")
        })?;
        check(
            n_rot.is_multiple_of(2) && n_rot > 0 && n_rot <= head_dim,
            || format!("rope: {n_rot} rotated dimensions of a {head_dim}-dimension head"),
        )?;
        check(table.len().is_multiple_of(head_dim), || {
            format!(
                "rope: a table of {} values is not whole rows of {head_dim}",
                table.len()
            )
        })?;
        self.backend.rope_table(layout, head_dim, n_rot, table)
    }

    pub fn embed(&mut self, table: &Weight, ids: &[u32], out: Buf) -> Result<()> {
        check(out.len >= ids.len() * table.cols, || {
            "embed: output too small".into()
        })?;
        if let Some(&bad) = ids.iter().find(|&&i| i as usize >= table.rows) {
            return Err(BackendError::Invalid(format!(
                "token id {bad} is outside the vocabulary of {} tokens",
                table.rows
            )));
        }
        let mut t = act(0, ids.len() * table.cols, 0);
        t.weight_bytes = ids.len() as u64 * table.row_bytes();
        self.record(OpName::Embed, t);
        self.backend.embed(table, ids, out)
    }

    pub fn matmul(&mut self, w: &Weight, x: Buf, out: Buf, n: usize) -> Result<()> {
        check(x.len >= n * w.cols && out.len >= n * w.rows, || {
            format!(
                "matmul: {n} x {} by [{} x {}] into {} elements",
                x.len, w.rows, w.cols, out.len
            )
        })?;
        check(x != out, || "matmul: input and output alias".into())?;
        self.guard_input(x, n, w.cols)?;
        self.record_matmul(w, n);
        self.backend.matmul(w, x, out, n)
    }

    /// What one `n`-token product with `w` moves and computes.
    fn record_matmul(&mut self, w: &Weight, n: usize) {
        let mut t = act(n * w.cols, n * w.rows, 2 * n * w.rows * w.cols);
        t.weight_bytes = match n {
            1 => self.backend.matvec_weight_bytes(w),
            _ => w.n_bytes(),
        };
        self.record(OpName::MatMul, t);
    }

    /// An RMS norm before a fused projection: its checks and traffic (as [`Ops::rms_norm`]).
    fn record_pre_norm(
        &mut self,
        norm: Option<PreNorm>,
        x: Buf,
        cols: usize,
        n: usize,
    ) -> Result<()> {
        let Some(p) = norm else {
            return Ok(());
        };
        check(p.weight.cols == cols, || {
            format!("pre-norm: {} weights for rows of {cols}", p.weight.cols)
        })?;
        check(
            x.len >= n * cols && p.out.len >= n * cols && p.out != x,
            || "pre-norm: buffers too small or aliased".into(),
        )?;
        let mut t = act(n * cols, n * cols, 4 * n * cols);
        t.weight_bytes = p.weight.n_bytes();
        self.record(OpName::RmsNorm, t);
        Ok(())
    }

    /// The query, key and value projections, of `x` RMS-normed first with `norm` (see
    /// [`Backend::matmul_qkv`]).
    pub fn matmul_qkv(
        &mut self,
        norm: Option<PreNorm>,
        w: [&Weight; 3],
        x: Buf,
        out: [Buf; 3],
        n: usize,
    ) -> Result<()> {
        self.record_pre_norm(norm, x, w[0].cols, n)?;
        self.guard_input(x, n, w[0].cols)?;
        check(norm.is_none_or(|p| !out.contains(&p.out)), || {
            "matmul_qkv: the norm's output aliases an output".into()
        })?;
        for (w, o) in w.iter().zip(&out) {
            check(x.len >= n * w.cols && o.len >= n * w.rows, || {
                format!("matmul_qkv: {n} x {} by [{} x {}]", x.len, w.rows, w.cols)
            })?;
            check(x != *o, || "matmul_qkv: input and output alias".into())?;
        }
        check(
            out[0] != out[1] && out[1] != out[2] && out[0] != out[2],
            || "matmul_qkv: outputs alias".into(),
        )?;
        for w in w {
            self.record_matmul(w, n);
        }
        self.backend.matmul_qkv(norm, w, x, out, n)
    }

    /// `acc += w · x` (see [`Backend::matmul_add`]; `tmp` is `n × w.rows` scratch).
    pub fn matmul_add(&mut self, w: &Weight, x: Buf, tmp: Buf, acc: Buf, n: usize) -> Result<()> {
        let rows = n * w.rows;
        check(
            x.len >= n * w.cols && tmp.len >= rows && acc.len >= rows,
            || format!("matmul_add: {n} x {} by [{} x {}]", x.len, w.rows, w.cols),
        )?;
        check(x != acc && x != tmp && tmp != acc, || {
            "matmul_add: buffers alias".into()
        })?;
        self.guard_input(x, n, w.cols)?;
        // the ledger is the op sequence's, fused or not: the product, then the add
        self.record_matmul(w, n);
        self.record(OpName::Add, act(2 * rows, rows, rows));
        self.backend.matmul_add(w, x, tmp, acc, n)
    }

    /// `out = act(gate · x) * (up · x)` (see [`Backend::matmul_glu`]; `tmp` is scratch of
    /// `out`'s size).
    #[allow(clippy::too_many_arguments)]
    pub fn matmul_glu(
        &mut self,
        kind: Glu,
        norm: Option<PreNorm>,
        gate: &Weight,
        up: &Weight,
        x: Buf,
        tmp: Buf,
        out: Buf,
        n: usize,
    ) -> Result<()> {
        self.record_pre_norm(norm, x, gate.cols, n)?;
        self.guard_input(x, n, gate.cols)?;
        check(norm.is_none_or(|p| p.out != out && p.out != tmp), || {
            "matmul_glu: the norm's output aliases an output".into()
        })?;
        let rows = n * gate.rows;
        check((gate.rows, gate.cols) == (up.rows, up.cols), || {
            "matmul_glu: gate and up differ in shape".into()
        })?;
        check(
            x.len >= n * gate.cols && tmp.len >= rows && out.len >= rows,
            || {
                format!(
                    "matmul_glu: {n} x {} by 2 x [{} x {}]",
                    x.len, gate.rows, gate.cols
                )
            },
        )?;
        check(x != out && x != tmp && tmp != out, || {
            "matmul_glu: buffers alias".into()
        })?;
        // the ledger is the op sequence's: two products, then the GLU
        self.record_matmul(gate, n);
        self.record_matmul(up, n);
        self.record(
            OpName::Glu,
            act(2 * rows, rows, rows * GLU_FLOPS_PER_ELEMENT as usize),
        );
        self.backend
            .matmul_glu(kind, norm, gate, up, x, tmp, out, n)
    }

    /// RoPE on `q` and `k`, then `k` and `v` into the caches (see [`Backend::rope_store_kv`]).
    pub fn rope_store_kv(&mut self, q: Buf, k: Buf, v: Buf, rope: &Rope, p: &RopeKv) -> Result<()> {
        let (hd, n) = (rope.head_dim, p.n);
        let (q_len, kv_len) = (n * p.n_head * hd, n * p.n_head_kv * hd);
        let (q_end, kv_end) = (
            q_len + p.row0 * p.n_head * hd,
            kv_len + p.row0 * p.n_head_kv * hd,
        );
        check(q.len >= q_end && k.len >= kv_end && v.len >= kv_end, || {
            "rope_store_kv: q/k/v too small".into()
        })?;
        check(q != k && k != v && q != v, || {
            "rope_store_kv: q/k/v alias".into()
        })?;
        check(p.pos0 + n <= rope.max_pos, || {
            format!(
                "rope: position {} beyond the table's {}",
                p.pos0 + n,
                rope.max_pos
            )
        })?;
        let row = p.n_head_kv * hd;
        check(
            fits_cache(p.k_cache, row, p.pos0, n) && fits_cache(p.v_cache, row, p.pos0, n),
            || {
                format!(
                    "store_kv: rows {}..{} do not fit the cache",
                    p.pos0,
                    p.pos0 + n
                )
            },
        )?;
        // the ledger is the op sequence's: two ropes, two cache writes
        for len in [q_len, kv_len] {
            self.record(OpName::Rope, act(len, len, 3 * len));
        }
        for _ in 0..2 {
            let mut t = act(kv_len, 0, 0);
            t.kv_write_bytes = (kv_len * self.backend.kv_elem_bytes()) as u64;
            self.record(OpName::StoreKv, t);
        }
        self.backend.rope_store_kv(q, k, v, rope, p)
    }

    pub fn add_bias(&mut self, x: Buf, bias: &Weight, n: usize) -> Result<()> {
        check(x.len >= n * bias.cols, || {
            "add_bias: buffer too small".into()
        })?;
        let mut t = act(n * bias.cols, n * bias.cols, n * bias.cols);
        t.weight_bytes = bias.n_bytes();
        self.record(OpName::AddBias, t);
        self.backend.add_bias(x, bias, n)
    }

    /// Fails with [`BackendError::NonFinite`] when the first `rows` rows of `cols` elements of
    /// `x` hold a NaN or an infinity, naming `place` (e.g. "the hidden state after layer 3").
    /// A scan of host memory on the CPU; device backends do not look (see
    /// [`Backend::first_non_finite`]). Not in the ledger: it is a guard, not the model's math.
    pub fn check_finite(
        &mut self,
        x: Buf,
        rows: usize,
        cols: usize,
        place: impl FnOnce() -> String,
    ) -> Result<()> {
        check(x.len >= rows * cols, || {
            "check_finite: buffer too small".into()
        })?;
        match self.backend.first_non_finite(x, rows * cols)? {
            None => Ok(()),
            Some(i) => Err(BackendError::NonFinite {
                place: place(),
                row: i / cols.max(1),
            }),
        }
    }

    pub fn rms_norm(&mut self, x: Buf, w: &Weight, out: Buf, rows: usize, eps: f32) -> Result<()> {
        check(x.len >= rows * w.cols && out.len >= rows * w.cols, || {
            "rms_norm: buffer too small".into()
        })?;
        // square, sum, scale, multiply by the weight
        let mut t = act(rows * w.cols, rows * w.cols, 4 * rows * w.cols);
        t.weight_bytes = w.n_bytes();
        self.record(OpName::RmsNorm, t);
        self.backend.rms_norm(x, w, out, rows, eps)
    }

    pub fn rope(
        &mut self,
        x: Buf,
        rope: &Rope,
        row0: usize,
        n: usize,
        heads: usize,
        pos0: usize,
    ) -> Result<()> {
        check(x.len >= (row0 + n) * heads * rope.head_dim, || {
            "rope: buffer too small".into()
        })?;
        check(pos0 + n <= rope.max_pos, || {
            format!(
                "rope: position {} beyond the table's {}",
                pos0 + n,
                rope.max_pos
            )
        })?;
        let len = n * heads * rope.head_dim;
        // per pair: 4 multiplies and 2 adds
        self.record(OpName::Rope, act(len, len, 3 * len));
        self.backend.rope(x, rope, row0, n, heads, pos0)
    }

    pub fn store_kv(
        &mut self,
        src: Buf,
        row0: usize,
        dst: KvBuf,
        n: usize,
        row: usize,
        pos0: usize,
    ) -> Result<()> {
        check(
            src.len >= (row0 + n) * row && fits_cache(dst, row, pos0, n),
            || format!("store_kv: rows {pos0}..{} do not fit the cache", pos0 + n),
        )?;
        let mut t = act(n * row, 0, 0);
        t.kv_write_bytes = (n * row * self.backend.kv_elem_bytes()) as u64;
        self.record(OpName::StoreKv, t);
        self.backend.store_kv(src, row0, dst, n, row, pos0)
    }

    pub fn attention(
        &mut self,
        q: Buf,
        k: KvBuf,
        v: KvBuf,
        out: Buf,
        p: &AttnParams,
    ) -> Result<()> {
        let q_row = p.n_head * p.head_dim;
        let kv_row = p.n_head_kv * p.head_dim;
        check(
            p.n_head_kv > 0 && p.n_head.is_multiple_of(p.n_head_kv),
            || {
                format!(
                    "attention: {} heads over {} KV heads",
                    p.n_head, p.n_head_kv
                )
            },
        )?;
        check(
            q.len >= (p.row0 + p.n_tokens) * q_row && out.len >= (p.row0 + p.n_tokens) * q_row,
            || "attention: q/out too small".into(),
        )?;
        // the positions the batch's queries see, all held at once: the whole prefix, or in
        // a ring the first query's window through the last token
        let span = p.pos0 + p.n_tokens;
        let held = |b: KvBuf| match (b.ring, p.window) {
            (true, Some(w)) => b.rows(kv_row) >= span.min(w + p.n_tokens - 1),
            _ => b.rows(kv_row) >= span,
        };
        check(held(k) && held(v), || "attention: cache too small".into())?;
        self.record(
            OpName::Attention,
            attention_traffic(p, self.backend.kv_elem_bytes()),
        );
        self.backend.attention(q, k, v, out, p)
    }

    pub fn glu(&mut self, kind: Glu, gate: Buf, up: Buf, len: usize) -> Result<()> {
        check(gate.len >= len && up.len >= len, || "glu: too small".into())?;
        check(gate != up, || "glu: gate and up alias".into())?;
        self.record(
            OpName::Glu,
            act(2 * len, len, len * GLU_FLOPS_PER_ELEMENT as usize),
        );
        self.backend.glu(kind, gate, up, len)
    }

    pub fn add(&mut self, a: Buf, b: Buf, out: Buf, len: usize) -> Result<()> {
        check(a.len >= len && b.len >= len && out.len >= len, || {
            "add: too small".into()
        })?;
        self.record(OpName::Add, act(2 * len, len, len));
        self.backend.add(a, b, out, len)
    }

    pub fn scale(&mut self, x: Buf, s: f32, len: usize) -> Result<()> {
        check(x.len >= len, || "scale: too small".into())?;
        self.record(OpName::Scale, act(len, len, len));
        self.backend.scale(x, s, len)
    }

    /// `x[i] = cap · tanh(x[i] / cap)` for `i < len` (Gemma 2's logits).
    pub fn softcap(&mut self, x: Buf, cap: f32, len: usize) -> Result<()> {
        check(x.len >= len, || "softcap: too small".into())?;
        check(cap > 0.0 && cap.is_finite(), || {
            format!("softcap: cap {cap}")
        })?;
        self.record(OpName::Softcap, act(len, len, 3 * len));
        self.backend.softcap(x, cap, len)
    }

    pub fn copy(
        &mut self,
        src: Buf,
        src_off: usize,
        dst: Buf,
        dst_off: usize,
        len: usize,
    ) -> Result<()> {
        check(src_off + len <= src.len && dst_off + len <= dst.len, || {
            "copy: out of range".into()
        })?;
        self.record(OpName::Copy, act(len, len, 0));
        self.backend.copy(src, src_off, dst, dst_off, len)
    }

    pub fn write(&mut self, dst: Buf, off: usize, data: &[f32]) -> Result<()> {
        check(off + data.len() <= dst.len, || "write: out of range".into())?;
        self.record(OpName::Write, act(0, data.len(), 0));
        self.backend.write(dst, off, data)
    }

    pub fn read(&mut self, src: Buf, off: usize, out: &mut [f32]) -> Result<()> {
        check(off + out.len() <= src.len, || "read: out of range".into())?;
        self.record(OpName::Read, act(out.len(), 0, 0));
        self.backend.read(src, off, out)
    }

    pub fn argmax(&mut self, src: Buf, off: usize, len: usize) -> Result<u32> {
        check(off + len <= src.len && len > 0, || {
            "argmax: out of range".into()
        })?;
        self.record(OpName::Argmax, act(len, 0, len));
        self.backend.argmax(src, off, len)
    }

    /// One argmax per row (see [`Backend::argmax_rows`]).
    pub fn argmax_rows(&mut self, src: Buf, offs: &[usize], len: usize) -> Result<Vec<u32>> {
        check(len > 0 && offs.iter().all(|&o| o + len <= src.len), || {
            "argmax: out of range".into()
        })?;
        for _ in offs {
            self.record(OpName::Argmax, act(len, 0, len));
        }
        self.backend.argmax_rows(src, offs, len)
    }

    pub fn top_k(&mut self, src: Buf, off: usize, len: usize, k: usize) -> Result<Vec<(u32, f32)>> {
        check(off + len <= src.len && len > 0 && k > 0, || {
            "top_k: out of range".into()
        })?;
        self.record(OpName::Argmax, act(len, 0, len));
        self.backend.top_k(src, off, len, k)
    }

    pub fn sync(&mut self) -> Result<()> {
        self.backend.sync()
    }
}

/// Traffic of one attention call: queries in, outputs out, and the K and V rows of every
/// distinct position any query sees (the union of the causal/windowed key ranges); FLOPs of
/// q·k, the softmax (≈5 per score) and the weighted sum of values.
/// Whether `n` rows written at positions `pos0..` fit `cache`: below its rows, or for a ring
/// no more rows than it has (each position lands at [`super::kv_row`]).
fn fits_cache(cache: KvBuf, row: usize, pos0: usize, n: usize) -> bool {
    let rows = cache.rows(row);
    if cache.ring {
        n <= rows
    } else {
        pos0 + n <= rows
    }
}

pub fn attention_traffic(p: &AttnParams, kv_elem_bytes: usize) -> Traffic {
    let q_len = p.n_tokens * p.n_head * p.head_dim;
    let keys = |t: usize| {
        let pos = p.pos0 + t;
        let lo = p.window.map_or(0, |w| (pos + 1).saturating_sub(w));
        (lo, pos + 1)
    };
    let distinct = p.pos0 + p.n_tokens - keys(0).0;
    let scores: usize = (0..p.n_tokens)
        .map(|t| keys(t).1 - keys(t).0)
        .sum::<usize>()
        * p.n_head;
    let mut t = act(q_len, q_len, scores * (4 * p.head_dim + 5));
    t.kv_read_bytes = (2 * distinct * p.n_head_kv * p.head_dim * kv_elem_bytes) as u64;
    t
}

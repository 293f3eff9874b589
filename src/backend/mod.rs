//! The one seam between models and compute: an op-level [`Backend`] trait.
//!
//! Models (`crate::model`) are written once against [`Ops`], which forwards every op to a
//! backend — CPU ([`cpu`]), wgpu, CUDA, and the f64 [`reference`] that the others are measured
//! against — and is the single
//! place where ops are dispatched, so cross-cutting accounting (the memory-traffic ledger)
//! lives there and every backend and architecture gets it for free.
//!
//! Buffers and weights are opaque handles owned by the backend; activations are row-major
//! f32 `[rows, cols]`. Capability is a query ([`Backend::supports`]), never a panic.

pub mod candle;
pub mod cpu;
mod ops;
pub mod reference;
mod select;
pub mod wgpu;

pub use select::{BackendKind, BackendSpec, GpuOptions};

pub use ops::Ops;

use crate::gguf::{GgmlType, GgufFile, TensorInfo};
use std::sync::Arc;

/// A backend buffer of f32 activations.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Buf {
    pub(crate) id: u32,
    /// Number of f32 elements.
    pub len: usize,
}

/// A backend buffer holding one layer's K or V cache (f16 or f32, the backend's choice):
/// rows of `n_head_kv * head_dim` elements, position `p` at row `p` — or, in a ring
/// ([`Backend::kv_ring`]), at row `p % rows` ([`kv_row`]), so a sliding-window layer keeps
/// only its window plus one batch of positions however long the context.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct KvBuf {
    pub(crate) id: u32,
    /// Number of elements.
    pub len: usize,
    /// Positions wrap around the buffer's rows (set by [`Ops::alloc_kv`]).
    pub ring: bool,
}

impl KvBuf {
    /// Rows of `row` elements the buffer holds.
    pub fn rows(&self, row: usize) -> usize {
        self.len / row.max(1)
    }
}

/// The row of position `pos` in a cache of `rows` rows: `pos` itself in a linear cache (where
/// every position is below `rows`), wrapped in a ring.
pub fn kv_row(pos: usize, rows: usize) -> usize {
    pos % rows.max(1)
}

/// An uploaded weight tensor: `rows` rows of `cols` elements in GGUF block layout.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Weight {
    pub(crate) id: u32,
    pub dtype: GgmlType,
    pub rows: usize,
    pub cols: usize,
}

impl Weight {
    /// Bytes of the whole tensor as stored.
    pub fn n_bytes(&self) -> u64 {
        self.dtype.row_bytes(self.cols as u64).unwrap_or(0) * self.rows as u64
    }
    /// Bytes of one row as stored.
    pub fn row_bytes(&self) -> u64 {
        self.dtype.row_bytes(self.cols as u64).unwrap_or(0)
    }
}

/// Which elements RoPE rotates together.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum RopeLayout {
    /// Pairs `(i, i + n_rot/2)` (GPT-NeoX; Gemma, Qwen2, Phi-3).
    Neox,
    /// Pairs `(2i, 2i + 1)` (Llama).
    Norm,
}

/// A rotary-embedding table for one (head_dim, base, scale), shared by all layers that use it.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Rope {
    pub(crate) id: u32,
    pub layout: RopeLayout,
    pub head_dim: usize,
    /// Dimensions of a head that RoPE turns, from the first (`head_dim`, or fewer for partial
    /// rotary: Phi-4-mini turns 96 of 128); the rest pass through.
    pub n_rot: usize,
    pub max_pos: usize,
}

impl Rope {
    /// The handle a backend returns for the table it stored as number `id` (`table_len` values,
    /// `head_dim` per position).
    pub(crate) fn new(
        id: usize,
        layout: RopeLayout,
        head_dim: usize,
        n_rot: usize,
        table_len: usize,
    ) -> Rope {
        Rope {
            id: id as u32,
            layout,
            head_dim,
            n_rot,
            max_pos: table_len / head_dim.max(1),
        }
    }

    /// The two elements of a head that pair `i` (of `head_dim / 2`; table entry `i`) holds.
    /// Pairs below `n_rot / 2` are the rotated ones, `(i, i + n_rot/2)` (NEOX) or `(2i, 2i+1)`
    /// (NORM); the pairs past them are `(2i, 2i + 1)`, the dimensions RoPE leaves alone, with
    /// `(cos, sin) = (1, 0)` in the table, so every backend can run every pair the same way.
    #[inline]
    pub fn pair(layout: RopeLayout, n_rot: usize, i: usize) -> (usize, usize) {
        match layout {
            RopeLayout::Neox if 2 * i < n_rot => (i, i + n_rot / 2),
            _ => (2 * i, 2 * i + 1),
        }
    }
}

/// Gated activation of a feed-forward block: `out = act(gate) * up`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Glu {
    /// GELU, tanh approximation (Gemma).
    Gelu,
    /// SiLU (Llama, Qwen).
    Silu,
}

/// The RMS norm a fused projection applies to its input first ([`Backend::matmul_qkv`],
/// [`Backend::matmul_glu`]): `x / sqrt(mean(x²) + eps) * weight` per token. Backends that do
/// not fuse it write the normed rows to `out` (`[n, weight.cols]` scratch); fused ones leave
/// `out` as it was.
#[derive(Clone, Copy, Debug)]
pub struct PreNorm<'a> {
    pub weight: &'a Weight,
    pub eps: f32,
    pub out: Buf,
}

/// What [`Backend::rope_store_kv`] rotates and stores: `n` tokens of `n_head` query heads and
/// `n_head_kv` key/value heads — rows `row0..row0 + n` of the q, k, v buffers, one sequence's
/// tokens in a batch — at positions `pos0..`, into that sequence's caches.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RopeKv {
    pub row0: usize,
    pub n: usize,
    pub n_head: usize,
    pub n_head_kv: usize,
    pub pos0: usize,
    pub k_cache: KvBuf,
    pub v_cache: KvBuf,
}

/// Parameters of causal attention over one sequence's KV cache for `n_tokens` queries —
/// rows `row0..row0 + n_tokens` of the q and out buffers — starting at position `pos0` (query
/// `i` is at position `pos0 + i` and sees positions `<= pos0 + i`).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct AttnParams {
    /// First row of `q` and `out` (the sequence's first token in the batch).
    pub row0: usize,
    pub n_tokens: usize,
    pub pos0: usize,
    pub n_head: usize,
    pub n_head_kv: usize,
    pub head_dim: usize,
    /// Sliding window: a query at position p sees keys at positions > p - window.
    pub window: Option<usize>,
    /// Multiplier of q·k (applied before softmax).
    pub scale: f32,
    /// Scores become `cap · tanh(score / cap)` after the scale (Gemma 2); `None`: as they are.
    pub softcap: Option<f32>,
}

/// GPU time of one kernel over a run (`--profile`), with the ledger's op kind it belongs to.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct KernelTime {
    pub name: String,
    pub op: crate::telemetry::ledger::OpName,
    pub calls: u64,
    pub ns: f64,
}

/// Ops a backend may or may not support, for [`Backend::supports`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum OpKind {
    MatMul,
    Embed,
}

/// Errors from a backend.
#[derive(Debug, thiserror::Error)]
pub enum BackendError {
    #[error(
        "{backend}: tensor `{tensor}` has type {dtype}, which this backend cannot compute with"
    )]
    UnsupportedType {
        backend: String,
        tensor: String,
        dtype: GgmlType,
    },
    #[error("{backend}: out of memory allocating {bytes} bytes")]
    OutOfMemory { backend: String, bytes: u64 },
    /// The memory check before loading: what is needed, what is free, what to change.
    #[error("{0}")]
    InsufficientMemory(String),
    #[error("{0}")]
    Device(String),
    #[error("backend `{0}` is not available in this build: {1}")]
    NotCompiled(String, String),
    #[error("invalid op: {0}")]
    Invalid(String),
    /// A NaN or infinity where numbers must be finite (see [`Backend::first_non_finite`]).
    #[error("non-finite value (NaN or infinity) in {place}, token row {row} of the pass")]
    NonFinite { place: String, row: usize },
}

impl BackendError {
    /// `backend` cannot compute with the type of tensor `info`.
    pub fn unsupported_type(backend: impl Into<String>, info: &TensorInfo) -> Self {
        BackendError::UnsupportedType {
            backend: backend.into(),
            tensor: info.name.clone(),
            dtype: info.dtype,
        }
    }
}

pub type Result<T> = std::result::Result<T, BackendError>;

/// Bytes of weights a host backend reads in place from the file's memory map, and bytes it
/// copied to the heap (see [`Backend::weight_residence`]).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct WeightResidence {
    pub in_map: u64,
    pub copied: u64,
}

/// Where a backend wants a whole forward pass to run. The CPU backend runs it on a worker of
/// its thread pool, so the calling thread takes part in every parallel op instead of waking
/// the pool and sleeping ~130 times per token; GPU backends run it inline.
pub trait Executor: Send + Sync {
    fn install(&self, f: &mut (dyn FnMut() + Send));
}

/// Runs on the calling thread.
pub struct Inline;

impl Executor for Inline {
    fn install(&self, f: &mut (dyn FnMut() + Send)) {
        f()
    }
}

/// A compute backend: owns device memory and executes ops in the order they are called.
/// Implementations may defer execution (record into a command buffer) until a result is read
/// with [`Backend::read`] / [`Backend::argmax`] or [`Backend::sync`] is called.
pub trait Backend: Send {
    /// Human-readable name, e.g. `cpu (avx2, 2 threads)`.
    fn name(&self) -> String;

    /// Where forward passes should run (see [`Executor`]).
    fn executor(&self) -> Arc<dyn Executor> {
        Arc::new(Inline)
    }

    /// Whether `op` can run with weights of type `dtype`.
    fn supports(&self, op: OpKind, dtype: GgmlType) -> bool;

    /// Makes a tensor of `file` available to ops. The CPU backend borrows it from the mmap;
    /// GPU backends upload its raw blocks.
    fn upload(&mut self, file: &Arc<GgufFile>, info: &TensorInfo) -> Result<Weight>;

    /// [`Backend::upload`] for a table that only embedding lookups read (the token table of a
    /// model with an output matrix of its own): nothing is made for matrix products (the CPU's
    /// interleaved copy under `set_repack` is left out). The same as `upload` elsewhere.
    fn upload_lookup(&mut self, file: &Arc<GgufFile>, info: &TensorInfo) -> Result<Weight> {
        self.upload(file, info)
    }

    /// A zeroed activation buffer of `len` f32.
    fn alloc(&mut self, len: usize) -> Result<Buf>;

    /// A zeroed KV-cache buffer of `len` elements (`ring: false`; [`Ops::alloc_kv`] marks rings).
    fn alloc_kv(&mut self, len: usize) -> Result<KvBuf>;

    /// Whether `store_kv` and `attention` place position `p` at row `p % rows` ([`kv_row`]),
    /// so caches may be rings shorter than the context. Backends that index rows by position
    /// say no and get whole-context caches.
    fn kv_ring(&self) -> bool {
        false
    }

    /// Bytes of one KV-cache element (2 for f16).
    fn kv_elem_bytes(&self) -> usize;

    /// Takes a RoPE table built on the host (`model::rope`): `(cos, sin)` per pair of a head of
    /// `head_dim` for positions `0..table.len() / head_dim`. Backends store or upload it.
    fn rope_table(
        &mut self,
        layout: RopeLayout,
        head_dim: usize,
        n_rot: usize,
        table: Vec<f32>,
    ) -> Result<Rope>;

    /// `out[i] = table[ids[i]]` (rows dequantized to f32).
    fn embed(&mut self, table: &Weight, ids: &[u32], out: Buf) -> Result<()>;

    /// `out[t, r] = Σ_c x[t, c] · w[r, c]` for `t < n`.
    fn matmul(&mut self, w: &Weight, x: Buf, out: Buf, n: usize) -> Result<()>;

    /// `out[i] = w[i] · x` for the query, key and value projections (`w`, `out` in that
    /// order) of `n` tokens, of `x` RMS-normed first when `norm` is given. Fused on backends
    /// that can; the default is [`rms_norm`](Backend::rms_norm) into `norm.out` and three
    /// [`matmul`](Backend::matmul)s.
    fn matmul_qkv(
        &mut self,
        norm: Option<PreNorm>,
        w: [&Weight; 3],
        x: Buf,
        out: [Buf; 3],
        n: usize,
    ) -> Result<()> {
        let x = self.pre_norm(norm, x, n)?;
        unfused::matmul_qkv(self, w, x, out, n)
    }

    /// `x` RMS-normed into `norm.out` (returned), or `x` itself without a norm: the unfused
    /// start of [`matmul_qkv`](Backend::matmul_qkv) and [`matmul_glu`](Backend::matmul_glu).
    fn pre_norm(&mut self, norm: Option<PreNorm>, x: Buf, n: usize) -> Result<Buf> {
        match norm {
            Some(p) => {
                self.rms_norm(x, p.weight, p.out, n, p.eps)?;
                Ok(p.out)
            }
            None => Ok(x),
        }
    }

    /// `acc[t, r] += Σ_c x[t, c] · w[r, c]` for `t < n` (a projection into the residual
    /// stream). Fused on backends that can; the default is [`matmul`](Backend::matmul) into
    /// `tmp` (`n × w.rows` scratch) and [`add`](Backend::add).
    fn matmul_add(&mut self, w: &Weight, x: Buf, tmp: Buf, acc: Buf, n: usize) -> Result<()> {
        unfused::matmul_add(self, w, x, tmp, acc, n)
    }

    /// `out = act(gate · x) * (up · x)` for `n` tokens (a gated feed-forward's first half),
    /// of `x` RMS-normed first when `norm` is given. Fused on backends that can; the default
    /// is [`rms_norm`](Backend::rms_norm) into `norm.out`, two [`matmul`](Backend::matmul)s
    /// (into `out` and the `tmp` scratch, both `n × gate.rows`) and [`glu`](Backend::glu).
    #[allow(clippy::too_many_arguments)]
    fn matmul_glu(
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
        let x = self.pre_norm(norm, x, n)?;
        unfused::matmul_glu(self, kind, gate, up, x, tmp, out, n)
    }

    /// RoPE on `q` and `k` in place, then `k` and `v` into the caches at rows `pos0..pos0 +
    /// n` (an attention block's step between projections and attention). Fused on backends
    /// that can; the default is two [`rope`](Backend::rope)s and two
    /// [`store_kv`](Backend::store_kv)s.
    fn rope_store_kv(&mut self, q: Buf, k: Buf, v: Buf, rope: &Rope, p: &RopeKv) -> Result<()> {
        unfused::rope_store_kv(self, q, k, v, rope, p)
    }

    /// `x[t, :] += bias` for `t < n` (bias is a 1-row weight).
    fn add_bias(&mut self, x: Buf, bias: &Weight, n: usize) -> Result<()>;

    /// RMS norm of `rows` rows of `w.cols` elements, times `w`; `out` may equal `x`.
    fn rms_norm(&mut self, x: Buf, w: &Weight, out: Buf, rows: usize, eps: f32) -> Result<()>;

    /// Rotates rows `row0..row0 + n` (tokens) × `heads` heads of `rope.head_dim` in place; row
    /// `row0 + t` is at position `pos0 + t`.
    fn rope(
        &mut self,
        x: Buf,
        rope: &Rope,
        row0: usize,
        n: usize,
        heads: usize,
        pos0: usize,
    ) -> Result<()>;

    /// Writes rows `row0..row0 + n` of `row` elements from `src` into the cache at rows
    /// `pos0..pos0 + n`.
    fn store_kv(
        &mut self,
        src: Buf,
        row0: usize,
        dst: KvBuf,
        n: usize,
        row: usize,
        pos0: usize,
    ) -> Result<()>;

    /// Causal (optionally windowed) attention with grouped KV heads; `q` and `out` are
    /// `[n_tokens, n_head * head_dim]`, the caches `[pos, n_head_kv * head_dim]`.
    fn attention(&mut self, q: Buf, k: KvBuf, v: KvBuf, out: Buf, p: &AttnParams) -> Result<()>;

    /// `gate[i] = act(gate[i]) * up[i]` for `i < len` (in place).
    fn glu(&mut self, kind: Glu, gate: Buf, up: Buf, len: usize) -> Result<()>;

    /// `out[i] = a[i] + b[i]` for `i < len`; `out` may equal `a`.
    fn add(&mut self, a: Buf, b: Buf, out: Buf, len: usize) -> Result<()>;

    /// `x[i] *= s` for `i < len`.
    fn scale(&mut self, x: Buf, s: f32, len: usize) -> Result<()>;

    /// `x[i] = cap · tanh(x[i] / cap)` for `i < len` (`cap > 0`).
    fn softcap(&mut self, x: Buf, cap: f32, len: usize) -> Result<()>;

    /// Copies `len` elements from `src[src_off..]` to `dst[dst_off..]`.
    fn copy(
        &mut self,
        src: Buf,
        src_off: usize,
        dst: Buf,
        dst_off: usize,
        len: usize,
    ) -> Result<()>;

    /// Writes host data into `dst[off..]`.
    fn write(&mut self, dst: Buf, off: usize, data: &[f32]) -> Result<()>;

    /// Reads `out.len()` elements from `src[off..]` to the host (waits for pending work).
    fn read(&mut self, src: Buf, off: usize, out: &mut [f32]) -> Result<()>;

    /// Index of the largest of `len` elements at `src[off..]` (first one on ties). Backends
    /// whose logits are not checked on the host (wgpu, candle) answer a row holding a NaN or an
    /// infinity with [`BackendError::NonFinite`]; the CPU checks its logits where the model
    /// makes them ([`Ops::check_finite`]).
    fn argmax(&mut self, src: Buf, off: usize, len: usize) -> Result<u32> {
        let mut v = vec![0f32; len];
        self.read(src, off, &mut v)?;
        Ok(crate::sampling::argmax(&v))
    }

    /// [`argmax`](Backend::argmax) of `len` elements at each of `offs` (one row of logits per
    /// sequence of a batch), one result per row. GPU backends find them all before one read
    /// back.
    fn argmax_rows(&mut self, src: Buf, offs: &[usize], len: usize) -> Result<Vec<u32>> {
        let row = |i: usize| {
            move |e| match e {
                BackendError::NonFinite { place, .. } => BackendError::NonFinite { place, row: i },
                e => e,
            }
        };
        (offs.iter().enumerate())
            .map(|(i, &o)| self.argmax(src, o, len).map_err(row(i)))
            .collect()
    }

    /// The `k` largest of `len` elements at `src[off..]` as (index, value), largest first,
    /// ties to the lower index (what a top-k sampler needs, without reading every logit).
    fn top_k(&mut self, src: Buf, off: usize, len: usize, k: usize) -> Result<Vec<(u32, f32)>> {
        let mut v = vec![0f32; len];
        self.read(src, off, &mut v)?;
        Ok(crate::sampling::top_k(&v, k))
    }

    /// Index of the first NaN or infinity among `x[..len]`, where the backend can tell
    /// without a device round trip (it keeps activations in host memory). Device backends
    /// answer `None`: a readback per layer would cost more than the step.
    fn first_non_finite(&mut self, x: Buf, len: usize) -> Result<Option<usize>> {
        let _ = (x, len);
        Ok(None)
    }

    /// Waits until all submitted work has finished.
    fn sync(&mut self) -> Result<()>;

    /// Per-kernel GPU times collected since the last call, for backends that profile
    /// (`None` when profiling is off or not supported).
    fn take_profile(&mut self) -> Option<Vec<KernelTime>> {
        None
    }

    /// Compute every token with the same kernels whatever the batch (see
    /// `LoadOptions::batch_invariant`). Backends whose kernels are batch-invariant anyway
    /// ignore it.
    fn set_batch_invariant(&mut self, _on: bool) {}

    /// Keep, for the weights uploaded from now on, an interleaved copy where a decode kernel
    /// reads one (the CPU's eight-row Q4_K kernel; see `LoadOptions::repack`): the same
    /// results, a copy of those weights dearer. Backends without such kernels ignore it.
    fn set_repack(&mut self, _on: bool) {}

    /// Bytes of `w` a one-token product reads: the tensor as stored, or what a decode kernel
    /// reads instead (the CPU's interleaved copy, `set_repack`).
    fn matvec_weight_bytes(&self, w: &Weight) -> u64 {
        w.n_bytes()
    }

    /// Bytes `upload` would allocate for `info` beyond the tensor itself (the CPU's interleaved
    /// copy under `set_repack`), so the load's memory check counts them.
    fn upload_extra_bytes(&self, info: &TensorInfo) -> u64 {
        let _ = info;
        0
    }

    /// Checks, before a model is uploaded, that its `weights` and `other` bytes (KV caches,
    /// scratch, logits) fit, so that a model too large for the device fails fast and clearly.
    fn reserve(&mut self, weights: u64, other: u64) -> Result<()> {
        let _ = (weights, other);
        Ok(())
    }

    /// Where the uploaded weights live, for host backends that read them from the file's map:
    /// bytes read in place from the map, and bytes copied to the heap (vectors dequantized to
    /// f32; with `repack`, interleaved copies, whose originals no longer count as read in
    /// place). None for backends that copy weights to a device.
    fn weight_residence(&self) -> Option<WeightResidence> {
        None
    }

    /// The GPU adapter's name, for GPU backends (keys the cached peak bandwidth).
    fn adapter_name(&self) -> Option<String> {
        None
    }

    /// The GPU that does the work, for an energy estimate without a sensor: its name and
    /// whether it is integrated (shares the CPU's memory and power budget). None when the CPU
    /// does it (the CPU backend, and software adapters such as lavapipe).
    fn energy_gpu(&self) -> Option<(String, bool)> {
        None
    }

    /// Measures the device's peak memory read bandwidth in GB/s, for GPU backends.
    fn measure_peak_bandwidth(&mut self) -> Option<Result<f64>> {
        None
    }
}

/// The op sequences behind the fused ops: the [`Backend`] trait's default implementations,
/// and what a backend that fuses runs where its fused kernel does not apply (a batch, another
/// weight type).
pub mod unfused {
    use super::{Backend, Buf, Glu, Result, Rope, RopeKv, Weight};

    /// The three projections, one [`matmul`](Backend::matmul) each.
    pub fn matmul_qkv<B: Backend + ?Sized>(
        b: &mut B,
        w: [&Weight; 3],
        x: Buf,
        out: [Buf; 3],
        n: usize,
    ) -> Result<()> {
        for (w, o) in w.into_iter().zip(out) {
            b.matmul(w, x, o, n)?;
        }
        Ok(())
    }

    /// The product into `tmp`, then added into `acc`.
    pub fn matmul_add<B: Backend + ?Sized>(
        b: &mut B,
        w: &Weight,
        x: Buf,
        tmp: Buf,
        acc: Buf,
        n: usize,
    ) -> Result<()> {
        b.matmul(w, x, tmp, n)?;
        b.add(acc, tmp, acc, n * w.rows)
    }

    /// Gate into `out`, up into `tmp`, then the GLU in place.
    #[allow(clippy::too_many_arguments)]
    pub fn matmul_glu<B: Backend + ?Sized>(
        b: &mut B,
        kind: Glu,
        gate: &Weight,
        up: &Weight,
        x: Buf,
        tmp: Buf,
        out: Buf,
        n: usize,
    ) -> Result<()> {
        b.matmul(gate, x, out, n)?;
        b.matmul(up, x, tmp, n)?;
        b.glu(kind, out, tmp, n * gate.rows)
    }

    /// Two ropes, then two cache writes.
    pub fn rope_store_kv<B: Backend + ?Sized>(
        b: &mut B,
        q: Buf,
        k: Buf,
        v: Buf,
        rope: &Rope,
        p: &RopeKv,
    ) -> Result<()> {
        b.rope(q, rope, p.row0, p.n, p.n_head, p.pos0)?;
        b.rope(k, rope, p.row0, p.n, p.n_head_kv, p.pos0)?;
        let row = p.n_head_kv * rope.head_dim;
        b.store_kv(k, p.row0, p.k_cache, p.n, row, p.pos0)?;
        b.store_kv(v, p.row0, p.v_cache, p.n, row, p.pos0)
    }
}

//! The candle backend: the op-level trait on candle-core tensors, for NVIDIA GPUs through
//! candle's CUDA device (`--backend cuda`, built with `--features cuda`) — and, with the same
//! code, on candle's CPU device, which is how the tests check every op and whole models on a
//! machine without a GPU (only candle's own CUDA kernels are then untested here).
//!
//! Buffers are preallocated 1-D tensors; an op reads prefixes with `narrow` and writes its
//! result back with `slice_set` (in place), so models keep their handles. Quantized matrices
//! are candle `QTensor`s built from the GGUF blocks (`QMatMul`: mmvq for one token, mmq for
//! prefill on CUDA); f32/f16/bf16 matrices are dense tensors. Embedding rows are decoded on the
//! host from the mmap (a few KiB per token) and uploaded. The KV cache is f16; attention is
//! `softmax(q·kᵀ·scale + mask)·v` with grouped heads expanded and a causal/window mask built
//! per call. Greedy tokens come from `argmax` on the device (4 bytes back).

mod memory;
mod ops;

use super::{
    AttnParams, Backend, BackendError, Buf, Glu, KvBuf, OpKind, Result, Rope, RopeLayout, Weight,
};
use crate::gguf::{GgmlType, GgufFile, TensorInfo};
use candle_core::quantized::QMatMul;
use candle_core::{DType, Device, Tensor};
use std::ops::Range;
use std::sync::Arc;

pub(crate) fn err(e: candle_core::Error) -> BackendError {
    BackendError::Device(format!("candle: {e}"))
}

enum CWeight {
    /// A matrix: quantized (QTensor) or dense.
    Matrix(QMatMul),
    /// A 1-D tensor widened to f32 on the device.
    Vector(Tensor),
}

/// Host copy of an embedding table: rows are decoded from the mmap on demand.
struct HostTable {
    file: Arc<GgufFile>,
    range: Range<usize>,
    dtype: GgmlType,
    cols: usize,
}

struct RopeTables {
    cos: Tensor, // [max_pos, head_dim / 2]
    sin: Tensor,
}

/// The candle backend (see the module docs).
pub struct CandleBackend {
    device: Device,
    bufs: Vec<Tensor>,
    kv: Vec<Tensor>,
    weights: Vec<(CWeight, Option<HostTable>)>,
    ropes: Vec<RopeTables>,
    /// argmax's first-of-ties: positions 0, 1, 2, … and as many `u32::MAX` (u32), grown to
    /// the longest row asked, made once rather than per token
    positions: Option<(Tensor, Tensor)>,
}

/// The libraries candle's CUDA device opens (cudarc loads them with `dlopen`, and panics when
/// one is missing): checked first so that a machine without them gets an error naming them.
#[cfg(feature = "cuda")]
fn cuda_libraries_present() -> Result<()> {
    // SAFETY: each call only tries `dlopen` on the library's usual names and closes it again.
    let libs = unsafe {
        [
            (
                "libcuda (the NVIDIA driver)",
                cudarc::driver::sys::is_culib_present(),
            ),
            ("libcublas", cudarc::cublas::sys::is_culib_present()),
            ("libcublasLt", cudarc::cublaslt::sys::is_culib_present()),
            ("libcurand", cudarc::curand::sys::is_culib_present()),
        ]
    };
    let missing: Vec<&str> = libs.iter().filter(|l| !l.1).map(|l| l.0).collect();
    if missing.is_empty() {
        return Ok(());
    }
    Err(BackendError::Device(format!(
        "cuda: cannot load {}: this machine has no NVIDIA driver, or the CUDA 13 libraries \
         are not on LD_LIBRARY_PATH (see README, NVIDIA (CUDA))",
        missing.join(", ")
    )))
}

#[cfg(not(feature = "cuda"))]
fn cuda_libraries_present() -> Result<()> {
    Ok(())
}

impl CandleBackend {
    /// A backend on `device` (`Device::Cpu` or a CUDA device).
    pub fn new(device: Device) -> Self {
        CandleBackend {
            device,
            bufs: Vec::new(),
            kv: Vec::new(),
            weights: Vec::new(),
            ropes: Vec::new(),
            positions: None,
        }
    }

    /// The first CUDA GPU. Without the `cuda` feature: an error saying so.
    pub fn cuda() -> Result<Self> {
        Self::cuda_with(false)
    }

    /// The first CUDA GPU; `events`: keep cudarc's per-allocation CUDA events (a diagnostic).
    pub fn cuda_with(events: bool) -> Result<Self> {
        #[cfg(not(feature = "cuda"))]
        let _ = events;
        if !cfg!(feature = "cuda") {
            return Err(BackendError::NotCompiled(
                "cuda".into(),
                "this binary was built without the `cuda` feature \
                 (cargo build --release --features cuda; see README, CUDA)"
                    .into(),
            ));
        }
        cuda_libraries_present()?;
        // candle panics (rather than erring) on some driver failures: keep them an error too.
        let d = std::panic::catch_unwind(|| Device::new_cuda(0))
            .map_err(|_| BackendError::Device("cuda: the CUDA driver failed to start".into()))?
            .map_err(|e| {
                BackendError::Device(format!(
                    "cuda: no usable NVIDIA GPU ({e}); `nvidia-smi` should list one"
                ))
            })?;
        #[cfg(feature = "cuda")]
        if let (Ok(cd), false) = (d.as_cuda_device(), events) {
            // SAFETY: every tensor of this backend lives on candle's one stream of this device,
            // so cudarc's per-slice CUDA events (created per allocation, waited on and recorded
            // around every launch: ~9 % of decode time on an H100) guard nothing here. Called
            // before any tensor is made, as cudarc requires.
            unsafe { cd.disable_event_tracking() };
        }
        Ok(Self::new(d))
    }

    fn buf(&self, b: Buf) -> &Tensor {
        &self.bufs[b.id as usize]
    }

    /// The first `len` elements of `b` from `off`.
    fn view(&self, b: Buf, off: usize, len: usize) -> Result<Tensor> {
        if off + len > b.len {
            return Err(BackendError::Invalid(format!(
                "{len} elements at {off} of a {}-element buffer",
                b.len
            )));
        }
        self.buf(b).narrow(0, off, len).map_err(err)
    }

    /// Writes `t` (any shape, f32) into `b` at `off`.
    fn store(&self, b: Buf, off: usize, t: &Tensor) -> Result<()> {
        let t = t.flatten_all().map_err(err)?.contiguous().map_err(err)?;
        if off + t.elem_count() > b.len {
            return Err(BackendError::Invalid(
                "write past the end of a buffer".into(),
            ));
        }
        self.buf(b).slice_set(&t, 0, off).map_err(err)
    }

    fn vector(&self, w: &Weight, op: &str) -> Result<&Tensor> {
        match &self.weights[w.id as usize].0 {
            CWeight::Vector(t) => Ok(t),
            CWeight::Matrix(_) => Err(BackendError::Invalid(format!("{op}: expects a 1-D weight"))),
        }
    }
}

impl Backend for CandleBackend {
    fn name(&self) -> String {
        match &self.device {
            Device::Cpu => "candle (cpu)".into(),
            d => format!("candle ({:?})", d.location()).to_lowercase(),
        }
    }

    fn supports(&self, op: OpKind, dtype: GgmlType) -> bool {
        match op {
            OpKind::MatMul | OpKind::Embed => {
                crate::quantize::convert::candle_type(dtype).is_some()
            }
        }
    }

    fn upload(&mut self, file: &Arc<GgufFile>, info: &TensorInfo) -> Result<Weight> {
        let cols = info.row_len() as usize;
        let rows = info.n_rows() as usize;
        let unsupported = || BackendError::unsupported_type("candle", info);
        let range = file.tensor_range(info);
        let bytes = &file.bytes()[range.clone()];
        let w = if rows == 1 {
            let mut v = vec![0f32; cols];
            if !crate::quant::dequantize(info.dtype, bytes, &mut v) {
                return Err(unsupported());
            }
            (
                CWeight::Vector(Tensor::from_vec(v, cols, &self.device).map_err(err)?),
                None,
            )
        } else {
            let ct = crate::quantize::convert::candle_type(info.dtype).ok_or_else(unsupported)?;
            let m = if info.dtype.is_quantized() {
                let q = candle_core::quantized::ggml_file::qtensor_from_ggml(
                    ct,
                    bytes,
                    vec![rows, cols],
                    &self.device,
                )
                .map_err(err)?;
                QMatMul::from_qtensor(q).map_err(err)?
            } else {
                let mut v = vec![0f32; rows * cols];
                if !crate::quant::dequantize(info.dtype, bytes, &mut v) {
                    return Err(unsupported());
                }
                QMatMul::Tensor(Tensor::from_vec(v, (rows, cols), &self.device).map_err(err)?)
            };
            let host = HostTable {
                file: Arc::clone(file),
                range,
                dtype: info.dtype,
                cols,
            };
            (CWeight::Matrix(m), Some(host))
        };
        self.weights.push(w);
        Ok(Weight {
            id: (self.weights.len() - 1) as u32,
            dtype: info.dtype,
            rows,
            cols,
        })
    }

    fn alloc(&mut self, len: usize) -> Result<Buf> {
        self.bufs
            .push(Tensor::zeros(len.max(1), DType::F32, &self.device).map_err(err)?);
        Ok(Buf {
            id: (self.bufs.len() - 1) as u32,
            len,
        })
    }

    fn alloc_kv(&mut self, len: usize) -> Result<KvBuf> {
        self.kv
            .push(Tensor::zeros(len.max(1), DType::F16, &self.device).map_err(err)?);
        Ok(KvBuf {
            id: (self.kv.len() - 1) as u32,
            len,
            ring: false,
        })
    }

    fn kv_ring(&self) -> bool {
        true
    }

    fn kv_elem_bytes(&self) -> usize {
        2
    }

    fn rope_table(
        &mut self,
        layout: RopeLayout,
        head_dim: usize,
        n_rot: usize,
        table: Vec<f32>,
    ) -> Result<Rope> {
        let max_pos = table.len() / head_dim;
        let (cos, sin): (Vec<f32>, Vec<f32>) = table.chunks(2).map(|p| (p[0], p[1])).unzip();
        let shape = (max_pos, head_dim / 2);
        self.ropes.push(RopeTables {
            cos: Tensor::from_vec(cos, shape, &self.device).map_err(err)?,
            sin: Tensor::from_vec(sin, shape, &self.device).map_err(err)?,
        });
        Ok(Rope::new(
            self.ropes.len() - 1,
            layout,
            head_dim,
            n_rot,
            table.len(),
        ))
    }

    fn embed(&mut self, table: &Weight, ids: &[u32], out: Buf) -> Result<()> {
        let host = self.weights[table.id as usize]
            .1
            .as_ref()
            .ok_or_else(|| BackendError::Invalid("embed: not a matrix".into()))?;
        let rb = host.range.len() / table.rows;
        let data = &host.file.bytes()[host.range.clone()];
        let mut v = vec![0f32; ids.len() * host.cols];
        for (row, &id) in v.chunks_mut(host.cols).zip(ids) {
            let id = id as usize;
            if id >= table.rows {
                return Err(BackendError::Invalid(format!(
                    "embed: token id {id} outside the table's {} rows",
                    table.rows
                )));
            }
            crate::quant::dequantize(host.dtype, &data[id * rb..(id + 1) * rb], row);
        }
        let t = Tensor::from_vec(v, ids.len() * table.cols, &self.device).map_err(err)?;
        self.store(out, 0, &t)
    }

    fn matmul(&mut self, w: &Weight, x: Buf, out: Buf, n: usize) -> Result<()> {
        let CWeight::Matrix(m) = &self.weights[w.id as usize].0 else {
            return Err(BackendError::Invalid("matmul on a vector".into()));
        };
        let xs = self
            .view(x, 0, n * w.cols)?
            .reshape((n, w.cols))
            .map_err(err)?;
        let y = candle_core::Module::forward(m, &xs).map_err(err)?;
        self.store(out, 0, &y)
    }

    fn add_bias(&mut self, x: Buf, bias: &Weight, n: usize) -> Result<()> {
        let b = self.vector(bias, "add_bias")?;
        let xs = self
            .view(x, 0, n * bias.cols)?
            .reshape((n, bias.cols))
            .map_err(err)?;
        let y = xs.broadcast_add(b).map_err(err)?;
        self.store(x, 0, &y)
    }

    fn rms_norm(&mut self, x: Buf, w: &Weight, out: Buf, rows: usize, eps: f32) -> Result<()> {
        self.rms_norm_impl(x, w, out, rows, eps)
    }

    fn rope(
        &mut self,
        x: Buf,
        rope: &Rope,
        row0: usize,
        n: usize,
        heads: usize,
        pos0: usize,
    ) -> Result<()> {
        self.rope_impl(x, rope, row0, n, heads, pos0)
    }

    fn store_kv(
        &mut self,
        src: Buf,
        row0: usize,
        dst: KvBuf,
        n: usize,
        row: usize,
        pos0: usize,
    ) -> Result<()> {
        let rows = dst.rows(row);
        let fits = match dst.ring {
            true => n <= rows,
            false => pos0 + n <= rows,
        };
        if !fits || row == 0 {
            return Err(BackendError::Invalid("store_kv: out of bounds".into()));
        }
        let t = self
            .view(src, row0 * row, n * row)?
            .to_dtype(DType::F16)
            .map_err(err)?;
        // a ring's positions wrap at most once within a batch: two runs of rows
        let start = super::kv_row(pos0, rows);
        let first = n.min(rows - start);
        let cache = &self.kv[dst.id as usize];
        cache
            .slice_set(&t.narrow(0, 0, first * row).map_err(err)?, 0, start * row)
            .map_err(err)?;
        if first < n {
            let rest = t.narrow(0, first * row, (n - first) * row).map_err(err)?;
            cache.slice_set(&rest, 0, 0).map_err(err)?;
        }
        Ok(())
    }

    fn attention(&mut self, q: Buf, k: KvBuf, v: KvBuf, out: Buf, p: &AttnParams) -> Result<()> {
        self.attention_impl(q, k, v, out, p)
    }

    fn glu(&mut self, kind: Glu, gate: Buf, up: Buf, len: usize) -> Result<()> {
        let g = self.view(gate, 0, len)?;
        let u = self.view(up, 0, len)?;
        let a = match kind {
            Glu::Gelu => g.gelu(),
            Glu::Silu => g.silu(),
        }
        .map_err(err)?;
        let y = (a * u).map_err(err)?;
        self.store(gate, 0, &y)
    }

    fn add(&mut self, a: Buf, b: Buf, out: Buf, len: usize) -> Result<()> {
        let y = (self.view(a, 0, len)? + self.view(b, 0, len)?).map_err(err)?;
        self.store(out, 0, &y)
    }

    fn scale(&mut self, x: Buf, s: f32, len: usize) -> Result<()> {
        let y = self.view(x, 0, len)?.affine(s as f64, 0.0).map_err(err)?;
        self.store(x, 0, &y)
    }

    fn softcap(&mut self, x: Buf, cap: f32, len: usize) -> Result<()> {
        let c = cap as f64;
        let y = (self.view(x, 0, len)?)
            .affine(1.0 / c, 0.0)
            .and_then(|t| t.tanh())
            .and_then(|t| t.affine(c, 0.0))
            .map_err(err)?;
        self.store(x, 0, &y)
    }

    fn copy(
        &mut self,
        src: Buf,
        src_off: usize,
        dst: Buf,
        dst_off: usize,
        len: usize,
    ) -> Result<()> {
        // a real copy: src and dst may be the same buffer
        let t = self.view(src, src_off, len)?.copy().map_err(err)?;
        self.store(dst, dst_off, &t)
    }

    fn write(&mut self, dst: Buf, off: usize, data: &[f32]) -> Result<()> {
        let t = Tensor::from_slice(data, data.len(), &self.device).map_err(err)?;
        self.store(dst, off, &t)
    }

    fn read(&mut self, src: Buf, off: usize, out: &mut [f32]) -> Result<()> {
        let v: Vec<f32> = self.view(src, off, out.len())?.to_vec1().map_err(err)?;
        out.copy_from_slice(&v);
        Ok(())
    }

    fn argmax(&mut self, src: Buf, off: usize, len: usize) -> Result<u32> {
        if len == 0 {
            return Err(BackendError::Invalid("argmax of nothing".into()));
        }
        // one pass: rows reduced in parallel, then the best row, was not faster on the H100
        // (447 us with the device synchronized, vs 358 us in another run) and returned the later
        // of two tied maxima
        let row = self.view(src, off, len)?;
        // x * 0 sums to 0 unless some x is a NaN or an infinity (a corrupted weight block)
        let poisoned = row
            .affine(0.0, 0.0)
            .and_then(|t| t.sum_all())
            .and_then(|t| t.to_scalar::<f32>())
            .map_err(err)?;
        if !poisoned.is_finite() {
            return Err(BackendError::NonFinite {
                place: "the logits".into(),
                row: 0,
            });
        }
        // the first of tied maxima, as on every backend: candle's own argmax returns the later
        // one on CUDA (the H200 picked 9990 over 7321). The least position holding the maximum
        if self
            .positions
            .as_ref()
            .is_none_or(|(p, _)| p.dim(0).unwrap_or(0) < len)
        {
            let made = Tensor::arange(0u32, len as u32, &self.device)
                .and_then(|p| Ok((p, Tensor::full(u32::MAX, len, &self.device)?)));
            self.positions = Some(made.map_err(err)?);
        }
        let (positions, beyond) = self
            .positions
            .as_ref()
            .ok_or_else(|| BackendError::Invalid("argmax: no positions".into()))?;
        let first = || -> candle_core::Result<u32> {
            let max = row.max_keepdim(0)?;
            row.broadcast_eq(&max)?
                .where_cond(&positions.narrow(0, 0, len)?, &beyond.narrow(0, 0, len)?)?
                .min(0)?
                .to_scalar::<u32>()
        };
        first().map_err(err)
    }

    /// On CUDA: the model against the free device memory (see [`memory`]).
    fn reserve(&mut self, weights: u64, other: u64) -> Result<()> {
        #[cfg(feature = "cuda")]
        if let Ok(d) = self.device.as_cuda_device() {
            let stream = d.cuda_stream();
            let ctx = stream.context();
            let (free, total) = ctx.mem_get_info().map_err(|e| {
                BackendError::Device(format!("cuda: cannot read the free GPU memory: {e}"))
            })?;
            let name = format!("cuda ({})", ctx.name().unwrap_or_default());
            return memory::fits(&name, weights, other, free as u64, total as u64);
        }
        let _ = (weights, other);
        Ok(())
    }

    /// The GPU's name on CUDA (the same string wgpu reports, so `tokenfab probe`'s measured
    /// peak bandwidth serves MBU for both); nothing on candle's CPU device.
    fn adapter_name(&self) -> Option<String> {
        #[cfg(feature = "cuda")]
        if let Ok(d) = self.device.as_cuda_device() {
            return d.cuda_stream().context().name().ok();
        }
        None
    }

    /// A CUDA GPU (discrete as far as the energy table is concerned; NVML measures it where
    /// the driver has it).
    fn energy_gpu(&self) -> Option<(String, bool)> {
        self.adapter_name().map(|n| (n, false))
    }

    fn sync(&mut self) -> Result<()> {
        self.device.synchronize().map_err(err)
    }
}

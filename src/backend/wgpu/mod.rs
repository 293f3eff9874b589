//! The wgpu backend: our own WGSL kernels (`shaders/`) computing directly on GGUF blocks.
//!
//! Weights are copied from the mmap into GPU buffers in their GGUF block layout (no CPU
//! transcoding; 1-D tensors — norms, biases — are widened to f32). A tensor larger than the
//! adapter's storage-binding limit is split by rows into several buffers ("parts"), each
//! dispatched separately. Ops are recorded into one command encoder, in one compute pass
//! (one per op when profiling), with their parameters appended to a host-side arena bound
//! through a dynamic offset; the
//! arena and the encoder go to the GPU in one submit when a result is read back (the sampled
//! token from [`argmax`](Backend::argmax), logits with [`read`](Backend::read)) — so a
//! decoded token is one submit. Pipelines and bind groups are cached. With profiling on,
//! every pass writes begin/end timestamps (see [`profile`]).
//!
//! Buffers and weight upload live in [`buffers`], options and work counters in [`options`].
//! One dispatch file per kernel family, each paired with its shader: [`matmul`], [`embed`],
//! [`norm`], [`rope`], [`kv`], [`attention`], [`elementwise`], [`argmax`].

mod argmax;
mod attention;
mod bandwidth;
mod buffers;
mod device;
mod elementwise;
mod embed;
mod kernel_bench;
pub mod kernels;
mod kv;
mod matmul;
mod norm;
mod options;
mod profile;
mod rope;

pub use device::{has_discrete_gpu, list_adapters, AdapterSummary};
pub use kernel_bench::KernelTiming;
pub use options::{fault_from_env, Counters, Tuning, WgpuOptions};

use super::{
    AttnParams, Backend, BackendError, Buf, Glu, KernelTime, KvBuf, OpKind, PreNorm, Result, Rope,
    RopeKv, RopeLayout, Weight,
};
use crate::gguf::{GgmlType, GgufFile, TensorInfo};
use kernels::{Family, Kernel, Pipelines, ShaderCaps};
use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::Arc;

/// Bytes of parameters one dispatch may bind.
const PARAM_WINDOW: u64 = 4096;
/// Bytes of the parameter arena; a full arena forces a submit.
const PARAM_CAPACITY: u64 = 4 << 20;

/// Weight types the kernels decode (lib/quant.wgsl): every type the CPU backend runs.
pub const GPU_TYPES: [GgmlType; 13] = crate::quant::CPU_TYPES;

/// A range of rows of a weight, in one buffer.
struct Part {
    buf: u32,
    row0: usize,
    rows: usize,
}

struct GpuWeight {
    /// Type of the data in the parts (F32 for widened 1-D tensors).
    dtype: GgmlType,
    cols: usize,
    row_bytes: usize,
    parts: Vec<Part>,
}

/// The wgpu backend (see the module docs).
pub struct WgpuBackend {
    gpu: device::Gpu,
    pipelines: Pipelines,
    /// Every buffer this backend made; handles index into it.
    store: Vec<wgpu::Buffer>,
    weights: Vec<GpuWeight>,
    ropes: Vec<u32>,
    bind_groups: HashMap<(Family, BufIds), wgpu::BindGroup>,
    params_buf: wgpu::Buffer,
    params: Vec<u32>,
    align_words: usize,
    encoder: Option<wgpu::CommandEncoder>,
    /// The open compute pass of `encoder`: consecutive dispatches share one pass (wgpu puts
    /// the barriers between them); it ends before any other encoder command and at submit.
    /// With profiling every dispatch gets its own pass, for its timestamps.
    pass: Option<wgpu::ComputePass<'static>>,
    /// Small buffer for argmax results.
    result: u32,
    /// Results of several rows' argmaxes (grown on demand), with its size in bytes.
    argmax_out: Option<(u32, u64)>,
    /// Bound to unused bindings.
    dummy: u32,
    readback: Option<wgpu::Buffer>,
    /// Top-k candidates (store id, bytes).
    topk_out: Option<(u32, u64)>,
    profiler: Option<profile::Profiler>,
    /// See [`WgpuOptions::fast_kernels`].
    fast_kernels: bool,
    /// [`Tuning::Gpu`] (true) or [`Tuning::Software`], resolved for the adapter.
    gpu_tuning: bool,
    counters: Arc<Counters>,
    max_part_bytes: u64,
    uploaded: u64,
    /// See [`WgpuOptions::lose_device_after`].
    lose_device_after: Option<u64>,
}

/// The buffers of a bind group (store ids in binding order, unused slots `u32::MAX`): a
/// fixed-size key, so looking a bind group up allocates nothing.
type BufIds = [u32; MAX_BINDINGS];
const MAX_BINDINGS: usize = 8;

fn round_up(v: u64, to: u64) -> u64 {
    v.div_ceil(to) * to
}

/// Workgroup counts for `n` groups of a 1-D kernel, folded into (x, y).
pub(crate) fn fold(n: usize) -> [u32; 3] {
    let x = n.clamp(1, 32768);
    [x as u32, n.div_ceil(x) as u32, 1]
}

impl WgpuBackend {
    /// Opens the best adapter (see [`device`]) with every feature it offers.
    pub fn new(profile: bool) -> Result<Self> {
        Self::with_options(WgpuOptions {
            profile,
            ..WgpuOptions::default()
        })
    }

    /// Opens the best adapter; `opts` can turn features off (tests run the fallbacks).
    pub fn with_options(opts: WgpuOptions) -> Result<Self> {
        let gpu = device::open(opts.adapter.as_deref())?;
        let caps = ShaderCaps {
            subgroups: opts.subgroups && gpu.features.contains(wgpu::Features::SUBGROUP),
            f16: opts.f16_kv && gpu.features.contains(wgpu::Features::SHADER_F16),
        };
        Self::with_caps(gpu, caps, opts)
    }

    fn with_caps(gpu: device::Gpu, caps: ShaderCaps, opts: WgpuOptions) -> Result<Self> {
        let profile = opts.profile;
        let align = gpu.limits.min_storage_buffer_offset_alignment.max(4) as u64;
        let params_buf = gpu.device.create_buffer(&wgpu::BufferDescriptor {
            label: Some("params"),
            size: PARAM_CAPACITY,
            usage: wgpu::BufferUsages::STORAGE | wgpu::BufferUsages::COPY_DST,
            mapped_at_creation: false,
        });
        let max_part_bytes = gpu
            .limits
            .max_storage_buffer_binding_size
            .min(gpu.limits.max_buffer_size)
            .min(u32::MAX as u64 / 2)
            & !3;
        let profiler = if profile {
            if !gpu.features.contains(wgpu::Features::TIMESTAMP_QUERY) {
                return Err(BackendError::Device(format!(
                    "wgpu: {} has no TIMESTAMP_QUERY, --profile is unavailable",
                    gpu.summary.name
                )));
            }
            Some(profile::Profiler::new(&gpu.device, &gpu.queue))
        } else {
            None
        };
        let gpu_tuning = match opts.tuning {
            Tuning::Gpu => true,
            Tuning::Software => false,
            Tuning::Auto => gpu.summary.device_type != "Cpu",
        };
        let mut b = WgpuBackend {
            pipelines: Pipelines::new(caps, PARAM_WINDOW),
            gpu,
            store: Vec::new(),
            weights: Vec::new(),
            ropes: Vec::new(),
            bind_groups: HashMap::new(),
            params_buf,
            params: Vec::new(),
            align_words: (align / 4) as usize,
            encoder: None,
            pass: None,
            result: 0,
            argmax_out: None,
            dummy: 0,
            readback: None,
            topk_out: None,
            profiler,
            fast_kernels: opts.fast_kernels,
            gpu_tuning,
            counters: Arc::default(),
            max_part_bytes,
            uploaded: 0,
            lose_device_after: opts.lose_device_after,
        };
        // argmax's token, then its first pass's (value, index) pairs
        b.result = b.buffer(8 + 8 * argmax::ARGMAX_GROUPS as u64, "result")?;
        b.dummy = b.buffer(256, "dummy")?;
        Ok(b)
    }

    /// The backend's GPU work counters (shared: read them after the backend is boxed).
    pub fn counters(&self) -> Arc<Counters> {
        Arc::clone(&self.counters)
    }

    /// What the adapter is.
    pub fn adapter(&self) -> &AdapterSummary {
        &self.gpu.summary
    }

    /// Shader capabilities in use (subgroups, f16 KV cache).
    pub fn caps(&self) -> ShaderCaps {
        self.pipelines.caps()
    }

    /// Largest buffer part a weight is split into.
    pub fn max_part_bytes(&self) -> u64 {
        self.max_part_bytes
    }

    /// Limits the per-part size (tests use this to exercise split weights).
    pub fn set_max_part_bytes(&mut self, bytes: u64) {
        self.max_part_bytes = bytes.min(self.max_part_bytes) & !3;
    }

    fn check_errors(&self) -> Result<()> {
        let lost = self
            .gpu
            .lost
            .lock()
            .map_err(|_| BackendError::Device("wgpu: error log poisoned".into()))?;
        if let Some(why) = lost.as_ref() {
            return Err(BackendError::Device(format!(
                "wgpu ({}): the device was lost ({why}); nothing more can run on it until \
                 tokenfab is restarted (the weights must be uploaded again)",
                self.gpu.summary.name
            )));
        }
        drop(lost);
        let mut errs = self
            .gpu
            .errors
            .lock()
            .map_err(|_| BackendError::Device("wgpu: error log poisoned".into()))?;
        if errs.is_empty() {
            return Ok(());
        }
        let msg = errs.join("; ");
        errs.clear();
        Err(BackendError::Device(format!(
            "wgpu ({}): {msg}",
            self.gpu.summary.name
        )))
    }

    /// Records one dispatch of `kernel` over `groups` workgroups with `bufs` (store ids, in
    /// binding order after the params window) and `params`.
    fn dispatch(
        &mut self,
        kernel: Kernel,
        bufs: &[u32],
        params: &[u32],
        groups: [u32; 3],
    ) -> Result<()> {
        if groups.contains(&0) {
            return Ok(());
        }
        if params.len() as u64 * 4 > PARAM_WINDOW {
            return Err(BackendError::Invalid(format!(
                "{}: {} parameter words exceed the window",
                kernel.name(),
                params.len()
            )));
        }
        let mut off = self.params.len().div_ceil(self.align_words) * self.align_words;
        if off as u64 * 4 + PARAM_WINDOW > PARAM_CAPACITY
            || self.profiler.as_ref().is_some_and(|p| p.full())
        {
            self.flush()?;
            off = 0;
        }
        self.params.resize(off, 0);
        self.params.extend_from_slice(params);
        let family = kernel.family();
        let device = &self.gpu.device;
        let pipeline = self.pipelines.get(device, kernel).clone();
        if bufs.len() > MAX_BINDINGS {
            return Err(BackendError::Invalid(format!(
                "{}: {} buffers exceed the bind-group key",
                kernel.name(),
                bufs.len()
            )));
        }
        let mut ids = [u32::MAX; MAX_BINDINGS];
        ids[..bufs.len()].copy_from_slice(bufs);
        let key = (family, ids);
        if !self.bind_groups.contains_key(&key) {
            let layout = self.pipelines.layout(device, family);
            let mut entries = vec![wgpu::BindGroupEntry {
                binding: 0,
                resource: wgpu::BindingResource::Buffer(wgpu::BufferBinding {
                    buffer: &self.params_buf,
                    offset: 0,
                    size: wgpu::BufferSize::new(PARAM_WINDOW),
                }),
            }];
            for (i, &b) in bufs.iter().enumerate() {
                entries.push(wgpu::BindGroupEntry {
                    binding: i as u32 + 1,
                    resource: self.store[b as usize].as_entire_binding(),
                });
            }
            let bg = device.create_bind_group(&wgpu::BindGroupDescriptor {
                label: None,
                layout,
                entries: &entries,
            });
            self.bind_groups.insert(key, bg);
        }
        let bg = &self.bind_groups[&key];
        let enc = self.encoder.get_or_insert_with(|| {
            device.create_command_encoder(&wgpu::CommandEncoderDescriptor { label: None })
        });
        let timestamps = self.profiler.as_mut().map(|p| p.next(kernel));
        if timestamps.is_some() || self.pass.is_none() {
            // the previous pass ends before the encoder starts another
            self.pass = None;
            self.counters.passes.fetch_add(1, Ordering::Relaxed);
            self.pass = Some(
                enc.begin_compute_pass(&wgpu::ComputePassDescriptor {
                    label: None,
                    timestamp_writes: timestamps,
                })
                .forget_lifetime(),
            );
        }
        let pass = self
            .pass
            .as_mut()
            .ok_or_else(|| BackendError::Device("wgpu: no compute pass".into()))?;
        self.counters.dispatches.fetch_add(1, Ordering::Relaxed);
        pass.set_pipeline(&pipeline);
        pass.set_bind_group(0, bg, &[(off * 4) as u32]);
        pass.dispatch_workgroups(groups[0], groups[1], groups[2]);
        Ok(())
    }

    /// Submits everything recorded so far, with its parameters.
    fn flush(&mut self) -> Result<()> {
        self.pass = None;
        if let Some(mut enc) = self.encoder.take() {
            if !self.params.is_empty() {
                self.gpu.queue.write_buffer(
                    &self.params_buf,
                    0,
                    bytemuck::cast_slice(&self.params),
                );
            }
            if let Some(p) = self.profiler.as_mut() {
                p.resolve(&mut enc);
            }
            self.gpu.queue.submit([enc.finish()]);
            let n = self.counters.submits.fetch_add(1, Ordering::Relaxed) + 1;
            if self.lose_device_after == Some(n) {
                self.gpu.device.destroy();
            }
            self.params.clear();
            if let Some(p) = self.profiler.as_mut() {
                p.collect(&self.gpu.device)?;
            }
        }
        self.check_errors()
    }

    /// Copies `bytes` from `src` at `offset` to the host (submits and waits).
    fn read_bytes(&mut self, src: u32, offset: u64, bytes: u64) -> Result<Vec<u8>> {
        let size = round_up(bytes.max(4), 4);
        if self.readback.as_ref().is_none_or(|b| b.size() < size) {
            self.readback = Some(self.gpu.device.create_buffer(&wgpu::BufferDescriptor {
                label: Some("readback"),
                size: round_up(size, 1 << 16),
                usage: wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
                mapped_at_creation: false,
            }));
        }
        let device = &self.gpu.device;
        self.pass = None;
        let enc = self.encoder.get_or_insert_with(|| {
            device.create_command_encoder(&wgpu::CommandEncoderDescriptor { label: None })
        });
        let rb = self
            .readback
            .as_ref()
            .ok_or_else(|| BackendError::Device("readback".into()))?;
        enc.copy_buffer_to_buffer(&self.store[src as usize], offset, rb, 0, size);
        self.flush()?;
        let rb = self
            .readback
            .as_ref()
            .ok_or_else(|| BackendError::Device("readback".into()))?;
        let slice = rb.slice(..size);
        self.counters.host_waits.fetch_add(1, Ordering::Relaxed);
        slice.map_async(wgpu::MapMode::Read, |_| {});
        self.gpu
            .device
            .poll(wgpu::PollType::wait_indefinitely())
            .map_err(|e| BackendError::Device(format!("wgpu: {e}")))?;
        self.check_errors()?;
        let out = {
            let view = slice
                .get_mapped_range()
                .map_err(|e| BackendError::Device(format!("wgpu: {e}")))?;
            view[..bytes as usize].to_vec()
        };
        rb.unmap();
        Ok(out)
    }

    fn weight(&self, w: &Weight) -> &GpuWeight {
        &self.weights[w.id as usize]
    }

    /// Store id of a 1-D (dense f32) weight.
    fn dense(&self, w: &Weight, op: &str) -> Result<u32> {
        let g = self.weight(w);
        match (g.dtype, g.parts.as_slice()) {
            (GgmlType::F32, [p]) => Ok(p.buf),
            _ => Err(BackendError::Invalid(format!("{op}: expects a 1-D weight"))),
        }
    }
}

impl Backend for WgpuBackend {
    fn name(&self) -> String {
        let c = self.caps();
        format!(
            "wgpu ({}, {}{}{})",
            self.gpu.summary.name,
            self.gpu.summary.backend,
            if c.subgroups { ", subgroups" } else { "" },
            if c.f16 { ", f16 kv" } else { ", f32 kv" }
        )
    }

    fn supports(&self, op: OpKind, dtype: GgmlType) -> bool {
        match op {
            OpKind::MatMul | OpKind::Embed => GPU_TYPES.contains(&dtype),
        }
    }

    fn upload(&mut self, file: &Arc<GgufFile>, info: &TensorInfo) -> Result<Weight> {
        let cols = info.row_len() as usize;
        let rows = info.n_rows() as usize;
        let unsupported = || BackendError::unsupported_type("wgpu", info);
        let bytes = &file.bytes()[file.tensor_range(info)];
        let weight = Weight {
            id: self.weights.len() as u32,
            dtype: info.dtype,
            rows,
            cols,
        };
        if rows == 1 {
            let mut v = vec![0f32; cols];
            if !crate::quant::dequantize(info.dtype, bytes, &mut v) {
                return Err(unsupported());
            }
            let buf = self.buffer_init(cols as u64 * 4, &info.name, bytemuck::cast_slice(&v))?;
            self.weights.push(GpuWeight {
                dtype: GgmlType::F32,
                cols,
                row_bytes: cols * 4,
                parts: vec![Part {
                    buf,
                    row0: 0,
                    rows: 1,
                }],
            });
            return Ok(weight);
        }
        if !GPU_TYPES.contains(&info.dtype) {
            return Err(unsupported());
        }
        self.upload_matrix(&info.name, weight, bytes)
    }

    fn alloc(&mut self, len: usize) -> Result<Buf> {
        let id = self.buffer(len as u64 * 4, "activations")?;
        Ok(Buf { id, len })
    }

    fn alloc_kv(&mut self, len: usize) -> Result<KvBuf> {
        let id = self.buffer((len * self.kv_elem_bytes()) as u64, "kv cache")?;
        Ok(KvBuf {
            id,
            len,
            ring: false,
        })
    }

    /// The KV shaders place position `p` at row `p % rows` (`kv.wgsl`, `rope_kv.wgsl`,
    /// `attention.wgsl`), so sliding-window layers keep rings, as on the CPU.
    fn kv_ring(&self) -> bool {
        true
    }

    fn kv_elem_bytes(&self) -> usize {
        if self.caps().f16 {
            2
        } else {
            4
        }
    }

    fn rope_table(
        &mut self,
        layout: RopeLayout,
        head_dim: usize,
        n_rot: usize,
        table: Vec<f32>,
    ) -> Result<Rope> {
        self.rope_table_impl(layout, head_dim, n_rot, table)
    }

    fn embed(&mut self, table: &Weight, ids: &[u32], out: Buf) -> Result<()> {
        self.embed_impl(table, ids, out)
    }

    fn matmul(&mut self, w: &Weight, x: Buf, out: Buf, n: usize) -> Result<()> {
        self.matmul_impl(w, x, out, n)
    }

    fn matmul_qkv(
        &mut self,
        norm: Option<PreNorm>,
        w: [&Weight; 3],
        x: Buf,
        out: [Buf; 3],
        n: usize,
    ) -> Result<()> {
        self.matmul_qkv_impl(norm, w, x, out, n)
    }

    fn matmul_add(&mut self, w: &Weight, x: Buf, tmp: Buf, acc: Buf, n: usize) -> Result<()> {
        self.matmul_add_impl(w, x, tmp, acc, n)
    }

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
        self.matmul_glu_impl(kind, norm, gate, up, x, tmp, out, n)
    }

    fn rope_store_kv(&mut self, q: Buf, k: Buf, v: Buf, rope: &Rope, p: &RopeKv) -> Result<()> {
        if !self.fast_kernels {
            return super::unfused::rope_store_kv(self, q, k, v, rope, p);
        }
        self.rope_store_kv_impl(q, k, v, rope, p)
    }

    fn add_bias(&mut self, x: Buf, bias: &Weight, n: usize) -> Result<()> {
        let b = self.dense(bias, "add_bias")?;
        self.elementwise(
            kernels::EwOp::Bias,
            x.id,
            b,
            self.dummy,
            [n * bias.cols, 0, 0, 0],
            0.0,
            bias.cols,
        )
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
        self.store_kv_impl(src, row0, dst, n, row, pos0)
    }

    fn attention(&mut self, q: Buf, k: KvBuf, v: KvBuf, out: Buf, p: &AttnParams) -> Result<()> {
        self.attention_impl(q, k, v, out, p)
    }

    fn glu(&mut self, kind: Glu, gate: Buf, up: Buf, len: usize) -> Result<()> {
        let op = match kind {
            Glu::Gelu => kernels::EwOp::GeluGlu,
            Glu::Silu => kernels::EwOp::SiluGlu,
        };
        self.elementwise(op, gate.id, up.id, self.dummy, [len, 0, 0, 0], 0.0, 0)
    }

    fn add(&mut self, a: Buf, b: Buf, out: Buf, len: usize) -> Result<()> {
        self.elementwise(
            kernels::EwOp::Add,
            a.id,
            b.id,
            out.id,
            [len, 0, 0, 0],
            0.0,
            0,
        )
    }

    fn scale(&mut self, x: Buf, s: f32, len: usize) -> Result<()> {
        self.elementwise(
            kernels::EwOp::Scale,
            x.id,
            self.dummy,
            self.dummy,
            [len, 0, 0, 0],
            s,
            0,
        )
    }

    fn softcap(&mut self, x: Buf, cap: f32, len: usize) -> Result<()> {
        self.elementwise(
            kernels::EwOp::Softcap,
            x.id,
            self.dummy,
            self.dummy,
            [len, 0, 0, 0],
            cap,
            0,
        )
    }

    fn copy(
        &mut self,
        src: Buf,
        src_off: usize,
        dst: Buf,
        dst_off: usize,
        len: usize,
    ) -> Result<()> {
        self.elementwise(
            kernels::EwOp::Copy,
            src.id,
            self.dummy,
            dst.id,
            [len, src_off, 0, dst_off],
            0.0,
            0,
        )
    }

    fn write(&mut self, dst: Buf, off: usize, data: &[f32]) -> Result<()> {
        if off + data.len() > dst.len {
            return Err(BackendError::Invalid(
                "write past the end of a buffer".into(),
            ));
        }
        // commands recorded before this write must see the old contents
        self.flush()?;
        self.gpu.queue.write_buffer(
            &self.store[dst.id as usize],
            off as u64 * 4,
            bytemuck::cast_slice(data),
        );
        Ok(())
    }

    fn read(&mut self, src: Buf, off: usize, out: &mut [f32]) -> Result<()> {
        if off + out.len() > src.len {
            return Err(BackendError::Invalid(
                "read past the end of a buffer".into(),
            ));
        }
        let bytes = self.read_bytes(src.id, off as u64 * 4, out.len() as u64 * 4)?;
        out.copy_from_slice(&bytemuck::pod_collect_to_vec::<u8, f32>(&bytes));
        Ok(())
    }

    fn argmax_rows(&mut self, src: Buf, offs: &[usize], len: usize) -> Result<Vec<u32>> {
        self.argmax_rows_impl(src, offs, len)
    }

    fn argmax(&mut self, src: Buf, off: usize, len: usize) -> Result<u32> {
        self.argmax_impl(src, off, len)
    }

    fn top_k(&mut self, src: Buf, off: usize, len: usize, k: usize) -> Result<Vec<(u32, f32)>> {
        self.top_k_impl(src, off, len, k)
    }

    fn sync(&mut self) -> Result<()> {
        self.flush()?;
        self.counters.host_waits.fetch_add(1, Ordering::Relaxed);
        self.gpu
            .device
            .poll(wgpu::PollType::wait_indefinitely())
            .map_err(|e| BackendError::Device(format!("wgpu: {e}")))?;
        self.check_errors()
    }

    fn take_profile(&mut self) -> Option<Vec<KernelTime>> {
        self.profiler.as_mut().map(|p| p.take())
    }

    fn reserve(&mut self, weights: u64, other: u64) -> Result<()> {
        let bytes = weights + other;
        // allocate (and free) buffers of the model's total size: device memory is committed
        // at creation, the zero fill happens only on first use, so this is cheap
        let chunk = self.gpu.limits.max_buffer_size.min(1 << 30);
        let mut held = Vec::new();
        let mut left = bytes;
        let mut err = None;
        while left > 0 && err.is_none() {
            let n = round_up(left.min(chunk), 4);
            let scope = self
                .gpu
                .device
                .push_error_scope(wgpu::ErrorFilter::OutOfMemory);
            held.push(self.gpu.device.create_buffer(&wgpu::BufferDescriptor {
                label: Some("capacity check"),
                size: n,
                usage: wgpu::BufferUsages::STORAGE,
                mapped_at_creation: false,
            }));
            err = pollster::block_on(scope.pop());
            left = left.saturating_sub(n);
        }
        for b in held {
            b.destroy();
        }
        match err {
            None => Ok(()),
            Some(e) => Err(BackendError::OutOfMemory {
                backend: format!(
                    "wgpu ({}): the model and its KV cache do not fit the adapter ({e})",
                    self.gpu.summary.name
                ),
                bytes,
            }),
        }
    }

    fn adapter_name(&self) -> Option<String> {
        Some(self.gpu.summary.name.clone())
    }

    fn energy_gpu(&self) -> Option<(String, bool)> {
        match self.gpu.summary.device_type.as_str() {
            "DiscreteGpu" | "VirtualGpu" | "Other" => Some((self.gpu.summary.name.clone(), false)),
            "IntegratedGpu" => Some((self.gpu.summary.name.clone(), true)),
            _ => None,
        }
    }

    fn measure_peak_bandwidth(&mut self) -> Option<Result<f64>> {
        Some(self.read_bandwidth())
    }
}

//! The CPU backend: quantized matmuls on weights borrowed from the memory map (our own AVX2
//! kernels, `crate::quant`), f16 KV cache, and a rayon thread pool of the requested size.
//!
//! Why not candle-core's CPU ops: candle's `QTensor` owns its blocks (loading copies every
//! weight), and its x86 kernels have no SIMD path for Q5_0, which most of Gemma 3's layer
//! weights use. Candle stays the reference our kernels are tested against.

mod attention;
pub(crate) mod elementwise;
mod matmul;
mod memory;
pub mod vec;

use super::*;
use crate::gguf::GgmlType;
use crate::quant::{self, Isa, RowKernel};
use half::f16;
use rayon::prelude::*;
use std::ops::Range;

struct CpuWeight {
    file: Arc<GgufFile>,
    range: Range<usize>,
    dtype: GgmlType,
    rows: usize,
    cols: usize,
    kernel: Option<RowKernel>,
    /// Vectors (norm weights, biases) dequantized once to f32; they are a few KB.
    dense: Option<Vec<f32>>,
    /// With `repack`: an interleaved copy for the eight-row decode kernel (`quant::q4k_x8`).
    x8: Option<(quant::Dot8, Vec<u8>)>,
}

impl CpuWeight {
    fn data(&self) -> &[u8] {
        &self.file.bytes()[self.range.clone()]
    }
    fn row_bytes(&self) -> usize {
        self.range.len() / self.rows.max(1)
    }
    /// Bytes of the file the products no longer read: the rows an interleaved copy holds.
    fn copied_from_map(&self) -> usize {
        self.x8
            .as_ref()
            .map_or(0, |_| self.rows / 8 * 8 * self.row_bytes())
    }
}

struct RopeTable {
    /// `(cos, sin)` per pair for positions `0..len / head_dim`.
    cs: Vec<f32>,
}

/// The CPU backend.
pub struct CpuBackend {
    pool: Arc<rayon::ThreadPool>,
    threads: usize,
    isa: Isa,
    weights: Vec<CpuWeight>,
    bufs: Vec<Vec<f32>>,
    kv: Vec<Vec<f16>>,
    ropes: Vec<RopeTable>,
    matmul_scratch: matmul::Scratch,
    /// No tiled GEMM: every batch size runs the row kernels (off for a bare backend; a model
    /// sets it from `LoadOptions::batch_invariant`).
    batch_invariant: bool,
    /// Interleaved copies of the matrices an eight-row decode kernel reads (off for a bare
    /// backend; a model sets it from `LoadOptions::repack`).
    repack: bool,
    attn_scratch: Vec<f32>,
}

impl CpuBackend {
    /// A backend with `threads` worker threads (0 = one per core) and the best kernels this
    /// CPU supports.
    pub fn new(threads: usize) -> Result<Self> {
        Self::with_isa(threads, Isa::detect())
    }

    /// A backend forced to an instruction set (tests compare scalar and SIMD paths).
    pub fn with_isa(threads: usize, isa: Isa) -> Result<Self> {
        let threads = if threads == 0 {
            std::thread::available_parallelism().map_or(1, |n| n.get())
        } else {
            threads
        };
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .thread_name(|i| format!("tokenfab-cpu-{i}"))
            .build()
            .map_err(|e| BackendError::Device(format!("cannot start {threads} threads: {e}")))?;
        let pool = Arc::new(pool);
        Ok(CpuBackend {
            pool,
            threads,
            isa,
            weights: Vec::new(),
            bufs: Vec::new(),
            kv: Vec::new(),
            ropes: Vec::new(),
            matmul_scratch: matmul::Scratch::default(),
            batch_invariant: false,
            repack: false,
            attn_scratch: Vec::new(),
        })
    }

    /// The thread pool ops run on. Running a whole forward pass inside it
    /// (`pool.install(..)`) lets the calling thread take part in the work.
    pub fn pool(&self) -> Arc<rayon::ThreadPool> {
        Arc::clone(&self.pool)
    }

    pub fn threads(&self) -> usize {
        self.threads
    }

    pub fn isa(&self) -> Isa {
        self.isa
    }

    /// A tensor of `file` for the ops: borrowed from the map (a vector dequantized), with an
    /// interleaved copy where `interleave` asks for one and its type has an eight-row kernel.
    fn upload_as(
        &mut self,
        file: &Arc<GgufFile>,
        info: &TensorInfo,
        interleave: bool,
    ) -> Result<Weight> {
        let cols = info.row_len() as usize;
        let rows = info.n_rows() as usize;
        let unsupported = || BackendError::unsupported_type("cpu", info);
        let range = file.tensor_range(info);
        let kernel = quant::row_kernel(info.dtype, self.isa);
        let dense = if rows == 1 {
            let mut v = vec![0f32; cols];
            if !quant::dequantize(info.dtype, &file.bytes()[range.clone()], &mut v) {
                return Err(unsupported());
            }
            Some(v)
        } else {
            if kernel.is_none() {
                return Err(unsupported());
            }
            None
        };
        // the interleaved copy, where asked for and this type has an eight-row kernel
        let x8 = quant::dot8_kernel(info.dtype, self.isa)
            .filter(|_| interleave && rows >= 8 && dense.is_none())
            .map(|k| (k, repack(&self.pool, file, range.clone(), rows, cols, k)));
        self.weights.push(CpuWeight {
            file: Arc::clone(file),
            range,
            dtype: info.dtype,
            rows,
            cols,
            kernel,
            dense,
            x8,
        });
        Ok(Weight {
            id: (self.weights.len() - 1) as u32,
            dtype: info.dtype,
            rows,
            cols,
        })
    }

    fn take(&mut self, b: Buf) -> Vec<f32> {
        std::mem::take(&mut self.bufs[b.id as usize])
    }

    fn put(&mut self, b: Buf, v: Vec<f32>) {
        self.bufs[b.id as usize] = v;
    }

    fn buf(&self, b: Buf) -> &[f32] {
        &self.bufs[b.id as usize]
    }

    fn dense(&self, w: &Weight, op: &str) -> Result<&[f32]> {
        self.weights[w.id as usize]
            .dense
            .as_deref()
            .ok_or_else(|| BackendError::Invalid(format!("{op}: weight is not a vector")))
    }
}

/// A matrix's bytes and row kernel, for the fused one-token products.
fn matrix<'a>(weights: &'a [CpuWeight], w: &Weight) -> Result<matmul::Matrix<'a>> {
    let cw = &weights[w.id as usize];
    let kernel = cw
        .kernel
        .ok_or_else(|| BackendError::Invalid("matmul on a vector".into()))?;
    Ok(matmul::Matrix {
        kernel,
        w: cw.data(),
        rows: cw.rows,
        x8: cw.x8.as_ref().map(|(k, copy)| matmul::Interleaved {
            dot8: k.dot8,
            unpack: k.unpack,
            copy,
        }),
    })
}

/// The interleaved copy of the matrix at `range` of `file`, bands of groups in parallel. Every
/// product reads the copied rows from the copy (decode, batches and the tiled GEMM alike), so
/// each band's original pages leave the resident set as soon as it is copied: the copy does
/// not double them, not even the largest matrix's while it is copied (an embedding lookup of
/// such a matrix maps back the few rows it reads).
fn repack(
    pool: &rayon::ThreadPool,
    file: &GgufFile,
    range: Range<usize>,
    rows: usize,
    cols: usize,
    k: quant::Dot8,
) -> Vec<u8> {
    const BAND_ROWS: usize = 1024;
    let rb = range.len() / rows;
    let w = &file.bytes()[range.clone()];
    let mut copy = vec![0u8; (k.copy_bytes)(rows, cols)];
    let band_bytes = (k.copy_bytes)(BAND_ROWS, cols);
    let at = |r: usize| range.start + r * rb;
    pool.install(|| {
        copy.par_chunks_mut(band_bytes)
            .enumerate()
            .for_each(|(i, out)| {
                let (r0, r1) = (i * BAND_ROWS, (i * BAND_ROWS + BAND_ROWS).min(rows / 8 * 8));
                (k.repack)(&w[r0 * rb..r1 * rb], r1 - r0, cols, out);
                file.release(at(r0)..at(r1));
            })
    });
    // the pages two bands share
    file.release(at(0)..at(rows / 8 * 8));
    copy
}

struct PoolExecutor(Arc<rayon::ThreadPool>);

impl Executor for PoolExecutor {
    fn install(&self, f: &mut (dyn FnMut() + Send)) {
        self.0.install(f)
    }
}

impl Backend for CpuBackend {
    fn executor(&self) -> Arc<dyn Executor> {
        Arc::new(PoolExecutor(Arc::clone(&self.pool)))
    }

    fn name(&self) -> String {
        let repacked = self.weights.iter().any(|w| w.x8.is_some());
        let repack = if repacked { ", repacked" } else { "" };
        format!(
            "cpu ({}, {} threads{repack})",
            self.isa.name(),
            self.threads
        )
    }

    fn supports(&self, op: OpKind, dtype: GgmlType) -> bool {
        match op {
            OpKind::MatMul => quant::row_kernel(dtype, self.isa).is_some(),
            OpKind::Embed => quant::CPU_TYPES.contains(&dtype),
        }
    }

    fn set_batch_invariant(&mut self, on: bool) {
        self.batch_invariant = on;
    }

    fn set_repack(&mut self, on: bool) {
        self.repack = on;
    }

    fn upload_extra_bytes(&self, info: &TensorInfo) -> u64 {
        let (rows, cols) = (info.n_rows() as usize, info.row_len() as usize);
        match quant::dot8_kernel(info.dtype, self.isa) {
            Some(k) if self.repack && rows >= 8 => (k.copy_bytes)(rows, cols) as u64,
            _ => 0,
        }
    }

    fn matvec_weight_bytes(&self, w: &Weight) -> u64 {
        let cw = &self.weights[w.id as usize];
        match &cw.x8 {
            // the copy's groups, and the rows past the last whole group from the original
            Some((_, copy)) => (copy.len() + cw.rows % 8 * cw.row_bytes()) as u64,
            None => w.n_bytes(),
        }
    }

    fn reserve(&mut self, weights: u64, other: u64) -> Result<()> {
        match std::fs::read_to_string("/proc/meminfo") {
            Ok(meminfo) => memory::check(weights, other, &meminfo),
            Err(_) => Ok(()),
        }
    }

    fn weight_residence(&self) -> Option<super::WeightResidence> {
        let mut r = super::WeightResidence::default();
        for w in &self.weights {
            // a matrix's bytes must lie inside the map; a vector's copy is its dense f32s
            let map = w.file.bytes().as_ptr_range();
            let data = w.data().as_ptr_range();
            if w.dense.is_none() && map.start <= data.start && data.end <= map.end {
                r.in_map += (w.range.len() - w.copied_from_map()) as u64;
            }
            r.copied += w.dense.as_ref().map_or(0, |d| 4 * d.len() as u64);
            r.copied += w.x8.as_ref().map_or(0, |(_, c)| c.len() as u64);
        }
        Some(r)
    }

    fn upload(&mut self, file: &Arc<GgufFile>, info: &TensorInfo) -> Result<Weight> {
        self.upload_as(file, info, self.repack)
    }

    fn upload_lookup(&mut self, file: &Arc<GgufFile>, info: &TensorInfo) -> Result<Weight> {
        self.upload_as(file, info, false)
    }

    fn alloc(&mut self, len: usize) -> Result<Buf> {
        self.bufs.push(vec![0f32; len]);
        Ok(Buf {
            id: (self.bufs.len() - 1) as u32,
            len,
        })
    }

    fn alloc_kv(&mut self, len: usize) -> Result<KvBuf> {
        // zeroed by the allocator (which can hand out fresh zero pages without writing them)
        // rather than element by element
        self.kv.push(bytemuck::zeroed_vec(len));
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
        let len = table.len();
        self.ropes.push(RopeTable { cs: table });
        Ok(Rope::new(
            self.ropes.len() - 1,
            layout,
            head_dim,
            n_rot,
            len,
        ))
    }

    fn embed(&mut self, table: &Weight, ids: &[u32], out: Buf) -> Result<()> {
        let mut o = self.take(out);
        let w = &self.weights[table.id as usize];
        let rb = w.row_bytes();
        for (row, &id) in o.chunks_mut(w.cols).zip(ids) {
            let id = id as usize;
            quant::dequantize(w.dtype, &w.data()[id * rb..(id + 1) * rb], row);
        }
        self.put(out, o);
        Ok(())
    }

    fn matmul(&mut self, w: &Weight, x: Buf, out: Buf, n: usize) -> Result<()> {
        let mut m = matrix(&self.weights, w)?;
        if self.batch_invariant {
            m.kernel.tile = None;
        }
        let mut o = std::mem::take(&mut self.bufs[out.id as usize]);
        let x = &self.bufs[x.id as usize];
        matmul::matmul(
            &self.pool,
            m,
            w.cols,
            x,
            n,
            &mut o,
            &mut self.matmul_scratch,
        );
        self.put(out, o);
        Ok(())
    }

    fn matmul_qkv(
        &mut self,
        norm: Option<PreNorm>,
        w: [&Weight; 3],
        x: Buf,
        out: [Buf; 3],
        n: usize,
    ) -> Result<()> {
        let x = self.pre_norm(norm, x, n)?;
        let cols = w[0].cols;
        if n != 1 || w.iter().any(|m| m.cols != cols) {
            return unfused::matmul_qkv(self, w, x, out, n);
        }
        let mats = [
            matrix(&self.weights, w[0])?,
            matrix(&self.weights, w[1])?,
            matrix(&self.weights, w[2])?,
        ];
        let mut o = out.map(|b| std::mem::take(&mut self.bufs[b.id as usize]));
        let [q, k, v] = &mut o;
        let x = &self.bufs[x.id as usize][..cols];
        let scratch = &mut self.matmul_scratch;
        matmul::matvec_many(&self.pool, mats, x, [q, k, v], scratch);
        for (b, v) in out.into_iter().zip(o) {
            self.put(b, v);
        }
        Ok(())
    }

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
        if n != 1 {
            return unfused::matmul_glu(self, kind, gate, up, x, tmp, out, n);
        }
        let mats = [matrix(&self.weights, gate)?, matrix(&self.weights, up)?];
        let mut o = std::mem::take(&mut self.bufs[out.id as usize]);
        let mut t = std::mem::take(&mut self.bufs[tmp.id as usize]);
        let x = &self.bufs[x.id as usize][..gate.cols];
        let scratch = &mut self.matmul_scratch;
        matmul::matvec_glu(&self.pool, kind, mats, x, &mut o, &mut t, scratch);
        self.put(out, o);
        self.put(tmp, t);
        Ok(())
    }

    fn add_bias(&mut self, x: Buf, bias: &Weight, n: usize) -> Result<()> {
        let mut xv = self.take(x);
        let b = self.dense(bias, "add_bias")?;
        for row in xv[..n * b.len()].chunks_mut(b.len()) {
            for (v, bb) in row.iter_mut().zip(b) {
                *v += bb;
            }
        }
        self.put(x, xv);
        Ok(())
    }

    fn rms_norm(&mut self, x: Buf, w: &Weight, out: Buf, rows: usize, eps: f32) -> Result<()> {
        let mut o = self.take(out);
        if x != out {
            o[..rows * w.cols].copy_from_slice(&self.buf(x)[..rows * w.cols]);
        }
        let g = self.dense(w, "rms_norm")?;
        elementwise::rms_norm(&self.pool, &mut o[..rows * w.cols], g, eps);
        self.put(out, o);
        Ok(())
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
        let mut xv = self.take(x);
        let cs = &self.ropes[rope.id as usize].cs;
        let rows = &mut xv[row0 * heads * rope.head_dim..];
        elementwise::rope(rows, cs, rope, n, heads, pos0);
        self.put(x, xv);
        Ok(())
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
        let s = &self.bufs[src.id as usize][row0 * row..(row0 + n) * row];
        let d = &mut self.kv[dst.id as usize];
        let rows = d.len() / row;
        for (t, s) in s.chunks_exact(row).enumerate() {
            let r = kv_row(pos0 + t, rows);
            for (o, v) in d[r * row..(r + 1) * row].iter_mut().zip(s) {
                *o = f16::from_f32(*v);
            }
        }
        Ok(())
    }

    fn attention(&mut self, q: Buf, k: KvBuf, v: KvBuf, out: Buf, p: &AttnParams) -> Result<()> {
        let mut o = self.take(out);
        attention::attention(
            &self.pool,
            &self.bufs[q.id as usize],
            &self.kv[k.id as usize],
            &self.kv[v.id as usize],
            &mut o,
            p,
            &mut self.attn_scratch,
        );
        self.put(out, o);
        Ok(())
    }

    fn glu(&mut self, kind: Glu, gate: Buf, up: Buf, len: usize) -> Result<()> {
        let mut g = self.take(gate);
        elementwise::glu(&self.pool, kind, &mut g[..len], &self.buf(up)[..len]);
        self.put(gate, g);
        Ok(())
    }

    fn add(&mut self, a: Buf, b: Buf, out: Buf, len: usize) -> Result<()> {
        let mut o = self.take(out);
        match (a == out, b == out) {
            (true, true) => o[..len].iter_mut().for_each(|v| *v *= 2.0),
            (true, false) | (false, true) => {
                let other = self.buf(if a == out { b } else { a });
                for (v, w) in o[..len].iter_mut().zip(&other[..len]) {
                    *v += w;
                }
            }
            (false, false) => {
                let (av, bv) = (self.buf(a), self.buf(b));
                for ((v, x), y) in o[..len].iter_mut().zip(&av[..len]).zip(&bv[..len]) {
                    *v = x + y;
                }
            }
        }
        self.put(out, o);
        Ok(())
    }

    fn scale(&mut self, x: Buf, s: f32, len: usize) -> Result<()> {
        for v in self.bufs[x.id as usize][..len].iter_mut() {
            *v *= s;
        }
        Ok(())
    }

    fn softcap(&mut self, x: Buf, cap: f32, len: usize) -> Result<()> {
        for v in self.bufs[x.id as usize][..len].iter_mut() {
            *v = cap * (*v / cap).tanh();
        }
        Ok(())
    }

    fn copy(
        &mut self,
        src: Buf,
        src_off: usize,
        dst: Buf,
        dst_off: usize,
        len: usize,
    ) -> Result<()> {
        let mut o = self.take(dst);
        if src == dst {
            o.copy_within(src_off..src_off + len, dst_off);
        } else {
            o[dst_off..dst_off + len].copy_from_slice(&self.buf(src)[src_off..src_off + len]);
        }
        self.put(dst, o);
        Ok(())
    }

    fn write(&mut self, dst: Buf, off: usize, data: &[f32]) -> Result<()> {
        self.bufs[dst.id as usize][off..off + data.len()].copy_from_slice(data);
        Ok(())
    }

    fn read(&mut self, src: Buf, off: usize, out: &mut [f32]) -> Result<()> {
        out.copy_from_slice(&self.buf(src)[off..off + out.len()]);
        Ok(())
    }

    fn argmax(&mut self, src: Buf, off: usize, len: usize) -> Result<u32> {
        Ok(crate::sampling::argmax(&self.buf(src)[off..off + len]))
    }

    fn first_non_finite(&mut self, x: Buf, len: usize) -> Result<Option<usize>> {
        let v = &self.buf(x)[..len];
        // counting all-ones exponents vectorizes (a float fold does not: its order is fixed);
        // measured on 341k values, a decoded Gemma token's worth: 43 us against 325 us
        let bad = |x: &f32| (x.to_bits() & 0x7f80_0000 == 0x7f80_0000) as u32;
        let any = v
            .chunks(1 << 20)
            .any(|c| c.iter().map(bad).sum::<u32>() > 0);
        Ok(any.then(|| v.iter().position(|x| !x.is_finite()).unwrap_or(0)))
    }

    fn sync(&mut self) -> Result<()> {
        Ok(())
    }
}

//! The exact-arithmetic reference backend (`--backend reference`): every op in f64 on the
//! weights as ggml dequantizes them, activations never quantized, an f64 KV cache, GELU and
//! softmax from their formulas. It answers "how far is a backend from the model's own
//! numbers": our CPU (8-bit activations, f16 KV, a GELU table, like llama.cpp's CPU), wgpu and
//! CUDA are each measured against it (`tokenfab perplexity --backend reference
//! --kl-divergence-base`, then `--kl-divergence` with the backend under test).
//!
//! What is not exact: the weights are what the file's blocks decode to in f32 (as ggml's
//! dequantizers compute them — that *is* the model), the RoPE table arrives in f32 from
//! `model::rope` (errors ≤ 3e-8, far below the activation quantization it is compared
//! with), and logits are read back as f32. Sums run in f64 with four interleaved
//! accumulators (relative error ~1e-16·√n).
//!
//! Slow by design (perplexity takes ~4× the CPU backend's time): rows are dequantized on
//! every matmul and nothing is fused. Tests and recorded references only.

use super::*;
use crate::gguf::GgmlType;
use crate::quant;
use rayon::prelude::*;
use std::ops::Range;

struct RefWeight {
    file: Arc<GgufFile>,
    range: Range<usize>,
    dtype: GgmlType,
    rows: usize,
    cols: usize,
}

impl RefWeight {
    /// Row `r` decoded to f32 (as ggml's dequantizer gives it) into `out`.
    fn row(&self, r: usize, out: &mut [f32]) -> bool {
        let rb = self.range.len() / self.rows.max(1);
        let start = self.range.start + r * rb;
        quant::dequantize(self.dtype, &self.file.bytes()[start..start + rb], out)
    }
}

/// The f64 reference backend.
pub struct ReferenceBackend {
    pool: Arc<rayon::ThreadPool>,
    threads: usize,
    weights: Vec<RefWeight>,
    bufs: Vec<Vec<f64>>,
    kv: Vec<Vec<f64>>,
    ropes: Vec<Vec<f64>>,
}

impl ReferenceBackend {
    /// A reference backend on `threads` threads (0 = one per core).
    pub fn new(threads: usize) -> Result<Self> {
        let threads = if threads == 0 {
            std::thread::available_parallelism().map_or(1, |n| n.get())
        } else {
            threads
        };
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .thread_name(|i| format!("tokenfab-ref-{i}"))
            .build()
            .map_err(|e| BackendError::Device(format!("cannot start {threads} threads: {e}")))?;
        Ok(ReferenceBackend {
            pool: Arc::new(pool),
            threads,
            weights: Vec::new(),
            bufs: Vec::new(),
            kv: Vec::new(),
            ropes: Vec::new(),
        })
    }

    fn buf(&self, b: Buf) -> &[f64] {
        &self.bufs[b.id as usize]
    }

    fn vector(&self, w: &Weight, op: &str) -> Result<Vec<f64>> {
        let rw = &self.weights[w.id as usize];
        if rw.rows != 1 {
            return Err(BackendError::Invalid(format!(
                "{op}: weight is not a vector"
            )));
        }
        let mut v = vec![0f32; rw.cols];
        rw.row(0, &mut v);
        Ok(v.into_iter().map(f64::from).collect())
    }

    fn check(&self, b: Buf, end: usize, op: &str) -> Result<()> {
        if end > self.bufs[b.id as usize].len() {
            return Err(BackendError::Invalid(format!(
                "{op}: {end} elements of a buffer of {}",
                self.bufs[b.id as usize].len()
            )));
        }
        Ok(())
    }
}

/// `Σ a[i]·b[i]` in f64, four interleaved partial sums.
fn dot(a: &[f64], b: &[f64]) -> f64 {
    let mut s = [0f64; 4];
    let (ca, cb) = (a.chunks_exact(4), b.chunks_exact(4));
    let (ra, rb) = (ca.remainder(), cb.remainder());
    for (x, y) in ca.zip(cb) {
        for i in 0..4 {
            s[i] += x[i] * y[i];
        }
    }
    let tail: f64 = ra.iter().zip(rb).map(|(x, y)| x * y).sum();
    (s[0] + s[1]) + (s[2] + s[3]) + tail
}

/// GELU, tanh approximation (what Gemma's GGUF declares), in f64.
fn gelu(x: f64) -> f64 {
    let k = (2.0 / std::f64::consts::PI).sqrt();
    0.5 * x * (1.0 + (k * (x + 0.044715 * x * x * x)).tanh())
}

fn silu(x: f64) -> f64 {
    x / (1.0 + (-x).exp())
}

impl Backend for ReferenceBackend {
    fn name(&self) -> String {
        format!("reference (f64, {} threads)", self.threads)
    }

    fn supports(&self, _op: OpKind, dtype: GgmlType) -> bool {
        quant::CPU_TYPES.contains(&dtype)
    }

    fn upload(&mut self, file: &Arc<GgufFile>, info: &TensorInfo) -> Result<Weight> {
        if !quant::CPU_TYPES.contains(&info.dtype) {
            return Err(BackendError::unsupported_type("reference", info));
        }
        let w = RefWeight {
            file: Arc::clone(file),
            range: file.tensor_range(info),
            dtype: info.dtype,
            rows: info.n_rows() as usize,
            cols: info.row_len() as usize,
        };
        let weight = Weight {
            id: self.weights.len() as u32,
            dtype: w.dtype,
            rows: w.rows,
            cols: w.cols,
        };
        self.weights.push(w);
        Ok(weight)
    }

    fn alloc(&mut self, len: usize) -> Result<Buf> {
        self.bufs.push(vec![0.0; len]);
        Ok(Buf {
            id: self.bufs.len() as u32 - 1,
            len,
        })
    }

    fn alloc_kv(&mut self, len: usize) -> Result<KvBuf> {
        self.kv.push(vec![0.0; len]);
        Ok(KvBuf {
            id: self.kv.len() as u32 - 1,
            len,
            ring: false,
        })
    }

    fn kv_ring(&self) -> bool {
        true
    }

    fn kv_elem_bytes(&self) -> usize {
        8
    }

    fn rope_table(
        &mut self,
        layout: RopeLayout,
        head_dim: usize,
        n_rot: usize,
        table: Vec<f32>,
    ) -> Result<Rope> {
        let len = table.len();
        self.ropes
            .push(table.into_iter().map(f64::from).collect::<Vec<f64>>());
        Ok(Rope::new(
            self.ropes.len() - 1,
            layout,
            head_dim,
            n_rot,
            len,
        ))
    }

    fn embed(&mut self, table: &Weight, ids: &[u32], out: Buf) -> Result<()> {
        let w = &self.weights[table.id as usize];
        self.check(out, ids.len() * w.cols, "embed")?;
        let mut row = vec![0f32; w.cols];
        let mut rows = Vec::with_capacity(ids.len() * w.cols);
        for &id in ids {
            if id as usize >= w.rows || !w.row(id as usize, &mut row) {
                return Err(BackendError::Invalid(format!(
                    "embed: token {id} of a table of {} rows",
                    w.rows
                )));
            }
            rows.extend(row.iter().map(|&x| x as f64));
        }
        self.bufs[out.id as usize][..rows.len()].copy_from_slice(&rows);
        Ok(())
    }

    fn matmul(&mut self, w: &Weight, x: Buf, out: Buf, n: usize) -> Result<()> {
        let (rows, cols) = (w.rows, w.cols);
        self.check(x, n * cols, "matmul input")?;
        self.check(out, n * rows, "matmul output")?;
        let rw = &self.weights[w.id as usize];
        let xs = &self.bufs[x.id as usize][..n * cols];
        // out transposed: [rows, n], one row of the weight decoded once for all tokens
        let mut out_t = vec![0f64; rows * n];
        let ok = self.pool.install(|| {
            out_t.par_chunks_mut(n).enumerate().all(|(r, o)| {
                let mut w32 = vec![0f32; cols];
                if !rw.row(r, &mut w32) {
                    return false;
                }
                let w64: Vec<f64> = w32.iter().map(|&v| v as f64).collect();
                for (t, o) in o.iter_mut().enumerate() {
                    *o = dot(&w64, &xs[t * cols..(t + 1) * cols]);
                }
                true
            })
        });
        if !ok {
            return Err(BackendError::Invalid(format!(
                "matmul: cannot decode {:?} rows",
                w.dtype
            )));
        }
        let o = &mut self.bufs[out.id as usize];
        for r in 0..rows {
            for t in 0..n {
                o[t * rows + r] = out_t[r * n + t];
            }
        }
        Ok(())
    }

    fn add_bias(&mut self, x: Buf, bias: &Weight, n: usize) -> Result<()> {
        let b = self.vector(bias, "add_bias")?;
        self.check(x, n * b.len(), "add_bias")?;
        for row in self.bufs[x.id as usize][..n * b.len()].chunks_mut(b.len()) {
            for (v, b) in row.iter_mut().zip(&b) {
                *v += b;
            }
        }
        Ok(())
    }

    fn rms_norm(&mut self, x: Buf, w: &Weight, out: Buf, rows: usize, eps: f32) -> Result<()> {
        let g = self.vector(w, "rms_norm")?;
        let d = g.len();
        self.check(x, rows * d, "rms_norm input")?;
        self.check(out, rows * d, "rms_norm output")?;
        let xs = self.buf(x)[..rows * d].to_vec();
        let o = &mut self.bufs[out.id as usize];
        for (r, row) in xs.chunks(d).enumerate() {
            let ms = row.iter().map(|v| v * v).sum::<f64>() / d as f64;
            let inv = 1.0 / (ms + eps as f64).sqrt();
            for i in 0..d {
                o[r * d + i] = row[i] * inv * g[i];
            }
        }
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
        // `Ops::rope` has checked the positions against the table
        let hd = rope.head_dim;
        self.check(x, (row0 + n) * heads * hd, "rope")?;
        let cs = &self.ropes[rope.id as usize];
        let xs = &mut self.bufs[x.id as usize];
        for t in 0..n {
            let table = &cs[(pos0 + t) * hd..(pos0 + t + 1) * hd];
            for h in 0..heads {
                let at = ((row0 + t) * heads + h) * hd;
                let v = &mut xs[at..at + hd];
                // the pairs past n_rot / 2 pass through
                for i in 0..rope.n_rot / 2 {
                    let (c, s) = (table[2 * i], table[2 * i + 1]);
                    let (ia, ib) = Rope::pair(rope.layout, rope.n_rot, i);
                    let (x0, x1) = (v[ia], v[ib]);
                    v[ia] = x0 * c - x1 * s;
                    v[ib] = x0 * s + x1 * c;
                }
            }
        }
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
        self.check(src, (row0 + n) * row, "store_kv")?;
        let d = &mut self.kv[dst.id as usize];
        let rows = d.len() / row;
        if n > rows || (!dst.ring && pos0 + n > rows) {
            return Err(BackendError::Invalid("store_kv: past the cache".into()));
        }
        let s = &self.bufs[src.id as usize][row0 * row..(row0 + n) * row];
        for (t, s) in s.chunks_exact(row).enumerate() {
            let r = kv_row(pos0 + t, rows);
            d[r * row..(r + 1) * row].copy_from_slice(s);
        }
        Ok(())
    }

    fn attention(&mut self, q: Buf, k: KvBuf, v: KvBuf, out: Buf, p: &AttnParams) -> Result<()> {
        let hd = p.head_dim;
        let (qw, kw) = (p.n_head * hd, p.n_head_kv * hd);
        let group = p.n_head / p.n_head_kv.max(1);
        self.check(q, (p.row0 + p.n_tokens) * qw, "attention q")?;
        self.check(out, (p.row0 + p.n_tokens) * qw, "attention out")?;
        let (kc, vc) = (&self.kv[k.id as usize], &self.kv[v.id as usize]);
        let rows = kc.len().min(vc.len()) / kw;
        if !k.ring && (p.pos0 + p.n_tokens) > rows {
            return Err(BackendError::Invalid("attention: past the cache".into()));
        }
        let qs = &self.bufs[q.id as usize];
        let mut res = vec![0f64; p.n_tokens * qw];
        for t in 0..p.n_tokens {
            let pos = p.pos0 + t;
            let first = p.window.map_or(0, |w| (pos + 1).saturating_sub(w));
            for h in 0..p.n_head {
                let kvh = h / group.max(1);
                let qv = &qs[(p.row0 + t) * qw + h * hd..][..hd];
                let scores: Vec<f64> = (first..=pos)
                    .map(|j| dot(qv, &kc[kv_row(j, rows) * kw + kvh * hd..][..hd]) * p.scale as f64)
                    .map(|s| match p.softcap {
                        Some(c) => c as f64 * (s / c as f64).tanh(),
                        None => s,
                    })
                    .collect();
                let m = scores.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
                let e: Vec<f64> = scores.iter().map(|s| (s - m).exp()).collect();
                let z: f64 = e.iter().sum();
                let o = &mut res[t * qw + h * hd..][..hd];
                for (j, w) in (first..=pos).zip(&e) {
                    let vv = &vc[kv_row(j, rows) * kw + kvh * hd..][..hd];
                    for i in 0..hd {
                        o[i] += w / z * vv[i];
                    }
                }
            }
        }
        self.bufs[out.id as usize][p.row0 * qw..(p.row0 + p.n_tokens) * qw].copy_from_slice(&res);
        Ok(())
    }

    fn glu(&mut self, kind: Glu, gate: Buf, up: Buf, len: usize) -> Result<()> {
        self.check(gate, len, "glu")?;
        self.check(up, len, "glu")?;
        let u = self.buf(up)[..len].to_vec();
        for (g, u) in self.bufs[gate.id as usize][..len].iter_mut().zip(u) {
            *g = match kind {
                Glu::Gelu => gelu(*g),
                Glu::Silu => silu(*g),
            } * u;
        }
        Ok(())
    }

    fn add(&mut self, a: Buf, b: Buf, out: Buf, len: usize) -> Result<()> {
        for x in [a, b, out] {
            self.check(x, len, "add")?;
        }
        let (av, bv) = (self.buf(a)[..len].to_vec(), self.buf(b)[..len].to_vec());
        for (o, (x, y)) in self.bufs[out.id as usize][..len]
            .iter_mut()
            .zip(av.iter().zip(&bv))
        {
            *o = x + y;
        }
        Ok(())
    }

    fn scale(&mut self, x: Buf, s: f32, len: usize) -> Result<()> {
        self.check(x, len, "scale")?;
        for v in &mut self.bufs[x.id as usize][..len] {
            *v *= s as f64;
        }
        Ok(())
    }

    fn softcap(&mut self, x: Buf, cap: f32, len: usize) -> Result<()> {
        self.check(x, len, "softcap")?;
        let c = cap as f64;
        for v in &mut self.bufs[x.id as usize][..len] {
            *v = c * (*v / c).tanh();
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
        self.check(src, src_off + len, "copy")?;
        self.check(dst, dst_off + len, "copy")?;
        let s = self.buf(src)[src_off..src_off + len].to_vec();
        self.bufs[dst.id as usize][dst_off..dst_off + len].copy_from_slice(&s);
        Ok(())
    }

    fn write(&mut self, dst: Buf, off: usize, data: &[f32]) -> Result<()> {
        self.check(dst, off + data.len(), "write")?;
        for (o, v) in self.bufs[dst.id as usize][off..].iter_mut().zip(data) {
            *o = *v as f64;
        }
        Ok(())
    }

    fn read(&mut self, src: Buf, off: usize, out: &mut [f32]) -> Result<()> {
        self.check(src, off + out.len(), "read")?;
        for (o, v) in out.iter_mut().zip(&self.buf(src)[off..]) {
            *o = *v as f32;
        }
        Ok(())
    }

    fn first_non_finite(&mut self, x: Buf, len: usize) -> Result<Option<usize>> {
        self.check(x, len, "first_non_finite")?;
        Ok(self.buf(x)[..len].iter().position(|v| !v.is_finite()))
    }

    fn sync(&mut self) -> Result<()> {
        Ok(())
    }
}

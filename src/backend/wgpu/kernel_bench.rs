//! The per-kernel micro-benchmark behind `tokenfab bench --kernels`: one matrix product of a
//! given type and shape, repeated, timed on the host around one submit and, where the
//! adapter has timestamps (`--profile` backends), on the GPU per dispatch.
//!
//! The weights are pseudo-random bytes in the type's block layout (the timing does not
//! depend on the values). Several copies are rotated so that the bytes one call reads do not
//! sit in the GPU's last-level cache from the call before (an H100 holds 50 MB: a 4096 x 4096
//! Q4_K matrix, 9.4 MB, would otherwise be timed from cache).

use super::WgpuBackend;
use crate::backend::{Backend, BackendError, Result, Weight};
use crate::gguf::GgmlType;

/// Bytes of weight copies rotated through (at least twice a large last-level cache).
const ROTATE_BYTES: u64 = 256 << 20;

/// One timed kernel.
#[derive(Clone, Debug, serde::Serialize)]
pub struct KernelTiming {
    /// The kernel that ran (`matvec.q4_K`, `gemm.q6_K`, ...).
    pub kernel: String,
    pub dtype: String,
    pub rows: usize,
    pub cols: usize,
    pub tokens: usize,
    pub reps: usize,
    /// Weight bytes one call reads.
    pub weight_bytes: u64,
    /// Host wall time per call: one submit of `reps` dispatches, divided.
    pub host_us: f64,
    /// GPU time per call from timestamps (None without TIMESTAMP_QUERY / profiling).
    pub gpu_us: Option<f64>,
    /// Weight bytes per second over the best of the two times.
    pub gb_s: f64,
    /// 2 x rows x cols x tokens FLOPs per second over the same time.
    pub tflop_s: f64,
}

/// A splitmix64 stream of bytes.
fn pseudo_random(len: usize, seed: u64) -> Vec<u8> {
    let mut s = seed;
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        s = s.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = s;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        out.extend_from_slice(&(z ^ (z >> 31)).to_le_bytes());
    }
    out.truncate(len);
    out
}

impl WgpuBackend {
    /// Times `reps` products of `tokens` tokens against a `rows` x `cols` matrix of `dtype`
    /// (after one untimed call that compiles the pipeline).
    pub fn time_matmul(
        &mut self,
        dtype: GgmlType,
        rows: usize,
        cols: usize,
        tokens: usize,
        reps: usize,
    ) -> Result<KernelTiming> {
        if !cols.is_multiple_of(dtype.block_size()) || rows == 0 || tokens == 0 || reps == 0 {
            return Err(BackendError::Invalid(format!(
                "time_matmul: {rows} x {cols} {dtype}, {tokens} tokens, {reps} reps"
            )));
        }
        let row_bytes = cols / dtype.block_size() * dtype.type_size();
        let bytes = (rows * row_bytes) as u64;
        let copies = (ROTATE_BYTES.div_ceil(bytes) as usize).clamp(1, reps);
        let data = pseudo_random(rows * row_bytes, rows as u64 * 31 + cols as u64);
        let mark = (self.store.len(), self.weights.len());
        let r = (0..copies)
            .map(|i| {
                let w = Weight {
                    id: self.weights.len() as u32,
                    dtype,
                    rows,
                    cols,
                };
                self.upload_matrix(&format!("bench {dtype} #{i}"), w, &data)
            })
            .collect::<Result<Vec<_>>>()
            .and_then(|ws| self.time_calls(&ws, tokens, reps));
        self.release_from(mark.0, mark.1);
        r
    }

    /// Times `reps` products of `tokens` tokens, rotating through the copies `ws` of one
    /// matrix.
    fn time_calls(&mut self, ws: &[Weight], tokens: usize, reps: usize) -> Result<KernelTiming> {
        let (dtype, rows, cols) = (ws[0].dtype, ws[0].rows, ws[0].cols);
        let bytes = ws[0].n_bytes();
        let copies = ws.len();
        let x = self.alloc(tokens * cols)?;
        self.write(x, 0, &vec![0.01; tokens * cols])?;
        let out = self.alloc(tokens * rows)?;
        self.matmul(&ws[0], x, out, tokens)?;
        self.sync()?;
        self.take_profile();
        let t0 = std::time::Instant::now();
        for i in 0..reps {
            self.matmul(&ws[i % copies], x, out, tokens)?;
        }
        self.sync()?;
        let host_us = t0.elapsed().as_secs_f64() * 1e6 / reps as f64;
        let kernel = self.kernel_for(dtype, cols, tokens).name();
        let gpu_us = self.take_profile().and_then(|p| {
            let (calls, ns) = p
                .iter()
                .filter(|k| k.name == kernel)
                .fold((0u64, 0f64), |(c, n), k| (c + k.calls, n + k.ns));
            (calls > 0).then(|| ns / 1e3 / reps as f64)
        });
        let secs = gpu_us.unwrap_or(host_us).min(host_us) / 1e6;
        Ok(KernelTiming {
            kernel,
            dtype: dtype.to_string(),
            rows,
            cols,
            tokens,
            reps,
            weight_bytes: bytes,
            host_us,
            gpu_us,
            gb_s: bytes as f64 / secs / 1e9,
            tflop_s: 2.0 * (rows * cols * tokens) as f64 / secs / 1e12,
        })
    }
}

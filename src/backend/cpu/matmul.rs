//! Quantized matrix products on the CPU, on weights borrowed from the memory map.
//!
//! Activations are quantized once per call into the weight type's activation format
//! (`crate::quant::act`); then every output is one row-kernel dot product. Decode (one
//! token) splits the weight rows across threads; prefill (many tokens) works on tiles of
//! weight rows × tokens so a weight row is reused from L1 for a block of tokens.

use crate::quant::RowKernel;
use rayon::prelude::*;

/// Rows of weights one task handles in prefill; tokens per inner block.
const ROW_TILE: usize = 16;
const TOKEN_TILE: usize = 64;

/// `out[t * rows + r] = dot(w[r], x[t])` for `t < n`.
#[allow(clippy::too_many_arguments)]
pub fn matmul(
    pool: &rayon::ThreadPool,
    kernel: RowKernel,
    w: &[u8],
    rows: usize,
    cols: usize,
    x: &[f32],
    n: usize,
    out: &mut [f32],
    act_buf: &mut Vec<u8>,
    tmp: &mut Vec<f32>,
) {
    let w_row = w.len() / rows;
    let a_row = kernel.act.row_bytes(cols);
    act_buf.resize(n * a_row, 0);
    let dot = kernel.dot;
    pool.install(|| {
        if n == 1 {
            kernel.act.quantize(&x[..cols], &mut act_buf[..a_row]);
        } else {
            act_buf[..n * a_row]
                .par_chunks_mut(a_row)
                .zip(x[..n * cols].par_chunks(cols))
                .for_each(|(q, xr)| kernel.act.quantize(xr, q));
        }
        let xq: &[u8] = act_buf;
        if n == 1 {
            let threads = pool.current_num_threads().max(1);
            let chunk = (rows / (threads * 8)).clamp(16, 4096);
            out[..rows]
                .par_chunks_mut(chunk)
                .enumerate()
                .for_each(|(ci, o)| {
                    let r0 = ci * chunk;
                    for (i, y) in o.iter_mut().enumerate() {
                        let r = r0 + i;
                        *y = dot(&w[r * w_row..(r + 1) * w_row], &xq[..a_row]);
                    }
                });
            return;
        }
        // Prefill: results land transposed in `tmp` ([rows][n]) so each task writes one
        // contiguous block, then are transposed into `out` ([n][rows]).
        tmp.resize(rows * n, 0.0);
        tmp[..rows * n]
            .par_chunks_mut(ROW_TILE * n)
            .enumerate()
            .for_each(|(bi, block)| {
                let r0 = bi * ROW_TILE;
                let nr = block.len() / n;
                let act = |t: usize| &xq[t * a_row..(t + 1) * a_row];
                for t0 in (0..n).step_by(TOKEN_TILE) {
                    let t1 = (t0 + TOKEN_TILE).min(n);
                    for i in 0..nr {
                        let r = r0 + i;
                        let wr = &w[r * w_row..(r + 1) * w_row];
                        let mut t = t0;
                        if let Some(dot4) = kernel.dot4 {
                            while t + 4 <= t1 {
                                let y = dot4(wr, [act(t), act(t + 1), act(t + 2), act(t + 3)]);
                                block[i * n + t..i * n + t + 4].copy_from_slice(&y);
                                t += 4;
                            }
                        }
                        for t in t..t1 {
                            block[i * n + t] = dot(wr, act(t));
                        }
                    }
                }
            });
        let tmp: &[f32] = tmp;
        out[..n * rows]
            .par_chunks_mut(rows)
            .enumerate()
            .for_each(|(t, o)| {
                for (r, y) in o.iter_mut().enumerate() {
                    *y = tmp[r * n + t];
                }
            });
    });
}

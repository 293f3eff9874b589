//! Quantized matrix products on the CPU, on weights borrowed from the memory map.
//!
//! Activations are quantized once per call into the weight type's activation format
//! (`crate::quant::act`). Decode (one token) is one row-kernel dot product per output, the
//! weight rows split across threads. Prefill (at least [`TILE_MIN_TOKENS`] tokens, on a CPU
//! and type with a tiled kernel) is a tiled integer GEMM: a band of weight rows is unpacked
//! once (`crate::quant::tile`, tiles in parallel), then blocks of tokens run against it in
//! parallel, each writing its own output rows, a chunk of columns at a time so a tile stays
//! in L1 while the block's tokens pass (`crate::quant::gemm_x86`). Small batches, types or
//! CPUs without a tiled kernel, and batch-invariant models run the row kernels on tiles of
//! weight rows × tokens, four tokens per weight row pass.

use crate::quant::tile::{ActTile, WeightTile};
use crate::quant::{RowKernel, TileKernel, TileOut};
use rayon::prelude::*;

/// Rows of weights one task handles in the row-kernel prefill; tokens per inner block.
const ROW_TILE: usize = 16;
const TOKEN_TILE: usize = 64;

/// Fewest tokens for which unpacking a weight tile pays (below, the row kernels run).
pub const TILE_MIN_TOKENS: usize = 16;

/// Columns of a weight tile one pass over a block of tokens covers (16 rows: 16 KiB of
/// unpacked weights, which stay in L1 while the block's tokens stream past).
const TILE_COLS: usize = 1024;

/// Unpacked weights per band (shared by every task; stays in the last-level cache).
const BAND_BYTES: usize = 2 << 20;

/// Buffers a matrix product reuses between calls.
#[derive(Default)]
pub struct Scratch {
    act: Vec<u8>,
    tmp: Vec<f32>,
    tile: ActTile,
    band: Vec<WeightTile>,
}

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
    scratch: &mut Scratch,
) {
    let Scratch {
        act: act_buf,
        tmp,
        tile,
        band,
    } = scratch;
    let w_row = w.len() / rows;
    let a_row = kernel.act.row_bytes(cols);
    let dot = kernel.dot;
    pool.install(|| {
        if let Some(tk) = kernel.tile.filter(|_| n >= TILE_MIN_TOKENS) {
            tile.fill(kernel.act, &x[..n * cols], n, cols, tk.group);
            tiled(tk, w, w_row, rows, cols, n, tile, out, band);
            return;
        }
        act_buf.resize(n * a_row, 0);
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

/// The tiled GEMM, a band of weight rows at a time: the band's tiles are unpacked in
/// parallel (one task per tile of `tk.lanes` rows), then every block of tokens runs against
/// all of them in parallel (one task per block, writing its own rows of `out`, `[token][row]`).
#[allow(clippy::too_many_arguments)]
fn tiled(
    tk: TileKernel,
    w: &[u8],
    w_row: usize,
    rows: usize,
    cols: usize,
    n: usize,
    act: &ActTile,
    out: &mut [f32],
    band: &mut Vec<WeightTile>,
) {
    let lanes = tk.lanes;
    let groups = cols / tk.group;
    let chunk = (TILE_COLS / tk.group).max(1);
    // tiles per band: about BAND_BYTES of unpacked weights
    let band_tiles = (BAND_BYTES / (cols * lanes)).clamp(1, rows.div_ceil(lanes));
    if band.len() < band_tiles {
        band.resize_with(band_tiles, WeightTile::default);
    }
    // tokens per task: enough tasks for every thread, whole register blocks
    let threads = rayon::current_num_threads().max(1);
    let block = n.div_ceil(2 * threads).next_multiple_of(4).clamp(4, 64);
    for b0 in (0..rows).step_by(band_tiles * lanes) {
        let b1 = (b0 + band_tiles * lanes).min(rows);
        let tiles = (b1 - b0).div_ceil(lanes);
        band[..tiles]
            .par_iter_mut()
            .enumerate()
            .for_each(|(i, wt)| {
                let r0 = b0 + i * lanes;
                let r1 = (r0 + lanes).min(rows);
                wt.fill(tk.dtype, &w[r0 * w_row..r1 * w_row], w_row, cols, lanes);
            });
        let band: &[WeightTile] = band;
        out[..n * rows]
            .par_chunks_mut(block * rows)
            .enumerate()
            .for_each(|(bi, o)| {
                let (t0, nt) = (bi * block, o.len() / rows);
                for t in 0..nt {
                    o[t * rows + b0..t * rows + b1].fill(0.0);
                }
                // a partial last tile accumulates aside, then its rows are copied
                let mut part = Vec::new();
                for (i, wt) in band[..tiles].iter().enumerate() {
                    let r0 = b0 + i * lanes;
                    let nr = lanes.min(rows - r0);
                    let run = |o: &mut TileOut| {
                        for g0 in (0..groups).step_by(chunk) {
                            (tk.run)(wt, act, cols, g0..(g0 + chunk).min(groups), t0, o);
                        }
                    };
                    if nr == lanes {
                        let end = (nt - 1) * rows + r0 + lanes;
                        run(&mut TileOut {
                            out: &mut o[r0..end],
                            tokens: nt,
                            stride: rows,
                        });
                    } else {
                        part.clear();
                        part.resize(nt * lanes, 0.0);
                        run(&mut TileOut {
                            out: &mut part,
                            tokens: nt,
                            stride: lanes,
                        });
                        for t in 0..nt {
                            o[t * rows + r0..t * rows + r0 + nr]
                                .copy_from_slice(&part[t * lanes..t * lanes + nr]);
                        }
                    }
                }
            });
    }
}

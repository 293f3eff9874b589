//! Quantized matrix products on the CPU, on weights borrowed from the memory map.
//!
//! Activations are quantized once per call into the weight type's activation format
//! (`crate::quant::act`). Decode (one token) is one row-kernel dot product per output, the
//! weight rows split across threads; an attention block's Q, K and V, and a feed-forward's
//! gate and up with the GLU, each run as one parallel pass over all their rows
//! ([`matvec_many`], [`matvec_glu`]). Prefill (at least [`TILE_MIN_TOKENS`] tokens, on a CPU
//! and type with a tiled kernel) is a tiled integer GEMM: a band of weight rows is unpacked
//! once (`crate::quant::tile`, tiles in parallel), then blocks of tokens run against it in
//! parallel, each writing its own output rows, a chunk of columns at a time so a tile stays
//! in L1 while the block's tokens pass (`crate::quant::gemm_x86`). Small batches, types or
//! CPUs without a tiled kernel, and batch-invariant models run the row kernels on tiles of
//! weight rows × tokens, four tokens per weight row pass. A matrix loaded with an interleaved
//! copy (`repack`) runs its eight-row kernel for every row of its whole groups, at one token
//! and in those small batches alike (its rounding is its own, so a row never switches kernel
//! with the batch size); the tiled GEMM unpacks the copy's rows (the same values as the
//! original's), so no product reads the original and the load can release its pages.

use super::elementwise::glu_serial;
use crate::backend::Glu;
use crate::gguf::GgmlType;
use crate::quant::tile::{unpack_row, ActTile, WeightTile};
use crate::quant::{RowKernel, TileKernel, TileOut, UnpackLane};
use rayon::prelude::*;
use std::ops::Range;

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
pub fn matmul(
    pool: &rayon::ThreadPool,
    m: Matrix,
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
    let (kernel, w, rows) = (m.kernel, m.w, m.rows);
    let w_row = w.len() / rows;
    let a_row = kernel.act.row_bytes(cols);
    let dot = kernel.dot;
    pool.install(|| {
        if let Some(tk) = kernel.tile.filter(|_| n >= TILE_MIN_TOKENS) {
            tile.fill(kernel.act, &x[..n * cols], n, cols, tk.group);
            tiled(tk, m, cols, n, tile, out, band);
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
            let chunk = decode_chunk(pool, rows);
            out[..rows]
                .par_chunks_mut(chunk)
                .enumerate()
                .for_each(|(ci, o)| m.dot_rows(ci * chunk, o, &xq[..a_row]));
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
                // rows of whole groups of an interleaved copy: its kernel, token by token (a
                // group stays in L1 while the tokens pass), as decode computes them
                let grouped = (m.groups() * 8).saturating_sub(r0).min(nr);
                for g in (0..grouped).step_by(8) {
                    for t in 0..n {
                        let y = m.group((r0 + g) / 8, act(t));
                        for (k, y) in y.into_iter().enumerate() {
                            block[(g + k) * n + t] = y;
                        }
                    }
                }
                for t0 in (0..n).step_by(TOKEN_TILE) {
                    let t1 = (t0 + TOKEN_TILE).min(n);
                    for i in grouped..nr {
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

/// Rows per task of a one-token product: about eight tasks a thread, so a thread that
/// finishes early takes another; a multiple of eight, so an interleaved copy's groups never
/// straddle two tasks.
fn decode_chunk(pool: &rayon::ThreadPool, rows: usize) -> usize {
    let threads = pool.current_num_threads().max(1);
    (rows / (threads * 8)).clamp(16, 4096).next_multiple_of(8)
}

/// A weight matrix as the products read it: its row kernel, bytes and rows, and where the
/// model was loaded with `repack`, an interleaved copy with its eight-row decode kernel.
#[derive(Clone, Copy)]
pub struct Matrix<'a> {
    pub kernel: RowKernel,
    pub w: &'a [u8],
    pub rows: usize,
    pub x8: Option<Interleaved<'a>>,
}

/// An interleaved copy of a matrix's first `rows / 8 * 8` rows (`crate::quant::q4k_x8`): its
/// eight-row kernel, and its rows unpacked for the tiled GEMM.
#[derive(Clone, Copy)]
pub struct Interleaved<'a> {
    pub dot8: fn(&[u8], &[u8]) -> [f32; 8],
    pub unpack: UnpackLane,
    pub copy: &'a [u8],
}

impl Matrix<'_> {
    fn row(&self, r: usize) -> &[u8] {
        let rb = self.w.len() / self.rows;
        &self.w[r * rb..(r + 1) * rb]
    }

    /// Whole groups of eight rows in the interleaved copy (0 without one).
    fn groups(&self) -> usize {
        self.x8.map_or(0, |_| self.rows / 8)
    }

    /// Rows `8g..8g + 8` · `act` through the copy's kernel (`g < self.groups()`).
    fn group(&self, g: usize, act: &[u8]) -> [f32; 8] {
        let x8 = self.x8.expect("a group of a matrix without a copy");
        let gb = x8.copy.len() / self.groups();
        (x8.dot8)(&x8.copy[g * gb..(g + 1) * gb], act)
    }

    /// Row `r` unpacked for the tiled GEMM (`crate::quant::tile::unpack_row`): from the
    /// interleaved copy where it holds the row — the same values — so prefill, like decode,
    /// leaves the original's pages unread (the load releases them).
    fn unpack(
        &self,
        dtype: GgmlType,
        r: usize,
        vals: &mut [u8],
        scale: &mut [f32],
        min: &mut [f32],
    ) {
        match self.x8 {
            Some(x8) if r / 8 < self.groups() => {
                let gb = x8.copy.len() / self.groups();
                (x8.unpack)(
                    &x8.copy[r / 8 * gb..(r / 8 + 1) * gb],
                    r % 8,
                    vals,
                    scale,
                    min,
                )
            }
            _ => unpack_row(dtype, self.row(r), vals, scale, min),
        }
    }

    /// `out[i] = dot(row r0 + i, act)`. A row of a whole group in the interleaved copy always
    /// goes through the copy's kernel (its rounding differs from the row kernel's in the last
    /// bits, so a row's result must not depend on where a task starts); the others through the
    /// row kernel.
    fn dot_rows(&self, r0: usize, out: &mut [f32], act: &[u8]) {
        let end = r0 + out.len();
        let mut r = r0;
        while r < end && r / 8 < self.groups() {
            let g = r / 8;
            let y = self.group(g, act);
            let take = (8 * g + 8).min(end) - r;
            out[r - r0..r - r0 + take].copy_from_slice(&y[r - 8 * g..r - 8 * g + take]);
            r += take;
        }
        for (i, y) in out[r - r0..].iter_mut().enumerate() {
            *y = (self.kernel.dot)(self.row(r + i), act);
        }
    }
}

/// Quantizes the token `x` once per activation format the matrices read, into `buf`; returns
/// where each matrix's copy lies in it.
fn quantize_once<const N: usize>(
    mats: &[Matrix; N],
    x: &[f32],
    buf: &mut Vec<u8>,
) -> [Range<usize>; N] {
    let mut at: [Range<usize>; N] = std::array::from_fn(|_| 0..0);
    let mut end = 0;
    for i in 0..N {
        let act = mats[i].kernel.act;
        match (0..i).find(|&j| mats[j].kernel.act == act) {
            Some(j) => at[i] = at[j].clone(),
            None => {
                at[i] = end..end + act.row_bytes(x.len());
                end = at[i].end;
            }
        }
    }
    buf.resize(end, 0);
    for i in 0..N {
        if !(0..i).any(|j| mats[j].kernel.act == mats[i].kernel.act) {
            mats[i].kernel.act.quantize(x, &mut buf[at[i].clone()]);
        }
    }
    at
}

/// One token `x` against several matrices of its width in one parallel pass (an attention
/// block's Q, K and V): `outs[i][r] = dot(mats[i] row r, x)`. One fork and join instead of
/// one per matrix, the activation quantized once per format; every result is the bits
/// [`matmul`] gives (the same row kernel on the same quantized activation).
pub fn matvec_many<const N: usize>(
    pool: &rayon::ThreadPool,
    mats: [Matrix; N],
    x: &[f32],
    outs: [&mut [f32]; N],
    scratch: &mut Scratch,
) {
    let Scratch { act, tmp, .. } = scratch;
    let at = quantize_once(&mats, x, act);
    let act: &[u8] = act;
    let total = mats.iter().map(|m| m.rows).sum();
    tmp.resize(total, 0.0);
    let chunk = decode_chunk(pool, total);
    pool.install(|| {
        tmp[..total]
            .par_chunks_mut(chunk)
            .enumerate()
            .for_each(|(ci, mut o)| {
                // the chunk's rows of the concatenated matrices → runs of rows of each
                let (mut m, mut r) = (0, ci * chunk);
                while r >= mats[m].rows {
                    r -= mats[m].rows;
                    m += 1;
                }
                while !o.is_empty() {
                    let take = o.len().min(mats[m].rows - r);
                    let (run, rest) = o.split_at_mut(take);
                    mats[m].dot_rows(r, run, &act[at[m].clone()]);
                    (o, r, m) = (rest, 0, m + 1);
                }
            })
    });
    let mut r0 = 0;
    for (m, o) in mats.iter().zip(outs) {
        o[..m.rows].copy_from_slice(&tmp[r0..r0 + m.rows]);
        r0 += m.rows;
    }
}

/// One token `x` through a gated feed-forward's first half in one parallel pass: each task
/// takes a range of rows, dots them with `gate` into `out` and with `up` into `up_out`, and
/// applies the GLU there (`out = act(gate · x) * (up · x)`). The GLU runs on every thread,
/// in the shadow of the weight stream, instead of on one after the products; the bits are
/// those of two [`matmul`]s and `glu` (each element's GLU depends on its own inputs only).
pub fn matvec_glu(
    pool: &rayon::ThreadPool,
    kind: Glu,
    [gate, up]: [Matrix; 2],
    x: &[f32],
    out: &mut [f32],
    up_out: &mut [f32],
    scratch: &mut Scratch,
) {
    let at = quantize_once(&[gate, up], x, &mut scratch.act);
    let act: &[u8] = &scratch.act;
    let (ag, au) = (&act[at[0].clone()], &act[at[1].clone()]);
    let rows = gate.rows;
    let chunk = decode_chunk(pool, rows);
    pool.install(|| {
        out[..rows]
            .par_chunks_mut(chunk)
            .zip(up_out[..rows].par_chunks_mut(chunk))
            .enumerate()
            .for_each(|(ci, (g, u))| {
                gate.dot_rows(ci * chunk, g, ag);
                up.dot_rows(ci * chunk, u, au);
                glu_serial(kind, g, u);
            })
    });
}

/// The tiled GEMM, a band of weight rows at a time: the band's tiles are unpacked in
/// parallel (one task per tile of `tk.lanes` rows), then every block of tokens runs against
/// all of them in parallel (one task per block, writing its own rows of `out`, `[token][row]`).
fn tiled(
    tk: TileKernel,
    m: Matrix,
    cols: usize,
    n: usize,
    act: &ActTile,
    out: &mut [f32],
    band: &mut Vec<WeightTile>,
) {
    let (lanes, rows) = (tk.lanes, m.rows);
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
                let nr = lanes.min(rows - r0);
                wt.fill_with(nr, cols, tk.group, lanes, |r, v, s, mn| {
                    m.unpack(tk.dtype, r0 + r, v, s, mn)
                });
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::quant::tests::{candle_quantized, random_f32};
    use crate::quant::{row_kernel, Isa};

    /// On this CPU's instruction set, a batch through the tiled GEMM (a partial last tile of
    /// rows, the activations' tile, the single-token tail of the register blocks) gives each
    /// token's row-kernel products to the rounding of its activations' quantization. On
    /// aarch64 under qemu this is the whole-product check of NEON's `sdot` tiles
    /// (`crate::quant::gemm_neon`).
    #[test]
    fn tiled_batches_should_match_the_row_kernels() {
        use GgmlType::*;
        let isa = Isa::detect();
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(2)
            .build()
            .unwrap();
        let (rows, cols, n) = (40, 1024, TILE_MIN_TOKENS + 5);
        let mut tested = Vec::new();
        for t in [Q4_0, Q5_0, Q8_0, Q4_K, Q5_K, Q6_K] {
            let Some(kernel) = row_kernel(t, isa).filter(|k| k.tile.is_some()) else {
                continue;
            };
            let (w, _) = candle_quantized(t, rows, cols, 7);
            let m = Matrix {
                kernel,
                w: &w,
                rows,
                x8: None,
            };
            let x = random_f32(n * cols, 8);
            let mut scratch = Scratch::default();
            let mut batch = vec![0f32; n * rows];
            matmul(&pool, m, cols, &x, n, &mut batch, &mut scratch);
            let (mut err, mut norm) = (0f64, 0f64);
            for (tok, got) in batch.chunks(rows).enumerate() {
                let mut alone = vec![0f32; rows];
                let xt = &x[tok * cols..(tok + 1) * cols];
                matmul(&pool, m, cols, xt, 1, &mut alone, &mut scratch);
                for (a, b) in got.iter().zip(&alone) {
                    err += (*a as f64 - *b as f64).powi(2);
                    norm += (*b as f64).powi(2);
                }
            }
            let nmse = err / norm;
            eprintln!("{t} on {}: nmse {nmse:.2e}", isa.name());
            assert!(nmse < 1e-9, "{t} on {}: nmse {nmse}", isa.name());
            tested.push(t);
        }
        if tested.is_empty() {
            eprintln!("SKIPPED: no tiled GEMM on {}", isa.name());
        }
    }
}

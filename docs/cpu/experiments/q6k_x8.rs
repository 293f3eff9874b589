// EXPERIMENT, not part of the build (2026-11-29, third sitting): a Q6_K eight-row decode
// kernel for `--repack`, the counterpart of `src/quant/q4k_x8.rs`, written to plug into
// `quant::dot8_kernel` (a `Dot8 { repack, dot8, copy_bytes, unpack: unpack_row }` for Q6_K on
// AVX2). Not kept, for two measured reasons:
//
// - Correct but slow. Against exact arithmetic on the quantized values it passed the Q4_K
//   kernel's test (≤ 1e-6 of Σ|terms|, extremes −128/127 scales, values 0 and 63; a wrong
//   scale parity, −32 term or high-bit shift each failed it), and on the Qwen2.5-Coder 0.5B's
//   real Q6_K `ffn_down`s it is closer to exact than the one-row kernel (rms error 2.6e-7 vs
//   3.2e-7, worst 1.3e-6 vs 1.5e-6). But the 1.5B's decode at one thread fell from 22.4 to
//   13.9 tok/s: `perf` gave this kernel 41 % of the time for 354 MB a token against the Q4_K
//   copy's 23 % for 650 MB — 3.3× slower per byte. It does about twice the Q4_K copy's
//   instructions per block (three loads and twelve bit operations per 4-byte word to rebuild
//   6-bit values, a scale shuffle per sub-block half) and spills (`s16[4]`, `q[4]`, `sc[4]`
//   with the constants exceed 16 ymm registers). The one-row AVX-512 kernel
//   (`dot_avx512::q6k`) does the same unpacking once per 64 bytes with 512-bit registers.
// - The greedy tests moved: with it, `greedy_with_repack_should_match_llama_cpp` flipped 2 of
//   Qwen's 7 near-ties (the bound is 1) and the repacked path's distance from exact arithmetic
//   along the oracle rose to 0.533 on Qwen (llama.cpp 0.285; bound 1.5×) — tiny per-product
//   differences (1e-7) amplified through 24 layers, as the README describes for Gemma.
//
// What a next try would change: 512-bit registers for the unpacking (16 rows a group on
// AVX-512, `vpdpbusd`), scales stored pre-duplicated per sub-block in the copy (no shuffles),
// fewer live registers; and the greedy tests' bounds would need the same look as the Q4_K
// copy's got (a near-tie at a time, against exact arithmetic).
//
// The kernel as it was (the `Dot8` wiring, in `quant::kernels::dot8_kernel`, and the tests'
// changes are not kept):

//! Q6_K weights eight rows at a time, for decode: the Q6_K counterpart of `super::q4k_x8` (an
//! interleaved copy made at load with `LoadOptions::repack`, its AVX2 eight-row dot product,
//! and its rows unpacked for prefill's tiled GEMM). llama.cpp has no such kernel on x86 (its
//! `q6_K_8x8` is for ARM); Q6_K is a third of a Q4_K_M model's bytes (the output matrix, half
//! the `ffn_down`s, the `attn_v`s), and the one-row kernel streamed it 40 % slower per byte
//! than the Q4_K copy's kernel (`perf` of the 1.5B's decode: 34.5 % of the time for 354 MB a
//! token, against 45.5 % for 650 MB).
//!
//! Its rounding is its own, as the Q4_K copy's: each row's block is reduced to one exact `i32`
//! (`S = Σ sc·q·y − 32·Σ sc·bsum`) before `acc += (d_x·d)·S`; the one-row kernel keeps eight
//! lanes of partial sums. The CPU backend sends every product of a matrix with a copy through
//! it, so batch invariance holds (`backend::cpu::matmul`).
//!
//! One group (eight rows) × one super-block (256 columns), 1680 bytes (eight blocks' worth):
//!
//! ```text
//!    0  d[8]          f16, row r at 2r
//!   16  sc[8][8][2]   i8, [pair p][row r][s%2]  (the scales of sub-blocks 2p, 2p+1)
//!  144  ql[32][8][4]  u8, [word g][row r]       (the row's low-bit bytes 4g..4g+4, as stored)
//! 1168  qh[16][8][4]  u8, [word g][row r]       (the row's high-bit bytes 4g..4g+4, as stored)
//! ```
//!
//! Element `e = 128n + 32k + l` of a row (`n < 2`, `k < 4`, `l < 32`) is, as in the one-row
//! layout, the low (`k < 2`) or high nibble of `ql[64n + 32(k%2) + l]` with bits `2k..2k+2` of
//! `qh[32n + l]` above it, minus 32; it belongs to sub-block `8n + 2k + l/16`.

#![allow(clippy::missing_safety_doc)]
#![allow(clippy::needless_range_loop)]

use super::blocks::{BlockQ6K, BlockQ8K, QK_K};
use super::dot_avx2::prefetch_block;
use bytemuck::cast_slice;
use std::arch::x86_64::*;

/// Rows per group.
pub const ROWS: usize = 8;

/// Bytes of one group's super-block.
pub const GROUP_BYTES: usize = 1680;

const Q6K: usize = std::mem::size_of::<BlockQ6K>();
const _: () = assert!(GROUP_BYTES == ROWS * Q6K);

/// Bytes of [`repack`]'s copy of a `rows × cols` matrix.
pub fn copy_bytes(rows: usize, cols: usize) -> usize {
    rows / ROWS * (cols / QK_K) * GROUP_BYTES
}

/// Writes into `out` (`copy_bytes(rows, cols)` bytes) the interleaved copy of the first
/// `rows / 8 * 8` rows of a Q6_K matrix of `cols` columns (`w`: the GGUF bytes, row after
/// row), as `super::q4k_x8::repack` does for Q4_K.
pub fn repack(w: &[u8], rows: usize, cols: usize, out: &mut [u8]) {
    let nb = cols / QK_K;
    let rb = nb * Q6K;
    for (g, dst) in out[..copy_bytes(rows, cols)]
        .chunks_exact_mut(nb * GROUP_BYTES)
        .enumerate()
    {
        for (b, o) in dst.chunks_exact_mut(GROUP_BYTES).enumerate() {
            for r in 0..ROWS {
                let at = (g * ROWS + r) * rb + b * Q6K;
                let src: &BlockQ6K = bytemuck::from_bytes(&w[at..at + Q6K]);
                o[2 * r..2 * r + 2].copy_from_slice(&src.d);
                for s in 0..16 {
                    o[16 + 16 * (s / 2) + 2 * r + s % 2] = src.scales[s] as u8;
                }
                for q in 0..32 {
                    let d = 144 + 4 * (ROWS * q + r);
                    o[d..d + 4].copy_from_slice(&src.ql[4 * q..4 * q + 4]);
                }
                for q in 0..16 {
                    let d = 1168 + 4 * (ROWS * q + r);
                    o[d..d + 4].copy_from_slice(&src.qh[4 * q..4 * q + 4]);
                }
            }
        }
    }
}

/// Row `lane` of one group of the copy (`w`: `nb · 1680` bytes) unpacked for the tiled GEMM,
/// exactly as `super::tile::unpack_row` unpacks the original row: one byte per element (0..64),
/// `scale = d · sc` and `min = −32 · scale` per 16 elements.
pub fn unpack_row(w: &[u8], lane: usize, vals: &mut [u8], scale: &mut [f32], min: &mut [f32]) {
    for (b, o) in w.chunks_exact(GROUP_BYTES).enumerate() {
        let d = super::blocks::f16_at([o[2 * lane], o[2 * lane + 1]]);
        // the row's bytes, as in the file
        let (mut ql, mut qh) = ([0u8; 128], [0u8; 64]);
        for (g, q) in ql.chunks_exact_mut(4).enumerate() {
            let at = 144 + 4 * (ROWS * g + lane);
            q.copy_from_slice(&o[at..at + 4]);
        }
        for (g, q) in qh.chunks_exact_mut(4).enumerate() {
            let at = 1168 + 4 * (ROWS * g + lane);
            q.copy_from_slice(&o[at..at + 4]);
        }
        let v = &mut vals[b * QK_K..(b + 1) * QK_K];
        for n in 0..2 {
            let (ql, qh) = (&ql[64 * n..64 * n + 64], &qh[32 * n..32 * n + 32]);
            let vn = &mut v[128 * n..128 * n + 128];
            for l in 0..32 {
                vn[l] = (ql[l] & 0xF) | ((qh[l] & 3) << 4);
                vn[l + 32] = (ql[l + 32] & 0xF) | (((qh[l] >> 2) & 3) << 4);
                vn[l + 64] = (ql[l] >> 4) | (((qh[l] >> 4) & 3) << 4);
                vn[l + 96] = (ql[l + 32] >> 4) | (((qh[l] >> 6) & 3) << 4);
            }
        }
        for s in 0..16 {
            let sc = o[16 + 16 * (s / 2) + 2 * lane + s % 2] as i8;
            let dl = d * sc as f32;
            (scale[b * 16 + s], min[b * 16 + s]) = (dl, -32.0 * dl);
        }
    }
}

/// Eight interleaved rows (`w`: one group, `nb · 1680` bytes) × one Q8_K activation row.
///
/// Lane `r` of every register is row `r`. A sub-block's products are summed in 16 bits over
/// two 4-byte words at a time (at most 2 · 2 · 63 · 128 = 32256: no overflow, and
/// `vpmaddubsw`'s pairs stay below its saturation), then multiplied by the row's scale into 32
/// bits; the −32 offset is `32 · Σ sc · bsum` with the activation's 16-value sums. Each row's
/// block sum is exact; then `acc += (d_x·d)·S` per block.
#[target_feature(enable = "avx2,fma,f16c")]
pub unsafe fn dot8(w: &[u8], x: &[u8]) -> [f32; 8] {
    let x: &[BlockQ8K] = cast_slice(x);
    let nb = w.len() / GROUP_BYTES;
    let m4 = _mm256_set1_epi8(0xF);
    let (m03, m0c, m30) = (
        _mm256_set1_epi8(0x03),
        _mm256_set1_epi8(0x0C),
        _mm256_set1_epi8(0x30),
    );
    // a lane's (sc_even, sc_odd) 16-bit pair → (sc_even, sc_even) or (sc_odd, sc_odd)
    #[rustfmt::skip]
    let (even, odd) = (
        _mm256_setr_epi8(0, 1, 0, 1, 4, 5, 4, 5, 8, 9, 8, 9, 12, 13, 12, 13,
                         0, 1, 0, 1, 4, 5, 4, 5, 8, 9, 8, 9, 12, 13, 12, 13),
        _mm256_setr_epi8(2, 3, 2, 3, 6, 7, 6, 7, 10, 11, 10, 11, 14, 15, 14, 15,
                         2, 3, 2, 3, 6, 7, 6, 7, 10, 11, 10, 11, 14, 15, 14, 15),
    );
    let mut acc = _mm256_setzero_ps();
    for (b, xb) in x.iter().enumerate().take(nb) {
        let wb = w[b * GROUP_BYTES..(b + 1) * GROUP_BYTES].as_ptr();
        prefetch_block(wb, GROUP_BYTES);
        let xq = xb.qs.as_ptr() as *const u8;
        // SAFETY: `bsums` is 16 × 2 bytes, one unaligned 256-bit load.
        let bsums = unsafe { _mm256_loadu_si256(xb.bsums.as_ptr() as *const __m256i) };
        let (mut s32, mut m32) = (_mm256_setzero_si256(), _mm256_setzero_si256());
        for n in 0..2 {
            // the rows' scales of pairs 4n + k: lane r = (sc[2p][r], sc[2p + 1][r])
            let sc: [__m256i; 4] = std::array::from_fn(|k| {
                // SAFETY: 16 bytes at 16 + 16p, inside the group's block.
                _mm256_cvtepi8_epi16(unsafe {
                    _mm_loadu_si128(wb.add(16 + 16 * (4 * n + k)) as *const __m128i)
                })
            });
            for k in 0..4 {
                let p = (4 * n + k) as i32;
                let pair = _mm256_permutevar8x32_epi32(bsums, _mm256_set1_epi32(p));
                m32 = _mm256_add_epi32(m32, _mm256_madd_epi16(sc[k], pair));
            }
            for half in 0..4 {
                // words 2·half, 2·half + 1 of the 32 values of each k: sub-block 2k + half / 2
                let mut s16 = [_mm256_setzero_si256(); 4];
                for w in 2 * half..2 * half + 2 {
                    // SAFETY: words 16n + w and 16n + 8 + w of `ql`, 8n + w of `qh`, inside
                    // the block; 4 activation bytes at 128n + 32k + 4w, inside `qs` of 256.
                    let (qa, qb, qh) = unsafe {
                        (
                            _mm256_loadu_si256(wb.add(144 + 32 * (16 * n + w)) as *const __m256i),
                            _mm256_loadu_si256(
                                wb.add(144 + 32 * (16 * n + 8 + w)) as *const __m256i
                            ),
                            _mm256_loadu_si256(wb.add(1168 + 32 * (8 * n + w)) as *const __m256i),
                        )
                    };
                    let q = [
                        _mm256_or_si256(
                            _mm256_and_si256(qa, m4),
                            _mm256_slli_epi16::<4>(_mm256_and_si256(qh, m03)),
                        ),
                        _mm256_or_si256(
                            _mm256_and_si256(qb, m4),
                            _mm256_slli_epi16::<2>(_mm256_and_si256(qh, m0c)),
                        ),
                        _mm256_or_si256(
                            _mm256_and_si256(_mm256_srli_epi16::<4>(qa), m4),
                            _mm256_and_si256(qh, m30),
                        ),
                        _mm256_or_si256(
                            _mm256_and_si256(_mm256_srli_epi16::<4>(qb), m4),
                            _mm256_and_si256(_mm256_srli_epi16::<2>(qh), m30),
                        ),
                    ];
                    for k in 0..4 {
                        // SAFETY: see above.
                        let y = _mm256_set1_epi32(unsafe {
                            (xq.add(128 * n + 32 * k + 4 * w) as *const i32).read_unaligned()
                        });
                        s16[k] = _mm256_add_epi16(s16[k], _mm256_maddubs_epi16(q[k], y));
                    }
                }
                for k in 0..4 {
                    let s = if half < 2 { even } else { odd };
                    let scale = _mm256_shuffle_epi8(sc[k], s);
                    s32 = _mm256_add_epi32(s32, _mm256_madd_epi16(s16[k], scale));
                }
            }
        }
        let sum = _mm256_sub_epi32(s32, _mm256_slli_epi32::<5>(m32));
        // SAFETY: 16 bytes of d at the block's start.
        let dw = _mm256_cvtph_ps(unsafe { _mm_loadu_si128(wb as *const __m128i) });
        acc = _mm256_fmadd_ps(
            _mm256_mul_ps(_mm256_set1_ps(xb.d()), dw),
            _mm256_cvtepi32_ps(sum),
            acc,
        );
    }
    let mut out = [0f32; 8];
    // SAFETY: 8 floats into an array of 8.
    unsafe { _mm256_storeu_ps(out.as_mut_ptr(), acc) };
    out
}

//! Q4_K weights eight rows at a time, for decode: an interleaved copy of a matrix (made once,
//! at load, when asked: `LoadOptions::repack`) and the AVX2 dot product of eight of its rows
//! with one Q8_K activation row (on aarch64 with the dot-product extension,
//! `super::q4k_x8_neon`'s, which gives the same bits), and a row of the copy unpacked for
//! prefill's tiled GEMM
//! ([`unpack_row`]), so that no product needs the original once it is copied. The idea and
//! the arithmetic are ggml's `block_q4_Kx8` / `gemv_q4_K_8x8` (llama.cpp repacks by default
//! on AVX2 CPUs); the layout is ours.
//!
//! Why: one 256-bit load holds the same four positions of eight rows, so the activation is
//! broadcast once for eight rows, the scales need no per-row shuffles, and a sub-block's
//! products add up in 16 bits across positions before one scaling per row. Measured on a Zen 4,
//! the 1.5B's decode at one thread: 16.8–17.6 tok/s → 20.8–21.3 (llama.cpp with its repack 21.1).
//!
//! Its rounding is its own: each row's block is reduced to one exact `i32` (`S = Σ scale·q·y`,
//! `M = Σ min·bsum`) before `acc += (d_x·d)·S`, where the one-row kernel keeps eight lanes of
//! partial sums — the same quantity, differing in the last bits (tested against exact
//! arithmetic on the quantized values). A repacked model is therefore batch-invariant on its
//! own terms: the CPU backend runs every token's product with a copy through this kernel, a
//! batch's too (`backend::cpu::matmul`), so a token's logits do not depend on its batch.
//!
//! One group (eight rows) × one super-block (256 columns), 1184 bytes:
//!
//! ```text
//!   0  d[8]      f16, row r at 2r          (the rows' super-block scales)
//!  16  dmin[8]   f16                        (the rows' super-block min scales)
//!  32  sc[8][8]  u8, [sub-block s][row r]   (6-bit scales, unpacked)
//!  96  m[4][8][2] u8, [pair p][row r][s%2]  (6-bit mins of sub-blocks 2p, 2p+1)
//! 160  qs[32][8][4] u8, [group g][row r]    (the row's nibble bytes 4g..4g+4, as stored)
//! ```
//!
//! Sub-block `s` (32 values) of a row reads nibble bytes `32(s/2)..32(s/2)+32`, low nibbles
//! for even `s` and high for odd, as in the one-row layout; lane `r` of a 256-bit load of
//! `qs[g]` is row `r`'s bytes `4g..4g+4`.

#![allow(clippy::missing_safety_doc)]
#![allow(clippy::needless_range_loop)]

use super::blocks::{scale_min_k4, BlockQ4K, QK_K};
#[cfg(target_arch = "x86_64")]
use {super::blocks::BlockQ8K, super::dot_avx2::prefetch_block};
#[cfg(target_arch = "x86_64")]
use {bytemuck::cast_slice, std::arch::x86_64::*};

/// Rows per group.
pub const ROWS: usize = 8;

/// Bytes of one group's super-block.
pub const GROUP_BYTES: usize = 1184;

const Q4K: usize = std::mem::size_of::<BlockQ4K>();

/// Bytes of [`repack`]'s copy of a `rows × cols` matrix.
pub fn copy_bytes(rows: usize, cols: usize) -> usize {
    rows / ROWS * (cols / QK_K) * GROUP_BYTES
}

/// Writes into `out` (`copy_bytes(rows, cols)` bytes) the interleaved copy of the first
/// `rows / 8 * 8` rows of a Q4_K matrix of `cols` columns (`w`: the GGUF bytes, row after
/// row); group `g` is bytes `g · nb · 1184 ..` with `nb = cols / 256`. Rows past the last
/// whole group are not copied (the one-row kernel takes them). A band of whole groups can be
/// copied on its own: rows `8g0..8g1` of `w` into groups `g0..g1` of `out`.
pub fn repack(w: &[u8], rows: usize, cols: usize, out: &mut [u8]) {
    let nb = cols / QK_K;
    let rb = nb * Q4K;
    for (g, dst) in out[..copy_bytes(rows, cols)]
        .chunks_exact_mut(nb * GROUP_BYTES)
        .enumerate()
    {
        for (b, o) in dst.chunks_exact_mut(GROUP_BYTES).enumerate() {
            for r in 0..ROWS {
                let at = (g * ROWS + r) * rb + b * Q4K;
                let src: &BlockQ4K = bytemuck::from_bytes(&w[at..at + Q4K]);
                o[2 * r..2 * r + 2].copy_from_slice(&src.d);
                o[16 + 2 * r..16 + 2 * r + 2].copy_from_slice(&src.dmin);
                for s in 0..8 {
                    let (sc, m) = scale_min_k4(s, &src.scales);
                    o[32 + 8 * s + r] = sc;
                    o[96 + 16 * (s / 2) + 2 * r + s % 2] = m;
                }
                for q in 0..32 {
                    let d = 160 + 4 * (ROWS * q + r);
                    o[d..d + 4].copy_from_slice(&src.qs[4 * q..4 * q + 4]);
                }
            }
        }
    }
}

/// Row `lane` of one group of the copy (`w`: `nb · 1184` bytes) unpacked for the tiled GEMM,
/// exactly as `super::tile::unpack_row` unpacks the original row: one byte per element,
/// `scale = d · sc` and `min = −dmin · m` per 32 elements. Prefill reads the copy through
/// this, so the original's pages need not stay mapped.
pub fn unpack_row(w: &[u8], lane: usize, vals: &mut [u8], scale: &mut [f32], min: &mut [f32]) {
    for (b, o) in w.chunks_exact(GROUP_BYTES).enumerate() {
        let f16 = |at: usize| super::blocks::f16_at([o[at], o[at + 1]]);
        let (d, dmin) = (f16(2 * lane), f16(16 + 2 * lane));
        // the row's 128 nibble bytes, as in the file: bytes 4g..4g + 4 from word g
        let mut qs = [0u8; 128];
        for (g, q) in qs.chunks_exact_mut(4).enumerate() {
            let at = 160 + 4 * (ROWS * g + lane);
            q.copy_from_slice(&o[at..at + 4]);
        }
        let v = &mut vals[b * QK_K..(b + 1) * QK_K];
        for s in 0..8 {
            let (sc, m) = (
                o[32 + 8 * s + lane],
                o[96 + 16 * (s / 2) + 2 * lane + s % 2],
            );
            (scale[b * 8 + s], min[b * 8 + s]) = (d * sc as f32, -dmin * m as f32);
            // sub-block s: the low (even s) or high nibbles of bytes 32(s/2)..32(s/2) + 32
            let q = &qs[32 * (s / 2)..32 * (s / 2) + 32];
            for (v, &q) in v[32 * s..32 * s + 32].iter_mut().zip(q) {
                *v = (q >> (4 * (s % 2))) & 0xF;
            }
        }
    }
}

/// Eight interleaved rows (`w`: one group, `nb · 1184` bytes) × one Q8_K activation row.
///
/// Lane `r` of every register is row `r`. A sub-block's products are summed in 16 bits across
/// its eight 4-byte groups (at most 8 · 2 · 15 · 128 = 30720: no overflow, and `vpmaddubsw`'s
/// pairs stay below its saturation), then scaled into 32 bits: each row's block sums `S` and
/// `M` are exact; then `acc += (d_x·d)·S`, `acc_m += (−d_x·dmin)·M` per block, and the row's
/// result is `acc + acc_m`.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma,f16c")]
pub unsafe fn dot8(w: &[u8], x: &[u8]) -> [f32; 8] {
    let x: &[BlockQ8K] = cast_slice(x);
    let nb = w.len() / GROUP_BYTES;
    let m4 = _mm256_set1_epi8(0xF);
    let mut acc = _mm256_setzero_ps();
    let mut acc_m = _mm256_setzero_ps();
    for (b, xb) in x.iter().enumerate().take(nb) {
        let wb = w[b * GROUP_BYTES..(b + 1) * GROUP_BYTES].as_ptr();
        prefetch_block(wb, GROUP_BYTES);
        let xq = xb.qs.as_ptr() as *const u8;
        let mut s32 = _mm256_setzero_si256();
        for j in 0..4 {
            // the rows' scales of sub-blocks 2j and 2j + 1, each as a 16-bit pair per lane
            let sc = |s: usize| {
                // SAFETY: 8 bytes at 32 + 8s, inside the group's block.
                let v = _mm256_cvtepu8_epi32(unsafe {
                    _mm_loadl_epi64(wb.add(32 + 8 * s) as *const __m128i)
                });
                _mm256_or_si256(v, _mm256_slli_epi32::<16>(v))
            };
            let (sl, sh) = (sc(2 * j), sc(2 * j + 1));
            let (mut al, mut ah) = (_mm256_setzero_si256(), _mm256_setzero_si256());
            for l in 0..8 {
                // SAFETY: 32 bytes of `qs[8j + l]` inside the block; 4 activation bytes at
                // 64j + 4l and 64j + 32 + 4l, inside `qs` of 256.
                let (q, yl, yh) = unsafe {
                    (
                        _mm256_loadu_si256(wb.add(160 + 32 * (8 * j + l)) as *const __m256i),
                        _mm256_set1_epi32((xq.add(64 * j + 4 * l) as *const i32).read_unaligned()),
                        _mm256_set1_epi32(
                            (xq.add(64 * j + 32 + 4 * l) as *const i32).read_unaligned(),
                        ),
                    )
                };
                let lo = _mm256_and_si256(q, m4);
                let hi = _mm256_and_si256(_mm256_srli_epi16::<4>(q), m4);
                al = _mm256_add_epi16(al, _mm256_maddubs_epi16(lo, yl));
                ah = _mm256_add_epi16(ah, _mm256_maddubs_epi16(hi, yh));
            }
            s32 = _mm256_add_epi32(
                s32,
                _mm256_add_epi32(_mm256_madd_epi16(al, sl), _mm256_madd_epi16(ah, sh)),
            );
        }
        let d = xb.d();
        // SAFETY: 16 bytes of d, then 16 of dmin, at the block's start.
        let (dw, dm) = unsafe {
            (
                _mm256_cvtph_ps(_mm_loadu_si128(wb as *const __m128i)),
                _mm256_cvtph_ps(_mm_loadu_si128(wb.add(16) as *const __m128i)),
            )
        };
        // the activation's 32-value sums as (2k, 2k + 1) pairs, each pair broadcast
        // SAFETY: `bsums` is 16 × 2 bytes, one unaligned 256-bit load.
        let q8sums = unsafe { _mm256_loadu_si256(xb.bsums.as_ptr() as *const __m256i) };
        let q8s = _mm256_broadcastsi128_si256(_mm_hadd_epi16(
            _mm256_extracti128_si256::<0>(q8sums),
            _mm256_extracti128_si256::<1>(q8sums),
        ));
        let pairs = [
            _mm256_shuffle_epi32::<0x00>(q8s),
            _mm256_shuffle_epi32::<0x55>(q8s),
            _mm256_shuffle_epi32::<0xAA>(q8s),
            _mm256_shuffle_epi32::<0xFF>(q8s),
        ];
        // M lane r = Σ_k m[r][2k]·q8s[2k] + m[r][2k+1]·q8s[2k+1]
        let mut mm = _mm256_setzero_si256();
        for k in 0..4 {
            // SAFETY: 16 bytes of the mins of pair k.
            let m = _mm256_cvtepu8_epi16(unsafe {
                _mm_loadu_si128(wb.add(96 + 16 * k) as *const __m128i)
            });
            mm = _mm256_add_epi32(mm, _mm256_madd_epi16(m, pairs[k]));
        }
        acc = _mm256_fmadd_ps(
            _mm256_mul_ps(_mm256_set1_ps(d), dw),
            _mm256_cvtepi32_ps(s32),
            acc,
        );
        acc_m = _mm256_fmadd_ps(
            _mm256_mul_ps(_mm256_set1_ps(-d), dm),
            _mm256_cvtepi32_ps(mm),
            acc_m,
        );
    }
    // SAFETY: eight f32 lanes are an [f32; 8].
    unsafe { std::mem::transmute::<__m256, [f32; 8]>(_mm256_add_ps(acc, acc_m)) }
}

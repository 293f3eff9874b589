//! AVX2 + FMA + F16C dot products, one function per weight type, ported from ggml's x86 kernels
//! (`ggml-cpu/arch/x86/quants.c`; the k-quant ones by way of candle's `quantized/avx.rs`).
//!
//! Each function is only ever called through [`super::kernels`], which selects it after
//! `is_x86_feature_detected!` confirmed the features; that check is what makes the `unsafe`
//! calls sound. Loads are unaligned (`loadu`), so block slices borrowed from the memory map
//! with alignment 1 are fine.

#![allow(clippy::missing_safety_doc)]
// Index loops over small const-sized arrays are deliberate: they unroll into registers.
#![allow(clippy::needless_range_loop)]

use super::blocks::*;
pub use super::dot_avx2_float::{bf16_f32, f16_f32, f32_f32};
use bytemuck::cast_slice;
#[cfg(target_arch = "x86_64")]
use std::arch::x86_64::*;

/// f16 bits → f32 with the F16C instruction (the `half` crate's portable path is far slower
/// in these loops).
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
pub(super) fn h2f(b: [u8; 2]) -> f32 {
    _mm_cvtss_f32(_mm_cvtph_ps(
        _mm_cvtsi32_si128(u16::from_le_bytes(b) as i32),
    ))
}

#[inline]
#[target_feature(enable = "avx2,fma")]
pub(super) fn hsum_f32x8(x: __m256) -> f32 {
    let hi = _mm256_extractf128_ps(x, 1);
    let s = _mm_add_ps(hi, _mm256_castps256_ps128(x));
    let s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    let s = _mm_add_ss(s, _mm_movehdup_ps(s));
    _mm_cvtss_f32(s)
}

#[inline]
#[target_feature(enable = "avx2,fma")]
fn sum_i16_pairs_f32(x: __m256i) -> __m256 {
    _mm256_cvtepi32_ps(_mm256_madd_epi16(_mm256_set1_epi16(1), x))
}

/// Σ of unsigned × signed byte products, in 8 float lanes.
#[inline]
#[target_feature(enable = "avx2,fma")]
fn mul_sum_us8_f32(ax: __m256i, sy: __m256i) -> __m256 {
    sum_i16_pairs_f32(_mm256_maddubs_epi16(ax, sy))
}

/// 32 nibbles → 32 bytes (low nibbles first, then high).
#[inline]
#[target_feature(enable = "avx2,fma")]
unsafe fn bytes_from_nibbles_32(p: *const u8) -> __m256i {
    let tmp = unsafe { _mm_loadu_si128(p as *const __m128i) };
    let both = _mm256_insertf128_si256::<1>(_mm256_castsi128_si256(tmp), _mm_srli_epi16(tmp, 4));
    _mm256_and_si256(_mm256_set1_epi8(0xF), both)
}

/// 32 bits → 32 bytes, 0xFF where the bit is set.
#[inline]
#[target_feature(enable = "avx2,fma")]
fn bytes_from_bits_32(bits: [u8; 4]) -> __m256i {
    let x32 = u32::from_le_bytes(bits) as i32;
    let shuf = _mm256_set_epi64x(
        0x0303030303030303,
        0x0202020202020202,
        0x0101010101010101,
        0x0000000000000000,
    );
    let bytes = _mm256_shuffle_epi8(_mm256_set1_epi32(x32), shuf);
    let bit_mask = _mm256_set1_epi64x(0x7fbfdfeff7fbfdfe);
    _mm256_cmpeq_epi8(_mm256_or_si256(bytes, bit_mask), _mm256_set1_epi64x(-1))
}

#[inline]
#[target_feature(enable = "avx2,fma")]
fn set_m128i(hi: __m128i, lo: __m128i) -> __m256i {
    _mm256_insertf128_si256::<1>(_mm256_castsi128_si256(lo), hi)
}

/// Distance ahead (bytes) at which kernels prefetch weight rows. Rows are contiguous, so this
/// runs into the next rows, keeping the stream going across 4 KiB page boundaries where the
/// hardware prefetcher stops (measured on the tied Q8_0 output matrix: ~12 -> ~16 GB/s).
const PREFETCH: usize = 4096;

/// Prefetches every cache line the `size`-byte block at `p` will occupy `PREFETCH` bytes ahead:
/// a 144-byte Q4_K block spans three lines and a 210-byte Q6_K block four, and prefetching only
/// the first of them left the rest to demand misses past page boundaries (1.5B Q4_K_M decode,
/// alternated: 37.4, 37.9 → 43.2, 43.4 tok/s).
///
/// It prefetches `size.div_ceil(64)` lines from the block's first byte, a constant count
/// and no branches (the line arithmetic this replaced cost ~15 instructions a Q4_K block,
/// and decode is compute-bound there). That misses none for contiguous blocks: this
/// block's prefetches reach at least `64·(count − 1)` bytes past its start, so no whole line
/// lies between them and the next block's first prefetch.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
pub(super) fn prefetch_block(p: *const u8, size: usize) {
    let ahead = p.wrapping_add(PREFETCH);
    for i in 0..size.div_ceil(64) {
        // SAFETY: prefetch is a hint and never faults; the address is computed with wrapping
        // arithmetic, so it may lie past the slice without undefined behaviour.
        _mm_prefetch::<_MM_HINT_T0>(ahead.wrapping_add(64 * i) as *const i8);
    }
}

/// Dot products of one row of 32-element blocks with `N` activation rows, in `C` independent
/// accumulator chains per row. Each weight block is unpacked once (`unpack` → `(d_w, q, sign
/// source)`) and multiplied with the matching block of every activation row, so prefill
/// (N = 4) pays the unpacking a quarter as often. `mul(q, sign, x)` gives `(d_y, Σ products
/// in 8 lanes, s_y)`; the result is `Σ d_w·d_y·products - offset·Σ d_w·s_y`.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn blocks_n<W, X, const N: usize, const C: usize>(
    w: &[W],
    x: [&[X]; N],
    offset: f32,
    unpack: impl Fn(&W) -> (f32, __m256i, __m256i),
    mul: impl Fn(__m256i, __m256i, &X) -> (f32, __m256, f32),
) -> [f32; N] {
    let mut acc = [[_mm256_setzero_ps(); C]; N];
    let mut corr = [0f32; N];
    let groups = w.len() / C;
    for g in 0..groups {
        for k in 0..C {
            let b = g * C + k;
            prefetch_block(&w[b] as *const W as *const u8, size_of::<W>());
            let (dw, q, sign) = unpack(&w[b]);
            for t in 0..N {
                let (dy, p, sy) = mul(q, sign, &x[t][b]);
                acc[t][k] = _mm256_fmadd_ps(_mm256_set1_ps(dw * dy), p, acc[t][k]);
                corr[t] += dw * sy;
            }
        }
    }
    for b in groups * C..w.len() {
        let (dw, q, sign) = unpack(&w[b]);
        for t in 0..N {
            let (dy, p, sy) = mul(q, sign, &x[t][b]);
            acc[t][0] = _mm256_fmadd_ps(_mm256_set1_ps(dw * dy), p, acc[t][0]);
            corr[t] += dw * sy;
        }
    }
    let mut out = [0f32; N];
    for t in 0..N {
        let mut v = acc[t][0];
        for k in 1..C {
            v = _mm256_add_ps(v, acc[t][k]);
        }
        out[t] = hsum_f32x8(v) - offset * corr[t];
    }
    out
}

/// Unsigned weight bytes × a Q8_0S activation block (offset applied through `s`); `ms` is
/// [`mul_sum_us8_f32`] or a VNNI kernel's one-instruction equivalent (`super::dot_avx512`).
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn mul_q8_0s(
    q: __m256i,
    x: &BlockQ8_0S,
    ms: impl Fn(__m256i, __m256i) -> __m256,
) -> (f32, __m256, f32) {
    let qy = unsafe { _mm256_loadu_si256(x.qs.as_ptr() as *const __m256i) };
    (h2f(x.d), ms(q, qy), x.s())
}

#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
pub(super) unsafe fn q4_0_n<const N: usize, const C: usize>(
    w: &[u8],
    x: [&[u8]; N],
    ms: impl Fn(__m256i, __m256i) -> __m256 + Copy,
) -> [f32; N] {
    let w: &[BlockQ4_0] = cast_slice(w);
    let unpack = |w: &BlockQ4_0| {
        let q = unsafe { bytes_from_nibbles_32(w.qs.as_ptr()) };
        (h2f(w.d), q, q)
    };
    unsafe {
        blocks_n::<_, _, N, C>(w, x.map(cast_slice), 8.0, unpack, |q, _, x| {
            mul_q8_0s(q, x, ms)
        })
    }
}

#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
pub(super) unsafe fn q5_0_n<const N: usize, const C: usize>(
    w: &[u8],
    x: [&[u8]; N],
    ms: impl Fn(__m256i, __m256i) -> __m256 + Copy,
) -> [f32; N] {
    let w: &[BlockQ5_0] = cast_slice(w);
    let bit4 = _mm256_set1_epi8(0x10);
    let unpack = |w: &BlockQ5_0| {
        let lo = unsafe { bytes_from_nibbles_32(w.qs.as_ptr()) };
        let q = _mm256_or_si256(lo, _mm256_and_si256(bytes_from_bits_32(w.qh), bit4));
        (h2f(w.d), q, q)
    };
    unsafe {
        blocks_n::<_, _, N, C>(w, x.map(cast_slice), 16.0, unpack, |q, _, x| {
            mul_q8_0s(q, x, ms)
        })
    }
}

#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
pub(super) unsafe fn q8_0_n<const N: usize, const C: usize>(
    w: &[u8],
    x: [&[u8]; N],
    ms: impl Fn(__m256i, __m256i) -> __m256 + Copy,
) -> [f32; N] {
    let w: &[BlockQ8_0] = cast_slice(w);
    // signed × signed through maddubs: |w| once per weight block, w's sign moved onto x
    let unpack = |w: &BlockQ8_0| {
        let q = unsafe { _mm256_loadu_si256(w.qs.as_ptr() as *const __m256i) };
        (h2f(w.d), _mm256_sign_epi8(q, q), q)
    };
    let mul = |abs: __m256i, sign: __m256i, x: &BlockQ8_0| {
        let qy = unsafe { _mm256_loadu_si256(x.qs.as_ptr() as *const __m256i) };
        (h2f(x.d), ms(abs, _mm256_sign_epi8(qy, sign)), 0.0)
    };
    unsafe { blocks_n::<_, _, N, C>(w, x.map(cast_slice), 0.0, unpack, mul) }
}

#[target_feature(enable = "avx2,fma,f16c")]
pub unsafe fn q4_0(w: &[u8], x: &[u8]) -> f32 {
    unsafe { q4_0_n::<1, 2>(w, [x], |a, b| mul_sum_us8_f32(a, b))[0] }
}

#[target_feature(enable = "avx2,fma,f16c")]
pub unsafe fn q4_0_x4(w: &[u8], x: [&[u8]; 4]) -> [f32; 4] {
    unsafe { q4_0_n::<4, 2>(w, x, |a, b| mul_sum_us8_f32(a, b)) }
}

#[target_feature(enable = "avx2,fma,f16c")]
pub unsafe fn q5_0(w: &[u8], x: &[u8]) -> f32 {
    unsafe { q5_0_n::<1, 2>(w, [x], |a, b| mul_sum_us8_f32(a, b))[0] }
}

#[target_feature(enable = "avx2,fma,f16c")]
pub unsafe fn q5_0_x4(w: &[u8], x: [&[u8]; 4]) -> [f32; 4] {
    unsafe { q5_0_n::<4, 2>(w, x, |a, b| mul_sum_us8_f32(a, b)) }
}

/// Four chains for one row: this is the kernel of Gemma's tied output projection, the largest
/// read of a decode step.
#[target_feature(enable = "avx2,fma,f16c")]
pub unsafe fn q8_0(w: &[u8], x: &[u8]) -> f32 {
    unsafe { q8_0_n::<1, 4>(w, [x], |a, b| mul_sum_us8_f32(a, b))[0] }
}

/// The one-row kernel's four chains per row, so each row's sum is added in the same order and
/// a row's result does not depend on the rows beside it (batch invariance: a sequence decodes
/// the same tokens alone and in a batch; `quant::tests` checks it bit for bit).
#[target_feature(enable = "avx2,fma,f16c")]
pub unsafe fn q8_0_x4(w: &[u8], x: [&[u8]; 4]) -> [f32; 4] {
    unsafe { q8_0_n::<4, 4>(w, x, |a, b| mul_sum_us8_f32(a, b)) }
}

#[target_feature(enable = "avx2,fma,f16c")]
pub unsafe fn q4_1(w: &[u8], x: &[u8]) -> f32 {
    let (w, x): (&[BlockQ4_1], &[BlockQ8_1]) = (cast_slice(w), cast_slice(x));
    let mut acc = _mm256_setzero_ps();
    let mut summs = 0f32;
    for (w, x) in w.iter().zip(x) {
        summs += h2f(w.m) * h2f(x.s);
        let d = _mm256_set1_ps(h2f(w.d) * h2f(x.d));
        let qx = unsafe { bytes_from_nibbles_32(w.qs.as_ptr()) };
        let qy = unsafe { _mm256_loadu_si256(x.qs.as_ptr() as *const __m256i) };
        acc = _mm256_fmadd_ps(d, mul_sum_us8_f32(qx, qy), acc);
    }
    hsum_f32x8(acc) + summs
}

#[target_feature(enable = "avx2,fma,f16c")]
pub unsafe fn q5_1(w: &[u8], x: &[u8]) -> f32 {
    let (w, x): (&[BlockQ5_1], &[BlockQ8_1]) = (cast_slice(w), cast_slice(x));
    let mut acc = _mm256_setzero_ps();
    let mut summs = 0f32;
    for (w, x) in w.iter().zip(x) {
        summs += h2f(w.m) * h2f(x.s);
        let d = _mm256_set1_ps(h2f(w.d) * h2f(x.d));
        let qx = unsafe { bytes_from_nibbles_32(w.qs.as_ptr()) };
        let hi = _mm256_and_si256(bytes_from_bits_32(w.qh), _mm256_set1_epi8(0x10));
        let qx = _mm256_or_si256(qx, hi);
        let qy = unsafe { _mm256_loadu_si256(x.qs.as_ptr() as *const __m256i) };
        acc = _mm256_fmadd_ps(d, mul_sum_us8_f32(qx, qy), acc);
    }
    hsum_f32x8(acc) + summs
}

/// Shuffle masks that broadcast 16-bit scale `i` (k4) or byte scale `i` (q6k) across lanes.
#[inline]
#[target_feature(enable = "avx2,fma")]
fn shuffle_k4(i: usize) -> __m256i {
    let b = (2 * i) as i8;
    let lo = _mm_setr_epi8(
        b,
        b + 1,
        b,
        b + 1,
        b,
        b + 1,
        b,
        b + 1,
        b,
        b + 1,
        b,
        b + 1,
        b,
        b + 1,
        b,
        b + 1,
    );
    set_m128i(lo, lo)
}

#[inline]
#[target_feature(enable = "avx2,fma")]
fn shuffle_q3k(i: usize) -> __m256i {
    let a = (4 * i) as i8;
    let b = a + 2;
    let lo = _mm_setr_epi8(
        a,
        a + 1,
        a,
        a + 1,
        a,
        a + 1,
        a,
        a + 1,
        a,
        a + 1,
        a,
        a + 1,
        a,
        a + 1,
        a,
        a + 1,
    );
    let hi = _mm_setr_epi8(
        b,
        b + 1,
        b,
        b + 1,
        b,
        b + 1,
        b,
        b + 1,
        b,
        b + 1,
        b,
        b + 1,
        b,
        b + 1,
        b,
        b + 1,
    );
    set_m128i(hi, lo)
}

#[inline]
#[target_feature(enable = "avx2,fma")]
fn shuffle_q6k(i: usize) -> __m128i {
    let a = (2 * i) as i8;
    let b = a + 1;
    _mm_setr_epi8(a, a, a, a, a, a, a, a, b, b, b, b, b, b, b, b)
}

/// A Q4_K/Q5_K block's header — its first 16 bytes: `d`, `dmin`, then twelve bytes packing
/// eight six-bit scales and eight six-bit mins — unpacked: 16 u16 lanes (8 scales, then 8
/// mins) and `d`, `dmin` as floats.
///
/// ```text
/// scale bytes 0–3    sc0..3 in bits 0–5 │ bits 4–5 of sc4..7 in bits 6–7
/// scale bytes 4–7    m0..3  in bits 0–5 │ bits 4–5 of m4..7  in bits 6–7
/// scale bytes 8–11   bits 0–3 of sc4..7 │ bits 0–3 of m4..7 (high nibble)
/// ```
///
/// One load and vector steps, no scalar code (decode is compute-bound on this header): two
/// byte shuffles line the bytes up as four 32-bit words `[sc0-3, sc4-7, m0-3, m4-7]` and
/// their high-bit sources, then shifts and masks per word. The shift of a whole 32-bit word
/// moves bits between neighbouring bytes; the masks drop exactly those bits.
///
/// # Safety
/// `head` points at 16 readable bytes, the start of a Q4_K or Q5_K block.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
pub(super) unsafe fn k4_head(head: *const u8) -> (__m256i, f32, f32) {
    // SAFETY: the caller guarantees 16 readable bytes.
    let v = unsafe { _mm_loadu_si128(head as *const __m128i) };
    // scale byte i is header byte 4 + i
    #[rustfmt::skip]
    let words = _mm_shuffle_epi8(v, _mm_setr_epi8(
        4, 5, 6, 7, 12, 13, 14, 15, 8, 9, 10, 11, 12, 13, 14, 15,
    ));
    #[rustfmt::skip]
    let high_src = _mm_shuffle_epi8(v, _mm_setr_epi8(
        -1, -1, -1, -1, 4, 5, 6, 7, -1, -1, -1, -1, 8, 9, 10, 11,
    ));
    // m4..7 come from the high nibbles of bytes 8–11
    let words = _mm_blend_epi32::<0b1000>(words, _mm_srli_epi32::<4>(words));
    let low = _mm_and_si128(
        words,
        _mm_setr_epi32(0x3f3f3f3f, 0x0f0f0f0f, 0x3f3f3f3f, 0x0f0f0f0f),
    );
    // bits 6–7 of a byte → bits 4–5
    let high = _mm_and_si128(
        _mm_srli_epi32::<2>(high_src),
        _mm_setr_epi32(0, 0x30303030, 0, 0x30303030),
    );
    let d = _mm_cvtph_ps(v);
    (
        _mm256_cvtepu8_epi16(_mm_or_si128(low, high)),
        _mm_cvtss_f32(d),
        _mm_cvtss_f32(_mm_movehdup_ps(d)),
    )
}

#[inline]
#[target_feature(enable = "avx2,fma")]
pub(super) fn hsum_f32x4(x: __m128) -> f32 {
    let x = _mm_add_ps(x, _mm_movehl_ps(x, x));
    _mm_cvtss_f32(_mm_add_ss(x, _mm_movehdup_ps(x)))
}

/// Q4_K × Q8_K for `N` activation rows: scales, mins and nibbles are unpacked once per
/// super-block and used for every row.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn q4k_n<const N: usize>(w: &[u8], x: [&[u8]; N]) -> [f32; N] {
    let w: &[BlockQ4K] = cast_slice(w);
    let x: [&[BlockQ8K]; N] = x.map(cast_slice);
    let m4 = _mm256_set1_epi8(0xF);
    let mut acc = [_mm256_setzero_ps(); N];
    let mut acc_m = [_mm_setzero_ps(); N];
    for (b, wb) in w.iter().enumerate() {
        prefetch_block(wb as *const BlockQ4K as *const u8, size_of::<BlockQ4K>());
        // SAFETY: a Q4_K block starts with its 16-byte header.
        let (ms, dw, dmin) = unsafe { k4_head(wb as *const BlockQ4K as *const u8) };
        let mins = _mm256_extracti128_si256::<1>(ms);
        let sc128 = _mm256_extracti128_si256::<0>(ms);
        let scales = set_m128i(sc128, sc128);
        let mut sumi = [_mm256_setzero_si256(); N];
        for j in 0..4 {
            let scale_l = _mm256_shuffle_epi8(scales, shuffle_k4(2 * j));
            let scale_h = _mm256_shuffle_epi8(scales, shuffle_k4(2 * j + 1));
            let q4bits =
                unsafe { _mm256_loadu_si256(wb.qs.as_ptr().add(32 * j) as *const __m256i) };
            let q4l = _mm256_and_si256(q4bits, m4);
            let q4h = _mm256_and_si256(_mm256_srli_epi16::<4>(q4bits), m4);
            for t in 0..N {
                let q8 = x[t][b].qs.as_ptr();
                let (q8l, q8h) = unsafe {
                    (
                        _mm256_loadu_si256(q8.add(64 * j) as *const __m256i),
                        _mm256_loadu_si256(q8.add(64 * j + 32) as *const __m256i),
                    )
                };
                let pl = _mm256_madd_epi16(scale_l, _mm256_maddubs_epi16(q4l, q8l));
                let ph = _mm256_madd_epi16(scale_h, _mm256_maddubs_epi16(q4h, q8h));
                sumi[t] = _mm256_add_epi32(sumi[t], _mm256_add_epi32(pl, ph));
            }
        }
        for t in 0..N {
            q4k_accumulate(
                &x[t][b],
                (dw, dmin),
                mins,
                sumi[t],
                &mut acc[t],
                &mut acc_m[t],
            );
        }
    }
    let mut out = [0f32; N];
    for t in 0..N {
        out[t] = hsum_f32x8(acc[t]) + hsum_f32x4(acc_m[t]);
    }
    out
}

/// The float part of one Q4_K super-block for one activation row: `acc += d_x·d·sumi` (8
/// lanes of integer sums) and `acc_m -= d_x·dmin·(mins · block sums)`. Shared with
/// `super::dot_avx512`, whose integer sums are the same lane for lane, so both kernels round
/// identically.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
pub(super) fn q4k_accumulate(
    xb: &BlockQ8K,
    (dw, dmin): (f32, f32),
    mins: __m128i,
    sumi: __m256i,
    acc: &mut __m256,
    acc_m: &mut __m128,
) {
    *acc = _mm256_fmadd_ps(_mm256_set1_ps(xb.d() * dw), _mm256_cvtepi32_ps(sumi), *acc);
    // SAFETY: `bsums` is 16 × 2 bytes, exactly one unaligned 256-bit load.
    let q8sums = unsafe { _mm256_loadu_si256(xb.bsums.as_ptr() as *const __m256i) };
    let q8s = _mm_hadd_epi16(
        _mm256_extracti128_si256::<0>(q8sums),
        _mm256_extracti128_si256::<1>(q8sums),
    );
    let prod = _mm_madd_epi16(mins, q8s);
    *acc_m = _mm_fmadd_ps(_mm_set1_ps(-xb.d() * dmin), _mm_cvtepi32_ps(prod), *acc_m);
}

#[target_feature(enable = "avx2,fma,f16c")]
pub unsafe fn q4k(w: &[u8], x: &[u8]) -> f32 {
    unsafe { q4k_n::<1>(w, [x])[0] }
}

#[target_feature(enable = "avx2,fma,f16c")]
pub unsafe fn q4k_x4(w: &[u8], x: [&[u8]; 4]) -> [f32; 4] {
    unsafe { q4k_n::<4>(w, x) }
}

#[target_feature(enable = "avx2,fma,f16c")]
pub unsafe fn q5k(w: &[u8], x: &[u8]) -> f32 {
    let (w, x): (&[BlockQ5K], &[BlockQ8K]) = (cast_slice(w), cast_slice(x));
    let m4 = _mm256_set1_epi8(0xF);
    let mut acc = _mm256_setzero_ps();
    let mut acc_m = _mm_setzero_ps();
    for (w, x) in w.iter().zip(x) {
        // SAFETY: a Q5_K block starts with its 16-byte header.
        let (ms, dw, dmin) = unsafe { k4_head(w as *const BlockQ5K as *const u8) };
        let (d, dmin) = (x.d() * dw, -x.d() * dmin);
        let q8sums = unsafe { _mm256_loadu_si256(x.bsums.as_ptr() as *const __m256i) };
        let q8s = _mm_hadd_epi16(
            _mm256_extracti128_si256::<0>(q8sums),
            _mm256_extracti128_si256::<1>(q8sums),
        );
        let prod = _mm_madd_epi16(_mm256_extracti128_si256::<1>(ms), q8s);
        acc_m = _mm_fmadd_ps(_mm_set1_ps(dmin), _mm_cvtepi32_ps(prod), acc_m);
        let sc128 = _mm256_extracti128_si256::<0>(ms);
        let scales = set_m128i(sc128, sc128);
        let hbits = unsafe { _mm256_loadu_si256(w.qh.as_ptr() as *const __m256i) };
        let mut sumi = _mm256_setzero_si256();
        for j in 0..4 {
            let scale_0 = _mm256_shuffle_epi8(scales, shuffle_k4(2 * j));
            let scale_1 = _mm256_shuffle_epi8(scales, shuffle_k4(2 * j + 1));
            // bit 2j of qh is the fifth bit of the low nibbles, bit 2j+1 of the high ones:
            // shift it to bit 0 of each byte, mask, and move it to bit 4.
            let (h0, h1) = match j {
                0 => (_mm256_srli_epi16::<0>(hbits), _mm256_srli_epi16::<1>(hbits)),
                1 => (_mm256_srli_epi16::<2>(hbits), _mm256_srli_epi16::<3>(hbits)),
                2 => (_mm256_srli_epi16::<4>(hbits), _mm256_srli_epi16::<5>(hbits)),
                _ => (_mm256_srli_epi16::<6>(hbits), _mm256_srli_epi16::<7>(hbits)),
            };
            let one = _mm256_set1_epi8(1);
            let h0 = _mm256_slli_epi16::<4>(_mm256_and_si256(h0, one));
            let h1 = _mm256_slli_epi16::<4>(_mm256_and_si256(h1, one));
            unsafe {
                let q5bits = _mm256_loadu_si256(w.qs.as_ptr().add(32 * j) as *const __m256i);
                let q5_0 = _mm256_add_epi8(_mm256_and_si256(q5bits, m4), h0);
                let q5_1 = _mm256_add_epi8(_mm256_and_si256(_mm256_srli_epi16(q5bits, 4), m4), h1);
                let q8_0 = _mm256_loadu_si256(x.qs.as_ptr().add(64 * j) as *const __m256i);
                let q8_1 = _mm256_loadu_si256(x.qs.as_ptr().add(64 * j + 32) as *const __m256i);
                let p0 = _mm256_madd_epi16(scale_0, _mm256_maddubs_epi16(q5_0, q8_0));
                let p1 = _mm256_madd_epi16(scale_1, _mm256_maddubs_epi16(q5_1, q8_1));
                sumi = _mm256_add_epi32(sumi, _mm256_add_epi32(p0, p1));
            }
        }
        acc = _mm256_fmadd_ps(_mm256_set1_ps(d), _mm256_cvtepi32_ps(sumi), acc);
    }
    let acc_m = _mm_add_ps(acc_m, _mm_movehl_ps(acc_m, acc_m));
    let acc_m = _mm_add_ss(acc_m, _mm_movehdup_ps(acc_m));
    hsum_f32x8(acc) + _mm_cvtss_f32(acc_m)
}

/// Q6_K × Q8_K for `N` activation rows: the 6-bit values are assembled once per half
/// super-block and used for every row.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn q6k_n<const N: usize>(w: &[u8], x: [&[u8]; N]) -> [f32; N] {
    let w: &[BlockQ6K] = cast_slice(w);
    let x: [&[BlockQ8K]; N] = x.map(cast_slice);
    let m4 = _mm256_set1_epi8(0xF);
    let m2 = _mm256_set1_epi8(3);
    let m32s = _mm256_set1_epi8(32);
    let mut acc = [_mm256_setzero_ps(); N];
    for (b, wb) in w.iter().enumerate() {
        prefetch_block(wb as *const BlockQ6K as *const u8, size_of::<BlockQ6K>());
        let dw = h2f(wb.d);
        let scales = unsafe { _mm_loadu_si128(wb.scales.as_ptr() as *const __m128i) };
        let mut sumi = [_mm256_setzero_si256(); N];
        for j in 0..2 {
            let (q, s) = unsafe {
                let ql = wb.ql.as_ptr().add(64 * j);
                let q4bits1 = _mm256_loadu_si256(ql as *const __m256i);
                let q4bits2 = _mm256_loadu_si256(ql.add(32) as *const __m256i);
                let qh = _mm256_loadu_si256(wb.qh.as_ptr().add(32 * j) as *const __m256i);
                let h0 = _mm256_slli_epi16::<4>(_mm256_and_si256(qh, m2));
                let h1 = _mm256_slli_epi16::<4>(_mm256_and_si256(_mm256_srli_epi16::<2>(qh), m2));
                let h2 = _mm256_slli_epi16::<4>(_mm256_and_si256(_mm256_srli_epi16::<4>(qh), m2));
                let h3 = _mm256_slli_epi16::<4>(_mm256_and_si256(_mm256_srli_epi16::<6>(qh), m2));
                let q = [
                    _mm256_or_si256(_mm256_and_si256(q4bits1, m4), h0),
                    _mm256_or_si256(_mm256_and_si256(q4bits2, m4), h1),
                    _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16::<4>(q4bits1), m4), h2),
                    _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16::<4>(q4bits2), m4), h3),
                ];
                let s = [0, 1, 2, 3].map(|k| {
                    _mm256_cvtepi8_epi16(_mm_shuffle_epi8(scales, shuffle_q6k(4 * j + k)))
                });
                (q, s)
            };
            for t in 0..N {
                let q8 = unsafe { x[t][b].qs.as_ptr().add(128 * j) };
                for k in 0..4 {
                    let y = unsafe { _mm256_loadu_si256(q8.add(32 * k) as *const __m256i) };
                    // (q - 32) · y as q · y - 32 · y
                    let p = _mm256_sub_epi16(
                        _mm256_maddubs_epi16(q[k], y),
                        _mm256_maddubs_epi16(m32s, y),
                    );
                    sumi[t] = _mm256_add_epi32(sumi[t], _mm256_madd_epi16(s[k], p));
                }
            }
        }
        for t in 0..N {
            q6k_accumulate(&x[t][b], dw, sumi[t], &mut acc[t]);
        }
    }
    let mut out = [0f32; N];
    for t in 0..N {
        out[t] = hsum_f32x8(acc[t]);
    }
    out
}

/// The float part of one Q6_K super-block for one activation row: `acc += d_x·d·sumi` (8
/// lanes of integer sums). Shared with `super::dot_avx512`, as [`q4k_accumulate`] is.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
pub(super) fn q6k_accumulate(xb: &BlockQ8K, dw: f32, sumi: __m256i, acc: &mut __m256) {
    *acc = _mm256_fmadd_ps(_mm256_set1_ps(xb.d() * dw), _mm256_cvtepi32_ps(sumi), *acc);
}

#[target_feature(enable = "avx2,fma,f16c")]
pub unsafe fn q6k(w: &[u8], x: &[u8]) -> f32 {
    unsafe { q6k_n::<1>(w, [x])[0] }
}

#[target_feature(enable = "avx2,fma,f16c")]
pub unsafe fn q6k_x4(w: &[u8], x: [&[u8]; 4]) -> [f32; 4] {
    unsafe { q6k_n::<4>(w, x) }
}

#[target_feature(enable = "avx2,fma,f16c")]
pub unsafe fn q2k(w: &[u8], x: &[u8]) -> f32 {
    let (w, x): (&[BlockQ2K], &[BlockQ8K]) = (cast_slice(w), cast_slice(x));
    let m3 = _mm256_set1_epi8(3);
    let m4 = _mm_set1_epi8(0xF);
    let mut acc = _mm256_setzero_ps();
    for (w, x) in w.iter().zip(x) {
        let d = x.d() * h2f(w.d);
        let dmin = -x.d() * h2f(w.dmin);
        unsafe {
            let mins_and_scales = _mm_loadu_si128(w.scales.as_ptr() as *const __m128i);
            let scales8 = _mm_and_si128(mins_and_scales, m4);
            let mins8 = _mm_and_si128(_mm_srli_epi16::<4>(mins_and_scales), m4);
            let mins = _mm256_cvtepi8_epi16(mins8);
            let bsums = _mm256_loadu_si256(x.bsums.as_ptr() as *const __m256i);
            let prod = _mm256_madd_epi16(mins, bsums);
            acc = _mm256_fmadd_ps(_mm256_set1_ps(dmin), _mm256_cvtepi32_ps(prod), acc);
            let all_scales = _mm256_cvtepi8_epi16(scales8);
            let l = _mm256_extracti128_si256::<0>(all_scales);
            let h = _mm256_extracti128_si256::<1>(all_scales);
            let scales = [set_m128i(l, l), set_m128i(h, h)];
            let mut sumi = _mm256_setzero_si256();
            for (j, scale) in scales.iter().enumerate() {
                let q2bits = _mm256_loadu_si256(w.qs.as_ptr().add(32 * j) as *const __m256i);
                let q8 = x.qs.as_ptr().add(128 * j);
                let q8_0 = _mm256_loadu_si256(q8 as *const __m256i);
                let q8_1 = _mm256_loadu_si256(q8.add(32) as *const __m256i);
                let q8_2 = _mm256_loadu_si256(q8.add(64) as *const __m256i);
                let q8_3 = _mm256_loadu_si256(q8.add(96) as *const __m256i);
                let q2_0 = _mm256_and_si256(q2bits, m3);
                let q2_1 = _mm256_and_si256(_mm256_srli_epi16::<2>(q2bits), m3);
                let q2_2 = _mm256_and_si256(_mm256_srli_epi16::<4>(q2bits), m3);
                let q2_3 = _mm256_and_si256(_mm256_srli_epi16::<6>(q2bits), m3);
                let p0 = _mm256_madd_epi16(
                    _mm256_shuffle_epi8(*scale, shuffle_q3k(0)),
                    _mm256_maddubs_epi16(q2_0, q8_0),
                );
                let p1 = _mm256_madd_epi16(
                    _mm256_shuffle_epi8(*scale, shuffle_q3k(1)),
                    _mm256_maddubs_epi16(q2_1, q8_1),
                );
                let p2 = _mm256_madd_epi16(
                    _mm256_shuffle_epi8(*scale, shuffle_q3k(2)),
                    _mm256_maddubs_epi16(q2_2, q8_2),
                );
                let p3 = _mm256_madd_epi16(
                    _mm256_shuffle_epi8(*scale, shuffle_q3k(3)),
                    _mm256_maddubs_epi16(q2_3, q8_3),
                );
                sumi = _mm256_add_epi32(sumi, _mm256_add_epi32(p0, p1));
                sumi = _mm256_add_epi32(sumi, _mm256_add_epi32(p2, p3));
            }
            acc = _mm256_fmadd_ps(_mm256_set1_ps(d), _mm256_cvtepi32_ps(sumi), acc);
        }
    }
    hsum_f32x8(acc)
}

#[target_feature(enable = "avx2,fma,f16c")]
pub unsafe fn q3k(w: &[u8], x: &[u8]) -> f32 {
    let (w, x): (&[BlockQ3K], &[BlockQ8K]) = (cast_slice(w), cast_slice(x));
    let m3 = _mm256_set1_epi8(3);
    let mone = _mm256_set1_epi8(1);
    let mut acc = _mm256_setzero_ps();
    for (w, x) in w.iter().zip(x) {
        let d = x.d() * h2f(w.d);
        let sc = q3k_scales(&w.scales);
        unsafe {
            let scales128 = _mm_loadu_si128(sc.as_ptr() as *const __m128i);
            let all_scales = _mm256_cvtepi8_epi16(scales128);
            let l = _mm256_extracti128_si256::<0>(all_scales);
            let h = _mm256_extracti128_si256::<1>(all_scales);
            let scales = [set_m128i(l, l), set_m128i(h, h)];
            let hbits = _mm256_loadu_si256(w.hmask.as_ptr() as *const __m256i);
            let mut sumi = _mm256_setzero_si256();
            for (j, scale) in scales.iter().enumerate() {
                let q3bits = _mm256_loadu_si256(w.qs.as_ptr().add(32 * j) as *const __m256i);
                let q8 = x.qs.as_ptr().add(128 * j);
                let mut p = _mm256_setzero_si256();
                for k in 0..4 {
                    let bit = (4 * j + k) as i32;
                    let low = _mm256_and_si256(
                        _mm256_srl_epi16(q3bits, _mm_cvtsi32_si128(2 * k as i32)),
                        m3,
                    );
                    // 4 where the high bit is clear, 0 where it is set
                    let hb = _mm256_and_si256(
                        _mm256_srl_epi16(
                            _mm256_andnot_si256(hbits, _mm256_set1_epi8((1u8 << bit) as i8)),
                            _mm_cvtsi32_si128(bit),
                        ),
                        mone,
                    );
                    let hb = _mm256_slli_epi16::<2>(hb);
                    let q8k = _mm256_loadu_si256(q8.add(32 * k) as *const __m256i);
                    let prod = _mm256_sub_epi16(
                        _mm256_maddubs_epi16(low, q8k),
                        _mm256_maddubs_epi16(hb, q8k),
                    );
                    let prod = _mm256_madd_epi16(_mm256_shuffle_epi8(*scale, shuffle_q3k(k)), prod);
                    p = _mm256_add_epi32(p, prod);
                }
                sumi = _mm256_add_epi32(sumi, p);
            }
            acc = _mm256_fmadd_ps(_mm256_set1_ps(d), _mm256_cvtepi32_ps(sumi), acc);
        }
    }
    hsum_f32x8(acc)
}

//! AVX-512 VNNI row kernels for the two types that carry most of a Q4_K_M model's bytes,
//! Q4_K and Q6_K (decode spends ~87 % of its time in them). They compute **the same integer
//! sums, lane for lane, as the AVX2 kernels** of [`super::dot_avx2`] and share their float
//! part, so every result is bitwise the AVX2 one: switching instruction sets changes speed,
//! never a token.
//!
//! How: a 512-bit register holds 64 weights, a sub-block's 32 low nibbles in the low half and
//! the matching 32 high nibbles (Q4_K) or the next 32 six-bit values (Q6_K) in the high half,
//! lined up with 64 contiguous activation bytes. `vpdpbusd` sums four byte products per 32-bit
//! lane (AVX2 needs `vpmaddubsw` + `vpmaddwd` for that), `vpdpwssd` multiplies by the
//! sub-block's scale and accumulates (the four-product sums fit in 16 bits, so a scale in the
//! low half of each 32-bit lane and zero in the high half is an exact product). Adding the
//! two 256-bit halves at the end gives the AVX2 kernel's eight lanes exactly: integer sums
//! are associative, and the float steps that follow are the shared ones.
//!
//! One row of Q4_K (decode) is not here: `super::kernels` gives the avx512 level the AVX2
//! kernel for it, which `cargo bench --bench kernels` measured faster on a Zen 4, whose
//! 512-bit instructions take two passes (20.4 vs 18.5 GB/s in L1, 1.5B decode 17.5 → 18.2
//! tok/s on one thread); four rows (small batches) share the unpacked block and stay here.
//!
//! Q4_0, Q5_0 and Q8_0 (Gemma 3's layers and its tied output matrix) run the AVX2 kernels'
//! code with one change: the byte products of a block are summed by one 256-bit `vpdpbusd`
//! (AVX-512 VL) instead of `vpmaddubsw` + `vpmaddwd`. Both sum the same four products per
//! 32-bit lane, exactly (the 16-bit pair sums never saturate: |w| ≤ 128 and |x| ≤ 127 in
//! Q8_0, smaller in the others), so these are bitwise the AVX2 results too.
//!
//! Each function is only ever called through [`super::kernels`], which selects it after
//! `is_x86_feature_detected!` confirmed AVX-512 F/BW/VNNI (and AVX2, FMA, F16C); that check
//! is what makes the `unsafe` calls sound. Loads are unaligned.

#![allow(clippy::missing_safety_doc)]
#![allow(clippy::needless_range_loop)]

use super::blocks::*;
use super::dot_avx2::{
    h2f, hsum_f32x4, hsum_f32x8, k4_head, prefetch_block, q4_0_n, q4k_accumulate, q5_0_n,
    q6k_accumulate, q8_0_n,
};
use bytemuck::cast_slice;
use std::arch::x86_64::*;

/// The upper sixteen 16-bit lanes (the high 256 bits) of a 512-bit register.
const HIGH_HALF: __mmask32 = 0xFFFF_0000;

/// Lane indices that spread scale `a` over lanes 0–7 and `b` over lanes 8–15.
#[inline]
#[target_feature(enable = "avx512f")]
fn halves(a: i32, b: i32) -> __m512i {
    _mm512_setr_epi32(a, a, a, a, a, a, a, a, b, b, b, b, b, b, b, b)
}

/// Lane indices that spread scales `b`, `b+1`, `b+2`, `b+3` over four lanes each.
#[inline]
#[target_feature(enable = "avx512f")]
fn quarters(b: i32) -> __m512i {
    _mm512_setr_epi32(
        b,
        b,
        b,
        b,
        b + 1,
        b + 1,
        b + 1,
        b + 1,
        b + 2,
        b + 2,
        b + 2,
        b + 2,
        b + 3,
        b + 3,
        b + 3,
        b + 3,
    )
}

/// The low and high 256 bits added: the AVX2 kernels' eight lanes.
#[inline]
#[target_feature(enable = "avx512f,avx2")]
fn fold(x: __m512i) -> __m256i {
    _mm256_add_epi32(_mm512_castsi512_si256(x), _mm512_extracti64x4_epi64::<1>(x))
}

/// Q4_K × Q8_K for `N` activation rows; bitwise `dot_avx2::q4k_n`.
#[inline]
#[target_feature(enable = "avx512f,avx512bw,avx512vnni,avx2,fma,f16c")]
unsafe fn q4k_n<const N: usize>(w: &[u8], x: [&[u8]; N]) -> [f32; N] {
    let w: &[BlockQ4K] = cast_slice(w);
    let x: [&[BlockQ8K]; N] = x.map(cast_slice);
    let m4 = _mm512_set1_epi8(0xF);
    let zero = _mm512_setzero_si512();
    let idx = [0, 1, 2, 3].map(|j| halves(2 * j, 2 * j + 1));
    let mut acc = [_mm256_setzero_ps(); N];
    let mut acc_m = [_mm_setzero_ps(); N];
    for (b, wb) in w.iter().enumerate() {
        prefetch_block(wb as *const BlockQ4K as *const u8, size_of::<BlockQ4K>());
        // SAFETY: a Q4_K block starts with its 16-byte header.
        let (ms, dw, dmin) = unsafe { k4_head(wb as *const BlockQ4K as *const u8) };
        let mins = _mm256_extracti128_si256::<1>(ms);
        // eight scales in i32 lanes 0–7 (the mins above them are never indexed)
        let scales = _mm512_cvtepu16_epi32(ms);
        let mut sumi = [zero; N];
        for j in 0..4 {
            let scale = _mm512_permutexvar_epi32(idx[j], scales);
            // SAFETY: 32 of the block's 128 nibble bytes.
            let q4 = unsafe { _mm256_loadu_si256(wb.qs.as_ptr().add(32 * j) as *const __m256i) };
            let q4 = _mm512_broadcast_i64x4(q4);
            // low nibbles | high nibbles
            let q = _mm512_and_si512(_mm512_mask_srli_epi16::<4>(q4, HIGH_HALF, q4), m4);
            for t in 0..N {
                // SAFETY: 64 of the block's 256 activation bytes.
                let y = unsafe {
                    _mm512_loadu_si512(x[t][b].qs.as_ptr().add(64 * j) as *const __m512i)
                };
                let p = _mm512_dpbusd_epi32(zero, q, y);
                sumi[t] = _mm512_dpwssd_epi32(sumi[t], p, scale);
            }
        }
        for t in 0..N {
            q4k_accumulate(
                &x[t][b],
                (dw, dmin),
                mins,
                fold(sumi[t]),
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

#[target_feature(enable = "avx512f,avx512bw,avx512vnni,avx2,fma,f16c")]
pub unsafe fn q4k_x4(w: &[u8], x: [&[u8]; 4]) -> [f32; 4] {
    unsafe { q4k_n::<4>(w, x) }
}

/// Q6_K × Q8_K for `N` activation rows; bitwise `dot_avx2::q6k_n`.
#[inline]
#[target_feature(enable = "avx512f,avx512bw,avx512vnni,avx2,fma,f16c")]
unsafe fn q6k_n<const N: usize>(w: &[u8], x: [&[u8]; N]) -> [f32; N] {
    let w: &[BlockQ6K] = cast_slice(w);
    let x: [&[BlockQ8K]; N] = x.map(cast_slice);
    let m4 = _mm512_set1_epi8(0xF);
    let m30 = _mm512_set1_epi8(0x30);
    let m32s = _mm512_set1_epi8(32);
    let low16 = _mm512_set1_epi32(0xFFFF);
    let zero = _mm512_setzero_si512();
    let idx = [0, 1, 2, 3].map(|q| quarters(4 * q));
    let mut acc = [_mm256_setzero_ps(); N];
    for (b, wb) in w.iter().enumerate() {
        prefetch_block(wb as *const BlockQ6K as *const u8, size_of::<BlockQ6K>());
        let dw = h2f(wb.d);
        // sixteen signed scales, one per i32 lane, high 16 bits cleared so that `vpdpwssd`
        // multiplies by the scale alone
        // SAFETY: `scales` is 16 bytes.
        let s8 = unsafe { _mm_loadu_si128(wb.scales.as_ptr() as *const __m128i) };
        let scales = _mm512_and_si512(_mm512_cvtepi8_epi32(s8), low16);
        let mut sumi = [zero; N];
        for j in 0..2 {
            // SAFETY: 64 of 128 low-bit bytes and 32 of 64 high-bit bytes of the block.
            let (ql, qh) = unsafe {
                (
                    _mm512_loadu_si512(wb.ql.as_ptr().add(64 * j) as *const __m512i),
                    _mm256_loadu_si256(wb.qh.as_ptr().add(32 * j) as *const __m256i),
                )
            };
            let qh = _mm512_broadcast_i64x4(qh);
            // qh | qh >> 2: bits 0–1 and 4–5 of each byte are the two high bits of the four
            // 32-value runs, in the order the runs take in `q` below
            let h = _mm512_mask_srli_epi16::<2>(qh, HIGH_HALF, qh);
            let h01 = _mm512_and_si512(_mm512_slli_epi16::<4>(h), m30);
            let h23 = _mm512_and_si512(h, m30);
            let q = [
                _mm512_or_si512(_mm512_and_si512(ql, m4), h01),
                _mm512_or_si512(_mm512_and_si512(_mm512_srli_epi16::<4>(ql), m4), h23),
            ];
            let s = [
                _mm512_permutexvar_epi32(idx[2 * j], scales),
                _mm512_permutexvar_epi32(idx[2 * j + 1], scales),
            ];
            for t in 0..N {
                for h in 0..2 {
                    // SAFETY: 64 of the block's 256 activation bytes.
                    let y = unsafe {
                        _mm512_loadu_si512(
                            x[t][b].qs.as_ptr().add(128 * j + 64 * h) as *const __m512i
                        )
                    };
                    // (q - 32) · y as q · y - 32 · y, four products per lane
                    let p = _mm512_sub_epi32(
                        _mm512_dpbusd_epi32(zero, q[h], y),
                        _mm512_dpbusd_epi32(zero, m32s, y),
                    );
                    sumi[t] = _mm512_dpwssd_epi32(sumi[t], p, s[h]);
                }
            }
        }
        for t in 0..N {
            q6k_accumulate(&x[t][b], dw, fold(sumi[t]), &mut acc[t]);
        }
    }
    let mut out = [0f32; N];
    for t in 0..N {
        out[t] = hsum_f32x8(acc[t]);
    }
    out
}

#[target_feature(enable = "avx512f,avx512bw,avx512vnni,avx2,fma,f16c")]
pub unsafe fn q6k(w: &[u8], x: &[u8]) -> f32 {
    unsafe { q6k_n::<1>(w, [x])[0] }
}

#[target_feature(enable = "avx512f,avx512bw,avx512vnni,avx2,fma,f16c")]
pub unsafe fn q6k_x4(w: &[u8], x: [&[u8]; 4]) -> [f32; 4] {
    unsafe { q6k_n::<4>(w, x) }
}

/// Σ of unsigned × signed byte products in 8 float lanes: `dot_avx2::mul_sum_us8_f32` in one
/// instruction, the same integers (see the module doc).
#[inline]
#[target_feature(enable = "avx512f,avx512vl,avx512vnni,avx2,fma")]
fn mul_sum_us8_f32(a: __m256i, b: __m256i) -> __m256 {
    _mm256_cvtepi32_ps(_mm256_dpbusd_epi32(_mm256_setzero_si256(), a, b))
}

macro_rules! small_blocks {
    ($($name:ident, $name4:ident, $body:ident, $chains:literal);*) => {$(
        /// Bitwise `dot_avx2`'s kernel of the same name (see the module doc).
        #[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma,f16c")]
        pub unsafe fn $name(w: &[u8], x: &[u8]) -> f32 {
            unsafe { $body::<1, $chains>(w, [x], |a, b| mul_sum_us8_f32(a, b))[0] }
        }

        #[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma,f16c")]
        pub unsafe fn $name4(w: &[u8], x: [&[u8]; 4]) -> [f32; 4] {
            unsafe { $body::<4, $chains>(w, x, |a, b| mul_sum_us8_f32(a, b)) }
        }
    )*};
}

// the chain counts are the AVX2 kernels' (the sums' order decides the bits)
small_blocks!(q4_0, q4_0_x4, q4_0_n, 2; q5_0, q5_0_x4, q5_0_n, 2; q8_0, q8_0_x4, q8_0_n, 4);

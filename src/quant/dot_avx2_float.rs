//! AVX2 + FMA + F16C dot products of dense weight rows (F32, F16, BF16) with f32 activations:
//! no blocks, no activation quantization. Split from [`super::dot_avx2`] (the quantized block
//! kernels), which re-exports them; the same safety contract: only called through
//! [`super::kernels`] after the run-time feature check, loads unaligned.

#![allow(clippy::missing_safety_doc)]

use super::dot_avx2::hsum_f32x8;
use std::arch::x86_64::*;

#[target_feature(enable = "avx2,fma,f16c")]
pub unsafe fn f32_f32(w: &[u8], x: &[u8]) -> f32 {
    let n = w.len() / 4;
    let (wp, xp) = (w.as_ptr() as *const f32, x.as_ptr() as *const f32);
    let mut acc = [_mm256_setzero_ps(); 4];
    let mut i = 0;
    unsafe {
        while i + 32 <= n {
            for (k, a) in acc.iter_mut().enumerate() {
                let o = i + 8 * k;
                *a = _mm256_fmadd_ps(_mm256_loadu_ps(wp.add(o)), _mm256_loadu_ps(xp.add(o)), *a);
            }
            i += 32;
        }
        while i + 8 <= n {
            acc[0] = _mm256_fmadd_ps(
                _mm256_loadu_ps(wp.add(i)),
                _mm256_loadu_ps(xp.add(i)),
                acc[0],
            );
            i += 8;
        }
        let s = _mm256_add_ps(_mm256_add_ps(acc[0], acc[1]), _mm256_add_ps(acc[2], acc[3]));
        let mut sum = hsum_f32x8(s);
        while i < n {
            sum += wp.add(i).read_unaligned() * xp.add(i).read_unaligned();
            i += 1;
        }
        sum
    }
}

#[target_feature(enable = "avx2,fma,f16c")]
pub unsafe fn f16_f32(w: &[u8], x: &[u8]) -> f32 {
    let n = w.len() / 2;
    let (wp, xp) = (w.as_ptr(), x.as_ptr() as *const f32);
    let mut acc = [_mm256_setzero_ps(); 2];
    let mut i = 0;
    unsafe {
        while i + 16 <= n {
            for (k, a) in acc.iter_mut().enumerate() {
                let o = i + 8 * k;
                let wv = _mm256_cvtph_ps(_mm_loadu_si128(wp.add(2 * o) as *const __m128i));
                *a = _mm256_fmadd_ps(wv, _mm256_loadu_ps(xp.add(o)), *a);
            }
            i += 16;
        }
        let mut sum = hsum_f32x8(_mm256_add_ps(acc[0], acc[1]));
        let rest = super::dot_scalar::f16_f32(&w[2 * i..], &x[4 * i..]);
        sum += rest;
        sum
    }
}

#[target_feature(enable = "avx2,fma,f16c")]
pub unsafe fn bf16_f32(w: &[u8], x: &[u8]) -> f32 {
    let n = w.len() / 2;
    let (wp, xp) = (w.as_ptr(), x.as_ptr() as *const f32);
    let mut acc = _mm256_setzero_ps();
    let mut i = 0;
    unsafe {
        while i + 8 <= n {
            let h = _mm256_cvtepu16_epi32(_mm_loadu_si128(wp.add(2 * i) as *const __m128i));
            let wv = _mm256_castsi256_ps(_mm256_slli_epi32(h, 16));
            acc = _mm256_fmadd_ps(wv, _mm256_loadu_ps(xp.add(i)), acc);
            i += 8;
        }
        hsum_f32x8(acc) + super::dot_scalar::bf16_f32(&w[2 * i..], &x[4 * i..])
    }
}

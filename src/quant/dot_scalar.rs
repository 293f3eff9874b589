//! Portable dot products of one quantized weight row with one quantized activation row.
//!
//! Integer sums are exact, so these give the same value as the SIMD kernels up to the order of
//! float accumulation; they are the fallback on CPUs without AVX2 and the reference the SIMD
//! kernels are tested against.

use super::blocks::*;
use super::dequant::q5_values;
use bytemuck::cast_slice;
use half::{bf16, f16};

pub fn f32_f32(w: &[u8], x: &[u8]) -> f32 {
    let w: &[[u8; 4]] = cast_slice(w);
    let x: &[[u8; 4]] = cast_slice(x);
    w.iter()
        .zip(x)
        .map(|(a, b)| f32::from_le_bytes(*a) * f32::from_le_bytes(*b))
        .sum()
}

pub fn f16_f32(w: &[u8], x: &[u8]) -> f32 {
    let w: &[[u8; 2]] = cast_slice(w);
    let x: &[[u8; 4]] = cast_slice(x);
    w.iter()
        .zip(x)
        .map(|(a, b)| f16::from_le_bytes(*a).to_f32() * f32::from_le_bytes(*b))
        .sum()
}

pub fn bf16_f32(w: &[u8], x: &[u8]) -> f32 {
    let w: &[[u8; 2]] = cast_slice(w);
    let x: &[[u8; 4]] = cast_slice(x);
    w.iter()
        .zip(x)
        .map(|(a, b)| bf16::from_le_bytes(*a).to_f32() * f32::from_le_bytes(*b))
        .sum()
}

#[inline(always)]
fn dot_i8(a: impl Iterator<Item = i32>, b: &[i8]) -> i32 {
    a.zip(b).map(|(a, &b)| a * b as i32).sum()
}

pub fn q4_0(w: &[u8], x: &[u8]) -> f32 {
    let (w, x): (&[BlockQ4_0], &[BlockQ8_0S]) = (cast_slice(w), cast_slice(x));
    w.iter()
        .zip(x)
        .map(|(w, x)| {
            let lo = w.qs.iter().map(|&q| (q & 0xF) as i32 - 8);
            let hi = w.qs.iter().map(|&q| (q >> 4) as i32 - 8);
            let s = dot_i8(lo, &x.qs[..16]) + dot_i8(hi, &x.qs[16..]);
            f16_at(w.d) * f16_at(x.d) * s as f32
        })
        .sum()
}

pub fn q4_1(w: &[u8], x: &[u8]) -> f32 {
    let (w, x): (&[BlockQ4_1], &[BlockQ8_1]) = (cast_slice(w), cast_slice(x));
    w.iter()
        .zip(x)
        .map(|(w, x)| {
            let lo = w.qs.iter().map(|&q| (q & 0xF) as i32);
            let hi = w.qs.iter().map(|&q| (q >> 4) as i32);
            let s = dot_i8(lo, &x.qs[..16]) + dot_i8(hi, &x.qs[16..]);
            f16_at(w.d) * f16_at(x.d) * s as f32 + f16_at(w.m) * f16_at(x.s)
        })
        .sum()
}

pub fn q5_0(w: &[u8], x: &[u8]) -> f32 {
    let (w, x): (&[BlockQ5_0], &[BlockQ8_0S]) = (cast_slice(w), cast_slice(x));
    w.iter()
        .zip(x)
        .map(|(w, x)| {
            let v = q5_values(w.qh, &w.qs);
            let s = dot_i8(v.iter().map(|&q| q as i32 - 16), &x.qs);
            f16_at(w.d) * f16_at(x.d) * s as f32
        })
        .sum()
}

pub fn q5_1(w: &[u8], x: &[u8]) -> f32 {
    let (w, x): (&[BlockQ5_1], &[BlockQ8_1]) = (cast_slice(w), cast_slice(x));
    w.iter()
        .zip(x)
        .map(|(w, x)| {
            let v = q5_values(w.qh, &w.qs);
            let s = dot_i8(v.iter().map(|&q| q as i32), &x.qs);
            f16_at(w.d) * f16_at(x.d) * s as f32 + f16_at(w.m) * f16_at(x.s)
        })
        .sum()
}

pub fn q8_0(w: &[u8], x: &[u8]) -> f32 {
    let (w, x): (&[BlockQ8_0], &[BlockQ8_0]) = (cast_slice(w), cast_slice(x));
    w.iter()
        .zip(x)
        .map(|(w, x)| {
            let s = dot_i8(w.qs.iter().map(|&q| q as i32), &x.qs);
            f16_at(w.d) * f16_at(x.d) * s as f32
        })
        .sum()
}

pub fn q2k(w: &[u8], x: &[u8]) -> f32 {
    let (w, x): (&[BlockQ2K], &[BlockQ8K]) = (cast_slice(w), cast_slice(x));
    let mut sum = 0f32;
    for (w, x) in w.iter().zip(x) {
        let (mut isum, mut summs) = (0i32, 0i32);
        for (j, &sc) in w.scales.iter().enumerate() {
            summs += (sc >> 4) as i32 * x.bsum(j);
            // sub-block j: half j/8, bit pair (j%8)/2, bytes 16*(j%2)..
            let (half, pair, part) = (j / 8, (j % 8) / 2, j % 2);
            let q = &w.qs[half * 32 + part * 16..half * 32 + part * 16 + 16];
            let y = &x.qs[j * 16..j * 16 + 16];
            let s = dot_i8(q.iter().map(|&b| ((b >> (2 * pair)) & 3) as i32), y);
            isum += (sc & 0xF) as i32 * s;
        }
        sum += x.d() * (f16_at(w.d) * isum as f32 - f16_at(w.dmin) * summs as f32);
    }
    sum
}

pub fn q3k(w: &[u8], x: &[u8]) -> f32 {
    let (w, x): (&[BlockQ3K], &[BlockQ8K]) = (cast_slice(w), cast_slice(x));
    let mut sum = 0f32;
    for (w, x) in w.iter().zip(x) {
        let scales = q3k_scales(&w.scales);
        let mut isum = 0i32;
        for (j, &sc) in scales.iter().enumerate() {
            let (half, pair, part) = (j / 8, (j % 8) / 2, j % 2);
            let m = 1u8 << (half * 4 + pair);
            let base = part * 16;
            let q = &w.qs[half * 32 + base..half * 32 + base + 16];
            let hm = &w.hmask[base..base + 16];
            let vals = q
                .iter()
                .zip(hm)
                .map(|(&b, &h)| ((b >> (2 * pair)) & 3) as i32 - if h & m != 0 { 0 } else { 4 });
            isum += sc as i32 * dot_i8(vals, &x.qs[j * 16..j * 16 + 16]);
        }
        sum += x.d() * f16_at(w.d) * isum as f32;
    }
    sum
}

pub fn q4k(w: &[u8], x: &[u8]) -> f32 {
    q4k_with(w, x, |q, high, y| {
        let shift = 4 * high as u32;
        dot_i8(q.iter().map(|&b| ((b >> shift) & 0xF) as i32), y)
    })
}

/// Q4_K's steps around `sub(q, high, y)`, the integer dot of one 32-element sub-block: the
/// low (`high` false) or high nibbles of the 32 bytes `q` times the activations `y`. The NEON
/// kernel passes its own `sub`, so both round alike.
#[inline(always)]
pub(super) fn q4k_with(w: &[u8], x: &[u8], sub: impl Fn(&[u8; 32], bool, &[i8; 32]) -> i32) -> f32 {
    let (w, x): (&[BlockQ4K], &[BlockQ8K]) = (cast_slice(w), cast_slice(x));
    let mut sum = 0f32;
    for (w, x) in w.iter().zip(x) {
        let (mut isum, mut summs) = (0i32, 0i32);
        for j in 0..8 {
            let (sc, m) = scale_min_k4(j, &w.scales);
            summs += m as i32 * (x.bsum(2 * j) + x.bsum(2 * j + 1));
            let q = w.qs[(j / 2) * 32..][..32].try_into().expect("32 bytes");
            let y = x.qs[j * 32..][..32].try_into().expect("32 bytes");
            isum += sc as i32 * sub(q, j % 2 == 1, y);
        }
        sum += x.d() * (f16_at(w.d) * isum as f32 - f16_at(w.dmin) * summs as f32);
    }
    sum
}

pub fn q5k(w: &[u8], x: &[u8]) -> f32 {
    let (w, x): (&[BlockQ5K], &[BlockQ8K]) = (cast_slice(w), cast_slice(x));
    let mut sum = 0f32;
    for (w, x) in w.iter().zip(x) {
        let (mut isum, mut summs) = (0i32, 0i32);
        for j in 0..8 {
            let (sc, m) = scale_min_k4(j, &w.scales);
            summs += m as i32 * (x.bsum(2 * j) + x.bsum(2 * j + 1));
            let q = &w.qs[(j / 2) * 32..(j / 2) * 32 + 32];
            let shift = 4 * (j % 2);
            let hbit = 1u8 << j;
            let vals = q
                .iter()
                .zip(&w.qh)
                .map(|(&b, &h)| ((b >> shift) & 0xF) as i32 + if h & hbit != 0 { 16 } else { 0 });
            isum += sc as i32 * dot_i8(vals, &x.qs[j * 32..j * 32 + 32]);
        }
        sum += x.d() * (f16_at(w.d) * isum as f32 - f16_at(w.dmin) * summs as f32);
    }
    sum
}

pub fn q6k(w: &[u8], x: &[u8]) -> f32 {
    q6k_with(w, x, |ql, qh, (lo_shift, hi_shift), y| {
        let vals = ql
            .iter()
            .zip(qh)
            .map(|(&l, &h)| (((l >> lo_shift) & 0xF) | (((h >> hi_shift) & 3) << 4)) as i32 - 32);
        dot_i8(vals, y)
    })
}

/// Q6_K's steps around `sub(ql, qh, (lo_shift, hi_shift), y)`, the integer dot of one
/// 16-element sub-block: values `((ql >> lo_shift) & 0xF | ((qh >> hi_shift) & 3) << 4) - 32`
/// times the activations `y`. The NEON kernel passes its own `sub`, so both round alike.
#[inline(always)]
pub(super) fn q6k_with(
    w: &[u8],
    x: &[u8],
    sub: impl Fn(&[u8; 16], &[u8; 16], (u32, u32), &[i8; 16]) -> i32,
) -> f32 {
    let (w, x): (&[BlockQ6K], &[BlockQ8K]) = (cast_slice(w), cast_slice(x));
    let mut sum = 0f32;
    for (w, x) in w.iter().zip(x) {
        let mut isum = 0i32;
        // sub-block j (16 elements): half n = j/8, quarter k = (j%8)/2, part = j%2
        for (j, &sc) in w.scales.iter().enumerate() {
            let (n, k, part) = (j / 8, (j % 8) / 2, j % 2);
            let ql = w.ql[n * 64 + (k % 2) * 32 + part * 16..][..16]
                .try_into()
                .expect("16 bytes");
            let qh = w.qh[n * 32 + part * 16..][..16]
                .try_into()
                .expect("16 bytes");
            let y = x.qs[j * 16..][..16].try_into().expect("16 bytes");
            let shifts = (4 * (k / 2) as u32, 2 * k as u32);
            isum += sc as i32 * sub(ql, qh, shifts, y);
        }
        sum += x.d() * f16_at(w.d) * isum as f32;
    }
    sum
}

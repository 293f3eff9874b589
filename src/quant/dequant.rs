//! Reference dequantization: block bytes → f32, written to be obviously equal to ggml's
//! `dequantize_row_*` reference code. Used for embedding-row lookups, by tests as the oracle
//! for every SIMD and GPU kernel, and wherever speed does not matter.

use super::blocks::*;
use crate::gguf::GgmlType;
use bytemuck::cast_slice;
use half::{bf16, f16};

/// Dequantizes `src` (whole blocks of `dtype`) into `dst`; `dst.len()` must equal the number of
/// elements `src` holds. Returns `false` for types without a CPU dequantizer.
pub fn dequantize(dtype: GgmlType, src: &[u8], dst: &mut [f32]) -> bool {
    debug_assert_eq!(
        src.len() / dtype.type_size() * dtype.block_size(),
        dst.len(),
        "dequantize: size mismatch for {dtype}"
    );
    match dtype {
        GgmlType::F32 => {
            for (o, c) in dst.iter_mut().zip(src.chunks_exact(4)) {
                *o = f32::from_le_bytes([c[0], c[1], c[2], c[3]]);
            }
        }
        GgmlType::F16 => {
            for (o, c) in dst.iter_mut().zip(src.chunks_exact(2)) {
                *o = f16::from_le_bytes([c[0], c[1]]).to_f32();
            }
        }
        GgmlType::BF16 => {
            for (o, c) in dst.iter_mut().zip(src.chunks_exact(2)) {
                *o = bf16::from_le_bytes([c[0], c[1]]).to_f32();
            }
        }
        GgmlType::Q4_0 => q4_0(cast_slice(src), dst),
        GgmlType::Q4_1 => q4_1(cast_slice(src), dst),
        GgmlType::Q5_0 => q5_0(cast_slice(src), dst),
        GgmlType::Q5_1 => q5_1(cast_slice(src), dst),
        GgmlType::Q8_0 => q8_0(cast_slice(src), dst),
        GgmlType::Q2_K => q2k(cast_slice(src), dst),
        GgmlType::Q3_K => q3k(cast_slice(src), dst),
        GgmlType::Q4_K => q4k(cast_slice(src), dst),
        GgmlType::Q5_K => q5k(cast_slice(src), dst),
        GgmlType::Q6_K => q6k(cast_slice(src), dst),
        GgmlType::Q8_K => q8k(cast_slice(src), dst),
        _ => return false,
    }
    true
}

fn q4_0(xs: &[BlockQ4_0], y: &mut [f32]) {
    for (x, y) in xs.iter().zip(y.chunks_exact_mut(QK)) {
        let d = f16_at(x.d);
        for j in 0..QK / 2 {
            y[j] = ((x.qs[j] & 0xF) as i32 - 8) as f32 * d;
            y[j + QK / 2] = ((x.qs[j] >> 4) as i32 - 8) as f32 * d;
        }
    }
}

fn q4_1(xs: &[BlockQ4_1], y: &mut [f32]) {
    for (x, y) in xs.iter().zip(y.chunks_exact_mut(QK)) {
        let (d, m) = (f16_at(x.d), f16_at(x.m));
        for j in 0..QK / 2 {
            y[j] = (x.qs[j] & 0xF) as f32 * d + m;
            y[j + QK / 2] = (x.qs[j] >> 4) as f32 * d + m;
        }
    }
}

/// The 5-bit values of a Q5_0/Q5_1 block, 0..32.
#[inline(always)]
pub(crate) fn q5_values(qh: [u8; 4], qs: &[u8; 16]) -> [u8; 32] {
    let qh = u32::from_le_bytes(qh);
    let mut v = [0u8; 32];
    for j in 0..16 {
        let h0 = (((qh >> j) << 4) & 0x10) as u8;
        let h1 = ((qh >> (j + 12)) & 0x10) as u8;
        v[j] = (qs[j] & 0xF) | h0;
        v[j + 16] = (qs[j] >> 4) | h1;
    }
    v
}

fn q5_0(xs: &[BlockQ5_0], y: &mut [f32]) {
    for (x, y) in xs.iter().zip(y.chunks_exact_mut(QK)) {
        let d = f16_at(x.d);
        for (o, q) in y.iter_mut().zip(q5_values(x.qh, &x.qs)) {
            *o = (q as i32 - 16) as f32 * d;
        }
    }
}

fn q5_1(xs: &[BlockQ5_1], y: &mut [f32]) {
    for (x, y) in xs.iter().zip(y.chunks_exact_mut(QK)) {
        let (d, m) = (f16_at(x.d), f16_at(x.m));
        for (o, q) in y.iter_mut().zip(q5_values(x.qh, &x.qs)) {
            *o = q as f32 * d + m;
        }
    }
}

fn q8_0(xs: &[BlockQ8_0], y: &mut [f32]) {
    for (x, y) in xs.iter().zip(y.chunks_exact_mut(QK)) {
        let d = f16_at(x.d);
        for (o, &q) in y.iter_mut().zip(x.qs.iter()) {
            *o = q as f32 * d;
        }
    }
}

fn q2k(xs: &[BlockQ2K], y: &mut [f32]) {
    for (x, y) in xs.iter().zip(y.chunks_exact_mut(QK_K)) {
        let (d, dmin) = (f16_at(x.d), f16_at(x.dmin));
        let mut is = 0;
        for (half, yh) in y.chunks_exact_mut(128).enumerate() {
            let q = &x.qs[half * 32..half * 32 + 32];
            for j in 0..4 {
                let shift = 2 * j;
                for part in 0..2 {
                    let sc = x.scales[is];
                    is += 1;
                    let (dl, ml) = (d * (sc & 0xF) as f32, dmin * (sc >> 4) as f32);
                    for l in 0..16 {
                        let qv = (q[part * 16 + l] >> shift) & 3;
                        yh[j * 32 + part * 16 + l] = dl * qv as f32 - ml;
                    }
                }
            }
        }
    }
}

fn q3k(xs: &[BlockQ3K], y: &mut [f32]) {
    for (x, y) in xs.iter().zip(y.chunks_exact_mut(QK_K)) {
        let d_all = f16_at(x.d);
        let scales = q3k_scales(&x.scales);
        let mut is = 0;
        let mut m = 1u8;
        for (half, yh) in y.chunks_exact_mut(128).enumerate() {
            let q = &x.qs[half * 32..half * 32 + 32];
            for j in 0..4 {
                let shift = 2 * j;
                for part in 0..2 {
                    let dl = d_all * scales[is] as f32;
                    is += 1;
                    for l in 0..16 {
                        let i = part * 16 + l;
                        let low = ((q[i] >> shift) & 3) as i32;
                        let high = if x.hmask[i] & m != 0 { 0 } else { 4 };
                        yh[j * 32 + i] = dl * (low - high) as f32;
                    }
                }
                m <<= 1;
            }
        }
    }
}

fn q4k(xs: &[BlockQ4K], y: &mut [f32]) {
    for (x, y) in xs.iter().zip(y.chunks_exact_mut(QK_K)) {
        let (d, dmin) = (f16_at(x.d), f16_at(x.dmin));
        for (c, yc) in y.chunks_exact_mut(64).enumerate() {
            let q = &x.qs[c * 32..c * 32 + 32];
            let (sc1, m1) = scale_min_k4(2 * c, &x.scales);
            let (sc2, m2) = scale_min_k4(2 * c + 1, &x.scales);
            let (d1, m1) = (d * sc1 as f32, dmin * m1 as f32);
            let (d2, m2) = (d * sc2 as f32, dmin * m2 as f32);
            for l in 0..32 {
                yc[l] = d1 * (q[l] & 0xF) as f32 - m1;
                yc[l + 32] = d2 * (q[l] >> 4) as f32 - m2;
            }
        }
    }
}

fn q5k(xs: &[BlockQ5K], y: &mut [f32]) {
    for (x, y) in xs.iter().zip(y.chunks_exact_mut(QK_K)) {
        let (d, dmin) = (f16_at(x.d), f16_at(x.dmin));
        for (c, yc) in y.chunks_exact_mut(64).enumerate() {
            let ql = &x.qs[c * 32..c * 32 + 32];
            let (u1, u2) = (1u8 << (2 * c), 2u8 << (2 * c));
            let (sc1, m1) = scale_min_k4(2 * c, &x.scales);
            let (sc2, m2) = scale_min_k4(2 * c + 1, &x.scales);
            let (d1, m1) = (d * sc1 as f32, dmin * m1 as f32);
            let (d2, m2) = (d * sc2 as f32, dmin * m2 as f32);
            for l in 0..32 {
                let h1 = if x.qh[l] & u1 != 0 { 16 } else { 0 };
                let h2 = if x.qh[l] & u2 != 0 { 16 } else { 0 };
                yc[l] = d1 * ((ql[l] & 0xF) + h1) as f32 - m1;
                yc[l + 32] = d2 * ((ql[l] >> 4) + h2) as f32 - m2;
            }
        }
    }
}

fn q6k(xs: &[BlockQ6K], y: &mut [f32]) {
    for (x, y) in xs.iter().zip(y.chunks_exact_mut(QK_K)) {
        let d = f16_at(x.d);
        for (n, yn) in y.chunks_exact_mut(128).enumerate() {
            let ql = &x.ql[n * 64..n * 64 + 64];
            let qh = &x.qh[n * 32..n * 32 + 32];
            let sc = &x.scales[n * 8..n * 8 + 8];
            for l in 0..32 {
                let is = l / 16;
                let q1 = ((ql[l] & 0xF) | ((qh[l] & 3) << 4)) as i32 - 32;
                let q2 = ((ql[l + 32] & 0xF) | (((qh[l] >> 2) & 3) << 4)) as i32 - 32;
                let q3 = ((ql[l] >> 4) | (((qh[l] >> 4) & 3) << 4)) as i32 - 32;
                let q4 = ((ql[l + 32] >> 4) | (((qh[l] >> 6) & 3) << 4)) as i32 - 32;
                yn[l] = d * sc[is] as f32 * q1 as f32;
                yn[l + 32] = d * sc[is + 2] as f32 * q2 as f32;
                yn[l + 64] = d * sc[is + 4] as f32 * q3 as f32;
                yn[l + 96] = d * sc[is + 6] as f32 * q4 as f32;
            }
        }
    }
}

fn q8k(xs: &[BlockQ8K], y: &mut [f32]) {
    for (x, y) in xs.iter().zip(y.chunks_exact_mut(QK_K)) {
        let d = x.d();
        for (o, &q) in y.iter_mut().zip(x.qs.iter()) {
            *o = q as f32 * d;
        }
    }
}

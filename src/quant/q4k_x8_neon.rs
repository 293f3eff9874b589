//! The eight-row Q4_K decode kernel (`--repack`, layout in `super::q4k_x8`) on aarch64 with
//! the dot-product extension: a group's eight rows × one Q8_K activation row.
//!
//! The arithmetic is the AVX2 kernel's (`super::q4k_x8::dot8` on x86), so the results are its
//! bits: per block, each row's `S = Σ scale·q·y` and `M = Σ min·bsum` as exact integers (here
//! summed in 32-bit lanes by `sdot`, there in 16-bit pairs — the same integers), then
//! `acc += (d_x·d)·S` and `acc_m += (−d_x·dmin)·M` fused, and `acc + acc_m`. One load of the
//! nibble bytes holds the same four positions of four rows, so `sdot`'s by-element form
//! multiplies them by one word of the activation, four positions of each row at once; one
//! load of the activation serves four such steps.

#![allow(clippy::needless_range_loop)]

use super::blocks::{f16_at, BlockQ8K};
use super::gemm_neon::{sdot_lane0, sdot_lane1, sdot_lane2, sdot_lane3};
use super::q4k_x8::{GROUP_BYTES, ROWS};
use bytemuck::cast_slice;
use std::arch::aarch64::*;

/// `acc + Σ w × x.word[lane]` per 32-bit lane, for a lane index known at run time (0..4).
#[inline(always)]
unsafe fn sdot_lane(acc: int32x4_t, w: int32x4_t, x: int32x4_t, lane: usize) -> int32x4_t {
    // SAFETY: the caller's function enables dotprod (these are register-only instructions).
    unsafe {
        match lane {
            0 => sdot_lane0(acc, w, x),
            1 => sdot_lane1(acc, w, x),
            2 => sdot_lane2(acc, w, x),
            _ => sdot_lane3(acc, w, x),
        }
    }
}

/// The rows' eight u8 values at `p` (one per row) as two vectors of 32-bit lanes.
#[inline(always)]
unsafe fn widen8(p: *const u8) -> [int32x4_t; 2] {
    unsafe {
        let v = vmovl_u8(vld1_u8(p));
        [
            vreinterpretq_s32_u32(vmovl_u16(vget_low_u16(v))),
            vreinterpretq_s32_u32(vmovl_u16(vget_high_u16(v))),
        ]
    }
}

/// Eight interleaved rows (`w`: one group, `nb · 1184` bytes) × one Q8_K activation row.
///
/// # Safety
/// The CPU must have the dot-product extension (`Isa::NeonDot`).
#[target_feature(enable = "neon,dotprod")]
pub unsafe fn dot8(w: &[u8], x: &[u8]) -> [f32; ROWS] {
    let x: &[BlockQ8K] = cast_slice(x);
    let nb = w.len() / GROUP_BYTES;
    let m4 = vdupq_n_u8(0xF);
    let (mut acc, mut acc_m) = ([vdupq_n_f32(0.0); 2], [vdupq_n_f32(0.0); 2]);
    for (b, xb) in x.iter().enumerate().take(nb) {
        let o = &w[b * GROUP_BYTES..(b + 1) * GROUP_BYTES];
        let wb = o.as_ptr();
        let xq = xb.qs.as_ptr();
        // S: rows 0..4 in lane vector 0, rows 4..8 in 1
        let mut s32 = [vdupq_n_s32(0); 2];
        // SAFETY: every load below lies inside the group's 1184-byte block `o` (offsets from
        // the layout in `super::q4k_x8`) or the activation block's 256 `qs`.
        unsafe {
            for j in 0..4 {
                // sub-blocks 2j (low nibbles) and 2j + 1 (high), each four positions a step
                let (mut al, mut ah) = ([vdupq_n_s32(0); 2], [vdupq_n_s32(0); 2]);
                for h in 0..2 {
                    let yl = vreinterpretq_s32_s8(vld1q_s8(xq.add(64 * j + 16 * h)));
                    let yh = vreinterpretq_s32_s8(vld1q_s8(xq.add(64 * j + 32 + 16 * h)));
                    for l in 0..4 {
                        let q = wb.add(160 + 32 * (8 * j + 4 * h + l));
                        for k in 0..2 {
                            let v = vld1q_u8(q.add(16 * k));
                            let lo = vreinterpretq_s32_u8(vandq_u8(v, m4));
                            let hi = vreinterpretq_s32_u8(vshrq_n_u8::<4>(v));
                            al[k] = sdot_lane(al[k], lo, yl, l);
                            ah[k] = sdot_lane(ah[k], hi, yh, l);
                        }
                    }
                }
                let (sl, sh) = (widen8(wb.add(32 + 16 * j)), widen8(wb.add(40 + 16 * j)));
                for k in 0..2 {
                    s32[k] = vmlaq_s32(vmlaq_s32(s32[k], al[k], sl[k]), ah[k], sh[k]);
                }
            }
        }
        // M lane r = Σ_s m[r][s] · (the activation's sum over sub-block s)
        let mut mm = [vdupq_n_s32(0); 2];
        // SAFETY: `bsums` is 16 i16s; the mins are 64 bytes at 96 inside `o`.
        unsafe {
            let bs = xb.bsums.as_ptr() as *const i16;
            let q8s = vpaddq_s16(vld1q_s16(bs), vld1q_s16(bs.add(8)));
            let mut pairs = [0i16; 8];
            vst1q_s16(pairs.as_mut_ptr(), q8s);
            for p in 0..4 {
                // (sum of sub-block 2p, of 2p + 1), twice
                let pv =
                    vreinterpret_s16_s32(vld1_dup_s32(pairs.as_ptr().add(2 * p) as *const i32));
                // [r0 s2p, r0 s2p+1, r1 s2p, …, r7 s2p+1]
                let m = vld1q_u8(wb.add(96 + 16 * p));
                for (k, half) in [vget_low_u8(m), vget_high_u8(m)].into_iter().enumerate() {
                    let mv = vreinterpretq_s16_u16(vmovl_u8(half));
                    let r01 = vmull_s16(vget_low_s16(mv), pv);
                    let r23 = vmull_s16(vget_high_s16(mv), pv);
                    mm[k] = vaddq_s32(mm[k], vpaddq_s32(r01, r23));
                }
            }
        }
        let d = xb.d();
        let f16 = |at: usize| f16_at([o[at], o[at + 1]]);
        for k in 0..2 {
            let rows = 4 * k..4 * k + 4;
            let dw: [f32; 4] = std::array::from_fn(|i| f16(2 * (rows.start + i)));
            let dm: [f32; 4] = std::array::from_fn(|i| f16(16 + 2 * (rows.start + i)));
            // SAFETY: four f32 each, from arrays of four.
            unsafe {
                let (dw, dm) = (vld1q_f32(dw.as_ptr()), vld1q_f32(dm.as_ptr()));
                acc[k] = vfmaq_f32(acc[k], vmulq_n_f32(dw, d), vcvtq_f32_s32(s32[k]));
                acc_m[k] = vfmaq_f32(acc_m[k], vmulq_n_f32(dm, -d), vcvtq_f32_s32(mm[k]));
            }
        }
    }
    let mut out = [0f32; ROWS];
    for k in 0..2 {
        // SAFETY: four f32 lanes into out[4k..4k + 4].
        unsafe { vst1q_f32(out.as_mut_ptr().add(4 * k), vaddq_f32(acc[k], acc_m[k])) };
    }
    out
}

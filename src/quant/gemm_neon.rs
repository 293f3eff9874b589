//! The tiled integer GEMM of prefill on aarch64 with the dot-product extension (the shared
//! loops are `super::gemm`): tiles of `L` = 8 rows, two 128-bit registers of weights a step
//! (four bytes of each row), multiplied by `sdot`'s by-element form — each 32-bit lane of
//! the weights times one four-byte word of the token, picked from a register that holds
//! four steps' words, so one load of the token serves four steps and no broadcast is needed.
//! Weight values are below 128 (`super::tile::max_value`), so `sdot`'s signed bytes hold
//! them; Q8_0 (values to 255) is not offered. CPUs without `dotprod` keep the row kernels.
//!
//! Integer sums are exact and the float steps are the shared loops', so the results are the
//! x86 tiles' bit for bit (`super::gemm`'s tests check every tile against exact arithmetic).
//! `sdot` is written as inline assembly, as in `super::dot_neon`: Rust's `vdotq_laneq_s32`
//! is not stable.

#![allow(clippy::needless_range_loop)]

use super::gemm::{tile_fn, At, Body, Vector};
use super::tile::{ActTile, WeightTile};
use std::arch::aarch64::*;
use std::arch::asm;
use std::ops::Range;

pub use super::kernels::{TileFn, TileOut};

/// Eight lanes (rows) in two registers.
pub(super) struct NeonDot;

impl Vector for NeonDot {
    type I = [int32x4_t; 2];
    type F = [float32x4_t; 2];
    const L: usize = 8;
    #[inline(always)]
    unsafe fn zero_i() -> Self::I {
        unsafe { [vdupq_n_s32(0); 2] }
    }
    #[inline(always)]
    unsafe fn load_i(p: *const u8) -> Self::I {
        unsafe {
            [
                vreinterpretq_s32_u8(vld1q_u8(p)),
                vreinterpretq_s32_u8(vld1q_u8(p.add(16))),
            ]
        }
    }
    #[inline(always)]
    unsafe fn load_f(p: *const f32) -> Self::F {
        unsafe { [vld1q_f32(p), vld1q_f32(p.add(4))] }
    }
    #[inline(always)]
    unsafe fn store_f(p: *mut f32, v: Self::F) {
        unsafe {
            vst1q_f32(p, v[0]);
            vst1q_f32(p.add(4), v[1]);
        }
    }
    #[inline(always)]
    unsafe fn set1_f(v: f32) -> Self::F {
        unsafe { [vdupq_n_f32(v); 2] }
    }
    #[inline(always)]
    unsafe fn scale_add(a: Self::F, b: Self::I, s: f32, c: Self::F) -> Self::F {
        unsafe {
            let f = |k: usize| vmulq_n_f32(vcvtq_f32_s32(b[k]), s);
            [vfmaq_f32(c[0], a[0], f(0)), vfmaq_f32(c[1], a[1], f(1))]
        }
    }
    #[inline(always)]
    unsafe fn fmadd_s(a: Self::F, s: f32, c: Self::F) -> Self::F {
        unsafe {
            let s = vdupq_n_f32(s);
            [vfmaq_f32(c[0], a[0], s), vfmaq_f32(c[1], a[1], s)]
        }
    }
}

/// `sdot acc.4s, w.16b, x.4b[lane]`: each 32-bit lane of `acc` plus the four byte products
/// of that lane of `w` with the word `lane` of `x`.
macro_rules! sdot_lane {
    ($name:ident, $lane:literal) => {
        #[inline]
        #[target_feature(enable = "dotprod")]
        pub(super) unsafe fn $name(mut acc: int32x4_t, w: int32x4_t, x: int32x4_t) -> int32x4_t {
            // SAFETY: a register-only instruction of a feature this function enables.
            unsafe {
                asm!(
                    concat!("sdot {acc:v}.4s, {w:v}.16b, {x:v}.4b[", $lane, "]"),
                    acc = inout(vreg) acc,
                    w = in(vreg) w,
                    x = in(vreg) x,
                    options(pure, nomem, nostack, preserves_flags)
                );
            }
            acc
        }
    };
}

sdot_lane!(sdot_lane0, 0);
sdot_lane!(sdot_lane1, 1);
sdot_lane!(sdot_lane2, 2);
sdot_lane!(sdot_lane3, 3);

/// Four steps a token load: the token's 16 bytes of the four steps in one register, each
/// step's weights (two registers) times its word of it.
struct LaneSteps<const G: usize>;

impl<const G: usize> Body for LaneSteps<G> {
    type V = NeonDot;
    const G: usize = G;
    #[inline(always)]
    unsafe fn sums<const N: usize>(at: At) -> [[int32x4_t; 2]; N] {
        unsafe {
            let mut ai = [NeonDot::zero_i(); N];
            for c0 in (0..G / 4).step_by(4) {
                let mut x = [vdupq_n_s32(0); N];
                for t in 0..N {
                    x[t] = vreinterpretq_s32_s8(vld1q_s8(at.x(t, c0, G)));
                }
                let w = |c: usize| NeonDot::load_i(at.w(c0 + c, NeonDot::L, G));
                let (w0, w1, w2, w3) = (w(0), w(1), w(2), w(3));
                for t in 0..N {
                    for k in 0..2 {
                        let mut a = ai[t][k];
                        a = sdot_lane0(a, w0[k], x[t]);
                        a = sdot_lane1(a, w1[k], x[t]);
                        a = sdot_lane2(a, w2[k], x[t]);
                        a = sdot_lane3(a, w3[k], x[t]);
                        ai[t][k] = a;
                    }
                }
            }
            ai
        }
    }
}

tile_fn!(tile_neon_g32, LaneSteps<32>, 8, 32, "neon,dotprod");
tile_fn!(tile_neon_g16, LaneSteps<16>, 8, 16, "neon,dotprod");

//! NEON row kernels for aarch64 (Raspberry Pi 5, Apple Silicon, Snapdragon laptops) for the
//! types real Q4_K_M files are made of: Q4_0, Q5_0, Q8_0, Q4_K and Q6_K. Other types use the
//! portable kernels.
//!
//! Only the integer step is vectorized: a block's byte products summed in 32-bit lanes, by
//! `sdot` where the CPU has the dot-product extension ([`Sdot`]; written as inline assembly
//! because Rust's `vdotq_s32` is not stable yet) or by widening multiplies and pairwise adds
//! ([`Widen`], every aarch64 CPU), then added across lanes. Integer sums are exact, and every
//! float step is the portable kernel's (`super::dot_scalar`), in the same order, so these
//! kernels give **the portable kernels' results bit for bit**: an ARM machine answers what
//! the portable path answers.
//!
//! The kernels are only reached through [`kernel`], on aarch64, where NEON is always present;
//! the `sdot` variants only when [`super::Isa::detect`] found `dotprod`.

use super::blocks::*;
use bytemuck::cast_slice;
use std::arch::aarch64::*;
use std::arch::asm;

/// Sums of byte products, four per 32-bit lane.
trait Dot {
    /// `acc` plus the products of `a` and `b`, summed four adjacent bytes per lane (`Widen`
    /// groups them differently; only the total across lanes is used).
    fn dot(acc: int32x4_t, a: int8x16_t, b: int8x16_t) -> int32x4_t;
}

/// The `sdot` instruction (FEAT_DotProd).
struct Sdot;

/// Widening multiplies and pairwise adds (baseline NEON).
struct Widen;

impl Dot for Sdot {
    #[inline(always)]
    fn dot(acc: int32x4_t, a: int8x16_t, b: int8x16_t) -> int32x4_t {
        // SAFETY: `Sdot` kernels are only handed out by `kernel` when `Isa::detect` found
        // dotprod; the instruction reads and writes registers only.
        unsafe { sdot(acc, a, b) }
    }
}

#[inline]
#[target_feature(enable = "dotprod")]
unsafe fn sdot(mut acc: int32x4_t, a: int8x16_t, b: int8x16_t) -> int32x4_t {
    // SAFETY: a register-only instruction of a feature this function enables.
    unsafe {
        asm!(
            "sdot {acc:v}.4s, {a:v}.16b, {b:v}.16b",
            acc = inout(vreg) acc,
            a = in(vreg) a,
            b = in(vreg) b,
            options(pure, nomem, nostack, preserves_flags)
        );
    }
    acc
}

impl Dot for Widen {
    #[inline(always)]
    fn dot(acc: int32x4_t, a: int8x16_t, b: int8x16_t) -> int32x4_t {
        // products of two i8 fit i16 (|−128 · −128| = 16384)
        // SAFETY (here and below): NEON is part of every aarch64 target.
        unsafe {
            let lo = vmull_s8(vget_low_s8(a), vget_low_s8(b));
            let hi = vmull_high_s8(a, b);
            vaddq_s32(acc, vpaddq_s32(vpaddlq_s16(lo), vpaddlq_s16(hi)))
        }
    }
}

#[inline(always)]
fn load_i8(p: &[i8; 16]) -> int8x16_t {
    // SAFETY: 16 readable bytes.
    unsafe { vld1q_s8(p.as_ptr()) }
}

#[inline(always)]
fn load_u8(p: &[u8; 16]) -> uint8x16_t {
    // SAFETY: 16 readable bytes.
    unsafe { vld1q_u8(p.as_ptr()) }
}

/// 16 bytes of `s` from `at` (a fixed-size view, so the loads above need no length check).
#[inline(always)]
fn at16<T>(s: &[T], at: usize) -> &[T; 16] {
    s[at..at + 16].try_into().expect("16 elements")
}

/// Σ a·b over 32 bytes given as two halves.
#[inline(always)]
fn dot32<D: Dot>(a: [int8x16_t; 2], b: &[i8]) -> i32 {
    let acc = D::dot(zero(), a[0], load_i8(at16(b, 0)));
    hsum(D::dot(acc, a[1], load_i8(at16(b, 16))))
}

#[inline(always)]
fn zero() -> int32x4_t {
    unsafe { vdupq_n_s32(0) }
}

#[inline(always)]
fn hsum(v: int32x4_t) -> i32 {
    unsafe { vaddvq_s32(v) }
}

/// `v - offset` as signed bytes.
#[inline(always)]
fn signed(v: uint8x16_t, offset: i8) -> int8x16_t {
    unsafe { vsubq_s8(vreinterpretq_s8_u8(v), vdupq_n_s8(offset)) }
}

#[inline(always)]
fn low_nibbles(q: uint8x16_t) -> uint8x16_t {
    unsafe { vandq_u8(q, vdupq_n_u8(0xF)) }
}

#[inline(always)]
fn high_nibbles(q: uint8x16_t) -> uint8x16_t {
    unsafe { vshrq_n_u8::<4>(q) }
}

#[inline(always)]
fn q8_0<D: Dot>(w: &[u8], x: &[u8]) -> f32 {
    let (w, x): (&[BlockQ8_0], &[BlockQ8_0]) = (cast_slice(w), cast_slice(x));
    w.iter()
        .zip(x)
        .map(|(w, x)| {
            let s = dot32::<D>([load_i8(at16(&w.qs, 0)), load_i8(at16(&w.qs, 16))], &x.qs);
            f16_at(w.d) * f16_at(x.d) * s as f32
        })
        .sum()
}

#[inline(always)]
fn q4_0<D: Dot>(w: &[u8], x: &[u8]) -> f32 {
    let (w, x): (&[BlockQ4_0], &[BlockQ8_0S]) = (cast_slice(w), cast_slice(x));
    w.iter()
        .zip(x)
        .map(|(w, x)| {
            let q = load_u8(&w.qs);
            let v = [signed(low_nibbles(q), 8), signed(high_nibbles(q), 8)];
            f16_at(w.d) * f16_at(x.d) * dot32::<D>(v, &x.qs) as f32
        })
        .sum()
}

#[inline(always)]
fn q5_0<D: Dot>(w: &[u8], x: &[u8]) -> f32 {
    let (w, x): (&[BlockQ5_0], &[BlockQ8_0S]) = (cast_slice(w), cast_slice(x));
    let bit = load_u8(&[1, 2, 4, 8, 16, 32, 64, 128, 1, 2, 4, 8, 16, 32, 64, 128]);
    // 0x10 in byte i where bit i of the two bytes is set
    let fifth = |b0: u8, b1: u8| unsafe {
        let bits = vcombine_u8(vdup_n_u8(b0), vdup_n_u8(b1));
        vandq_u8(vtstq_u8(bits, bit), vdupq_n_u8(0x10))
    };
    let or = |a: uint8x16_t, b: uint8x16_t| unsafe { vorrq_u8(a, b) };
    w.iter()
        .zip(x)
        .map(|(w, x)| {
            let q = load_u8(&w.qs);
            let [h0, h1, h2, h3] = w.qh;
            let v = [
                signed(or(low_nibbles(q), fifth(h0, h1)), 16),
                signed(or(high_nibbles(q), fifth(h2, h3)), 16),
            ];
            f16_at(w.d) * f16_at(x.d) * dot32::<D>(v, &x.qs) as f32
        })
        .sum()
}

#[inline(always)]
fn q4k<D: Dot>(w: &[u8], x: &[u8]) -> f32 {
    super::dot_scalar::q4k_with(w, x, |q, high, y| {
        let v = [0, 16].map(|h| {
            let q = load_u8(at16(q, h));
            signed(
                if high {
                    high_nibbles(q)
                } else {
                    low_nibbles(q)
                },
                0,
            )
        });
        dot32::<D>(v, y)
    })
}

#[inline(always)]
fn q6k<D: Dot>(w: &[u8], x: &[u8]) -> f32 {
    super::dot_scalar::q6k_with(w, x, |ql, qh, (lo_shift, hi_shift), y| {
        // SAFETY: NEON is part of every aarch64 target; a negative shift count shifts right
        let v = unsafe {
            let l = vshlq_u8(load_u8(ql), vdupq_n_s8(-(lo_shift as i8)));
            let h = vshlq_u8(load_u8(qh), vdupq_n_s8(-(hi_shift as i8)));
            let lo = vandq_u8(l, vdupq_n_u8(0xF));
            let hi = vandq_u8(h, vdupq_n_u8(3));
            signed(vorrq_u8(lo, vshlq_n_u8::<4>(hi)), 32)
        };
        hsum(D::dot(zero(), v, load_i8(y)))
    })
}

/// Safe entry points, one per type and integer step. The `sdot` ones are only handed out
/// when the CPU has the extension (checked once, in `Isa::detect`).
mod sdot_kernels {
    use super::*;

    macro_rules! sdot {
        ($($name:ident),*) => {
            $(pub fn $name(w: &[u8], x: &[u8]) -> f32 {
                #[target_feature(enable = "dotprod")]
                unsafe fn with_dotprod(w: &[u8], x: &[u8]) -> f32 {
                    super::$name::<Sdot>(w, x)
                }
                // SAFETY: handed out by `kernel` only when `Isa::detect` found dotprod.
                unsafe { with_dotprod(w, x) }
            })*
        };
    }
    sdot!(q4_0, q5_0, q8_0, q4k, q6k);
}

/// Baseline NEON is part of the aarch64 target: nothing to check.
mod widen_kernels {
    macro_rules! widen {
        ($($name:ident),*) => {
            $(pub fn $name(w: &[u8], x: &[u8]) -> f32 {
                super::$name::<super::Widen>(w, x)
            })*
        };
    }
    widen!(q4_0, q5_0, q8_0, q4k, q6k);
}

/// The NEON kernel for `dtype` (with `sdot` when `dotprod`), or `None` for the types that use
/// the portable kernels.
pub fn kernel(dtype: crate::gguf::GgmlType, dotprod: bool) -> Option<super::kernels::DotFn> {
    use crate::gguf::GgmlType::*;
    Some(match (dtype, dotprod) {
        (Q4_0, true) => sdot_kernels::q4_0,
        (Q5_0, true) => sdot_kernels::q5_0,
        (Q8_0, true) => sdot_kernels::q8_0,
        (Q4_K, true) => sdot_kernels::q4k,
        (Q6_K, true) => sdot_kernels::q6k,
        (Q4_0, false) => widen_kernels::q4_0,
        (Q5_0, false) => widen_kernels::q5_0,
        (Q8_0, false) => widen_kernels::q8_0,
        (Q4_K, false) => widen_kernels::q4k,
        (Q6_K, false) => widen_kernels::q6k,
        _ => return None,
    })
}

//! The tiled integer GEMM of prefill on x86 (the shared loops are `super::gemm`): the
//! registers and dot steps of each level. One step is "one register of weights (four bytes
//! of each of `L` rows) times one broadcast four-byte word of the token": `vpdpbusd` on
//! AVX-512 VNNI (`L` = 16) and AVX-VNNI (`L` = 8), or `vpmaddubsw` + `vpmaddwd` on plain AVX2
//! (`L` = 8; the pair sums of several steps added in 16 bits before one widening, as many as
//! the type's largest value allows — [`avx2_steps`]; exact only for weight values below 64,
//! so Q8_0 is not offered there).

#![allow(clippy::needless_range_loop)]

use super::gemm::{tile_fn, At, Body, Vector};
use super::tile::{ActTile, WeightTile};
use std::arch::x86_64::*;
use std::ops::Range;

pub use super::kernels::{TileFn, TileOut};

struct Avx512;
struct Avx2Vnni;
struct Avx2;

impl Vector for Avx512 {
    type I = __m512i;
    type F = __m512;
    const L: usize = 16;
    #[inline(always)]
    unsafe fn zero_i() -> __m512i {
        _mm512_setzero_si512()
    }
    #[inline(always)]
    unsafe fn load_i(p: *const u8) -> __m512i {
        unsafe { _mm512_loadu_si512(p as *const _) }
    }
    #[inline(always)]
    unsafe fn load_f(p: *const f32) -> __m512 {
        unsafe { _mm512_loadu_ps(p) }
    }
    #[inline(always)]
    unsafe fn store_f(p: *mut f32, v: __m512) {
        unsafe { _mm512_storeu_ps(p, v) }
    }
    #[inline(always)]
    unsafe fn set1_f(v: f32) -> __m512 {
        _mm512_set1_ps(v)
    }
    #[inline(always)]
    unsafe fn scale_add(a: __m512, b: __m512i, s: f32, c: __m512) -> __m512 {
        let f = _mm512_mul_ps(_mm512_cvtepi32_ps(b), _mm512_set1_ps(s));
        _mm512_fmadd_ps(a, f, c)
    }
    #[inline(always)]
    unsafe fn fmadd_s(a: __m512, s: f32, c: __m512) -> __m512 {
        _mm512_fmadd_ps(a, _mm512_set1_ps(s), c)
    }
}

/// A level whose step multiplies one register of weights by one broadcast word of a token.
trait Dot: Vector {
    /// `acc + Σ over 4 bytes of w (unsigned) × x (signed)`, per lane.
    unsafe fn dot(acc: Self::I, w: Self::I, x: i32) -> Self::I;
    /// Two steps: `dot(dot(acc, w0, x0), w1, x1)`.
    #[inline(always)]
    unsafe fn dot2(acc: Self::I, w0: Self::I, x0: i32, w1: Self::I, x1: i32) -> Self::I {
        unsafe { Self::dot(Self::dot(acc, w0, x0), w1, x1) }
    }
}

impl Dot for Avx512 {
    #[inline(always)]
    unsafe fn dot(acc: __m512i, w: __m512i, x: i32) -> __m512i {
        _mm512_dpbusd_epi32(acc, w, _mm512_set1_epi32(x))
    }
}

/// One dot step (`V::dot`) per four bytes, two at a time (G / 4 is 4 or 8).
struct Steps<V, const G: usize>(std::marker::PhantomData<V>);

impl<V: Dot, const G: usize> Body for Steps<V, G> {
    type V = V;
    const G: usize = G;
    #[inline(always)]
    unsafe fn sums<const N: usize>(at: At) -> [V::I; N] {
        unsafe {
            let mut ai = [V::zero_i(); N];
            for c in (0..G / 4).step_by(2) {
                let w0 = V::load_i(at.w(c, V::L, G));
                let w1 = V::load_i(at.w(c + 1, V::L, G));
                for t in 0..N {
                    let x = at.x(t, c, G) as *const i32;
                    ai[t] = V::dot2(ai[t], w0, x.read_unaligned(), w1, x.add(1).read_unaligned());
                }
            }
            ai
        }
    }
}

macro_rules! vector256 {
    ($name:ident, $dot:expr) => {
        impl Vector for $name {
            type I = __m256i;
            type F = __m256;
            const L: usize = 8;
            #[inline(always)]
            unsafe fn zero_i() -> __m256i {
                _mm256_setzero_si256()
            }
            #[inline(always)]
            unsafe fn load_i(p: *const u8) -> __m256i {
                unsafe { _mm256_loadu_si256(p as *const __m256i) }
            }
            #[inline(always)]
            unsafe fn load_f(p: *const f32) -> __m256 {
                unsafe { _mm256_loadu_ps(p) }
            }
            #[inline(always)]
            unsafe fn store_f(p: *mut f32, v: __m256) {
                unsafe { _mm256_storeu_ps(p, v) }
            }
            #[inline(always)]
            unsafe fn set1_f(v: f32) -> __m256 {
                _mm256_set1_ps(v)
            }
            #[inline(always)]
            unsafe fn scale_add(a: __m256, b: __m256i, s: f32, c: __m256) -> __m256 {
                let f = _mm256_mul_ps(_mm256_cvtepi32_ps(b), _mm256_set1_ps(s));
                _mm256_fmadd_ps(a, f, c)
            }
            #[inline(always)]
            unsafe fn fmadd_s(a: __m256, s: f32, c: __m256) -> __m256 {
                _mm256_fmadd_ps(a, _mm256_set1_ps(s), c)
            }
        }

        impl Dot for $name {
            #[inline(always)]
            unsafe fn dot(acc: __m256i, w: __m256i, x: i32) -> __m256i {
                unsafe { $dot(acc, w, _mm256_set1_epi32(x)) }
            }
        }
    };
}

#[inline(always)]
unsafe fn dot_vnni256(acc: __m256i, w: __m256i, x: __m256i) -> __m256i {
    _mm256_dpbusd_avx_epi32(acc, w, x)
}

#[inline(always)]
unsafe fn dot_maddubs(acc: __m256i, w: __m256i, x: __m256i) -> __m256i {
    let pairs = _mm256_maddubs_epi16(w, x);
    _mm256_add_epi32(acc, _mm256_madd_epi16(pairs, _mm256_set1_epi16(1)))
}

vector256!(Avx2Vnni, dot_vnni256);
vector256!(Avx2, dot_maddubs);

/// Steps of plain AVX2 whose 16-bit pair sums may be added before one `vpmaddwd`: `K` steps
/// add `2K` products of a weight value at most `max` and a byte, at most `2K · max · 128` in
/// magnitude, which must stay inside i16 — 8 steps for 4-bit values (30720), 4 for 5-bit
/// (31744), 2 for 6-bit (32256). More steps per widening is fewer `vpmaddwd`s, the plain-AVX2
/// kernel's bottleneck.
pub const fn avx2_steps(max: u8) -> usize {
    let mut k = 8;
    while k > 1 && 2 * k * (max as usize) * 128 > i16::MAX as usize {
        k /= 2;
    }
    k
}

/// Plain AVX2: `K` steps' pair sums (`vpmaddubsw`) added in 16 bits, then widened once
/// (see [`avx2_steps`]).
struct Avx2Steps<const G: usize, const K: usize>;

impl<const G: usize, const K: usize> Body for Avx2Steps<G, K> {
    type V = Avx2;
    const G: usize = G;
    #[inline(always)]
    unsafe fn sums<const N: usize>(at: At) -> [__m256i; N] {
        unsafe {
            let ones = _mm256_set1_epi16(1);
            let mut ai = [_mm256_setzero_si256(); N];
            for c0 in (0..G / 4).step_by(K) {
                let mut pairs = [_mm256_setzero_si256(); N];
                for c in c0..c0 + K {
                    let wv = Avx2::load_i(at.w(c, Avx2::L, G));
                    for t in 0..N {
                        let x = at.x(t, c, G) as *const i32;
                        let xb = _mm256_set1_epi32(x.read_unaligned());
                        pairs[t] = _mm256_add_epi16(pairs[t], _mm256_maddubs_epi16(wv, xb));
                    }
                }
                for t in 0..N {
                    ai[t] = _mm256_add_epi32(ai[t], _mm256_madd_epi16(pairs[t], ones));
                }
            }
            ai
        }
    }
}

tile_fn!(tile_avx512_g32, Steps<Avx512, 32>, 16, 32, "avx512f,avx512bw,avx512vnni,avx2,fma");
tile_fn!(tile_avx512_g16, Steps<Avx512, 16>, 16, 16, "avx512f,avx512bw,avx512vnni,avx2,fma");
tile_fn!(tile_vnni_g32, Steps<Avx2Vnni, 32>, 8, 32, "avxvnni,avx2,fma");
tile_fn!(tile_vnni_g16, Steps<Avx2Vnni, 16>, 8, 16, "avxvnni,avx2,fma");
tile_fn!(tile_avx2_g32_k8, Avx2Steps<32, 8>, 8, 32, "avx2,fma");
tile_fn!(tile_avx2_g32_k4, Avx2Steps<32, 4>, 8, 32, "avx2,fma");
tile_fn!(tile_avx2_g32_k2, Avx2Steps<32, 2>, 8, 32, "avx2,fma");
tile_fn!(tile_avx2_g16_k4, Avx2Steps<16, 4>, 8, 16, "avx2,fma");
tile_fn!(tile_avx2_g16_k2, Avx2Steps<16, 2>, 8, 16, "avx2,fma");

#[cfg(test)]
mod tests {
    use super::avx2_steps;

    /// Steps per widening that keep 16-bit pair sums exact (the products at the extremes are
    /// checked by `super::super::gemm`'s tests, on every tile this CPU runs).
    #[test]
    fn avx2_steps_should_keep_pair_sums_inside_i16() {
        assert_eq!((avx2_steps(15), avx2_steps(31), avx2_steps(63)), (8, 4, 2));
    }
}

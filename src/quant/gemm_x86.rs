//! The tiled integer GEMM of prefill on x86: one weight tile (`L` rows unpacked and
//! interleaved, `super::tile`) against a few tokens at a time, every product summed in 32-bit
//! integers per group and scaled once per group.
//!
//! For each group of `G` elements and each of `NT` tokens the kernel runs `G / 4` steps of
//! "one register of weights (four bytes of each of `L` rows) times one broadcast four-byte
//! word of the token": `vpdpbusd` on AVX-512 VNNI (`L` = 16) and AVX-VNNI (`L` = 8), or
//! `vpmaddubsw` + `vpmaddwd` on plain AVX2 (`L` = 8; the pair sums of several steps added in
//! 16 bits before one widening, as many as the type's largest value allows — [`avx2_steps`];
//! exact only for weight values below 64, so Q8_0 is not offered there). Then, per lane,
//! `acc += scale · (d · isum) + min · (d · Σq)`. One register of weights serves `NT` tokens
//! and one broadcast serves `L` rows, where the row kernels (`super::dot_avx2`) spend a
//! horizontal sum and a scalar scale product on every block of every row.
//!
//! The functions here are only handed out by [`super::kernels`] for an [`super::Isa`] that
//! `Isa::detect` confirmed; that check is what makes the `unsafe` calls sound. The safe
//! entry points check every index the loops make against the buffers' lengths first.

#![allow(clippy::needless_range_loop)]

use super::tile::{ActTile, WeightTile};
use std::arch::x86_64::*;
use std::ops::Range;

/// Tokens one kernel call keeps in registers.
const NT: usize = 4;

/// The operations the kernel body needs from one register width and dot instruction.
trait Vector {
    type I: Copy;
    type F: Copy;
    /// Lanes (rows) per register.
    const L: usize;
    unsafe fn zero_i() -> Self::I;
    unsafe fn load_i(p: *const u8) -> Self::I;
    /// `acc + Σ over 4 bytes of w (unsigned) × x (signed)`, per lane.
    unsafe fn dot(acc: Self::I, w: Self::I, x: i32) -> Self::I;
    /// Two steps: `dot(dot(acc, w0, x0), w1, x1)`.
    #[inline(always)]
    unsafe fn dot2(acc: Self::I, w0: Self::I, x0: i32, w1: Self::I, x1: i32) -> Self::I {
        unsafe { Self::dot(Self::dot(acc, w0, x0), w1, x1) }
    }
    unsafe fn load_f(p: *const f32) -> Self::F;
    unsafe fn store_f(p: *mut f32, v: Self::F);
    unsafe fn set1_f(v: f32) -> Self::F;
    /// `a · (b as f32 · s) + c`.
    unsafe fn scale_add(a: Self::F, b: Self::I, s: f32, c: Self::F) -> Self::F;
    /// `a · s + c`.
    unsafe fn fmadd_s(a: Self::F, s: f32, c: Self::F) -> Self::F;
}

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
    unsafe fn dot(acc: __m512i, w: __m512i, x: i32) -> __m512i {
        _mm512_dpbusd_epi32(acc, w, _mm512_set1_epi32(x))
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
            unsafe fn dot(acc: __m256i, w: __m256i, x: i32) -> __m256i {
                unsafe { $dot(acc, w, _mm256_set1_epi32(x)) }
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

/// How one kernel sums a group: the integer products of group `g`'s weights with `N` tokens'
/// activations (from `t0`), per lane.
trait Body {
    type V: Vector;
    /// Elements per group.
    const G: usize;
    unsafe fn sums<const N: usize>(
        wq: *const u8,
        aq: *const i8,
        cols: usize,
        g: usize,
        t0: usize,
    ) -> [<Self::V as Vector>::I; N];
}

/// One dot step (`V::dot`) per four bytes, two at a time (G / 4 is 4 or 8).
struct Steps<V, const G: usize>(std::marker::PhantomData<V>);

impl<V: Vector, const G: usize> Body for Steps<V, G> {
    type V = V;
    const G: usize = G;
    #[inline(always)]
    unsafe fn sums<const N: usize>(
        wq: *const u8,
        aq: *const i8,
        cols: usize,
        g: usize,
        t0: usize,
    ) -> [V::I; N] {
        unsafe {
            let mut ai = [V::zero_i(); N];
            for c in (0..G / 4).step_by(2) {
                let w0 = V::load_i(wq.add((g * G / 4 + c) * V::L * 4));
                let w1 = V::load_i(wq.add((g * G / 4 + c + 1) * V::L * 4));
                for t in 0..N {
                    let x = aq.add((t0 + t) * cols + g * G + 4 * c) as *const i32;
                    ai[t] = V::dot2(ai[t], w0, x.read_unaligned(), w1, x.add(1).read_unaligned());
                }
            }
            ai
        }
    }
}

/// Plain AVX2: `K` steps' pair sums (`vpmaddubsw`) added in 16 bits, then widened once
/// (see [`avx2_steps`]).
struct Avx2Steps<const G: usize, const K: usize>;

impl<const G: usize, const K: usize> Body for Avx2Steps<G, K> {
    type V = Avx2;
    const G: usize = G;
    #[inline(always)]
    unsafe fn sums<const N: usize>(
        wq: *const u8,
        aq: *const i8,
        cols: usize,
        g: usize,
        t0: usize,
    ) -> [__m256i; N] {
        unsafe {
            let ones = _mm256_set1_epi16(1);
            let mut ai = [_mm256_setzero_si256(); N];
            for c0 in (0..G / 4).step_by(K) {
                let mut pairs = [_mm256_setzero_si256(); N];
                for c in c0..c0 + K {
                    let wv = Avx2::load_i(wq.add((g * G / 4 + c) * 32));
                    for t in 0..N {
                        let x = aq.add((t0 + t) * cols + g * G + 4 * c) as *const i32;
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

/// `N` tokens from `t0`, groups `gs`, into `acc` (token `t`'s lanes from `acc + t · stride`).
#[inline(always)]
unsafe fn tokens<B: Body, const N: usize>(
    w: &WeightTile,
    a: &ActTile,
    cols: usize,
    gs: Range<usize>,
    t0: usize,
    acc: *mut f32,
    stride: usize,
) {
    let groups = cols / B::G;
    let (wq, aq) = (w.q.as_ptr(), a.q.as_ptr());
    let l = <B::V as Vector>::L;
    unsafe {
        let mut accf = [<B::V as Vector>::set1_f(0.0); N];
        for t in 0..N {
            accf[t] = <B::V as Vector>::load_f(acc.add(t * stride));
        }
        for g in gs {
            let ai = B::sums::<N>(wq, aq, cols, g, t0);
            let sc = <B::V as Vector>::load_f(w.scale.as_ptr().add(g * l));
            let mn = <B::V as Vector>::load_f(w.min.as_ptr().add(g * l));
            for t in 0..N {
                let k = (t0 + t) * groups + g;
                accf[t] = <B::V as Vector>::scale_add(sc, ai[t], *a.d.get_unchecked(k), accf[t]);
                accf[t] = <B::V as Vector>::fmadd_s(mn, *a.sum.get_unchecked(k), accf[t]);
            }
        }
        for t in 0..N {
            <B::V as Vector>::store_f(acc.add(t * stride), accf[t]);
        }
    }
}

/// Every token of `o` (from `t0`), `NT` at a time.
#[inline(always)]
unsafe fn run<B: Body>(
    w: &WeightTile,
    a: &ActTile,
    cols: usize,
    gs: Range<usize>,
    t0: usize,
    o: &mut TileOut,
) {
    let (nt, stride) = (o.tokens, o.stride);
    let p = o.out.as_mut_ptr();
    let mut t = 0;
    unsafe {
        while t + NT <= nt {
            tokens::<B, NT>(w, a, cols, gs.clone(), t0 + t, p.add(t * stride), stride);
            t += NT;
        }
        while t < nt {
            tokens::<B, 1>(w, a, cols, gs.clone(), t0 + t, p.add(t * stride), stride);
            t += 1;
        }
    }
}

pub use super::kernels::{TileFn, TileOut};

/// Panics unless every index `run` makes lies inside the buffers.
fn check(
    w: &WeightTile,
    a: &ActTile,
    cols: usize,
    gs: &Range<usize>,
    t0: usize,
    o: &TileOut,
    (lanes, group): (usize, usize),
) {
    let groups = cols / group;
    let nt = o.tokens;
    assert!(
        cols.is_multiple_of(group) && gs.start <= gs.end && gs.end <= groups,
        "tile: groups out of range"
    );
    assert!(
        nt == 0 || (o.stride >= lanes && (nt - 1) * o.stride + lanes <= o.out.len()),
        "tile: output too short for {nt} tokens"
    );
    assert!(
        w.q.len() >= cols * lanes
            && w.scale.len() >= groups * lanes
            && w.min.len() >= groups * lanes,
        "tile: weight tile too short"
    );
    assert!(
        a.q.len() >= (t0 + nt) * cols
            && a.d.len() >= (t0 + nt) * groups
            && a.sum.len() >= (t0 + nt) * groups,
        "tile: activations too short"
    );
}

macro_rules! entry {
    ($name:ident, $v:ty, $g:literal, $features:literal) => {
        #[target_feature(enable = $features)]
        unsafe fn $name(
            w: &WeightTile,
            a: &ActTile,
            cols: usize,
            gs: Range<usize>,
            t0: usize,
            o: &mut TileOut,
        ) {
            unsafe { run::<Steps<$v, $g>>(w, a, cols, gs, t0, o) }
        }
    };
}

entry!(
    avx512_g32,
    Avx512,
    32,
    "avx512f,avx512bw,avx512vnni,avx2,fma"
);
entry!(
    avx512_g16,
    Avx512,
    16,
    "avx512f,avx512bw,avx512vnni,avx2,fma"
);
entry!(vnni_g32, Avx2Vnni, 32, "avxvnni,avx2,fma");
entry!(vnni_g16, Avx2Vnni, 16, "avxvnni,avx2,fma");

macro_rules! entry_avx2 {
    ($name:ident, $g:literal, $k:literal) => {
        #[target_feature(enable = "avx2,fma")]
        unsafe fn $name(
            w: &WeightTile,
            a: &ActTile,
            cols: usize,
            gs: Range<usize>,
            t0: usize,
            o: &mut TileOut,
        ) {
            unsafe { run::<Avx2Steps<$g, $k>>(w, a, cols, gs, t0, o) }
        }
    };
}

entry_avx2!(avx2_g32_k8, 32, 8);
entry_avx2!(avx2_g32_k4, 32, 4);
entry_avx2!(avx2_g32_k2, 32, 2);
entry_avx2!(avx2_g16_k4, 16, 4);
entry_avx2!(avx2_g16_k2, 16, 2);

macro_rules! safe {
    ($name:ident, $inner:ident, $lanes:literal, $g:literal) => {
        pub fn $name(
            w: &WeightTile,
            a: &ActTile,
            cols: usize,
            gs: Range<usize>,
            t0: usize,
            o: &mut TileOut,
        ) {
            check(w, a, cols, &gs, t0, o, ($lanes, $g));
            // SAFETY: handed out by `kernels::tile_kernel` only for an `Isa` that
            // `Isa::detect` found on this CPU; `check` bounds every pointer the loops form.
            unsafe { $inner(w, a, cols, gs, t0, o) }
        }
    };
}

safe!(tile_avx512_g32, avx512_g32, 16, 32);
safe!(tile_avx512_g16, avx512_g16, 16, 16);
safe!(tile_vnni_g32, vnni_g32, 8, 32);
safe!(tile_vnni_g16, vnni_g16, 8, 16);
safe!(tile_avx2_g32_k8, avx2_g32_k8, 8, 32);
safe!(tile_avx2_g32_k4, avx2_g32_k4, 8, 32);
safe!(tile_avx2_g32_k2, avx2_g32_k2, 8, 32);
safe!(tile_avx2_g16_k4, avx2_g16_k4, 8, 16);
safe!(tile_avx2_g16_k2, avx2_g16_k2, 8, 16);

#[cfg(test)]
mod tests {
    use super::super::kernels::{tile_kernel, Isa};
    use super::super::tile::{max_value, ActTile, WeightTile};
    use super::*;
    use crate::gguf::GgmlType;
    use rand::{Rng, SeedableRng};

    /// What every tile kernel computes, one lane and token at a time: exact integer group
    /// sums, then the same two fused multiply-adds per group.
    fn reference(w: &WeightTile, a: &ActTile, lanes: usize, group: usize, cols: usize) -> Vec<f32> {
        let (groups, nt) = (cols / group, a.q.len() / cols);
        let mut out = vec![0f32; nt * lanes];
        for t in 0..nt {
            for r in 0..lanes {
                let mut acc = 0f32;
                for g in 0..groups {
                    let isum: i32 = (g * group..(g + 1) * group)
                        .map(|c| {
                            let wq = w.q[(c / 4) * lanes * 4 + r * 4 + c % 4] as i32;
                            wq * a.q[t * cols + c] as i32
                        })
                        .sum();
                    let k = t * groups + g;
                    acc = w.scale[g * lanes + r].mul_add(isum as f32 * a.d[k], acc);
                    acc = w.min[g * lanes + r].mul_add(a.sum[k], acc);
                }
                out[t * lanes + r] = acc;
            }
        }
        out
    }

    /// The plain-AVX2 tiles (several steps' 16-bit pair sums per widening, `avx2_steps`) equal
    /// exact integer arithmetic bit for bit, at each type's largest weight value times -128
    /// (the worst case for i16) as well as on random values.
    #[test]
    fn avx2_tiles_should_equal_exact_sums_at_the_extremes() {
        if !Isa::Avx2.runs_here() {
            eprintln!("SKIPPED: no AVX2 on this CPU");
            return;
        }
        assert_eq!((avx2_steps(15), avx2_steps(31), avx2_steps(63)), (8, 4, 2));
        let mut rng = rand::rngs::StdRng::seed_from_u64(9);
        let types = [
            GgmlType::Q4_0,
            GgmlType::Q5_0,
            GgmlType::Q2_K,
            GgmlType::Q3_K,
            GgmlType::Q4_K,
            GgmlType::Q5_K,
            GgmlType::Q6_K,
        ];
        for dtype in types {
            let tk = tile_kernel(dtype, Isa::Avx2).unwrap();
            let (lanes, group, max) = (tk.lanes, tk.group, max_value(dtype));
            let (cols, nt) = (256, 6);
            for extreme in [true, false] {
                let mut w = WeightTile::default();
                w.q = (0..cols * lanes)
                    .map(|_| {
                        if extreme {
                            max
                        } else {
                            rng.random_range(0..=max)
                        }
                    })
                    .collect();
                w.scale = (0..cols / group * lanes)
                    .map(|_| rng.random_range(-1.0..1.0))
                    .collect();
                w.min = (0..cols / group * lanes)
                    .map(|_| rng.random_range(-1.0..1.0))
                    .collect();
                let a = ActTile {
                    q: (0..nt * cols)
                        .map(|_| if extreme { -128 } else { rng.random() })
                        .collect(),
                    d: (0..nt * cols / group)
                        .map(|_| rng.random_range(0.0..0.1))
                        .collect(),
                    sum: (0..nt * cols / group)
                        .map(|_| rng.random_range(-1.0..1.0))
                        .collect(),
                };
                let mut out = vec![0f32; nt * lanes];
                let mut o = TileOut {
                    out: &mut out,
                    tokens: nt,
                    stride: lanes,
                };
                (tk.run)(&w, &a, cols, 0..cols / group, 0, &mut o);
                let want = reference(&w, &a, lanes, group, cols);
                assert!(
                    out.iter()
                        .zip(&want)
                        .all(|(x, y)| x.to_bits() == y.to_bits()),
                    "{dtype:?} extreme={extreme}: {:?} vs {:?}",
                    &out[..4],
                    &want[..4]
                );
            }
        }
    }
}

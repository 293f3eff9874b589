//! The tiled integer GEMM of prefill, the part every instruction set shares: one weight tile
//! (`L` rows unpacked and interleaved, `super::tile`) against a few tokens at a time, every
//! product summed in 32-bit integers per group and scaled once per group. The instruction
//! sets' registers and dot instructions are in `super::gemm_x86` and `super::gemm_neon`.
//!
//! For each group of `G` elements and each of `NT` tokens the kernel runs `G / 4` steps of
//! "one register of weights (four bytes of each of `L` rows) times one four-byte word of the
//! token" (a [`Body`]). Then, per lane, `acc += scale · (d · isum) + min · (d · Σq)`. One
//! register of weights serves `NT` tokens and one word of a token serves `L` rows, where the
//! row kernels spend a horizontal sum and a scalar scale product on every block of every row.
//! Integer sums are exact and the float steps are the same two fused multiply-adds per group
//! and lane everywhere, so every instruction set's tile gives the same bits (the tests below
//! check each against exact arithmetic).
//!
//! The kernels are only handed out by [`super::kernels::tile_kernel`] for an
//! [`super::Isa`] that `Isa::detect` confirmed; that check is what makes the `unsafe` calls
//! sound. The safe entry points (`tile_fn!`) check every index the loops make against the
//! buffers' lengths first.

#![allow(clippy::needless_range_loop)]

use super::kernels::TileOut;
use super::tile::{ActTile, WeightTile};
use std::ops::Range;

/// Tokens one kernel call keeps in registers.
const NT: usize = 4;

/// The operations the shared loops need from one register width: loads, stores and the
/// float steps (the dot steps are each [`Body`]'s own).
pub(super) trait Vector {
    type I: Copy;
    type F: Copy;
    /// Lanes (rows) per register.
    const L: usize;
    unsafe fn zero_i() -> Self::I;
    unsafe fn load_i(p: *const u8) -> Self::I;
    unsafe fn load_f(p: *const f32) -> Self::F;
    unsafe fn store_f(p: *mut f32, v: Self::F);
    unsafe fn set1_f(v: f32) -> Self::F;
    /// `a · (b as f32 · s) + c`.
    unsafe fn scale_add(a: Self::F, b: Self::I, s: f32, c: Self::F) -> Self::F;
    /// `a · s + c`.
    unsafe fn fmadd_s(a: Self::F, s: f32, c: Self::F) -> Self::F;
}

/// Where a group's sums read: the tile's weight bytes `wq`, the tokens' activations `aq`
/// (`cols` bytes a token), group `g`, first token `t0`.
#[derive(Clone, Copy)]
pub(super) struct At {
    pub wq: *const u8,
    pub aq: *const i8,
    pub cols: usize,
    pub g: usize,
    pub t0: usize,
}

impl At {
    /// Step `c` of the group's weights (four bytes of each of `lanes` rows; `g_size` elements
    /// a group).
    #[inline(always)]
    pub unsafe fn w(self, c: usize, lanes: usize, g_size: usize) -> *const u8 {
        unsafe { self.wq.add((self.g * g_size / 4 + c) * lanes * 4) }
    }

    /// Token `t0 + t`'s activations from step `c` of the group.
    #[inline(always)]
    pub unsafe fn x(self, t: usize, c: usize, g_size: usize) -> *const i8 {
        unsafe {
            self.aq
                .add((self.t0 + t) * self.cols + self.g * g_size + 4 * c)
        }
    }
}

/// How one kernel sums a group: the integer products of group `at.g`'s weights with `N`
/// tokens' activations (from `at.t0`), per lane.
pub(super) trait Body {
    type V: Vector;
    /// Elements per group.
    const G: usize;
    unsafe fn sums<const N: usize>(at: At) -> [<Self::V as Vector>::I; N];
}

/// One tile kernel call: weight tile `w` against the activations `a` (`cols` columns), groups
/// `gs`, tokens from `t0` (as many as the output holds).
pub(super) struct Job<'a> {
    pub w: &'a WeightTile,
    pub a: &'a ActTile,
    pub cols: usize,
    pub gs: Range<usize>,
    pub t0: usize,
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
            let ai = B::sums::<N>(At {
                wq,
                aq,
                cols,
                g,
                t0,
            });
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

/// Every token of `o` (from `j.t0`), `NT` at a time.
#[inline(always)]
pub(super) unsafe fn run<B: Body>(j: Job, o: &mut TileOut) {
    let Job { w, a, cols, gs, t0 } = j;
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

/// Panics unless every index `run` makes lies inside the buffers.
pub(super) fn check(j: &Job, o: &TileOut, (lanes, group): (usize, usize)) {
    let Job {
        w,
        a,
        cols,
        ref gs,
        t0,
    } = *j;
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

/// A safe tile kernel `$name` (a `TileFn`) running `$body` with `$features` enabled:
/// checks the buffers ([`check`]), then runs the loops.
macro_rules! tile_fn {
    ($name:ident, $body:ty, $lanes:literal, $g:literal, $features:literal) => {
        pub fn $name(
            w: &WeightTile,
            a: &ActTile,
            cols: usize,
            gs: Range<usize>,
            t0: usize,
            o: &mut TileOut,
        ) {
            #[target_feature(enable = $features)]
            unsafe fn inner(j: super::gemm::Job, o: &mut TileOut) {
                unsafe { super::gemm::run::<$body>(j, o) }
            }
            let j = super::gemm::Job { w, a, cols, gs, t0 };
            super::gemm::check(&j, o, ($lanes, $g));
            // SAFETY: handed out by `kernels::tile_kernel` only for an `Isa` that
            // `Isa::detect` found on this CPU; `check` bounds every pointer the loops form.
            unsafe { inner(j, o) }
        }
    };
}
pub(super) use tile_fn;

#[cfg(test)]
mod tests {
    use super::super::kernels::{tile_kernel, Isa};
    use super::super::tile::{max_value, ActTile, WeightTile};
    use super::TileOut;
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

    /// Every tile kernel this CPU runs (AVX-512 VNNI, AVX-VNNI, plain AVX2 with several
    /// steps' 16-bit pair sums per widening, NEON's `sdot`) equals exact integer arithmetic
    /// bit for bit, at each type's largest weight value times -128 (the worst case for the
    /// 16-bit sums) as well as on random values.
    #[test]
    fn tiles_should_equal_exact_sums_at_the_extremes() {
        let levels: Vec<Isa> = Isa::ALL.into_iter().filter(|i| i.runs_here()).collect();
        let mut tested = 0;
        let mut rng = rand::rngs::StdRng::seed_from_u64(9);
        let types = [
            GgmlType::Q4_0,
            GgmlType::Q5_0,
            GgmlType::Q2_K,
            GgmlType::Q3_K,
            GgmlType::Q4_K,
            GgmlType::Q5_K,
            GgmlType::Q6_K,
            GgmlType::Q8_0,
        ];
        let tiles = levels
            .iter()
            .flat_map(|&isa| types.map(|t| (isa, t)))
            .filter_map(|(isa, t)| tile_kernel(t, isa).map(|tk| (isa, tk)));
        for (isa, tk) in tiles {
            tested += 1;
            let dtype = tk.dtype;
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
                    "{dtype:?} on {} extreme={extreme}: {:?} vs {:?}",
                    isa.name(),
                    &out[..4],
                    &want[..4]
                );
            }
        }
        if tested == 0 {
            eprintln!("SKIPPED: no tiled GEMM on this CPU");
        }
    }
}

//! Quantizing activations (f32 rows) into the formats the integer dot products consume, the way
//! ggml's CPU backend does it on x86 (so our logits follow llama.cpp's closely):
//! Q8_0 for Q4_0/Q5_0/Q8_0 weights (for Q4_0/Q5_0 with the block's integer sum attached,
//! `Q8_0S`), Q8_1 for Q4_1/Q5_1, Q8_K for the k-quants, and plain f32 for float weights.

use super::blocks::*;
use crate::gguf::GgmlType;
use bytemuck::cast_slice_mut;
use half::f16;

/// The activation format a weight type's dot product reads.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ActType {
    F32,
    Q8_0,
    Q8_0S,
    Q8_1,
    Q8K,
}

impl ActType {
    /// The activation format for weights of `dtype`, or `None` if the CPU cannot compute with
    /// that type.
    pub fn for_weight(dtype: GgmlType) -> Option<Self> {
        use GgmlType::*;
        Some(match dtype {
            F32 | F16 | BF16 => ActType::F32,
            Q8_0 => ActType::Q8_0,
            Q4_0 | Q5_0 => ActType::Q8_0S,
            Q4_1 | Q5_1 => ActType::Q8_1,
            Q2_K | Q3_K | Q4_K | Q5_K | Q6_K => ActType::Q8K,
            _ => return None,
        })
    }

    pub fn block_size(self) -> usize {
        match self {
            ActType::F32 => 1,
            ActType::Q8_0 | ActType::Q8_0S | ActType::Q8_1 => QK,
            ActType::Q8K => QK_K,
        }
    }

    pub fn type_size(self) -> usize {
        match self {
            ActType::F32 => 4,
            ActType::Q8_0 => std::mem::size_of::<BlockQ8_0>(),
            ActType::Q8_0S => std::mem::size_of::<BlockQ8_0S>(),
            ActType::Q8_1 => std::mem::size_of::<BlockQ8_1>(),
            ActType::Q8K => std::mem::size_of::<BlockQ8K>(),
        }
    }

    /// Bytes of one quantized row of `n` elements (`n` a multiple of the block size).
    pub fn row_bytes(self, n: usize) -> usize {
        n / self.block_size() * self.type_size()
    }

    /// Quantizes `x` into `out` (`out.len() == self.row_bytes(x.len())`).
    pub fn quantize(self, x: &[f32], out: &mut [u8]) {
        debug_assert_eq!(out.len(), self.row_bytes(x.len()));
        #[cfg(target_arch = "x86_64")]
        if super::Isa::detect().avx2() {
            // SAFETY: the CPU has AVX2, FMA and F16C (checked just above).
            unsafe { quantize_avx2(self, x, out) };
            return;
        }
        quantize_any(self, x, out);
    }

    /// Quantizes `x` exactly as [`ActType::quantize`] does, into the tiled GEMM's layout
    /// (`super::tile::ActTile`): the values in `q`, and per group of `group` elements the
    /// block's scale in `d` and `d · Σq` over the group in `sum`. Not for `F32`.
    pub fn quantize_split(
        self,
        x: &[f32],
        q: &mut [i8],
        d: &mut [f32],
        sum: &mut [f32],
        group: usize,
    ) {
        let n = x.len();
        assert!(
            self != ActType::F32
                && n.is_multiple_of(self.block_size())
                && self.block_size().is_multiple_of(group)
                && q.len() >= n
                && d.len() >= n / group
                && sum.len() >= n / group,
            "quantize_split: {self:?} with groups of {group} for {n} values"
        );
        #[cfg(target_arch = "x86_64")]
        if super::Isa::detect().avx2() {
            // SAFETY: the CPU has AVX2, FMA and F16C (checked just above); sizes checked.
            unsafe { split_avx2(self, x, q, d, sum, group) };
            return;
        }
        split_any(self, x, q, d, sum, group, q8_block, q8k_block);
    }
}

/// One block's values into `q` and its groups' `d` and `d·Σq`, given the block quantizers.
#[inline(always)]
#[allow(clippy::too_many_arguments)]
fn split_any(
    act: ActType,
    x: &[f32],
    q: &mut [i8],
    d: &mut [f32],
    sum: &mut [f32],
    group: usize,
    q8: impl Fn(&[f32], &mut [i8; QK]) -> f32,
    q8k: impl Fn(&[f32], &mut [i8; QK_K]) -> f32,
) {
    let bs = act.block_size();
    for (b, xb) in x.chunks_exact(bs).enumerate() {
        let qb = &mut q[b * bs..(b + 1) * bs];
        let db = match act {
            ActType::Q8K => q8k(xb, qb.try_into().expect("a 256-value block")),
            _ => {
                let d = q8(xb, qb.try_into().expect("a 32-value block"));
                f16::from_f32(d).to_f32()
            }
        };
        for (k, gq) in qb.chunks_exact(group).enumerate() {
            let g = b * bs / group + k;
            let s: i32 = gq.iter().map(|&v| v as i32).sum();
            d[g] = db;
            sum[g] = db * s as f32;
        }
    }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn split_avx2(
    act: ActType,
    x: &[f32],
    q: &mut [i8],
    d: &mut [f32],
    sum: &mut [f32],
    group: usize,
) {
    split_any(
        act,
        x,
        q,
        d,
        sum,
        group,
        |x: &[f32], q: &mut [i8; QK]| simd::q8_block(x, q),
        |x: &[f32], q: &mut [i8; QK_K]| simd::q8k_block(x, q),
    )
}

/// The portable quantizer, whatever the CPU (tests compare the SIMD one with it).
#[cfg(test)]
pub(crate) fn quantize_portable(act: ActType, x: &[f32], out: &mut [u8]) {
    quantize_any(act, x, out)
}

#[inline(always)]
fn quantize_any(act: ActType, x: &[f32], out: &mut [u8]) {
    match act {
        ActType::F32 => out.copy_from_slice(bytemuck::cast_slice(x)),
        ActType::Q8_0 => quantize_q8_0(x, cast_slice_mut(out)),
        ActType::Q8_0S => quantize_q8_0s(x, cast_slice_mut(out)),
        ActType::Q8_1 => quantize_q8_1(x, cast_slice_mut(out)),
        ActType::Q8K => quantize_q8k(x, cast_slice_mut(out)),
    }
}

/// The same quantizers with the block kernels in AVX2 (`simd`). Results are identical.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn quantize_avx2(act: ActType, x: &[f32], out: &mut [u8]) {
    let q8 = |x: &[f32], q: &mut [i8; QK]| simd::q8_block(x, q);
    match act {
        ActType::F32 => out.copy_from_slice(bytemuck::cast_slice(x)),
        ActType::Q8_0 => quantize_q8_0_with(x, cast_slice_mut(out), q8),
        ActType::Q8_0S => quantize_q8_0s_with(x, cast_slice_mut(out), q8),
        ActType::Q8_1 => quantize_q8_1_with(x, cast_slice_mut(out), q8),
        ActType::Q8K => quantize_q8k_with(x, cast_slice_mut(out), |x, q| simd::q8k_block(x, q)),
    }
}

/// The block kernels in AVX2, bit for bit the portable ones on finite inputs: the largest magnitude by
/// vector max, `round_ties_even` by `vcvtps2dq` (round-to-nearest-even, the default mode),
/// values packed to bytes with saturation where the portable code clamps.
#[cfg(target_arch = "x86_64")]
mod simd {
    use super::{QK, QK_K};
    use std::arch::x86_64::*;

    #[inline]
    #[target_feature(enable = "avx2,fma")]
    fn hmax(v: __m256) -> f32 {
        let m = _mm_max_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps::<1>(v));
        let m = _mm_max_ps(m, _mm_movehl_ps(m, m));
        let m = _mm_max_ss(m, _mm_movehdup_ps(m));
        _mm_cvtss_f32(m)
    }

    /// `max |x|` of `x.len()` (a multiple of 8) values.
    #[inline]
    #[target_feature(enable = "avx2,fma")]
    fn amax(x: &[f32]) -> f32 {
        let sign = _mm256_set1_ps(-0.0);
        let mut m = _mm256_setzero_ps();
        for c in x.chunks_exact(8) {
            // SAFETY: `c` holds 8 floats.
            let v = unsafe { _mm256_loadu_ps(c.as_ptr()) };
            m = _mm256_max_ps(m, _mm256_andnot_ps(sign, v));
        }
        hmax(m)
    }

    /// `q[i] = round_ties_even(x[i] · s)` for 32 values (|x · s| ≤ 127.5).
    #[inline]
    #[target_feature(enable = "avx2,fma")]
    fn round32(x: &[f32], s: f32, q: &mut [i8]) {
        assert!(x.len() >= 32 && q.len() >= 32);
        let vs = _mm256_set1_ps(s);
        // SAFETY: 32 floats are read and 32 bytes written (asserted above).
        unsafe {
            let i = |k: usize| {
                _mm256_cvtps_epi32(_mm256_mul_ps(_mm256_loadu_ps(x.as_ptr().add(8 * k)), vs))
            };
            let a = _mm256_packs_epi32(i(0), i(1));
            let b = _mm256_packs_epi32(i(2), i(3));
            // packs works within 128-bit lanes: restore the element order
            let p = _mm256_packs_epi16(a, b);
            let p = _mm256_permutevar8x32_epi32(p, _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7));
            _mm256_storeu_si256(q.as_mut_ptr() as *mut __m256i, p);
        }
    }

    /// `super::q8_block` (Q8_0's `d = amax / 127`, `q = round(x · 127 / amax)`).
    #[inline]
    #[target_feature(enable = "avx2,fma")]
    pub fn q8_block(x: &[f32], qs: &mut [i8; QK]) -> f32 {
        let amax = amax(&x[..QK]);
        let id = if amax != 0.0 { 127.0 / amax } else { 0.0 };
        round32(x, id, qs);
        amax / 127.0
    }

    /// `super::q8k_block` (Q8_K: the element of largest magnitude, with its sign, maps to -127;
    /// the first such element when several tie).
    #[inline]
    #[target_feature(enable = "avx2,fma")]
    pub fn q8k_block(x: &[f32], qs: &mut [i8; QK_K]) -> f32 {
        let x = &x[..QK_K];
        let amax = amax(x);
        if amax == 0.0 {
            qs.fill(0);
            return 0.0;
        }
        let max = x.iter().copied().find(|v| v.abs() == amax).unwrap_or(amax);
        let iscale = -127.0 / max;
        for (xc, qc) in x.chunks_exact(32).zip(qs.chunks_exact_mut(32)) {
            round32(xc, iscale, qc);
        }
        1.0 / iscale
    }
}

/// Scale and quantized values of one 32-element block, as ggml's AVX2 `quantize_row_q8_0`
/// computes them (`id = 127 / amax`, round half to even).
#[inline(always)]
fn q8_block(x: &[f32], qs: &mut [i8; QK]) -> f32 {
    let amax = x.iter().fold(0f32, |m, v| m.max(v.abs()));
    let d = amax / 127.0;
    let id = if amax != 0.0 { 127.0 / amax } else { 0.0 };
    for (q, v) in qs.iter_mut().zip(x) {
        *q = (v * id).round_ties_even() as i8;
    }
    d
}

/// ggml's `quantize_row_q8_K_ref` for one block: the scale maps the element of largest
/// magnitude (with its sign; the first of equals) to -127. Returns the block's `d`.
#[inline(always)]
fn q8k_block(x: &[f32], qs: &mut [i8; QK_K]) -> f32 {
    let (mut amax, mut max) = (0f32, 0f32);
    for &v in x {
        if v.abs() > amax {
            amax = v.abs();
            max = v;
        }
    }
    if amax == 0.0 {
        qs.fill(0);
        return 0.0;
    }
    let iscale = -127.0 / max;
    for (q, &v) in qs.iter_mut().zip(x) {
        *q = ((iscale * v).round_ties_even() as i32).min(127) as i8;
    }
    1.0 / iscale
}

#[inline(always)]
pub fn quantize_q8_0(x: &[f32], out: &mut [BlockQ8_0]) {
    quantize_q8_0_with(x, out, q8_block)
}

#[inline(always)]
fn quantize_q8_0_with(x: &[f32], out: &mut [BlockQ8_0], q8: impl Fn(&[f32], &mut [i8; QK]) -> f32) {
    for (b, x) in out.iter_mut().zip(x.chunks_exact(QK)) {
        let d = q8(x, &mut b.qs);
        b.d = f16::from_f32(d).to_le_bytes();
    }
}

#[inline(always)]
pub fn quantize_q8_0s(x: &[f32], out: &mut [BlockQ8_0S]) {
    quantize_q8_0s_with(x, out, q8_block)
}

#[inline(always)]
fn quantize_q8_0s_with(
    x: &[f32],
    out: &mut [BlockQ8_0S],
    q8: impl Fn(&[f32], &mut [i8; QK]) -> f32,
) {
    for (b, x) in out.iter_mut().zip(x.chunks_exact(QK)) {
        let d = q8(x, &mut b.qs);
        let sum: i32 = b.qs.iter().map(|&q| q as i32).sum();
        let d16 = f16::from_f32(d);
        b.d = d16.to_le_bytes();
        b.s = (d16.to_f32() * sum as f32).to_le_bytes();
    }
}

#[inline(always)]
pub fn quantize_q8_1(x: &[f32], out: &mut [BlockQ8_1]) {
    quantize_q8_1_with(x, out, q8_block)
}

#[inline(always)]
fn quantize_q8_1_with(x: &[f32], out: &mut [BlockQ8_1], q8: impl Fn(&[f32], &mut [i8; QK]) -> f32) {
    for (b, x) in out.iter_mut().zip(x.chunks_exact(QK)) {
        let d = q8(x, &mut b.qs);
        let sum: i32 = b.qs.iter().map(|&q| q as i32).sum();
        b.d = f16::from_f32(d).to_le_bytes();
        b.s = f16::from_f32(d * sum as f32).to_le_bytes();
    }
}

/// ggml's `quantize_row_q8_K_ref`: block sums of 16 are kept for the k-quants' `dmin` terms.
#[inline(always)]
pub fn quantize_q8k(x: &[f32], out: &mut [BlockQ8K]) {
    quantize_q8k_with(x, out, q8k_block)
}

#[inline(always)]
fn quantize_q8k_with(
    x: &[f32],
    out: &mut [BlockQ8K],
    q8k: impl Fn(&[f32], &mut [i8; QK_K]) -> f32,
) {
    for (b, x) in out.iter_mut().zip(x.chunks_exact(QK_K)) {
        let d = q8k(x, &mut b.qs);
        if d == 0.0 {
            *b = BlockQ8K::zeroed();
            continue;
        }
        for (j, s) in b.bsums.iter_mut().enumerate() {
            let sum: i32 = b.qs[j * 16..j * 16 + 16].iter().map(|&q| q as i32).sum();
            *s = (sum as i16).to_le_bytes();
        }
        b.d = d.to_le_bytes();
    }
}

use bytemuck::Zeroable;

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

/// The same code compiled for AVX2: rounding becomes an instruction instead of a libm call and
/// the loops vectorize. Results are identical.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn quantize_avx2(act: ActType, x: &[f32], out: &mut [u8]) {
    quantize_any(act, x, out)
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

#[inline(always)]
pub fn quantize_q8_0(x: &[f32], out: &mut [BlockQ8_0]) {
    for (b, x) in out.iter_mut().zip(x.chunks_exact(QK)) {
        let d = q8_block(x, &mut b.qs);
        b.d = f16::from_f32(d).to_le_bytes();
    }
}

#[inline(always)]
pub fn quantize_q8_0s(x: &[f32], out: &mut [BlockQ8_0S]) {
    for (b, x) in out.iter_mut().zip(x.chunks_exact(QK)) {
        let d = q8_block(x, &mut b.qs);
        let sum: i32 = b.qs.iter().map(|&q| q as i32).sum();
        let d16 = f16::from_f32(d);
        b.d = d16.to_le_bytes();
        b.s = (d16.to_f32() * sum as f32).to_le_bytes();
    }
}

#[inline(always)]
pub fn quantize_q8_1(x: &[f32], out: &mut [BlockQ8_1]) {
    for (b, x) in out.iter_mut().zip(x.chunks_exact(QK)) {
        let d = q8_block(x, &mut b.qs);
        let sum: i32 = b.qs.iter().map(|&q| q as i32).sum();
        b.d = f16::from_f32(d).to_le_bytes();
        b.s = f16::from_f32(d * sum as f32).to_le_bytes();
    }
}

/// ggml's `quantize_row_q8_K_ref`: the scale maps the element of largest magnitude (with its
/// sign) to -127; block sums of 16 are kept for the k-quants' `dmin` terms.
#[inline(always)]
pub fn quantize_q8k(x: &[f32], out: &mut [BlockQ8K]) {
    for (b, x) in out.iter_mut().zip(x.chunks_exact(QK_K)) {
        let (mut amax, mut max) = (0f32, 0f32);
        for &v in x {
            if v.abs() > amax {
                amax = v.abs();
                max = v;
            }
        }
        if amax == 0.0 {
            *b = BlockQ8K::zeroed();
            continue;
        }
        let iscale = -127.0 / max;
        for (q, &v) in b.qs.iter_mut().zip(x) {
            *q = ((iscale * v).round_ties_even() as i32).min(127) as i8;
        }
        for (j, s) in b.bsums.iter_mut().enumerate() {
            let sum: i32 = b.qs[j * 16..j * 16 + 16].iter().map(|&q| q as i32).sum();
            *s = (sum as i16).to_le_bytes();
        }
        b.d = (1.0 / iscale).to_le_bytes();
    }
}

use bytemuck::Zeroable;

//! Selecting the dot-product kernel for a weight type on this CPU: AVX2 when the CPU has it
//! (checked once, at run time), the portable scalar code otherwise.

use super::{dot_scalar as scalar, ActType};
use crate::gguf::GgmlType;

/// Dot product of one weight row (raw GGUF block bytes) with one activation row (bytes in the
/// weight's [`ActType`]).
pub type DotFn = fn(&[u8], &[u8]) -> f32;

/// Dot products of one weight row with four activation rows (prefill): the weight blocks are
/// unpacked once for all four.
pub type Dot4Fn = fn(&[u8], [&[u8]; 4]) -> [f32; 4];

/// A weight type's activation format and dot kernels.
#[derive(Clone, Copy)]
pub struct RowKernel {
    pub act: ActType,
    pub dot: DotFn,
    /// A four-row kernel where the type has one; otherwise `dot` is called four times.
    pub dot4: Option<Dot4Fn>,
    /// Whether `dot` is a SIMD kernel.
    pub simd: bool,
}

/// Which instruction set the kernels use.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Isa {
    Scalar,
    Avx2,
}

impl Isa {
    /// The best instruction set this CPU supports.
    pub fn detect() -> Self {
        #[cfg(target_arch = "x86_64")]
        {
            if std::arch::is_x86_feature_detected!("avx2")
                && std::arch::is_x86_feature_detected!("fma")
                && std::arch::is_x86_feature_detected!("f16c")
            {
                return Isa::Avx2;
            }
        }
        Isa::Scalar
    }

    pub fn name(self) -> &'static str {
        match self {
            Isa::Scalar => "scalar",
            Isa::Avx2 => "avx2",
        }
    }
}

/// The kernel for weights of `dtype` with instruction set `isa`, or `None` if the CPU backend
/// cannot compute with that type.
pub fn row_kernel(dtype: GgmlType, isa: Isa) -> Option<RowKernel> {
    let act = ActType::for_weight(dtype)?;
    if isa == Isa::Avx2 {
        #[cfg(target_arch = "x86_64")]
        if let Some(dot) = avx2::kernel(dtype) {
            return Some(RowKernel {
                act,
                dot,
                dot4: avx2::kernel4(dtype),
                simd: true,
            });
        }
    }
    use GgmlType::*;
    let dot: DotFn = match dtype {
        F32 => scalar::f32_f32,
        F16 => scalar::f16_f32,
        BF16 => scalar::bf16_f32,
        Q4_0 => scalar::q4_0,
        Q4_1 => scalar::q4_1,
        Q5_0 => scalar::q5_0,
        Q5_1 => scalar::q5_1,
        Q8_0 => scalar::q8_0,
        Q2_K => scalar::q2k,
        Q3_K => scalar::q3k,
        Q4_K => scalar::q4k,
        Q5_K => scalar::q5k,
        Q6_K => scalar::q6k,
        _ => return None,
    };
    Some(RowKernel {
        act,
        dot,
        dot4: None,
        simd: false,
    })
}

#[cfg(target_arch = "x86_64")]
mod avx2 {
    //! Safe wrappers: each is only handed out by [`super::row_kernel`] with `Isa::Avx2`, and
    //! `Isa::Avx2` is only produced by `Isa::detect` after the run-time feature check.
    use super::super::dot_avx2 as k;
    use super::DotFn;
    use crate::gguf::GgmlType;

    macro_rules! wrap {
        ($($name:ident),*) => {
            $(fn $name(w: &[u8], x: &[u8]) -> f32 {
                // SAFETY: reachable only after `Isa::detect` found avx2, fma and f16c.
                unsafe { k::$name(w, x) }
            })*
        };
    }
    wrap!(f32_f32, f16_f32, bf16_f32, q4_0, q4_1, q5_0, q5_1, q8_0, q2k, q3k, q4k, q5k, q6k);

    macro_rules! wrap4 {
        ($($name:ident),*) => {
            $(fn $name(w: &[u8], x: [&[u8]; 4]) -> [f32; 4] {
                // SAFETY: reachable only after `Isa::detect` found avx2, fma and f16c.
                unsafe { k::$name(w, x) }
            })*
        };
    }
    wrap4!(q4_0_x4, q5_0_x4, q8_0_x4, q4k_x4, q6k_x4);

    pub fn kernel4(dtype: GgmlType) -> Option<super::Dot4Fn> {
        use GgmlType::*;
        Some(match dtype {
            Q4_0 => q4_0_x4,
            Q5_0 => q5_0_x4,
            Q8_0 => q8_0_x4,
            Q4_K => q4k_x4,
            Q6_K => q6k_x4,
            _ => return None,
        })
    }

    pub fn kernel(dtype: GgmlType) -> Option<DotFn> {
        use GgmlType::*;
        Some(match dtype {
            F32 => f32_f32,
            F16 => f16_f32,
            BF16 => bf16_f32,
            Q4_0 => q4_0,
            Q4_1 => q4_1,
            Q5_0 => q5_0,
            Q5_1 => q5_1,
            Q8_0 => q8_0,
            Q2_K => q2k,
            Q3_K => q3k,
            Q4_K => q4k,
            Q5_K => q5k,
            Q6_K => q6k,
            _ => return None,
        })
    }
}

//! Quantized blocks on the CPU: their byte layouts ([`blocks`]), reference dequantization
//! ([`dequant`]), activation quantization ([`act`]), dot products of a weight row with an
//! activation row, portable ([`dot_scalar`]) and SIMD ([`dot_avx2`], [`dot_avx512`] for Q4_K
//! and Q6_K, `dot_neon` on aarch64), Q4_K eight rows at a time from an interleaved copy for
//! decode (`q4k_x8`, made only when a model is loaded with `repack`), and prefill's tiled
//! integer GEMM (operands in [`tile`], loops in `gemm`, kernels in `gemm_x86` and
//! `gemm_neon`), picked at run time by
//! [`kernels`].
//!
//! Everything here works on raw GGUF block bytes borrowed from the memory map: nothing is
//! transcoded at load unless `repack` asks for the interleaved copy. The CPU backend (`crate::backend::cpu`) builds matrix products and
//! threading on top of these row kernels; the GPU backends test their shaders against
//! [`dequant`].

pub mod act;
pub mod blocks;
pub mod dequant;
#[cfg(target_arch = "x86_64")]
pub mod dot_avx2;
#[cfg(target_arch = "x86_64")]
mod dot_avx2_float;
#[cfg(target_arch = "x86_64")]
pub mod dot_avx512;
#[cfg(target_arch = "aarch64")]
pub mod dot_neon;
pub mod dot_scalar;
#[cfg(any(target_arch = "x86_64", target_arch = "aarch64"))]
mod gemm;
#[cfg(target_arch = "aarch64")]
pub mod gemm_neon;
#[cfg(target_arch = "x86_64")]
pub mod gemm_x86;
pub mod kernels;
pub mod q4k_x8;
#[cfg(target_arch = "aarch64")]
mod q4k_x8_neon;
pub mod tile;

pub use act::ActType;
pub use dequant::dequantize;
pub use kernels::{
    dot8_kernel, row_kernel, tile_kernel, Dot8, Isa, RowKernel, TileKernel, TileOut, UnpackLane,
};

use crate::gguf::GgmlType;

/// The weight types the CPU backend computes with.
pub const CPU_TYPES: [GgmlType; 13] = [
    GgmlType::F32,
    GgmlType::F16,
    GgmlType::BF16,
    GgmlType::Q4_0,
    GgmlType::Q4_1,
    GgmlType::Q5_0,
    GgmlType::Q5_1,
    GgmlType::Q8_0,
    GgmlType::Q2_K,
    GgmlType::Q3_K,
    GgmlType::Q4_K,
    GgmlType::Q5_K,
    GgmlType::Q6_K,
];

#[cfg(test)]
pub(crate) mod tests;

//! Selecting the kernels for a weight type on this CPU: the row dot products (AVX2 or AVX-512
//! on x86-64, NEON with or without the dot-product extension on aarch64, the portable scalar
//! code otherwise), for prefill the tiled GEMM (`super::gemm_x86`: AVX-512 VNNI, AVX-VNNI or
//! AVX2; `super::gemm_neon`: NEON with the dot-product extension), and `--repack`'s eight-row
//! Q4_K kernel. The instruction set is detected once, at run time; `TOKENFAB_ISA` caps it (for
//! measuring the narrower paths on a wide CPU).

use super::tile::{ActTile, WeightTile};
use super::{dot_scalar as scalar, ActType};

/// One weight tile (`cols` columns) against `o.tokens` tokens from `t0` over groups `gs`,
/// accumulated into `o`; see `super::gemm_x86`.
pub type TileFn = fn(&WeightTile, &ActTile, usize, std::ops::Range<usize>, usize, &mut TileOut);

/// Where a tile's results accumulate: lane `l` of token `t` (counted from the call's first)
/// at `out[t · stride + l]`.
pub struct TileOut<'a> {
    pub out: &'a mut [f32],
    pub tokens: usize,
    pub stride: usize,
}
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
    /// The tiled GEMM for batches of tokens, where this CPU and type have one.
    pub tile: Option<TileKernel>,
}

/// The tiled GEMM of one weight type: tiles of `lanes` rows, scale groups of `group`.
#[derive(Clone, Copy)]
pub struct TileKernel {
    pub dtype: GgmlType,
    pub lanes: usize,
    pub group: usize,
    pub run: TileFn,
}

/// Which instruction set the kernels use: the portable code, or a level of one architecture's
/// SIMD (x86-64 levels first, then aarch64's), narrowest first within an architecture. Levels
/// of different architectures do not compare: use [`Isa::runs_here`], not `<=`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Isa {
    Scalar,
    /// AVX2 + FMA + F16C.
    Avx2,
    /// AVX2 with the 256-bit VNNI dot products (AVX-VNNI).
    Avx2Vnni,
    /// AVX-512 F/BW/VL with VNNI (and everything AVX2 has).
    Avx512,
    /// aarch64 Advanced SIMD (every aarch64 CPU has it).
    Neon,
    /// NEON with the dot-product instructions (`sdot`; Armv8.2+, Apple M1+, Cortex-A76+).
    NeonDot,
}

impl Isa {
    /// Every level.
    pub const ALL: [Isa; 6] = [
        Isa::Scalar,
        Isa::Avx2,
        Isa::Avx2Vnni,
        Isa::Avx512,
        Isa::Neon,
        Isa::NeonDot,
    ];

    /// The best instruction set this CPU supports, capped by `TOKENFAB_ISA` (`scalar`, `avx2`,
    /// `avx2+vnni`, `avx512`, `neon`, `neon+dotprod`): the best level this CPU has at or below
    /// the cap (a cap of another architecture is ignored). Detected once per process.
    pub fn detect() -> Self {
        static DETECTED: std::sync::OnceLock<Isa> = std::sync::OnceLock::new();
        *DETECTED.get_or_init(|| {
            let cap = std::env::var("TOKENFAB_ISA")
                .ok()
                .and_then(|s| Self::parse(&s));
            match cap {
                Some(cap) if cap == Isa::Scalar || cap.x86() == Self::cpu().x86() => {
                    Self::best(|i| i.within(cap))
                }
                _ => Self::cpu(),
            }
        })
    }

    /// Whether the kernels of this level can run on this process's CPU: its instructions are
    /// there, and the level is at or below [`Isa::detect`] in its architecture.
    pub fn runs_here(self) -> bool {
        self.supported() && self.within(Self::detect())
    }

    /// Whether `self` is `Scalar` or a level of `of`'s architecture no wider than `of`.
    fn within(self, of: Isa) -> bool {
        self == Isa::Scalar || (self.x86() == of.x86() && of != Isa::Scalar && self <= of)
    }

    fn x86(self) -> bool {
        matches!(self, Isa::Avx2 | Isa::Avx2Vnni | Isa::Avx512)
    }

    /// Whether this CPU has every instruction this level's kernels use. The x86 levels are not
    /// nested: AMD's Zen 4 has AVX-512 VNNI but not AVX-VNNI (the VEX-encoded `vpdpbusd` of the
    /// `Avx2Vnni` kernels), so each level is checked on its own.
    fn supported(self) -> bool {
        match self {
            Isa::Scalar => true,
            #[cfg(target_arch = "x86_64")]
            Isa::Avx2 | Isa::Avx2Vnni | Isa::Avx512 => {
                use std::arch::is_x86_feature_detected as has;
                let avx2 = has!("avx2") && has!("fma") && has!("f16c");
                avx2 && match self {
                    Isa::Avx2Vnni => has!("avxvnni"),
                    Isa::Avx512 => {
                        has!("avx512f")
                            && has!("avx512bw")
                            && has!("avx512vl")
                            && has!("avx512vnni")
                    }
                    _ => true,
                }
            }
            #[cfg(target_arch = "aarch64")]
            Isa::Neon => true,
            #[cfg(target_arch = "aarch64")]
            Isa::NeonDot => std::arch::is_aarch64_feature_detected!("dotprod"),
            #[allow(unreachable_patterns)]
            _ => false,
        }
    }

    /// The best level this CPU supports among those `keep` accepts (`Scalar` at worst).
    fn best(keep: impl Fn(Isa) -> bool) -> Self {
        Self::ALL
            .into_iter()
            .filter(|&i| i.supported() && keep(i))
            .max()
            .unwrap_or(Isa::Scalar)
    }

    /// The best instruction set this CPU supports.
    pub fn cpu() -> Self {
        Self::best(|_| true)
    }

    /// A level by its [`Isa::name`].
    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|i| i.name() == s.trim())
    }

    pub fn name(self) -> &'static str {
        match self {
            Isa::Scalar => "scalar",
            Isa::Avx2 => "avx2",
            Isa::Avx2Vnni => "avx2+vnni",
            Isa::Avx512 => "avx512",
            Isa::Neon => "neon",
            Isa::NeonDot => "neon+dotprod",
        }
    }

    /// Whether the AVX2 row kernels run.
    pub fn avx2(self) -> bool {
        self.x86()
    }
}

/// The kernel for weights of `dtype` with instruction set `isa`, or `None` if the CPU backend
/// cannot compute with that type.
pub fn row_kernel(dtype: GgmlType, isa: Isa) -> Option<RowKernel> {
    let act = ActType::for_weight(dtype)?;
    if isa.avx2() {
        #[cfg(target_arch = "x86_64")]
        if let Some(dot) = avx2::kernel(dtype) {
            let (dot, dot4) = match avx512::kernels(dtype) {
                Some((dot, dot4)) if isa == Isa::Avx512 => (dot, Some(dot4)),
                _ => (dot, avx2::kernel4(dtype)),
            };
            return Some(RowKernel {
                act,
                dot,
                dot4,
                simd: true,
                tile: tile_kernel(dtype, isa),
            });
        }
    }
    #[cfg(target_arch = "aarch64")]
    if matches!(isa, Isa::Neon | Isa::NeonDot) {
        if let Some(dot) = super::dot_neon::kernel(dtype, isa == Isa::NeonDot) {
            return Some(RowKernel {
                act,
                dot,
                dot4: None,
                simd: true,
                tile: tile_kernel(dtype, isa),
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
        // a CPU with a tiled GEMM for the type but no SIMD row kernel (Q5_K on NEON)
        tile: tile_kernel(dtype, isa),
    })
}

/// Decode over an interleaved copy of a matrix, eight rows per kernel call
/// (`super::q4k_x8`): the row kernel's quantity with its own rounding (last bits), one copy of
/// the matrix dearer.
#[derive(Clone, Copy)]
pub struct Dot8 {
    /// The copy of a matrix's first `rows / 8 * 8` rows (`(bytes, rows, cols, out)`; `out`:
    /// `copy_bytes` long), or of a band of its whole groups.
    pub repack: fn(&[u8], usize, usize, &mut [u8]),
    /// Eight rows of the copy (one group) × one activation row.
    pub dot8: fn(&[u8], &[u8]) -> [f32; 8],
    /// Bytes of the copy of a `(rows, cols)` matrix.
    pub copy_bytes: fn(usize, usize) -> usize,
    /// Row `lane` of a group of the copy, unpacked as `tile::unpack_row` unpacks the original
    /// (`(group, lane, vals, scale, min)`), for the tiled GEMM.
    pub unpack: UnpackLane,
}

/// Unpacks row `lane` of one group of an interleaved copy into `(vals, scale, min)`, as
/// `tile::unpack_row` unpacks a row of the file.
pub type UnpackLane = fn(&[u8], usize, &mut [u8], &mut [f32], &mut [f32]);

/// The eight-row decode kernel for `dtype` on `isa`, or `None` (Q4_K on AVX2 and up, and on
/// NEON with the dot-product extension).
pub fn dot8_kernel(dtype: GgmlType, isa: Isa) -> Option<Dot8> {
    if dtype != GgmlType::Q4_K {
        return None;
    }
    let dot8: fn(&[u8], &[u8]) -> [f32; 8] = match isa {
        #[cfg(target_arch = "x86_64")]
        _ if isa.avx2() => |w, x| {
            // SAFETY: handed out only for an `isa` with AVX2, which `Isa::detect` found with
            // FMA and F16C.
            unsafe { super::q4k_x8::dot8(w, x) }
        },
        #[cfg(target_arch = "aarch64")]
        Isa::NeonDot => |w, x| {
            // SAFETY: handed out only for `Isa::NeonDot`, which `Isa::detect` produces only
            // after finding dotprod.
            unsafe { super::q4k_x8_neon::dot8(w, x) }
        },
        _ => return None,
    };
    Some(Dot8 {
        repack: super::q4k_x8::repack,
        dot8,
        copy_bytes: super::q4k_x8::copy_bytes,
        unpack: super::q4k_x8::unpack_row,
    })
}

/// The tiled GEMM for `dtype` on `isa`, or `None`.
pub fn tile_kernel(dtype: GgmlType, isa: Isa) -> Option<TileKernel> {
    let group = super::tile::group_size(dtype)?;
    #[cfg(target_arch = "x86_64")]
    {
        use super::gemm_x86 as g;
        let (lanes, run): (usize, g::TileFn) = match (isa, group) {
            (Isa::Avx512, 32) => (16, g::tile_avx512_g32),
            (Isa::Avx512, _) => (16, g::tile_avx512_g16),
            (Isa::Avx2Vnni, 32) => (8, g::tile_vnni_g32),
            (Isa::Avx2Vnni, _) => (8, g::tile_vnni_g16),
            // 16-bit pair sums: exact for values below 64 only, and over as many steps as
            // the type's largest value allows
            (Isa::Avx2, _) if super::tile::max_value(dtype) >= 64 => return None,
            (Isa::Avx2, _) => match (group, g::avx2_steps(super::tile::max_value(dtype))) {
                (32, 8) => (8, g::tile_avx2_g32_k8),
                (32, 4) => (8, g::tile_avx2_g32_k4),
                (32, _) => (8, g::tile_avx2_g32_k2),
                (_, 2) => (8, g::tile_avx2_g16_k2),
                _ => (8, g::tile_avx2_g16_k4),
            },
            (Isa::Scalar | Isa::Neon | Isa::NeonDot, _) => return None,
        };
        Some(TileKernel {
            dtype,
            lanes,
            group,
            run,
        })
    }
    #[cfg(target_arch = "aarch64")]
    {
        use super::gemm_neon as g;
        // `sdot` takes the weights as signed bytes: values below 128 only
        let run: g::TileFn = match (isa, group) {
            _ if super::tile::max_value(dtype) >= 128 => return None,
            (Isa::NeonDot, 32) => g::tile_neon_g32,
            (Isa::NeonDot, _) => g::tile_neon_g16,
            _ => return None,
        };
        Some(TileKernel {
            dtype,
            lanes: 8,
            group,
            run,
        })
    }
    #[cfg(not(any(target_arch = "x86_64", target_arch = "aarch64")))]
    {
        let _ = (group, isa);
        None
    }
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

#[cfg(target_arch = "x86_64")]
mod avx512 {
    //! Safe wrappers: each is only handed out by [`super::row_kernel`] with `Isa::Avx512`, and
    //! `Isa::Avx512` is only produced by `Isa::detect` after the run-time feature check.
    use super::super::dot_avx512 as k;
    use super::{Dot4Fn, DotFn};
    use crate::gguf::GgmlType;

    macro_rules! wrap {
        ($($name:ident),*) => {$(
            fn $name(w: &[u8], x: &[u8]) -> f32 {
                // SAFETY: reachable only after `Isa::detect` found avx512f/bw/vl/vnni, avx2,
                // fma and f16c.
                unsafe { k::$name(w, x) }
            }
        )*};
    }
    wrap!(q4_0, q5_0, q8_0, q6k);

    macro_rules! wrap4 {
        ($($name:ident),*) => {$(
            fn $name(w: &[u8], x: [&[u8]; 4]) -> [f32; 4] {
                // SAFETY: as above.
                unsafe { k::$name(w, x) }
            }
        )*};
    }
    wrap4!(q4_0_x4, q5_0_x4, q8_0_x4, q4k_x4, q6k_x4);

    fn q4k_narrow(w: &[u8], x: &[u8]) -> f32 {
        // SAFETY: as above (AVX2, FMA and F16C are part of the avx512 level).
        unsafe { super::super::dot_avx2::q4k(w, x) }
    }

    /// The AVX-512 row kernels (bitwise the AVX2 ones, faster) for the types that have them.
    pub fn kernels(dtype: GgmlType) -> Option<(DotFn, Dot4Fn)> {
        use GgmlType::*;
        Some(match dtype {
            Q4_0 => (q4_0, q4_0_x4),
            Q5_0 => (q5_0, q5_0_x4),
            Q8_0 => (q8_0, q8_0_x4),
            // the AVX2 kernel: faster than 512-bit registers on one row (`cargo bench
            // --bench kernels` on a Zen 4: 20.4 vs 18.5 GB/s in L1), bitwise the same
            Q4_K => (q4k_narrow, q4k_x4),
            Q6_K => (q6k, q6k_x4),
            _ => return None,
        })
    }
}

#[cfg(test)]
mod isa_tests {
    use super::Isa;

    /// A level runs here only where the CPU has its instructions: on a Zen 4 (AVX-512 VNNI, no
    /// AVX-VNNI) `avx2+vnni` used to count as "below avx512" and its VEX `vpdpbusd` killed the
    /// op tests with SIGILL.
    #[test]
    fn a_level_runs_only_where_its_instructions_are() {
        for isa in Isa::ALL {
            if isa.runs_here() {
                assert!(isa.supported(), "{}", isa.name());
            }
        }
        assert!(Isa::cpu().supported());
        assert!(Isa::detect().supported());
        #[cfg(target_arch = "x86_64")]
        {
            use std::arch::is_x86_feature_detected as has;
            assert_eq!(Isa::Avx2Vnni.supported(), has!("avxvnni") && has!("avx2"));
            assert_eq!(
                Isa::Avx512.supported(),
                has!("avx512vnni") && has!("avx512bw") && has!("avx512vl")
            );
            assert!(!Isa::Neon.supported() && !Isa::NeonDot.supported());
        }
    }
}

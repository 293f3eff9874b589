//! Byte layouts of GGML quantization blocks, exactly as they sit in a GGUF file.
//!
//! Every struct is `#[repr(C)]` with alignment 1 (multi-byte fields are byte arrays read with
//! `from_le_bytes`), so a tensor's bytes borrowed from the memory map can be viewed as a slice
//! of blocks with `bytemuck::cast_slice` — no copy, no `unsafe`, no alignment requirement.
//! A compile-time assert pins each size to ggml's.

use bytemuck::{Pod, Zeroable};
use half::f16;

/// Elements per block of the legacy types (Q4_0 … Q8_1).
pub const QK: usize = 32;
/// Elements per super-block of the k-quants.
pub const QK_K: usize = 256;

#[inline(always)]
pub fn f16_at(b: [u8; 2]) -> f32 {
    f16::from_le_bytes(b).to_f32()
}

/// Q4_0: `x = d * (q - 8)`, q in 0..16. Byte j holds elements j (low nibble) and j+16 (high).
#[repr(C)]
#[derive(Clone, Copy, Pod, Zeroable)]
pub struct BlockQ4_0 {
    pub d: [u8; 2],
    pub qs: [u8; QK / 2],
}
const _: () = assert!(std::mem::size_of::<BlockQ4_0>() == 18);

/// Q4_1: `x = d * q + m`, q in 0..16; nibbles as Q4_0.
#[repr(C)]
#[derive(Clone, Copy, Pod, Zeroable)]
pub struct BlockQ4_1 {
    pub d: [u8; 2],
    pub m: [u8; 2],
    pub qs: [u8; QK / 2],
}
const _: () = assert!(std::mem::size_of::<BlockQ4_1>() == 20);

/// Q5_0: `x = d * (q - 16)`, q in 0..32: low 4 bits as Q4_0, bit 4 of element j is bit j of
/// the little-endian u32 `qh`.
#[repr(C)]
#[derive(Clone, Copy, Pod, Zeroable)]
pub struct BlockQ5_0 {
    pub d: [u8; 2],
    pub qh: [u8; 4],
    pub qs: [u8; QK / 2],
}
const _: () = assert!(std::mem::size_of::<BlockQ5_0>() == 22);

/// Q5_1: `x = d * q + m`, 5-bit q laid out as Q5_0.
#[repr(C)]
#[derive(Clone, Copy, Pod, Zeroable)]
pub struct BlockQ5_1 {
    pub d: [u8; 2],
    pub m: [u8; 2],
    pub qh: [u8; 4],
    pub qs: [u8; QK / 2],
}
const _: () = assert!(std::mem::size_of::<BlockQ5_1>() == 24);

/// Q8_0: `x = d * q`, q signed bytes. Also the activation format for Q4_0/Q5_0/Q8_0 weights.
#[repr(C)]
#[derive(Clone, Copy, Pod, Zeroable)]
pub struct BlockQ8_0 {
    pub d: [u8; 2],
    pub qs: [i8; QK],
}
const _: () = assert!(std::mem::size_of::<BlockQ8_0>() == 34);

/// Q8_0 plus `s = d · Σq` in f32: our activation format for Q4_0/Q5_0 weights. With it,
/// the weight's offset (`-8`, `-16`) is applied once per block (`Σ(q-o)·y = Σq·y - o·Σy`),
/// so the SIMD kernels multiply unsigned weight nibbles directly (no sign juggling).
#[repr(C)]
#[derive(Clone, Copy, Pod, Zeroable)]
pub struct BlockQ8_0S {
    pub d: [u8; 2],
    pub s: [u8; 4],
    pub qs: [i8; QK],
}
const _: () = assert!(std::mem::size_of::<BlockQ8_0S>() == 38);

impl BlockQ8_0S {
    #[inline(always)]
    pub fn s(&self) -> f32 {
        f32::from_le_bytes(self.s)
    }
}

/// Q8_1: Q8_0 plus `s = d * Σq`; the activation format for Q4_1/Q5_1 weights (the `m` term
/// of the weight then needs only `s`).
#[repr(C)]
#[derive(Clone, Copy, Pod, Zeroable)]
pub struct BlockQ8_1 {
    pub d: [u8; 2],
    pub s: [u8; 2],
    pub qs: [i8; QK],
}
const _: () = assert!(std::mem::size_of::<BlockQ8_1>() == 36);

/// Q2_K: 16 sub-blocks of 16; `x = d * (sc & 15) * q - dmin * (sc >> 4)`, q 2-bit.
/// `qs` holds 4 elements per byte: for each 128-element half, byte l (0..32) carries elements
/// l, l+32, l+64, l+96 of that half in bit pairs 0-1, 2-3, 4-5, 6-7.
#[repr(C)]
#[derive(Clone, Copy, Pod, Zeroable)]
pub struct BlockQ2K {
    pub scales: [u8; QK_K / 16],
    pub qs: [u8; QK_K / 4],
    pub d: [u8; 2],
    pub dmin: [u8; 2],
}
const _: () = assert!(std::mem::size_of::<BlockQ2K>() == 84);

/// Q3_K: 16 sub-blocks of 16 with 6-bit signed scales (stored +32) packed in 12 bytes;
/// low 2 bits of q as Q2_K, the third bit in `hmask` (bit set = no -4 offset).
///
/// ```text
/// scales[0..4]  : low 4 bits of scales 0..3  | low 4 bits of scales 8..11 (high nibble)
/// scales[4..8]  : low 4 bits of scales 4..7  | low 4 bits of scales 12..15
/// scales[8..12] : bits 4-5 of scales (0,4,8,12), (1,5,9,13), (2,6,10,14), (3,7,11,15)
/// ```
#[repr(C)]
#[derive(Clone, Copy, Pod, Zeroable)]
pub struct BlockQ3K {
    pub hmask: [u8; QK_K / 8],
    pub qs: [u8; QK_K / 4],
    pub scales: [u8; 12],
    pub d: [u8; 2],
}
const _: () = assert!(std::mem::size_of::<BlockQ3K>() == 110);

/// Q4_K: 8 sub-blocks of 32; `x = d * sc * q - dmin * m`, with 6-bit `sc` and `m` packed:
///
/// ```text
///            byte:  0    1    2    3  |  4    5    6    7  |  8    9    10   11
/// sub-block j<4 :  sc_j (low 6 bits)  |   m_j (low 6 bits) |
/// sub-block j>=4:  sc_j bits 4-5 in the top 2 bits of byte j-4, m_j bits 4-5 in the top 2
///                  bits of byte j; their low 4 bits in byte j+4 (sc: low nibble, m: high)
/// ```
/// `qs`: for each 64-element chunk, 32 bytes; low nibbles are elements 0..32 of the chunk,
/// high nibbles elements 32..64.
#[repr(C)]
#[derive(Clone, Copy, Pod, Zeroable)]
pub struct BlockQ4K {
    pub d: [u8; 2],
    pub dmin: [u8; 2],
    pub scales: [u8; 12],
    pub qs: [u8; QK_K / 2],
}
const _: () = assert!(std::mem::size_of::<BlockQ4K>() == 144);

/// Q5_K: Q4_K plus a fifth bit per element in `qh` (chunk c uses bits 2c and 2c+1).
#[repr(C)]
#[derive(Clone, Copy, Pod, Zeroable)]
pub struct BlockQ5K {
    pub d: [u8; 2],
    pub dmin: [u8; 2],
    pub scales: [u8; 12],
    pub qh: [u8; QK_K / 8],
    pub qs: [u8; QK_K / 2],
}
const _: () = assert!(std::mem::size_of::<BlockQ5K>() == 176);

/// Q6_K: 16 sub-blocks of 16, `x = d * sc * (q - 32)`, q 6-bit: low 4 bits in `ql`, high 2
/// in `qh`, signed 8-bit scales.
#[repr(C)]
#[derive(Clone, Copy, Pod, Zeroable)]
pub struct BlockQ6K {
    pub ql: [u8; QK_K / 2],
    pub qh: [u8; QK_K / 4],
    pub scales: [i8; QK_K / 16],
    pub d: [u8; 2],
}
const _: () = assert!(std::mem::size_of::<BlockQ6K>() == 210);

/// Q8_K: the activation format for k-quant weights: f32 scale, 256 signed bytes, and the sums
/// of each 16 (used for the `dmin` terms).
#[repr(C)]
#[derive(Clone, Copy, Pod, Zeroable)]
pub struct BlockQ8K {
    pub d: [u8; 4],
    pub qs: [i8; QK_K],
    pub bsums: [[u8; 2]; QK_K / 16],
}
const _: () = assert!(std::mem::size_of::<BlockQ8K>() == 292);

impl BlockQ8K {
    #[inline(always)]
    pub fn d(&self) -> f32 {
        f32::from_le_bytes(self.d)
    }
    #[inline(always)]
    pub fn bsum(&self, i: usize) -> i32 {
        i16::from_le_bytes(self.bsums[i]) as i32
    }
}

/// Unpacks sub-block `j`'s 6-bit scale and min from a Q4_K/Q5_K `scales` array.
#[inline(always)]
pub fn scale_min_k4(j: usize, q: &[u8; 12]) -> (u8, u8) {
    if j < 4 {
        (q[j] & 63, q[j + 4] & 63)
    } else {
        (
            (q[j + 4] & 0xF) | ((q[j - 4] >> 6) << 4),
            (q[j + 4] >> 4) | ((q[j] >> 6) << 4),
        )
    }
}

/// Unpacks the sixteen 6-bit Q3_K scales (already minus 32).
#[inline(always)]
pub fn q3k_scales(s: &[u8; 12]) -> [i8; 16] {
    const KMASK1: u32 = 0x0303_0303;
    const KMASK2: u32 = 0x0f0f_0f0f;
    let a0 = u32::from_le_bytes([s[0], s[1], s[2], s[3]]);
    let a1 = u32::from_le_bytes([s[4], s[5], s[6], s[7]]);
    let tmp = u32::from_le_bytes([s[8], s[9], s[10], s[11]]);
    let aux = [
        (a0 & KMASK2) | ((tmp & KMASK1) << 4),
        (a1 & KMASK2) | (((tmp >> 2) & KMASK1) << 4),
        ((a0 >> 4) & KMASK2) | (((tmp >> 4) & KMASK1) << 4),
        ((a1 >> 4) & KMASK2) | (((tmp >> 6) & KMASK1) << 4),
    ];
    let mut out = [0i8; 16];
    for (i, w) in aux.iter().enumerate() {
        for (k, b) in w.to_le_bytes().iter().enumerate() {
            out[i * 4 + k] = (*b as i8).wrapping_sub(32);
        }
    }
    out
}

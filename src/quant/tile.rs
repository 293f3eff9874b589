//! Prefill's operands for the tiled integer GEMM (`super::gemm_x86`): a tile of weight rows
//! unpacked once per matrix product, and the quantized activations of every token laid out
//! for broadcasting.
//!
//! Every quantized type is unpacked to the same form: one unsigned byte `u` per element, and
//! per group of `G` elements (32, or 16 for the types with 16-element sub-blocks) a scale and
//! a min per row, so that `element = scale · u + min` (Q5_0: `d · q - 16 d`; Q4_K:
//! `d sc · q - dmin m`; Q8_0: `d · (q + 128) - 128 d`). The bytes of `L` rows are interleaved
//! four at a time, which is what the SIMD dot instructions (`vpdpbusd`, `vpmaddubsw`) sum:
//!
//! ```text
//!  q: | r0 e0..3 | r1 e0..3 | ... | rL-1 e0..3 | r0 e4..7 | r1 e4..7 | ... |
//!     '------------ one register (L = 16: 64 bytes) ---'
//! ```
//!
//! so one register of weights times one broadcast four-byte word of a token's activations
//! gives `L` rows' partial sums in `L` lanes, and a group's scales and mins are a vector
//! load each. The unpacking costs one pass over the tile's weights and is shared by every
//! token of the batch; nothing is transcoded at load (the memory map stays the weights).
//!
//! Activations keep their quantized values (the same Q8 formats and rounding as the row
//! kernels, `super::act`); per token and group the tile needs the block scale `d` and
//! `d · Σq` (the min's partner).

use super::act::ActType;
use super::blocks::*;
use crate::gguf::GgmlType;
use bytemuck::cast_slice;

/// Elements per scale group for a weight type the tiled GEMM handles, or `None`.
pub fn group_size(dtype: GgmlType) -> Option<usize> {
    use GgmlType::*;
    match dtype {
        Q4_0 | Q4_1 | Q5_0 | Q5_1 | Q8_0 | Q4_K | Q5_K => Some(32),
        Q2_K | Q3_K | Q6_K => Some(16),
        _ => None,
    }
}

/// The largest unsigned value a type unpacks to (the plain-AVX2 kernel sums products in 16
/// bits, which holds for values below 64 only, and for how many depends on this value:
/// `gemm_x86::avx2_steps`).
pub fn max_value(dtype: GgmlType) -> u8 {
    use GgmlType::*;
    match dtype {
        Q2_K => 3,
        Q3_K => 7,
        Q4_0 | Q4_1 | Q4_K => 15,
        Q5_0 | Q5_1 | Q5_K => 31,
        Q6_K => 63,
        _ => 255,
    }
}

/// Unpacks one row of `dtype` blocks into `vals` (one byte per element) and per-group
/// `scale`/`min`. The type must have a [`group_size`].
pub fn unpack_row(
    dtype: GgmlType,
    row: &[u8],
    vals: &mut [u8],
    scale: &mut [f32],
    min: &mut [f32],
) {
    use GgmlType::*;
    match dtype {
        Q4_0 => {
            for (i, b) in cast_slice::<_, BlockQ4_0>(row).iter().enumerate() {
                nibbles(&b.qs, &mut vals[i * QK..(i + 1) * QK]);
                let d = f16_at(b.d);
                (scale[i], min[i]) = (d, -8.0 * d);
            }
        }
        Q4_1 => {
            for (i, b) in cast_slice::<_, BlockQ4_1>(row).iter().enumerate() {
                nibbles(&b.qs, &mut vals[i * QK..(i + 1) * QK]);
                (scale[i], min[i]) = (f16_at(b.d), f16_at(b.m));
            }
        }
        Q5_0 => {
            for (i, b) in cast_slice::<_, BlockQ5_0>(row).iter().enumerate() {
                vals[i * QK..(i + 1) * QK].copy_from_slice(&super::dequant::q5_values(b.qh, &b.qs));
                let d = f16_at(b.d);
                (scale[i], min[i]) = (d, -16.0 * d);
            }
        }
        Q5_1 => {
            for (i, b) in cast_slice::<_, BlockQ5_1>(row).iter().enumerate() {
                vals[i * QK..(i + 1) * QK].copy_from_slice(&super::dequant::q5_values(b.qh, &b.qs));
                (scale[i], min[i]) = (f16_at(b.d), f16_at(b.m));
            }
        }
        Q8_0 => {
            for (i, b) in cast_slice::<_, BlockQ8_0>(row).iter().enumerate() {
                for (v, &q) in vals[i * QK..(i + 1) * QK].iter_mut().zip(&b.qs) {
                    *v = (q as u8) ^ 0x80;
                }
                let d = f16_at(b.d);
                (scale[i], min[i]) = (d, -128.0 * d);
            }
        }
        Q2_K => {
            for (i, b) in cast_slice::<_, BlockQ2K>(row).iter().enumerate() {
                let (d, dmin) = (f16_at(b.d), f16_at(b.dmin));
                let v = &mut vals[i * QK_K..(i + 1) * QK_K];
                let (s, m) = (&mut scale[i * 16..], &mut min[i * 16..]);
                for half in 0..2 {
                    let q = &b.qs[half * 32..half * 32 + 32];
                    for j in 0..4 {
                        for part in 0..2 {
                            let g = half * 8 + j * 2 + part;
                            let sc = b.scales[g];
                            (s[g], m[g]) = (d * (sc & 0xF) as f32, -dmin * (sc >> 4) as f32);
                            for l in 0..16 {
                                v[g * 16 + l] = (q[part * 16 + l] >> (2 * j)) & 3;
                            }
                        }
                    }
                }
            }
        }
        Q3_K => {
            for (i, b) in cast_slice::<_, BlockQ3K>(row).iter().enumerate() {
                let d = f16_at(b.d);
                let scales = q3k_scales(&b.scales);
                let v = &mut vals[i * QK_K..(i + 1) * QK_K];
                let (s, m) = (&mut scale[i * 16..], &mut min[i * 16..]);
                for half in 0..2 {
                    let q = &b.qs[half * 32..half * 32 + 32];
                    for j in 0..4 {
                        let bit = 1u8 << (half * 4 + j);
                        for part in 0..2 {
                            let g = half * 8 + j * 2 + part;
                            let dl = d * scales[g] as f32;
                            (s[g], m[g]) = (dl, -4.0 * dl);
                            for l in 0..16 {
                                let k = part * 16 + l;
                                let high = if b.hmask[k] & bit != 0 { 4 } else { 0 };
                                v[g * 16 + l] = ((q[k] >> (2 * j)) & 3) + high;
                            }
                        }
                    }
                }
            }
        }
        Q4_K => {
            for (i, b) in cast_slice::<_, BlockQ4K>(row).iter().enumerate() {
                let at = (i * QK_K, i * 8);
                k4_block(b.d, b.dmin, &b.scales, None, &b.qs, vals, scale, min, at);
            }
        }
        Q5_K => {
            for (i, b) in cast_slice::<_, BlockQ5K>(row).iter().enumerate() {
                let at = (i * QK_K, i * 8);
                k4_block(
                    b.d,
                    b.dmin,
                    &b.scales,
                    Some(&b.qh),
                    &b.qs,
                    vals,
                    scale,
                    min,
                    at,
                );
            }
        }
        Q6_K => {
            for (i, b) in cast_slice::<_, BlockQ6K>(row).iter().enumerate() {
                let d = f16_at(b.d);
                let v = &mut vals[i * QK_K..(i + 1) * QK_K];
                for n in 0..2 {
                    let ql = &b.ql[n * 64..n * 64 + 64];
                    let qh = &b.qh[n * 32..n * 32 + 32];
                    let vn = &mut v[n * 128..n * 128 + 128];
                    for l in 0..32 {
                        vn[l] = (ql[l] & 0xF) | ((qh[l] & 3) << 4);
                        vn[l + 32] = (ql[l + 32] & 0xF) | (((qh[l] >> 2) & 3) << 4);
                        vn[l + 64] = (ql[l] >> 4) | (((qh[l] >> 4) & 3) << 4);
                        vn[l + 96] = (ql[l + 32] >> 4) | (((qh[l] >> 6) & 3) << 4);
                    }
                }
                for g in 0..16 {
                    let dl = d * b.scales[g] as f32;
                    (scale[i * 16 + g], min[i * 16 + g]) = (dl, -32.0 * dl);
                }
            }
        }
        _ => unreachable!("unpack_row called for {dtype}, which has no group size"),
    }
}

/// The 4-bit values of a Q4_0/Q4_1 block: low nibbles are elements 0..16, high 16..32.
#[inline(always)]
fn nibbles(qs: &[u8; QK / 2], v: &mut [u8]) {
    for (j, &q) in qs.iter().enumerate() {
        v[j] = q & 0xF;
        v[j + QK / 2] = q >> 4;
    }
}

/// One Q4_K/Q5_K super-block (Q5_K: with its fifth bits `qh`) into `vals` from element
/// `at.0` and `scale`/`min` from group `at.1`.
#[allow(clippy::too_many_arguments)]
#[inline(always)]
fn k4_block(
    d: [u8; 2],
    dmin: [u8; 2],
    scales: &[u8; 12],
    qh: Option<&[u8; 32]>,
    qs: &[u8; 128],
    vals: &mut [u8],
    scale: &mut [f32],
    min: &mut [f32],
    at: (usize, usize),
) {
    let (d, dmin) = (f16_at(d), f16_at(dmin));
    let v = &mut vals[at.0..at.0 + QK_K];
    for g in 0..8 {
        let (sc, m) = scale_min_k4(g, scales);
        (scale[at.1 + g], min[at.1 + g]) = (d * sc as f32, -dmin * m as f32);
        let (c, half) = (g / 2, g % 2);
        for l in 0..32 {
            let q = (qs[c * 32 + l] >> (4 * half)) & 0xF;
            let h = qh.map_or(0, |qh| ((qh[l] >> g) & 1) << 4);
            v[g * 32 + l] = q | h;
        }
    }
}

/// `lanes` weight rows unpacked and interleaved (see the module docs); reused across tiles.
#[derive(Default)]
pub struct WeightTile {
    /// `cols / 4` words of `lanes × 4` bytes.
    pub q: Vec<u8>,
    /// `[group][lane]`.
    pub scale: Vec<f32>,
    /// `[group][lane]`.
    pub min: Vec<f32>,
    vals: Vec<u8>,
    row_scale: Vec<f32>,
    row_min: Vec<f32>,
}

impl WeightTile {
    /// Fills the tile with `rows` rows (at most `lanes`) that `unpack(r, vals, scale, min)`
    /// unpacks as [`unpack_row`] does — from the file's bytes, or from an interleaved copy
    /// (`super::q4k_x8::unpack_row`); lanes past the last row are zero.
    pub fn fill_with(
        &mut self,
        rows: usize,
        cols: usize,
        group: usize,
        lanes: usize,
        mut unpack: impl FnMut(usize, &mut [u8], &mut [f32], &mut [f32]),
    ) {
        let groups = cols / group;
        debug_assert!(rows <= lanes && cols.is_multiple_of(group));
        self.q.resize(cols * lanes, 0);
        self.scale.resize(groups * lanes, 0.0);
        self.min.resize(groups * lanes, 0.0);
        if rows < lanes {
            // lanes past the last row: zero weights and scales
            self.q.fill(0);
            self.scale.fill(0.0);
            self.min.fill(0.0);
        }
        self.vals.resize(cols, 0);
        self.row_scale.resize(groups, 0.0);
        self.row_min.resize(groups, 0.0);
        for r in 0..rows {
            unpack(r, &mut self.vals, &mut self.row_scale, &mut self.row_min);
            for (i, word) in self.vals.chunks_exact(4).enumerate() {
                let at = i * lanes * 4 + r * 4;
                self.q[at..at + 4].copy_from_slice(word);
            }
            for g in 0..groups {
                self.scale[g * lanes + r] = self.row_scale[g];
                self.min[g * lanes + r] = self.row_min[g];
            }
        }
    }
}

/// Every token's quantized activations for one matrix product: `q` `[token][col]`, and
/// per `[token][group]` the scale `d` and `sum = d · Σq` over the group.
#[derive(Default)]
pub struct ActTile {
    pub q: Vec<i8>,
    pub d: Vec<f32>,
    pub sum: Vec<f32>,
}

impl ActTile {
    /// Quantizes `n` rows of `x` (`cols` each) as `act` into this layout, groups of `group`
    /// elements, tokens in parallel (on the calling thread's rayon pool).
    pub fn fill(&mut self, act: ActType, x: &[f32], n: usize, cols: usize, group: usize) {
        use rayon::prelude::*;
        let groups = cols / group;
        self.q.resize(n * cols, 0);
        self.d.resize(n * groups, 0.0);
        self.sum.resize(n * groups, 0.0);
        self.q[..n * cols]
            .par_chunks_mut(cols)
            .zip(self.d[..n * groups].par_chunks_mut(groups))
            .zip(self.sum[..n * groups].par_chunks_mut(groups))
            .zip(x[..n * cols].par_chunks(cols))
            .for_each(|(((q, d), sum), x)| act.quantize_split(x, q, d, sum, group));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::quant::dequantize;

    /// `scale · u + min` of every element equals ggml's dequantization (to f32 rounding).
    #[test]
    fn unpacked_rows_should_dequantize_like_ggml() {
        use GgmlType::*;
        for t in [Q4_0, Q4_1, Q5_0, Q5_1, Q8_0, Q2_K, Q3_K, Q4_K, Q5_K, Q6_K] {
            let cols = 512;
            let (bytes, _) = super::super::tests::candle_quantized(t, 1, cols, 3);
            let mut want = vec![0f32; cols];
            assert!(dequantize(t, &bytes, &mut want));
            let g = group_size(t).unwrap();
            let (mut v, mut s, mut m) =
                (vec![0u8; cols], vec![0f32; cols / g], vec![0f32; cols / g]);
            unpack_row(t, &bytes, &mut v, &mut s, &mut m);
            assert!(
                v.iter().all(|&u| u <= max_value(t)),
                "{t}: a value past {}",
                max_value(t)
            );
            for e in 0..cols {
                let got = s[e / g] * v[e] as f32 + m[e / g];
                let tol = 1e-5 * (want[e].abs() + s[e / g].abs() * 64.0);
                assert!(
                    (got - want[e]).abs() <= tol,
                    "{t} element {e}: {got} vs {}",
                    want[e]
                );
            }
        }
    }

    /// The interleaved tile puts element `e` of row `r` at word `e / 4`, lane `r`, and zeroes
    /// lanes past the last row.
    #[test]
    fn weight_tile_should_interleave_rows_four_bytes_at_a_time() {
        let (bytes, _) = super::super::tests::candle_quantized(GgmlType::Q8_0, 3, 64, 5);
        let w_row = bytes.len() / 3;
        let mut tile = WeightTile::default();
        tile.fill_with(3, 64, 32, 8, |r, v, s, m| {
            unpack_row(GgmlType::Q8_0, &bytes[r * w_row..(r + 1) * w_row], v, s, m)
        });
        for r in 0..8 {
            let mut v = [0u8; 64];
            let (mut s, mut m) = ([0f32; 2], [0f32; 2]);
            if r < 3 {
                unpack_row(
                    GgmlType::Q8_0,
                    &bytes[r * w_row..(r + 1) * w_row],
                    &mut v,
                    &mut s,
                    &mut m,
                );
            }
            for (e, &want) in v.iter().enumerate() {
                let got = tile.q[(e / 4) * 32 + r * 4 + e % 4];
                assert_eq!(got, want, "row {r} element {e}");
            }
            for g in 0..2 {
                assert_eq!((tile.scale[g * 8 + r], tile.min[g * 8 + r]), (s[g], m[g]));
            }
        }
    }

    /// The activation layout holds exactly the values and scales of the block format
    /// (`ActType::quantize`), and gives each group `d · Σq`.
    #[test]
    fn act_tile_should_hold_the_block_formats_values() {
        let x: Vec<f32> = (0..512)
            .map(|i| ((i * 37 % 101) as f32 - 50.0) / 7.0 + if i % 61 == 0 { 30.0 } else { 0.0 })
            .collect();
        for (act, group) in [
            (ActType::Q8_0, 32),
            (ActType::Q8_0S, 32),
            (ActType::Q8_1, 32),
            (ActType::Q8K, 32),
            (ActType::Q8K, 16),
        ] {
            let rb = act.row_bytes(256);
            let mut xq = vec![0u8; 2 * rb];
            act.quantize(&x[..256], &mut xq[..rb]);
            act.quantize(&x[256..], &mut xq[rb..]);
            let mut a = ActTile::default();
            a.fill(act, &x, 2, 256, group);
            let (bs, ts) = (act.block_size(), act.type_size());
            let qs_at = match act {
                ActType::Q8_0 => 2,
                ActType::Q8_0S => 6,
                _ => 4,
            };
            for t in 0..2 {
                for b in 0..256 / bs {
                    let block = &xq[t * rb + b * ts..t * rb + (b + 1) * ts];
                    let qs: &[i8] = cast_slice(&block[qs_at..qs_at + bs]);
                    assert_eq!(
                        &a.q[t * 256 + b * bs..t * 256 + (b + 1) * bs],
                        qs,
                        "{act:?}"
                    );
                    let d = match act {
                        ActType::Q8K => {
                            f32::from_le_bytes([block[0], block[1], block[2], block[3]])
                        }
                        _ => f16_at([block[0], block[1]]),
                    };
                    for g in b * bs / group..(b + 1) * bs / group {
                        let k = t * (256 / group) + g;
                        let gq = &a.q[t * 256 + g * group..t * 256 + (g + 1) * group];
                        let s: i32 = gq.iter().map(|&v| v as i32).sum();
                        assert_eq!((a.d[k], a.sum[k]), (d, d * s as f32), "{act:?} group {g}");
                    }
                }
            }
        }
    }
}

// SUPERSEDED (2026-11-29, later the same day): `src/quant/q4k_x8.rs` is the integrated eight-row
// kernel (`--repack`). It differs from this prototype in the one thing that mattered: it sums a
// sub-block's products in 16 bits across positions and reduces each row's block to one integer
// (ggml's `gemv_q4_K_8x8` arithmetic), giving up this prototype's bitwise equality with the
// one-row kernel — 1.5B decode at one thread 16.8 → 20.8 tok/s, where this lane-for-lane
// layout gave 17.9 → 19.0. Kept for the measurements below.
//
// EXPERIMENT, not part of the build: Q4_K decode eight weight rows at a time from an
// interleaved copy, against tokenfab's one-row AVX2 kernel (src/quant/dot_avx2.rs, copied
// here), measured 2026-11-29 on the 2-vCPU Zen 4 of docs/cpu/2026-11-29b-zen4/.
//
// Layout (per group of 8 rows and super-block, 1184 bytes against 8 × 144): d[8] and dmin[8]
// as f16, the 6-bit scales unpacked to bytes [sub-block][row], the mins as [pair][row][2], and
// the nibbles in 4-byte groups [group][row][4], so one 256-bit load holds the same four
// positions of all eight rows and each 32-bit lane is a row. The activation's four bytes are
// broadcast, `vpmaddubsw` + `vpmaddwd` run as in the one-row kernel, and lane l of
// accumulator l is exactly the integer in lane l of the one-row kernel's `sumi` for that row;
// an 8×8 transpose gives each row its eight lanes, and the float steps are the one-row
// kernel's, so every result is bitwise the one-row kernel's (checked on 256 rows).
//
// Run: a cargo project with `half = "2"` and `rand = "0.9"`, this file as src/main.rs,
// `cargo run --release -- K MB` (K = 1536 or 8960, MB of weights streamed; PF / PF2 = prefetch
// distances in bytes, T0 and T2). Measured, GB/s of Q4_K bytes, one thread:
//   K=1536: in L1 one-row 20.7, eight-row 26.7 (+29 %); streamed 19.0 / 19.7, 18.4 / 20.6,
//           19.3 / 19.1 across runs;
//   K=8960: in L1 22.7 / 28.0; streamed 20.4 / 19.7.
// Prefetch at 2, 8, 16 or 32 KiB ahead, or a second T2 prefetch 16 / 32 KiB ahead: no better.
// So one core's streaming while computing (~19–21 GB/s; a plain read loop streams 33) decides
// decode here, not instructions: not integrated (it would also cost a 597 MB copy on the
// 1.5B or a prefill that reads the interleaved layout).
// Prototype: Q4_K decode, one row at a time (tokenfab's AVX2 kernel) vs 8 rows interleaved
// (4-byte groups, rows in 32-bit lanes), bitwise the same per row.
#![allow(clippy::needless_range_loop)]
use rand::{Rng, SeedableRng};
use std::arch::x86_64::*;
use std::time::Instant;

const QK: usize = 256;
static mut PF: usize = 4096;
static mut PF2: usize = 0;
const BQ4: usize = 144;
const BQ8: usize = 292;

#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
fn h2f(b: [u8; 2]) -> f32 {
    _mm_cvtss_f32(_mm_cvtph_ps(_mm_cvtsi32_si128(u16::from_le_bytes(b) as i32)))
}

#[inline]
#[target_feature(enable = "avx2,fma")]
fn hsum_f32x8(x: __m256) -> f32 {
    let hi = _mm256_extractf128_ps(x, 1);
    let s = _mm_add_ps(hi, _mm256_castps256_ps128(x));
    let s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    let s = _mm_add_ss(s, _mm_movehdup_ps(s));
    _mm_cvtss_f32(s)
}
#[inline]
#[target_feature(enable = "avx2,fma")]
fn hsum_f32x4(x: __m128) -> f32 {
    let x = _mm_add_ps(x, _mm_movehl_ps(x, x));
    _mm_cvtss_f32(_mm_add_ss(x, _mm_movehdup_ps(x)))
}

#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
fn prefetch_block(p: *const u8, size: usize) {
    let ahead = p.wrapping_add(unsafe { PF });
    for i in 0..size.div_ceil(64) {
        _mm_prefetch::<_MM_HINT_T0>(ahead.wrapping_add(64 * i) as *const i8);
    }
    let far = unsafe { PF2 };
    if far > 0 {
        let ahead = p.wrapping_add(far);
        for i in 0..size.div_ceil(64) {
            _mm_prefetch::<_MM_HINT_T2>(ahead.wrapping_add(64 * i) as *const i8);
        }
    }
}

#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn k4_head(head: *const u8) -> (__m256i, f32, f32) {
    let v = unsafe { _mm_loadu_si128(head as *const __m128i) };
    let words = _mm_shuffle_epi8(v, _mm_setr_epi8(4, 5, 6, 7, 12, 13, 14, 15, 8, 9, 10, 11, 12, 13, 14, 15));
    let high_src = _mm_shuffle_epi8(v, _mm_setr_epi8(-1, -1, -1, -1, 4, 5, 6, 7, -1, -1, -1, -1, 8, 9, 10, 11));
    let words = _mm_blend_epi32::<0b1000>(words, _mm_srli_epi32::<4>(words));
    let low = _mm_and_si128(words, _mm_setr_epi32(0x3f3f3f3f, 0x0f0f0f0f, 0x3f3f3f3f, 0x0f0f0f0f));
    let high = _mm_and_si128(_mm_srli_epi32::<2>(high_src), _mm_setr_epi32(0, 0x30303030, 0, 0x30303030));
    let d = _mm_cvtph_ps(v);
    (
        _mm256_cvtepu8_epi16(_mm_or_si128(low, high)),
        _mm_cvtss_f32(d),
        _mm_cvtss_f32(_mm_movehdup_ps(d)),
    )
}

#[inline]
#[target_feature(enable = "avx2,fma")]
fn shuffle_k4(i: usize) -> __m256i {
    let b = (2 * i) as i8;
    let lo = _mm_setr_epi8(b, b + 1, b, b + 1, b, b + 1, b, b + 1, b, b + 1, b, b + 1, b, b + 1, b, b + 1);
    _mm256_insertf128_si256::<1>(_mm256_castsi128_si256(lo), lo)
}

fn xd(x: &[u8], b: usize) -> f32 {
    f32::from_le_bytes(x[b * BQ8..b * BQ8 + 4].try_into().unwrap())
}

/// tokenfab's one-row AVX2 Q4_K kernel (q4k_n::<1>).
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn q4k_row(w: &[u8], x: &[u8]) -> f32 {
    let nb = w.len() / BQ4;
    let m4 = _mm256_set1_epi8(0xF);
    let mut acc = _mm256_setzero_ps();
    let mut acc_m = _mm_setzero_ps();
    for b in 0..nb {
        let wb = unsafe { w.as_ptr().add(b * BQ4) };
        prefetch_block(wb, BQ4);
        let (ms, dw, dmin) = unsafe { k4_head(wb) };
        let mins = _mm256_extracti128_si256::<1>(ms);
        let sc128 = _mm256_extracti128_si256::<0>(ms);
        let scales = _mm256_insertf128_si256::<1>(_mm256_castsi128_si256(sc128), sc128);
        let mut sumi = _mm256_setzero_si256();
        let xq = unsafe { x.as_ptr().add(b * BQ8 + 4) };
        for j in 0..4 {
            let scale_l = _mm256_shuffle_epi8(scales, shuffle_k4(2 * j));
            let scale_h = _mm256_shuffle_epi8(scales, shuffle_k4(2 * j + 1));
            let q4bits = unsafe { _mm256_loadu_si256(wb.add(16 + 32 * j) as *const __m256i) };
            let q4l = _mm256_and_si256(q4bits, m4);
            let q4h = _mm256_and_si256(_mm256_srli_epi16::<4>(q4bits), m4);
            let (q8l, q8h) = unsafe {
                (
                    _mm256_loadu_si256(xq.add(64 * j) as *const __m256i),
                    _mm256_loadu_si256(xq.add(64 * j + 32) as *const __m256i),
                )
            };
            let pl = _mm256_madd_epi16(scale_l, _mm256_maddubs_epi16(q4l, q8l));
            let ph = _mm256_madd_epi16(scale_h, _mm256_maddubs_epi16(q4h, q8h));
            sumi = _mm256_add_epi32(sumi, _mm256_add_epi32(pl, ph));
        }
        let d = xd(x, b);
        acc = _mm256_fmadd_ps(_mm256_set1_ps(d * dw), _mm256_cvtepi32_ps(sumi), acc);
        let q8sums = unsafe { _mm256_loadu_si256(x.as_ptr().add(b * BQ8 + 260) as *const __m256i) };
        let q8s = _mm_hadd_epi16(_mm256_extracti128_si256::<0>(q8sums), _mm256_extracti128_si256::<1>(q8sums));
        let prod = _mm_madd_epi16(mins, q8s);
        acc_m = _mm_fmadd_ps(_mm_set1_ps(-d * dmin), _mm_cvtepi32_ps(prod), acc_m);
    }
    hsum_f32x8(acc) + hsum_f32x4(acc_m)
}

fn scale_min_k4(j: usize, q: &[u8]) -> (u8, u8) {
    if j < 4 {
        (q[j] & 63, q[j + 4] & 63)
    } else {
        ((q[j + 4] & 0xF) | ((q[j - 4] >> 6) << 4), (q[j + 4] >> 4) | ((q[j] >> 6) << 4))
    }
}

/// 8-row group block: d[8] f16, dmin[8] f16 (32 B), scales [8 sub][8 rows] u8 (64 B),
/// mins as [4 pairs][8 rows][2] u8 (64 B), qs [32 groups][8 rows][4] (1024 B) = 1184 B.
const BIL: usize = 1184;

fn repack(w: &[u8], rows: usize, nb: usize) -> Vec<u8> {
    let rb = nb * BQ4;
    let mut out = vec![0u8; rows / 8 * nb * BIL];
    for g in 0..rows / 8 {
        for b in 0..nb {
            let o = &mut out[(g * nb + b) * BIL..(g * nb + b + 1) * BIL];
            for r in 0..8 {
                let src = &w[(g * 8 + r) * rb + b * BQ4..(g * 8 + r) * rb + (b + 1) * BQ4];
                o[2 * r..2 * r + 2].copy_from_slice(&src[0..2]);
                o[16 + 2 * r..16 + 2 * r + 2].copy_from_slice(&src[2..4]);
                for s in 0..8 {
                    let (sc, m) = scale_min_k4(s, &src[4..16]);
                    o[32 + s * 8 + r] = sc;
                    o[96 + (s / 2) * 16 + r * 2 + s % 2] = m;
                }
                for grp in 0..32 {
                    let dst = 160 + (grp * 8 + r) * 4;
                    o[dst..dst + 4].copy_from_slice(&src[16 + grp * 4..16 + grp * 4 + 4]);
                }
            }
        }
    }
    out
}

/// 8×8 transpose of i32 lanes: in[l][r] → out[r][l].
#[inline]
#[target_feature(enable = "avx2")]
fn transpose8(a: [__m256i; 8]) -> [__m256i; 8] {
    let t0 = _mm256_unpacklo_epi32(a[0], a[1]);
    let t1 = _mm256_unpackhi_epi32(a[0], a[1]);
    let t2 = _mm256_unpacklo_epi32(a[2], a[3]);
    let t3 = _mm256_unpackhi_epi32(a[2], a[3]);
    let t4 = _mm256_unpacklo_epi32(a[4], a[5]);
    let t5 = _mm256_unpackhi_epi32(a[4], a[5]);
    let t6 = _mm256_unpacklo_epi32(a[6], a[7]);
    let t7 = _mm256_unpackhi_epi32(a[6], a[7]);
    let u0 = _mm256_unpacklo_epi64(t0, t2);
    let u1 = _mm256_unpackhi_epi64(t0, t2);
    let u2 = _mm256_unpacklo_epi64(t1, t3);
    let u3 = _mm256_unpackhi_epi64(t1, t3);
    let u4 = _mm256_unpacklo_epi64(t4, t6);
    let u5 = _mm256_unpackhi_epi64(t4, t6);
    let u6 = _mm256_unpacklo_epi64(t5, t7);
    let u7 = _mm256_unpackhi_epi64(t5, t7);
    [
        _mm256_permute2x128_si256::<0x20>(u0, u4),
        _mm256_permute2x128_si256::<0x20>(u1, u5),
        _mm256_permute2x128_si256::<0x20>(u2, u6),
        _mm256_permute2x128_si256::<0x20>(u3, u7),
        _mm256_permute2x128_si256::<0x31>(u0, u4),
        _mm256_permute2x128_si256::<0x31>(u1, u5),
        _mm256_permute2x128_si256::<0x31>(u2, u6),
        _mm256_permute2x128_si256::<0x31>(u3, u7),
    ]
}

/// 8 interleaved rows × one activation row; each row's result bitwise `q4k_row`'s.
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn q4k_x8rows(w: &[u8], x: &[u8]) -> [f32; 8] {
    let nb = w.len() / BIL;
    let m4 = _mm256_set1_epi8(0xF);
    let mut acc = [_mm256_setzero_ps(); 8];
    let mut acc_m = [_mm_setzero_ps(); 8];
    for b in 0..nb {
        let wb = unsafe { w.as_ptr().add(b * BIL) };
        prefetch_block(wb, BIL);
        let xb = unsafe { x.as_ptr().add(b * BQ8) };
        let xq = unsafe { xb.add(4) };
        let mut a = [_mm256_setzero_si256(); 8];
        for j in 0..4 {
            // per-row scales of sub-blocks 2j, 2j+1 as (s, s) 16-bit pairs in 32-bit lanes
            let sc = |s: usize| {
                let v = _mm256_cvtepu8_epi32(unsafe { _mm_loadl_epi64(wb.add(32 + 8 * s) as *const __m128i) });
                _mm256_or_si256(v, _mm256_slli_epi32::<16>(v))
            };
            let (sl, sh) = (sc(2 * j), sc(2 * j + 1));
            for l in 0..8 {
                let q = unsafe { _mm256_loadu_si256(wb.add(160 + (8 * j + l) * 32) as *const __m256i) };
                let (yl, yh) = unsafe {
                    (
                        _mm256_set1_epi32((xq.add(64 * j + 4 * l) as *const i32).read_unaligned()),
                        _mm256_set1_epi32((xq.add(64 * j + 32 + 4 * l) as *const i32).read_unaligned()),
                    )
                };
                let lo = _mm256_and_si256(q, m4);
                let hi = _mm256_and_si256(_mm256_srli_epi16::<4>(q), m4);
                let pl = _mm256_madd_epi16(sl, _mm256_maddubs_epi16(lo, yl));
                let ph = _mm256_madd_epi16(sh, _mm256_maddubs_epi16(hi, yh));
                a[l] = _mm256_add_epi32(a[l], _mm256_add_epi32(pl, ph));
            }
        }
        let sumi = transpose8(a);
        let d = f32::from_le_bytes(unsafe { (xb as *const [u8; 4]).read_unaligned() });
        let dw = _mm256_cvtph_ps(unsafe { _mm_loadu_si128(wb as *const __m128i) });
        let dwv = _mm256_mul_ps(_mm256_set1_ps(d), dw);
        let dmv = _mm256_mul_ps(_mm256_set1_ps(-d), _mm256_cvtph_ps(unsafe { _mm_loadu_si128(wb.add(16) as *const __m128i) }));
        // activation's 32-value sums, as (q8s[2k], q8s[2k+1]) pairs
        let q8sums = unsafe { _mm256_loadu_si256(xb.add(260) as *const __m256i) };
        let q8s = _mm_hadd_epi16(_mm256_extracti128_si256::<0>(q8sums), _mm256_extracti128_si256::<1>(q8sums));
        let q8s = _mm256_broadcastsi128_si256(q8s);
        let p = [
            _mm256_shuffle_epi32::<0x00>(q8s),
            _mm256_shuffle_epi32::<0x55>(q8s),
            _mm256_shuffle_epi32::<0xAA>(q8s),
            _mm256_shuffle_epi32::<0xFF>(q8s),
        ];
        // prod[k][r] = m[r][2k]·q8s[2k] + m[r][2k+1]·q8s[2k+1]
        let mut prod = [_mm256_setzero_si256(); 4];
        for k in 0..4 {
            let m = _mm256_cvtepu8_epi16(unsafe { _mm_loadu_si128(wb.add(96 + 16 * k) as *const __m128i) });
            prod[k] = _mm256_madd_epi16(m, p[k]);
        }
        // → per row the 4 lanes (k = 0..4): rows r and r+4 share a 256-bit register
        let t0 = _mm256_unpacklo_epi32(prod[0], prod[1]);
        let t1 = _mm256_unpackhi_epi32(prod[0], prod[1]);
        let t2 = _mm256_unpacklo_epi32(prod[2], prod[3]);
        let t3 = _mm256_unpackhi_epi32(prod[2], prod[3]);
        let rr = [
            _mm256_unpacklo_epi64(t0, t2), // rows 0, 4
            _mm256_unpackhi_epi64(t0, t2), // rows 1, 5
            _mm256_unpacklo_epi64(t1, t3), // rows 2, 6
            _mm256_unpackhi_epi64(t1, t3), // rows 3, 7
        ];
        let dws: [f32; 8] = std::mem::transmute(dwv);
        let dms: [f32; 8] = std::mem::transmute(dmv);
        for r in 0..8 {
            acc[r] = _mm256_fmadd_ps(_mm256_set1_ps(dws[r]), _mm256_cvtepi32_ps(sumi[r]), acc[r]);
            let pr = if r < 4 {
                _mm256_castsi256_si128(rr[r])
            } else {
                _mm256_extracti128_si256::<1>(rr[r - 4])
            };
            acc_m[r] = _mm_fmadd_ps(_mm_set1_ps(dms[r]), _mm_cvtepi32_ps(pr), acc_m[r]);
        }
    }
    let mut out = [0f32; 8];
    for r in 0..8 {
        out[r] = hsum_f32x8(acc[r]) + hsum_f32x4(acc_m[r]);
    }
    out
}

fn main() {
    let k: usize = std::env::args().nth(1).map_or(1536, |v| v.parse().unwrap());
    let mb: usize = std::env::args().nth(2).map_or(600, |v| v.parse().unwrap());
    unsafe { PF = std::env::var("PF").map_or(4096, |v| v.parse().unwrap()) };
    unsafe { PF2 = std::env::var("PF2").map_or(0, |v| v.parse().unwrap()) };
    let nb = k / QK;
    let rb = nb * BQ4;
    let rows = (mb << 20) / rb / 8 * 8;
    let mut rng = rand::rngs::StdRng::seed_from_u64(1);
    let mut w = vec![0u8; rows * rb];
    rng.fill(&mut w[..]);
    let f16 = |v: f32| half::f16::from_f32(v).to_le_bytes();
    for blk in w.chunks_mut(BQ4) {
        blk[0..2].copy_from_slice(&f16(rng.random_range(0.001..0.02)));
        blk[2..4].copy_from_slice(&f16(rng.random_range(0.001..0.02)));
    }
    let mut x = vec![0u8; nb * BQ8];
    for b in 0..nb {
        let xb = &mut x[b * BQ8..(b + 1) * BQ8];
        xb[0..4].copy_from_slice(&0.013f32.to_le_bytes());
        let qs: Vec<i8> = (0..QK).map(|_| rng.random_range(-127..=127)).collect();
        for i in 0..QK {
            xb[4 + i] = qs[i] as u8;
        }
        for j in 0..16 {
            let s: i32 = qs[16 * j..16 * j + 16].iter().map(|&v| v as i32).sum();
            xb[260 + 2 * j..262 + 2 * j].copy_from_slice(&(s as i16).to_le_bytes());
        }
    }
    let wi = repack(&w, rows, nb);
    // bitwise check on the first 256 rows
    for g in 0..32.min(rows / 8) {
        let got = unsafe { q4k_x8rows(&wi[g * nb * BIL..(g + 1) * nb * BIL], &x) };
        for r in 0..8 {
            let row = g * 8 + r;
            let want = unsafe { q4k_row(&w[row * rb..(row + 1) * rb], &x) };
            assert_eq!(got[r].to_bits(), want.to_bits(), "row {row}: {} vs {want}", got[r]);
        }
    }
    println!("bitwise equal on {} rows; K={k}, {} MB ({} rows)", 256.min(rows), w.len() >> 20, rows);
    let l1 = 32usize; // rows kept in L1
    for rep in 0..5 {
        // in L1
        let n = (200 << 20) / (l1 * rb);
        let t = Instant::now();
        let mut s = 0f32;
        for _ in 0..n {
            for r in 0..l1 {
                s += unsafe { q4k_row(&w[r * rb..(r + 1) * rb], &x) };
            }
        }
        let a = (n * l1 * rb) as f64 / t.elapsed().as_secs_f64() / 1e9;
        let t = Instant::now();
        for _ in 0..n {
            for g in 0..l1 / 8 {
                s += unsafe { q4k_x8rows(&wi[g * nb * BIL..(g + 1) * nb * BIL], &x) }.iter().sum::<f32>();
            }
        }
        let b = (n * l1 * rb) as f64 / t.elapsed().as_secs_f64() / 1e9;
        // streamed
        let t = Instant::now();
        for r in 0..rows {
            s += unsafe { q4k_row(&w[r * rb..(r + 1) * rb], &x) };
        }
        let c = w.len() as f64 / t.elapsed().as_secs_f64() / 1e9;
        let t = Instant::now();
        for g in 0..rows / 8 {
            s += unsafe { q4k_x8rows(&wi[g * nb * BIL..(g + 1) * nb * BIL], &x) }.iter().sum::<f32>();
        }
        let d = w.len() as f64 / t.elapsed().as_secs_f64() / 1e9;
        println!("rep {rep}: in L1 one-row {a:.1} GB/s, 8-row {b:.1}; streamed one-row {c:.1}, 8-row {d:.1} (GB/s of Q4_K bytes) [{s}]");
    }
}

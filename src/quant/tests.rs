//! Kernel tests: our dequantization against candle-core's (an independent implementation of
//! ggml's formats), the scalar dots against dequantized f32 math, and the SIMD dots against
//! the scalar ones. Weights come from candle's quantizers run on random data, so the blocks
//! look like real ones.

use super::*;
use candle_core::quantized::{GgmlDType, QTensor};
use candle_core::{Device, Tensor};
use rand::{Rng, SeedableRng};

fn candle_dtype(t: GgmlType) -> GgmlDType {
    crate::quantize::convert::candle_type(t)
        .or((t == GgmlType::Q8_K).then_some(GgmlDType::Q8K))
        .expect("a type candle can quantize")
}

pub(crate) fn random_f32(n: usize, seed: u64) -> Vec<f32> {
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    (0..n)
        .map(|i| {
            // mostly small values with occasional outliers, like real activations
            let v: f32 = rng.random_range(-1.0..1.0);
            if i % 97 == 0 {
                v * 8.0
            } else {
                v
            }
        })
        .collect()
}

/// Quantizes `rows x cols` random values with candle; returns (block bytes, candle's dequant).
pub(crate) fn candle_quantized(
    t: GgmlType,
    rows: usize,
    cols: usize,
    seed: u64,
) -> (Vec<u8>, Vec<f32>) {
    let data = random_f32(rows * cols, seed);
    let x = Tensor::from_vec(data, (rows, cols), &Device::Cpu).unwrap();
    let q = QTensor::quantize(&x, candle_dtype(t)).unwrap();
    let bytes = q.data().unwrap().into_owned();
    let deq = q
        .dequantize(&Device::Cpu)
        .unwrap()
        .flatten_all()
        .unwrap()
        .to_vec1::<f32>()
        .unwrap();
    (bytes, deq)
}

fn weight_types() -> Vec<GgmlType> {
    CPU_TYPES.to_vec()
}

#[test]
fn dequantize_should_match_candle() {
    let mut types = weight_types();
    types.push(GgmlType::Q8_K);
    for t in types {
        let cols = 512;
        let (bytes, want) = candle_quantized(t, 3, cols, 1);
        assert_eq!(
            bytes.len(),
            3 * t.row_bytes(cols as u64).unwrap() as usize,
            "{t}"
        );
        let mut got = vec![0f32; 3 * cols];
        assert!(dequantize(t, &bytes, &mut got), "{t}");
        for (i, (g, w)) in got.iter().zip(&want).enumerate() {
            assert!(g == w, "{t} element {i}: ours {g}, candle {w}");
        }
    }
}

fn nmse(a: &[f32], b: &[f32]) -> f64 {
    let num: f64 = a.iter().zip(b).map(|(x, y)| ((x - y) as f64).powi(2)).sum();
    let den: f64 = b.iter().map(|y| (*y as f64).powi(2)).sum();
    num / den.max(1e-30)
}

#[test]
fn activation_quantization_round_trips() {
    let x = random_f32(1024, 7);
    for act in [
        ActType::Q8_0,
        ActType::Q8_0S,
        ActType::Q8_1,
        ActType::Q8K,
        ActType::F32,
    ] {
        let mut q = vec![0u8; act.row_bytes(x.len())];
        act.quantize(&x, &mut q);
        let as_weight = match act {
            ActType::F32 => GgmlType::F32,
            ActType::Q8K => GgmlType::Q8_K,
            _ => GgmlType::Q8_0,
        };
        let mut back = vec![0f32; x.len()];
        if act == ActType::Q8_0S {
            let blocks: &[blocks::BlockQ8_0S] = bytemuck::cast_slice(&q);
            for (b, chunk) in blocks.iter().zip(back.chunks_mut(32)) {
                let sum = b.qs.iter().map(|&v| v as i32).sum::<i32>();
                assert_eq!(b.s(), blocks::f16_at(b.d) * sum as f32);
                for (o, &v) in chunk.iter_mut().zip(&b.qs) {
                    *o = v as f32 * blocks::f16_at(b.d);
                }
            }
        } else if act == ActType::Q8_1 {
            // Q8_1 is Q8_0 with an extra sum; check the sums and the values
            let blocks: &[blocks::BlockQ8_1] = bytemuck::cast_slice(&q);
            for (b, chunk) in blocks.iter().zip(back.chunks_mut(32)) {
                let d = blocks::f16_at(b.d);
                let sum: i32 = b.qs.iter().map(|&v| v as i32).sum();
                let s = blocks::f16_at(b.s);
                assert!((s - d * sum as f32).abs() <= 1e-3 * (d * sum as f32).abs() + 1e-6);
                for (o, &v) in chunk.iter_mut().zip(&b.qs) {
                    *o = v as f32 * d;
                }
            }
        } else {
            assert!(dequantize(as_weight, &q, &mut back));
        }
        let e = nmse(&back, &x);
        // 256-element Q8_K blocks share one scale with an 8x outlier: ~3e-4 expected
        assert!(e < 1e-3, "{act:?}: nmse {e}");
        if act == ActType::Q8K {
            let blocks: &[blocks::BlockQ8K] = bytemuck::cast_slice(&q);
            for b in blocks {
                for j in 0..16 {
                    let s: i32 = b.qs[16 * j..16 * j + 16].iter().map(|&v| v as i32).sum();
                    assert_eq!(b.bsum(j), s);
                }
            }
        }
    }
}

#[test]
fn scalar_dots_should_match_dequantized_math() {
    for t in weight_types() {
        let k = 768;
        let kernel = row_kernel(t, Isa::Scalar).unwrap();
        let (w, _) = candle_quantized(t, 2, k, 3);
        let x = random_f32(k, 4);
        let mut xq = vec![0u8; kernel.act.row_bytes(k)];
        kernel.act.quantize(&x, &mut xq);
        // dequantized activations: what the integer dot actually multiplies
        let xd: Vec<f32> = match kernel.act {
            ActType::F32 => x.clone(),
            ActType::Q8K => {
                let mut v = vec![0f32; k];
                dequantize(GgmlType::Q8_K, &xq, &mut v);
                v
            }
            ActType::Q8_0 => {
                let mut v = vec![0f32; k];
                dequantize(GgmlType::Q8_0, &xq, &mut v);
                v
            }
            ActType::Q8_0S => {
                let blocks: &[blocks::BlockQ8_0S] = bytemuck::cast_slice(&xq);
                blocks
                    .iter()
                    .flat_map(|b| b.qs.map(|q| q as f32 * blocks::f16_at(b.d)))
                    .collect()
            }
            ActType::Q8_1 => {
                let blocks: &[blocks::BlockQ8_1] = bytemuck::cast_slice(&xq);
                blocks
                    .iter()
                    .flat_map(|b| b.qs.map(|q| q as f32 * blocks::f16_at(b.d)))
                    .collect()
            }
        };
        let row = t.row_bytes(k as u64).unwrap() as usize;
        for r in 0..2 {
            let wr = &w[r * row..(r + 1) * row];
            let mut wd = vec![0f32; k];
            dequantize(t, wr, &mut wd);
            let want: f64 = wd
                .iter()
                .zip(&xd)
                .map(|(a, b)| (*a as f64) * (*b as f64))
                .sum();
            let got = (kernel.dot)(wr, &xq) as f64;
            let scale: f64 = wd
                .iter()
                .zip(&xd)
                .map(|(a, b)| (*a as f64 * *b as f64).abs())
                .sum();
            // Q4_1/Q5_1 fold the min through the f16-rounded activation sum `s`
            let tol = if matches!(t, GgmlType::Q4_1 | GgmlType::Q5_1) {
                2e-3
            } else {
                1e-5
            };
            assert!(
                (got - want).abs() <= tol * scale,
                "{t} row {r}: got {got}, want {want} (scale {scale})"
            );
        }
    }
}

#[test]
fn simd_dots_should_match_scalar() {
    if Isa::detect() == Isa::Scalar {
        // a pass here would say nothing: refuse, unless the person running it accepts that
        assert!(
            cfg!(not(target_arch = "x86_64"))
                || std::env::var_os("TOKENFAB_ALLOW_NO_AVX2").is_some(),
            "no AVX2 on this x86-64 CPU: the SIMD kernels cannot be tested here \
             (TOKENFAB_ALLOW_NO_AVX2=1 skips them)"
        );
        eprintln!("SKIPPED: no SIMD kernels for this CPU; only the scalar ones were tested");
        return;
    }
    // every SIMD level this CPU runs; NEON keeps the portable kernels' float steps, so it
    // must give their results bit for bit
    let levels = Isa::ALL
        .into_iter()
        .filter(|i| *i != Isa::Scalar && i.runs_here());
    for (isa, t) in levels.flat_map(|i| weight_types().into_iter().map(move |t| (i, t))) {
        let neon = matches!(isa, Isa::Neon | Isa::NeonDot);
        let neon_types = [
            GgmlType::Q4_0,
            GgmlType::Q5_0,
            GgmlType::Q8_0,
            GgmlType::Q4_K,
            GgmlType::Q6_K,
        ];
        if neon && !neon_types.contains(&t) {
            continue;
        }
        for (k, seed) in [(256usize, 10u64), (2048, 11), (4864, 12)] {
            let scalar = row_kernel(t, Isa::Scalar).unwrap();
            let simd = row_kernel(t, isa).unwrap();
            assert!(simd.simd, "{t} has no SIMD kernel on {}", isa.name());
            let k = if t.block_size() == 256 {
                k / 256 * 256
            } else {
                k
            };
            let (w, _) = candle_quantized(t, 1, k, seed);
            let x = random_f32(k, seed + 100);
            let mut xq = vec![0u8; scalar.act.row_bytes(k)];
            scalar.act.quantize(&x, &mut xq);
            let a = (scalar.dot)(&w, &xq);
            let b = (simd.dot)(&w, &xq);
            assert!(
                (a - b).abs() <= 1e-4 * a.abs().max(1.0),
                "{t} k={k} {}: scalar {a}, simd {b}",
                isa.name()
            );
            if neon {
                assert_eq!(a.to_bits(), b.to_bits(), "{t} k={k} {}", isa.name());
            }
            if let Some(dot4) = simd.dot4 {
                // four different activation rows through the four-row kernel
                let rows: Vec<Vec<u8>> = (0..4u64)
                    .map(|i| {
                        let x = random_f32(k, seed + 200 + i);
                        let mut q = vec![0u8; scalar.act.row_bytes(k)];
                        scalar.act.quantize(&x, &mut q);
                        q
                    })
                    .collect();
                let got = dot4(&w, [&rows[0], &rows[1], &rows[2], &rows[3]]);
                for (i, row) in rows.iter().enumerate() {
                    let want = (scalar.dot)(&w, row);
                    assert!(
                        (got[i] - want).abs() <= 1e-4 * want.abs().max(1.0),
                        "{t} k={k} dot4 row {i}: {} vs scalar {want}",
                        got[i]
                    );
                    // batch invariance: a row's result must not depend on whether it is
                    // computed alone (decode) or beside three others (a batch)
                    let alone = (simd.dot)(&w, row);
                    assert_eq!(
                        got[i].to_bits(),
                        alone.to_bits(),
                        "{t} k={k} dot4 row {i}: {} vs the one-row kernel's {alone}",
                        got[i]
                    );
                }
            }
        }
    }
}

/// The AVX2 activation quantizers give the portable ones' bytes exactly, on rows with
/// outliers, ties of the largest magnitude (Q8_K takes the first one's sign) and zero blocks.
#[test]
fn simd_activation_quantizers_should_equal_portable() {
    if !Isa::detect().avx2() {
        return;
    }
    let mut x = random_f32(1024, 11);
    x[300] = 9.0;
    x[301] = -9.0; // a tie of magnitudes in one Q8_K block
    x[600..632].fill(0.0);
    x[768..1024].fill(0.0);
    x[5] = 0.5 / 127.0 * 3.0; // a value that lands on .5 steps in its block
    for act in [ActType::Q8_0, ActType::Q8_0S, ActType::Q8_1, ActType::Q8K] {
        let mut simd = vec![0u8; act.row_bytes(1024)];
        let mut portable = simd.clone();
        act.quantize(&x, &mut simd);
        act::quantize_portable(act, &x, &mut portable);
        assert!(simd == portable, "{act:?}: AVX2 and portable bytes differ");
    }
}

/// The AVX-512 row kernels are the AVX2 ones bit for bit (same integer sums per lane, same
/// float steps), so the instruction set never changes a token. Blocks are random bytes (every
/// byte pattern is a valid Q4_K/Q6_K/Q8_K block once its scale fields are finite), with the
/// extremes added: all-ones nibbles and six-bit values, the largest and most negative scales,
/// activations of −128 and 127.
#[test]
fn avx512_row_kernels_should_equal_avx2_bitwise() {
    if !Isa::Avx512.runs_here() {
        eprintln!("SKIPPED: no AVX-512 VNNI on this CPU; its row kernels were not tested");
        return;
    }
    let mut rng = rand::rngs::StdRng::seed_from_u64(5);
    let f16 = |v: f32| half::f16::from_f32(v).to_le_bytes();
    for t in [GgmlType::Q4_K, GgmlType::Q6_K] {
        let wide = row_kernel(t, Isa::Avx512).unwrap();
        let narrow = row_kernel(t, Isa::Avx2).unwrap();
        let (dot4, narrow4) = (wide.dot4.unwrap(), narrow.dot4.unwrap());
        for blocks in [1usize, 8, 19] {
            let k = 256 * blocks;
            let mut w = vec![0u8; t.row_bytes(k as u64).unwrap() as usize];
            rng.fill(&mut w[..]);
            let block = w.len() / blocks;
            for (i, b) in w.chunks_mut(block).enumerate() {
                let extreme = i == 0;
                if t == GgmlType::Q4_K {
                    b[0..2].copy_from_slice(&f16(0.013));
                    b[2..4].copy_from_slice(&f16(0.007));
                    if extreme {
                        b[4..].fill(0xFF); // scales and mins 63, every nibble 15
                    }
                } else {
                    b[208..210].copy_from_slice(&f16(0.011));
                    if extreme {
                        b[..192].fill(0xFF); // every value 63
                        for (j, s) in b[192..208].iter_mut().enumerate() {
                            *s = if j % 2 == 0 { 0x80 } else { 0x7F }; // −128 and 127
                        }
                    }
                }
            }
            let xs: Vec<Vec<u8>> = (0..4)
                .map(|r| {
                    let mut x = vec![0u8; wide.act.row_bytes(k)];
                    rng.fill(&mut x[..]);
                    for (i, b) in x.chunks_mut(292).enumerate() {
                        b[0..4].copy_from_slice(&(0.02f32 + r as f32 * 0.001).to_le_bytes());
                        if i == 0 {
                            let v = if r % 2 == 0 { 0x80 } else { 0x7F };
                            b[4..260].fill(v);
                        }
                    }
                    x
                })
                .collect();
            let x4 = [&xs[0][..], &xs[1], &xs[2], &xs[3]];
            let (got4, want4) = (dot4(&w, x4), narrow4(&w, x4));
            for r in 0..4 {
                let (got, want) = ((wide.dot)(&w, &xs[r]), (narrow.dot)(&w, &xs[r]));
                assert_eq!(
                    got.to_bits(),
                    want.to_bits(),
                    "{t} k={k} row {r}: {got} vs {want}"
                );
                assert_eq!(
                    got4[r].to_bits(),
                    want4[r].to_bits(),
                    "{t} k={k} dot4 row {r}"
                );
                assert_eq!(
                    got4[r].to_bits(),
                    got.to_bits(),
                    "{t} k={k} dot4 row {r} vs dot"
                );
            }
        }
    }
}

/// The eight-row Q4_K decode kernel over the interleaved copy (`q4k_x8`, `--repack`) against
/// exact arithmetic on the same quantized values: each row within 1e-6 of the sum of its
/// terms' magnitudes (f32 accumulation's error; a wrong scale, min or nibble is off by far
/// more), on random blocks with the extremes (all-ones scales, mins and nibbles; activations
/// of −128 and 127), rows past the last whole group left out of the copy.
/// The eight-row kernel's arithmetic for one of its rows (`w`: the row's Q4_K blocks, `x`:
/// Q8_K): per block, `S = Σ_s sc_s · Σ q·y` and `M = Σ_s m_s · (the activation's sum over
/// sub-block s)` exact, then `acc += (d_x·d)·S` and `acc_m += (−d_x·dmin)·M`, each fused.
fn eight_row_model(w: &[u8], x: &[u8]) -> f32 {
    let rows: &[blocks::BlockQ4K] = bytemuck::cast_slice(w);
    let xs: &[blocks::BlockQ8K] = bytemuck::cast_slice(x);
    let (mut acc, mut acc_m) = (0f32, 0f32);
    for (b, xb) in rows.iter().zip(xs) {
        let (mut s, mut m) = (0i32, 0i32);
        for sb in 0..8 {
            let (sc, mn) = blocks::scale_min_k4(sb, &b.scales);
            let q = &b.qs[32 * (sb / 2)..32 * (sb / 2) + 32];
            let y = &xb.qs[32 * sb..32 * sb + 32];
            let dot: i32 = q
                .iter()
                .zip(y)
                .map(|(&q, &y)| ((q >> (4 * (sb % 2))) & 0xF) as i32 * y as i32)
                .sum();
            s += sc as i32 * dot;
            m += mn as i32 * (xb.bsum(2 * sb) + xb.bsum(2 * sb + 1));
        }
        let (d, dw, dm) = (xb.d(), blocks::f16_at(b.d), blocks::f16_at(b.dmin));
        acc = (d * dw).mul_add(s as f32, acc);
        acc_m = (-d * dm).mul_add(m as f32, acc_m);
    }
    acc + acc_m
}

#[test]
fn q4k_eight_row_kernel_should_match_exact_arithmetic() {
    // AVX2 on x86 (the avx512 level hands out the same kernel), `sdot` on aarch64
    let Some(k8) = [Isa::Avx2, Isa::NeonDot]
        .into_iter()
        .filter(|i| i.runs_here())
        .find_map(|i| super::kernels::dot8_kernel(GgmlType::Q4_K, i))
    else {
        eprintln!("SKIPPED: no eight-row kernel on this CPU");
        return;
    };
    let mut rng = rand::rngs::StdRng::seed_from_u64(8);
    let f16 = |v: f32| half::f16::from_f32(v).to_le_bytes();
    for (blocks, rows) in [(1usize, 8usize), (6, 21), (19, 16)] {
        let k = 256 * blocks;
        let rb = 144 * blocks;
        let mut w = vec![0u8; rows * rb];
        rng.fill(&mut w[..]);
        for (i, b) in w.chunks_mut(144).enumerate() {
            b[0..2].copy_from_slice(&f16(0.013 + 0.001 * (i % 7) as f32));
            b[2..4].copy_from_slice(&f16(0.007));
            if i % 11 == 0 {
                b[4..].fill(0xFF); // scales and mins 63, every nibble 15
            }
        }
        let mut x = vec![0u8; ActType::Q8K.row_bytes(k)];
        rng.fill(&mut x[..]);
        for (i, b) in x.chunks_mut(292).enumerate() {
            b[0..4].copy_from_slice(&0.02f32.to_le_bytes());
            if i == 0 {
                b[4..132].fill(0x80);
                b[132..260].fill(0x7F);
            }
        }
        // the activation's values, d · q (bsums are derived from q, so set them from q)
        let xb: &mut [super::blocks::BlockQ8K] = bytemuck::cast_slice_mut(&mut x);
        let mut xv = Vec::with_capacity(k);
        for b in xb.iter_mut() {
            for j in 0..16 {
                let s: i32 = b.qs[16 * j..16 * j + 16].iter().map(|&q| q as i32).sum();
                b.bsums[j] = (s as i16).to_le_bytes();
            }
            xv.extend(b.qs.iter().map(|&q| b.d() as f64 * q as f64));
        }
        let mut copy = vec![0u8; (k8.copy_bytes)(rows, k)];
        (k8.repack)(&w, rows, k, &mut copy);
        assert_eq!(copy.len(), rows / 8 * blocks * super::q4k_x8::GROUP_BYTES);
        let gb = blocks * super::q4k_x8::GROUP_BYTES;
        let mut wd = vec![0f32; k];
        for g in 0..rows / 8 {
            let got = (k8.dot8)(&copy[g * gb..(g + 1) * gb], &x);
            for (r, y) in got.iter().enumerate() {
                let at = (8 * g + r) * rb;
                assert!(dequantize(GgmlType::Q4_K, &w[at..at + rb], &mut wd));
                let terms = wd.iter().zip(&xv).map(|(&a, &b)| a as f64 * b);
                let (exact, size) = terms.fold((0f64, 0f64), |(e, s), t| (e + t, s + t.abs()));
                let err = (*y as f64 - exact).abs();
                assert!(
                    err <= 1e-6 * size,
                    "k={k} row {}: {y} vs exact {exact} (terms {size})",
                    8 * g + r
                );
                // and bit for bit the kernel's arithmetic, which every instruction set
                // follows (so x86 and aarch64 give the same bits)
                let want = eight_row_model(&w[at..at + rb], &x);
                assert_eq!(y.to_bits(), want.to_bits(), "k={k} row {}", 8 * g + r);
                // the tiled GEMM's unpacking of the copy's row is the original row's, exactly
                let mut want = (vec![0u8; k], vec![0f32; k / 32], vec![0f32; k / 32]);
                let mut got = want.clone();
                let (v, s, m) = (&mut want.0, &mut want.1, &mut want.2);
                super::tile::unpack_row(GgmlType::Q4_K, &w[at..at + rb], v, s, m);
                let (v, s, m) = (&mut got.0, &mut got.1, &mut got.2);
                (k8.unpack)(&copy[g * gb..(g + 1) * gb], r, v, s, m);
                let bits = |x: &[f32]| x.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
                let same = got.0 == want.0 && bits(&got.1) == bits(&want.1);
                assert!(
                    same && bits(&got.2) == bits(&want.2),
                    "k={k} row {}: unpacked copy differs",
                    8 * g + r
                );
            }
        }
    }
}

/// The AVX-512 kernels of the 32-element block types (one `vpdpbusd` where AVX2 takes
/// `vpmaddubsw` + `vpmaddwd`) are the AVX2 ones bit for bit, at the extremes too: Q8_0
/// weights of −128 and 127, every nibble and fifth bit set, activations of ±127; row lengths
/// that leave the chains a remainder.
#[test]
fn avx512_small_block_kernels_should_equal_avx2_bitwise() {
    if !Isa::Avx512.runs_here() {
        eprintln!("SKIPPED: no AVX-512 VNNI on this CPU; its row kernels were not tested");
        return;
    }
    let mut rng = rand::rngs::StdRng::seed_from_u64(6);
    let d = half::f16::from_f32(0.013).to_le_bytes();
    for t in [GgmlType::Q4_0, GgmlType::Q5_0, GgmlType::Q8_0] {
        let wide = row_kernel(t, Isa::Avx512).unwrap();
        let narrow = row_kernel(t, Isa::Avx2).unwrap();
        let (dot4, narrow4) = (wide.dot4.unwrap(), narrow.dot4.unwrap());
        for blocks in [1usize, 7, 64, 67] {
            let k = 32 * blocks;
            let mut w = vec![0u8; t.row_bytes(k as u64).unwrap() as usize];
            rng.fill(&mut w[..]);
            let block = w.len() / blocks;
            for (i, b) in w.chunks_mut(block).enumerate() {
                b[0..2].copy_from_slice(&d);
                if i == 0 && t == GgmlType::Q8_0 {
                    for (j, q) in b[2..].iter_mut().enumerate() {
                        *q = if j % 3 == 0 { 0x80 } else { 0x7F };
                    }
                } else if i == 0 {
                    b[2..].fill(0xFF);
                }
            }
            let xs: Vec<Vec<u8>> = (0..4)
                .map(|r| {
                    let mut f = random_f32(k, 40 + r as u64);
                    // one block at full scale of each sign: activations ±127
                    let sign = if r % 2 == 0 { -1.0 } else { 1.0 };
                    f[..32].fill(sign);
                    let mut x = vec![0u8; wide.act.row_bytes(k)];
                    wide.act.quantize(&f, &mut x);
                    x
                })
                .collect();
            let x4 = [&xs[0][..], &xs[1], &xs[2], &xs[3]];
            let (got4, want4) = (dot4(&w, x4), narrow4(&w, x4));
            for r in 0..4 {
                let (got, want) = ((wide.dot)(&w, &xs[r]), (narrow.dot)(&w, &xs[r]));
                assert!(got.is_finite(), "{t} k={k} row {r}: {got}");
                assert_eq!(got.to_bits(), want.to_bits(), "{t} k={k} row {r}");
                assert_eq!(got4[r].to_bits(), want4[r].to_bits(), "{t} k={k} dot4 {r}");
            }
        }
    }
}

/// The vector unpacking of a Q4_K/Q5_K header (decode's hot path) against the portable
/// `scale_min_k4` and an f16 conversion, on every value of each scale byte position and on
/// random headers; a wrong shift or mask in one of its four words fails one of the lanes.
#[cfg(target_arch = "x86_64")]
#[test]
fn k4_header_unpacking_should_match_portable() {
    if !Isa::Avx2.runs_here() {
        eprintln!("SKIPPED: no AVX2 on this CPU; k4_head was not tested");
        return;
    }
    let mut rng = rand::rngs::StdRng::seed_from_u64(7);
    let mut heads: Vec<[u8; 16]> = (0..4096).map(|_| rng.random()).collect();
    for pos in 4..16 {
        for v in 0..=255u8 {
            let mut h: [u8; 16] = rng.random();
            h[pos] = v;
            heads.push(h);
        }
    }
    for h in heads {
        // SAFETY: `h` is 16 readable bytes; AVX2/FMA/F16C checked above.
        let (ms, d, dmin) = unsafe { super::dot_avx2::k4_head(h.as_ptr()) };
        let mut lanes = [0u16; 16];
        // SAFETY: 32 writable bytes.
        unsafe {
            std::arch::x86_64::_mm256_storeu_si256(lanes.as_mut_ptr() as *mut _, ms);
        }
        let scales: &[u8; 12] = h[4..].try_into().unwrap();
        for j in 0..8 {
            let (sc, m) = blocks::scale_min_k4(j, scales);
            assert_eq!(
                (lanes[j], lanes[8 + j]),
                (sc as u16, m as u16),
                "{h:?} j={j}"
            );
        }
        let f = |b: &[u8]| half::f16::from_le_bytes([b[0], b[1]]).to_f32();
        assert_eq!(d.to_bits(), f(&h[0..2]).to_bits(), "{h:?}");
        assert_eq!(dmin.to_bits(), f(&h[2..4]).to_bits(), "{h:?}");
    }
}

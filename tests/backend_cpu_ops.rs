//! The CPU backend's own ways of computing products, against the ops they stand in for: the
//! fused one-token projections (bitwise the unfused ops) and the interleaved copies of
//! `--repack` (to rounding, batch-invariant, and bitwise the plain path through the tiled
//! GEMM), on every x86 ISA level this machine has.

mod common;
use common::ops::*;

use tokenfab::backend::cpu::CpuBackend;
use tokenfab::backend::{Glu, Ops, PreNorm, Weight};
use tokenfab::gguf::GgmlType;

/// The CPU's fused one-token projections (Q, K and V in one parallel pass; gate, up and the
/// GLU in another) give the bits of the ops they replace, on every ISA level: matrices of
/// mixed types (Q4_K and Q6_K share an activation format, Q8_0 needs its own) and row counts
/// that split unevenly across tasks.
#[test]
fn cpu_fused_decode_projections_are_bitwise_the_unfused_ops() {
    let cols = 512;
    let specs = [
        ("wq", GgmlType::Q4_K, 70, cols),
        ("wk", GgmlType::Q6_K, 33, cols),
        ("wv", GgmlType::Q8_0, 32, cols),
        ("gate", GgmlType::Q4_K, 300, cols),
        ("up", GgmlType::Q5_0, 300, cols),
        ("norm", GgmlType::F32, 1, cols),
    ];
    let (f, _) = fixture(&specs);
    for (name, mut ops) in backends() {
        if !name.starts_with("cpu") {
            continue;
        }
        let w: Vec<Weight> = specs.iter().map(|s| upload(&mut ops, &f, s.0)).collect();
        let x = put(&mut ops, &rand_vec(cols, 5, 2.0));
        let normed = ops.alloc(cols).unwrap();
        let norm = PreNorm {
            weight: &w[5],
            eps: 1e-6,
            out: normed,
        };
        // Q, K, V: fused against three matmuls of the normed input
        let fused: Vec<_> = (0..3).map(|i| ops.alloc(w[i].rows).unwrap()).collect();
        ops.matmul_qkv(
            Some(norm),
            [&w[0], &w[1], &w[2]],
            x,
            [fused[0], fused[1], fused[2]],
            1,
        )
        .unwrap();
        for i in 0..3 {
            let alone = ops.alloc(w[i].rows).unwrap();
            ops.matmul(&w[i], normed, alone, 1).unwrap();
            let (a, b) = (
                read(&mut ops, fused[i], w[i].rows),
                read(&mut ops, alone, w[i].rows),
            );
            assert!(
                a.iter().zip(&b).all(|(a, b)| a.to_bits() == b.to_bits()),
                "{name}: fused {} differs from its matmul",
                specs[i].0
            );
        }
        // gate, up and the GLU: fused against two matmuls and `glu`
        let rows = w[3].rows;
        for kind in [Glu::Silu, Glu::Gelu] {
            let (out, tmp) = (ops.alloc(rows).unwrap(), ops.alloc(rows).unwrap());
            ops.matmul_glu(kind, Some(norm), &w[3], &w[4], x, tmp, out, 1)
                .unwrap();
            let (g, u) = (ops.alloc(rows).unwrap(), ops.alloc(rows).unwrap());
            ops.matmul(&w[3], normed, g, 1).unwrap();
            ops.matmul(&w[4], normed, u, 1).unwrap();
            ops.glu(kind, g, u, rows).unwrap();
            let (a, b) = (read(&mut ops, out, rows), read(&mut ops, g, rows));
            assert!(
                a.iter().zip(&b).all(|(a, b)| a.to_bits() == b.to_bits()),
                "{name}: fused {kind:?} GLU differs from matmul, matmul, glu"
            );
        }
    }
}

/// With `repack` (`--repack`), products read the Q4_K matrices' interleaved copies eight rows
/// at a time — alone, as Q/K/V and as gate/up — and agree with the row kernels to rounding
/// (the copy's kernel reduces each block to one integer per row first: the last bits differ);
/// and a repacked backend is batch-invariant: a token's products are the same bits alone and in
/// a batch of 5 or 20 (with `batch_invariant`, as `serve` and speculative decoding load it);
/// the tiled GEMM, which reads the copy too, gives the plain backend's bits. Row counts end in
/// a partial group (70, 33, 300) and tasks start mid-matrix.
#[test]
fn cpu_repacked_products_match_the_row_kernels_and_are_batch_invariant() {
    let cols = 512;
    let specs = [
        ("wq", GgmlType::Q4_K, 70, cols),
        ("wk", GgmlType::Q4_K, 33, cols),
        ("wv", GgmlType::Q6_K, 32, cols),
        ("gate", GgmlType::Q4_K, 300, cols),
        ("up", GgmlType::Q4_K, 300, cols),
    ];
    let (f, _) = fixture(&specs);
    let xs = rand_vec(20 * cols, 6, 2.0);
    for (name, mut plain) in backends() {
        if !name.starts_with("cpu avx") {
            continue;
        }
        use tokenfab::quant::Isa;
        let isa = match name {
            "cpu avx2" => Isa::Avx2,
            "cpu avx2+vnni" => Isa::Avx2Vnni,
            _ => Isa::Avx512,
        };
        let mut packed = Ops::new(Box::new(CpuBackend::with_isa(2, isa).unwrap()));
        packed.backend_mut().set_repack(true);
        packed.backend_mut().set_batch_invariant(true);
        // one token through every product: alone, Q/K/V, gate/up + GLU
        let run = |ops: &mut Ops, x: &[f32]| -> Vec<Vec<f32>> {
            let w: Vec<Weight> = specs.iter().map(|s| upload(ops, &f, s.0)).collect();
            let x = put(ops, x);
            let mut got = Vec::new();
            for wi in &w {
                let o = ops.alloc(wi.rows).unwrap();
                ops.matmul(wi, x, o, 1).unwrap();
                got.push(read(ops, o, wi.rows));
            }
            let qkv: Vec<_> = (0..3).map(|i| ops.alloc(w[i].rows).unwrap()).collect();
            ops.matmul_qkv(None, [&w[0], &w[1], &w[2]], x, [qkv[0], qkv[1], qkv[2]], 1)
                .unwrap();
            for (i, b) in qkv.into_iter().enumerate() {
                got.push(read(ops, b, w[i].rows));
            }
            let (out, tmp) = (ops.alloc(300).unwrap(), ops.alloc(300).unwrap());
            ops.matmul_glu(Glu::Silu, None, &w[3], &w[4], x, tmp, out, 1)
                .unwrap();
            got.push(read(ops, out, 300));
            got
        };
        let (want, got) = (run(&mut plain, &xs[..cols]), run(&mut packed, &xs[..cols]));
        // the copies are what the load's memory check counts beforehand
        let counted: u64 = specs
            .iter()
            .map(|s| f.require_tensor(s.0).unwrap())
            .map(|info| packed.backend().upload_extra_bytes(info))
            .sum();
        let copied = packed.backend().weight_residence().unwrap().copied;
        assert_eq!(counted, copied, "{name}: counted vs copied");
        assert_eq!(counted, (70 / 8 + 33 / 8 + 2 * (300 / 8)) * 2 * 1184);
        assert!(packed.name().contains("repacked"), "{}", packed.name());
        assert!(!plain.name().contains("repacked"), "{}", plain.name());
        for (i, (a, b)) in got.iter().zip(&want).enumerate() {
            let b64: Vec<f64> = b.iter().map(|&v| v as f64).collect();
            let e = nmse(a, &b64);
            assert!(e < 1e-10, "{name}: product {i} with repack: nmse {e}");
            // Q6_K (wv: products 2 and 7) has no copy: its bits are the row kernel's
            if i == 2 || i == 7 {
                assert!(a == b, "{name}: product {i} changed without a copy");
            }
        }
        // prefill through the tiled GEMM (20 tokens, not batch-invariant) unpacks the copy's
        // rows instead of the file's: the same values, so the bits of the plain backend's
        let mut tiled = Ops::new(Box::new(CpuBackend::with_isa(2, isa).unwrap()));
        tiled.backend_mut().set_repack(true);
        for s in specs.iter().filter(|s| s.1 == GgmlType::Q4_K) {
            let prefill = |ops: &mut Ops| {
                let w = upload(ops, &f, s.0);
                let x = put(ops, &xs);
                let o = ops.alloc(20 * w.rows).unwrap();
                ops.matmul(&w, x, o, 20).unwrap();
                read(ops, o, 20 * w.rows)
            };
            assert!(
                prefill(&mut tiled) == prefill(&mut plain),
                "{name}: {}: tiled prefill from the copy differs",
                s.0
            );
        }
        // batch invariance: each token of a batch of 5 (row kernels) and of 20 (with
        // batch_invariant, the row kernels too) as the same bits as alone
        for (wi, s) in specs
            .iter()
            .enumerate()
            .filter(|(_, s)| s.1 == GgmlType::Q4_K)
        {
            let w = upload(&mut packed, &f, s.0);
            let x = put(&mut packed, &xs);
            for n in [5usize, 20] {
                let o = packed.alloc(n * w.rows).unwrap();
                packed.matmul(&w, x, o, n).unwrap();
                let batch = read(&mut packed, o, n * w.rows);
                for t in 0..n {
                    let xt = put(&mut packed, &xs[t * cols..(t + 1) * cols]);
                    let one = packed.alloc(w.rows).unwrap();
                    packed.matmul(&w, xt, one, 1).unwrap();
                    let alone = read(&mut packed, one, w.rows);
                    assert!(
                        batch[t * w.rows..(t + 1) * w.rows] == alone[..],
                        "{name}: {} token {t} of {n} differs from alone (matrix {wi})",
                        s.0
                    );
                }
            }
        }
    }
}

/// `repack` copies every Q4_K matrix a product reads and nothing else: a token table only
/// looked up (the model has its own output matrix) keeps no copy, a tied one (the output
/// product reads it) does. A synthetic one-layer Qwen2, Q4_K throughout.
#[test]
fn repack_copies_what_products_read_and_not_a_lookup_table() {
    use std::sync::Arc;
    use tokenfab::gguf::GgufFile;
    use tokenfab::model::{LoadOptions, Model};
    use tokenfab::quant::{dot8_kernel, Isa};
    use tokenfab::synth;
    let Some(k8) = dot8_kernel(GgmlType::Q4_K, Isa::detect()) else {
        eprintln!("SKIPPED: no eight-row kernel on this CPU; nothing is copied");
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    for tied in [false, true] {
        let mut p = *synth::preset("qwen2.5-0.5b").unwrap();
        (p.n_embd, p.n_layer, p.n_head, p.head_dim, p.n_ff) = (256, 1, 4, 64, 512);
        (p.n_vocab, p.tied) = (1000, tied);
        let path = dir.path().join(format!("tied-{tied}.gguf"));
        synth::write(&p, GgmlType::Q4_K, &path, 5, &mut |_, _| {}).unwrap();
        let f = Arc::new(GgufFile::open(&path).unwrap());
        let copied = |repack: bool| {
            let load = LoadOptions {
                ctx: 16,
                repack,
                ..Default::default()
            };
            let backend = Box::new(CpuBackend::new(1).unwrap());
            let mut m = Model::load(Arc::clone(&f), backend, &load).unwrap();
            m.ops().backend().weight_residence().unwrap().copied
        };
        // the copies: every Q4_K matrix but a lookup-only table
        let want: u64 = f
            .tensors()
            .iter()
            .filter(|t| t.dtype == GgmlType::Q4_K && t.n_rows() >= 8)
            .filter(|t| tied || t.name != "token_embd.weight")
            .map(|t| (k8.copy_bytes)(t.n_rows() as usize, t.row_len() as usize) as u64)
            .sum();
        let table = f.require_tensor("token_embd.weight").unwrap();
        assert_eq!(table.dtype, GgmlType::Q4_K);
        assert_eq!(
            copied(true) - copied(false),
            want,
            "tied {tied}: copies made"
        );
    }
}

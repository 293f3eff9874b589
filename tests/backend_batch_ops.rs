//! RoPE, KV-cache writes and attention for several sequences in one batch, on every backend:
//! each sequence's rows of the batched buffers (`row0`) against its own caches give what the
//! sequence gets alone.

mod common;
use common::ops::*;
use tokenfab::backend::RopeLayout;

/// Several sequences at different positions in one batch: each one's rows of the batched
/// q/k/v buffers are rotated, stored into its own caches and attend over them (`row0` on
/// rope, store_kv, rope_store_kv and attention) exactly as when the sequence runs alone.
#[test]
fn ops_should_run_several_sequences_in_one_batch() {
    // (tokens, first position) of each sequence: a prompt chunk, a decode step deep in its
    // context, a second chunk
    let seqs = [(3usize, 0usize), (1, 20), (2, 7)];
    let (hd, nh, nkv) = (16, 4, 2);
    let (qd, kvd) = (nh * hd, nkv * hd);
    let ctx = 24;
    let n_all: usize = seqs.iter().map(|s| s.0).sum();
    for (name, mut ops) in backends() {
        eprintln!("  backend {name}");
        for layout in [RopeLayout::Neox, RopeLayout::Norm] {
            let rope = ops
                .rope_table(layout, hd, hd, rope_spec(hd, 10000.0, 1.0).table(64))
                .unwrap();
            let q = rand_vec(n_all * qd, 71, 1.0);
            let k = rand_vec(n_all * kvd, 72, 1.0);
            let v = rand_vec(n_all * kvd, 73, 1.0);
            // each sequence's earlier positions, already in its cache
            let mut caches = Vec::new();
            for (s, &(_, pos0)) in seqs.iter().enumerate() {
                let kc = ops.alloc_kv(ctx * kvd, false).unwrap();
                let vc = ops.alloc_kv(ctx * kvd, false).unwrap();
                if pos0 > 0 {
                    let past = put(&mut ops, &rand_vec(pos0 * kvd, 80 + s as u64, 1.0));
                    ops.store_kv(past, 0, kc, pos0, kvd, 0).unwrap();
                    ops.store_kv(past, 0, vc, pos0, kvd, 0).unwrap();
                }
                caches.push((kc, vc));
            }
            // alone: each sequence in buffers of its own, at row 0, caches copied
            let mut alone = Vec::new();
            let mut row0 = 0;
            for (s, &(n, pos0)) in seqs.iter().enumerate() {
                let rows = |x: &[f32], w: usize| x[row0 * w..(row0 + n) * w].to_vec();
                let (qb, kb, vb) = (
                    put(&mut ops, &rows(&q, qd)),
                    put(&mut ops, &rows(&k, kvd)),
                    put(&mut ops, &rows(&v, kvd)),
                );
                let kc = ops.alloc_kv(ctx * kvd, false).unwrap();
                let vc = ops.alloc_kv(ctx * kvd, false).unwrap();
                if pos0 > 0 {
                    let past = put(&mut ops, &rand_vec(pos0 * kvd, 80 + s as u64, 1.0));
                    ops.store_kv(past, 0, kc, pos0, kvd, 0).unwrap();
                    ops.store_kv(past, 0, vc, pos0, kvd, 0).unwrap();
                }
                let p = rope_kv(0, n, (nh, nkv), pos0, (kc, vc));
                ops.rope_store_kv(qb, kb, vb, &rope, &p).unwrap();
                let att = ops.alloc(n * qd).unwrap();
                let a = attn(0, n, (nh, nkv, hd), pos0, 0.25);
                ops.attention(qb, kc, vc, att, &a).unwrap();
                alone.extend(read(&mut ops, att, n * qd));
                row0 += n;
            }
            // together: one buffer for the batch, each sequence at its rows; fused on the
            // first pass, the unfused ops on the second
            for fused in [true, false] {
                let (qb, kb, vb) = (put(&mut ops, &q), put(&mut ops, &k), put(&mut ops, &v));
                let att = guarded(&mut ops, n_all * qd);
                let mut row0 = 0;
                for (s, &(n, pos0)) in seqs.iter().enumerate() {
                    let (kc, vc) = caches[s];
                    if fused {
                        let p = rope_kv(row0, n, (nh, nkv), pos0, (kc, vc));
                        ops.rope_store_kv(qb, kb, vb, &rope, &p).unwrap();
                    } else {
                        ops.rope(qb, &rope, row0, n, nh, pos0).unwrap();
                        ops.rope(kb, &rope, row0, n, nkv, pos0).unwrap();
                        ops.store_kv(kb, row0, kc, n, kvd, pos0).unwrap();
                        ops.store_kv(vb, row0, vc, n, kvd, pos0).unwrap();
                    }
                    let a = attn(row0, n, (nh, nkv, hd), pos0, 0.25);
                    ops.attention(qb, kc, vc, att, &a).unwrap();
                    row0 += n;
                }
                check_guard(
                    &mut ops,
                    att,
                    n_all * qd,
                    &format!("{name} batch attention"),
                );
                let want: Vec<f64> = alone.iter().map(|&x| x as f64).collect();
                let e = nmse(&read(&mut ops, att, n_all * qd), &want);
                assert!(
                    e < 1e-12,
                    "{name} {layout:?} fused {fused}: batch vs alone nmse {e}"
                );
            }
            // rows past a buffer's end are refused
            let small = ops.alloc(2 * qd).unwrap();
            assert!(ops.rope(small, &rope, 1, 2, nh, 0).is_err(), "{name}");
        }
    }
}

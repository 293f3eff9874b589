//! RoPE and attention of every backend against plain f64 references on random inputs: both
//! RoPE layouts and partial rotary, attention over the f16-rounded KV cache (grouped heads,
//! windows, soft caps) and over a sliding-window ring. Split from `tests/backend_ops.rs`
//! (matmuls and row ops), which it shares `tests/common/ops.rs` with.

mod common;
use common::ops::*;

use tokenfab::backend::{AttnParams, Buf, KvBuf, Ops, RopeLayout};

/// RoPE by hand in f64, as ggml's `ggml_compute_forward_rope` defines it: pairs `(i, i +
/// n_rot/2)` (NEOX) or `(2i, 2i+1)` (NORM) for `i < n_rot/2`, turned by `pos · base^(-2i/n_rot)`;
/// the dimensions past `n_rot` (partial rotary, Phi-4-mini) unchanged.
#[test]
fn rope_should_rotate_neox_and_adjacent_pairs() {
    for (name, mut ops) in backends() {
        eprintln!("  backend {name}");
        for (layout, n_rot) in [
            (RopeLayout::Neox, 8),
            (RopeLayout::Norm, 8),
            (RopeLayout::Neox, 6),
            (RopeLayout::Norm, 4),
        ] {
            let (hd, heads, n, pos0) = (8, 3, 4, 5);
            let mut spec = rope_spec(hd, 10000.0, 0.5);
            spec.n_rot = n_rot;
            let rope = ops.rope_table(layout, hd, n_rot, spec.table(64)).unwrap();
            let x = rand_vec(n * heads * hd, 11, 1.0);
            let b = put(&mut ops, &x);
            ops.rope(b, &rope, 0, n, heads, pos0).unwrap();
            let mut want: Vec<f64> = x.iter().map(|&v| v as f64).collect();
            for t in 0..n {
                for h in 0..heads {
                    let base = (t * heads + h) * hd;
                    for i in 0..n_rot / 2 {
                        let theta =
                            0.5 * (pos0 + t) as f64 * 10000f64.powf(-2.0 * i as f64 / n_rot as f64);
                        let (a, b) = match layout {
                            RopeLayout::Neox => (base + i, base + i + n_rot / 2),
                            RopeLayout::Norm => (base + 2 * i, base + 2 * i + 1),
                        };
                        let (x0, x1) = (x[a] as f64, x[b] as f64);
                        want[a] = x0 * theta.cos() - x1 * theta.sin();
                        want[b] = x0 * theta.sin() + x1 * theta.cos();
                    }
                }
            }
            assert!(
                nmse(&read(&mut ops, b, x.len()), &want) < 1e-10,
                "{name} rope {layout:?} n_rot {n_rot}"
            );
            assert!(
                ops.rope(b, &rope, 0, n, heads, 62).is_err(),
                "past the table must be an error"
            );
        }
    }
}

/// Reference attention over f16-rounded K/V (what the cache holds).
fn attention_ref(q: &[f32], k: &[f32], v: &[f32], p: &AttnParams) -> Vec<f64> {
    let r16 = |x: f32| half::f16::from_f32(x).to_f32() as f64;
    let (hd, kvd, qd) = (p.head_dim, p.n_head_kv * p.head_dim, p.n_head * p.head_dim);
    let mut out = vec![0f64; p.n_tokens * qd];
    for t in 0..p.n_tokens {
        let pos = p.pos0 + t;
        let lo = p.window.map_or(0, |w| (pos + 1).saturating_sub(w));
        for h in 0..p.n_head {
            let g = h / (p.n_head / p.n_head_kv);
            let s: Vec<f64> = (lo..=pos)
                .map(|j| {
                    (0..hd)
                        .map(|i| q[t * qd + h * hd + i] as f64 * r16(k[j * kvd + g * hd + i]))
                        .sum::<f64>()
                        * p.scale as f64
                })
                .map(|x| match p.softcap {
                    Some(c) => c as f64 * (x / c as f64).tanh(),
                    None => x,
                })
                .collect();
            let m = s.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
            let e: Vec<f64> = s.iter().map(|x| (x - m).exp()).collect();
            let z: f64 = e.iter().sum();
            for (jj, j) in (lo..=pos).enumerate() {
                for i in 0..hd {
                    out[t * qd + h * hd + i] += e[jj] / z * r16(v[j * kvd + g * hd + i]);
                }
            }
        }
    }
    out
}

#[test]
fn attention_should_match_reference() {
    // (n_tokens, pos0, heads, kv heads, head_dim, window, soft cap): prefill, decode at long
    // context (split-K across threads), GQA, sliding window, Gemma 2's soft-capped scores
    let cases = [
        (5, 0, 4, 1, 16, None, None),
        (1, 300, 4, 1, 16, None, None),
        (1, 300, 4, 2, 16, Some(64), None),
        (6, 90, 6, 2, 8, Some(32), None),
        (3, 10, 2, 2, 32, Some(4), None),
        // Llama's head size (wgpu: two key groups per dimension) and one that does not
        // divide the workgroup (96: 64 invocations idle in the weighted sum)
        (1, 300, 4, 2, 128, None, None),
        (2, 40, 2, 1, 96, None, None),
        (4, 20, 4, 2, 16, Some(8), Some(1.5)),
        (1, 300, 4, 2, 16, None, Some(2.0)),
    ];
    for (name, mut ops) in backends() {
        eprintln!("  backend {name}");
        for (i, &(n, pos0, nh, nkv, hd, window, softcap)) in cases.iter().enumerate() {
            let p = AttnParams {
                window,
                softcap,
                ..attn(0, n, (nh, nkv, hd), pos0, 0.3)
            };
            let ctx = pos0 + n + 2;
            let kvd = nkv * hd;
            let k_all = rand_vec(ctx * kvd, 20 + i as u64, 2.0);
            let v_all = rand_vec(ctx * kvd, 40 + i as u64, 1.0);
            let q = rand_vec(n * nh * hd, 60 + i as u64, 2.0);
            let kc = ops.alloc_kv(ctx * kvd, false).unwrap();
            let vc = ops.alloc_kv(ctx * kvd, false).unwrap();
            // earlier positions, then this call's tokens, as a model would store them
            let kb = put(&mut ops, &k_all[..(pos0 + n) * kvd]);
            let vb = put(&mut ops, &v_all[..(pos0 + n) * kvd]);
            ops.store_kv(kb, 0, kc, pos0 + n, kvd, 0).unwrap();
            ops.store_kv(vb, 0, vc, pos0 + n, kvd, 0).unwrap();
            let what = format!("{name} attention case {i}");
            check_attention(&mut ops, &what, &q, (kc, vc), (&k_all, &v_all), &p);
        }
    }
}

/// `ops.attention` of `q` over the caches `kv` matches [`attention_ref`] over the whole
/// sequence's keys and values `all` (by position), and writes nothing past its output.
fn check_attention(
    ops: &mut Ops,
    what: &str,
    q: &[f32],
    (kc, vc): (KvBuf, KvBuf),
    (k_all, v_all): (&[f32], &[f32]),
    p: &AttnParams,
) -> (Buf, Buf) {
    let len = p.n_tokens * p.n_head * p.head_dim;
    let qb = put(ops, q);
    let out = guarded(ops, len);
    ops.attention(qb, kc, vc, out, p).unwrap();
    check_guard(ops, out, len, what);
    let want = attention_ref(q, k_all, v_all, p);
    let e = nmse(&read(ops, out, len), &want);
    // the reference rounds K/V to f16, as an f16 cache does
    let limit = if ops.backend_mut().kv_elem_bytes() == 2 {
        1e-10
    } else {
        1e-5
    };
    assert!(e < limit, "{what} {p:?}: nmse {e}");
    (qb, out)
}

/// A sliding-window layer's ring cache (`window + batch` rows, position `p` at row `p % rows`):
/// positions written batch by batch past the end of the buffer wrap around, and attention at
/// the end sees exactly the window a whole-context cache would give. The checked batch is
/// written by `store_kv` and, a second time, by `rope_store_kv` (with an identity RoPE table:
/// wgpu's fused write has its own ring indexing). Backends that index rows by position refuse
/// to make a ring; `Ops` refuses a ring too short for a batch's windows.
#[test]
fn attention_over_a_ring_should_match_reference() {
    // (batch, window, positions written before the checked batch, heads, kv heads, head_dim)
    let cases = [
        (4, 8, 37, 4, 2, 16),
        (1, 16, 100, 4, 1, 16),
        (7, 5, 23, 2, 2, 8),
        (3, 32, 29, 4, 2, 16), // not yet wrapped
    ];
    for (name, mut ops) in backends() {
        if !ops.kv_ring() {
            assert!(ops.alloc_kv(64, true).is_err(), "{name} made a ring");
            continue;
        }
        eprintln!("  backend {name}");
        for ((i, &(n, w, pos0, nh, nkv, hd)), fused) in cases
            .iter()
            .enumerate()
            .flat_map(|c| [(c, false), (c, true)])
        {
            let kvd = nkv * hd;
            let rows = w + n;
            let total = pos0 + n;
            let k_all = rand_vec(total * kvd, 70 + i as u64, 2.0);
            let v_all = rand_vec(total * kvd, 80 + i as u64, 1.0);
            let q = rand_vec(n * nh * hd, 90 + i as u64, 2.0);
            let kc = ops.alloc_kv(rows * kvd, true).unwrap();
            let vc = ops.alloc_kv(rows * kvd, true).unwrap();
            // write the earlier positions batch by batch, as a model would, then the batch
            let kb = put(&mut ops, &k_all);
            let vb = put(&mut ops, &v_all);
            let mut p0 = 0;
            while p0 < pos0 {
                let m = n.min(pos0 - p0);
                ops.store_kv(kb, p0, kc, m, kvd, p0).unwrap();
                ops.store_kv(vb, p0, vc, m, kvd, p0).unwrap();
                p0 += m;
            }
            if fused {
                let identity = [1.0f32, 0.0].repeat(total * hd / 2);
                let rope = ops.rope_table(RopeLayout::Neox, hd, hd, identity).unwrap();
                let qb = put(&mut ops, &q);
                let kn = put(&mut ops, &k_all[pos0 * kvd..]);
                let vn = put(&mut ops, &v_all[pos0 * kvd..]);
                let rk = rope_kv(0, n, (nh, nkv), pos0, (kc, vc));
                ops.rope_store_kv(qb, kn, vn, &rope, &rk).unwrap();
            } else {
                ops.store_kv(kb, pos0, kc, n, kvd, pos0).unwrap();
                ops.store_kv(vb, pos0, vc, n, kvd, pos0).unwrap();
            }
            let p = AttnParams {
                window: Some(w),
                ..attn(0, n, (nh, nkv, hd), pos0, 0.3)
            };
            let what = format!("{name} ring case {i} (fused write: {fused})");
            let (qb, out) = check_attention(&mut ops, &what, &q, (kc, vc), (&k_all, &v_all), &p);
            // the same batch with a window one wider than the ring can hold for it
            let wide = AttnParams {
                window: Some(rows - n + 2),
                ..p
            };
            if pos0 + n > rows {
                assert!(
                    ops.attention(qb, kc, vc, out, &wide).is_err(),
                    "{name}: a window the ring cannot hold must be refused"
                );
            }
            // more rows than the ring has in one store
            assert!(ops.store_kv(kb, 0, kc, rows + 1, kvd, pos0).is_err());
        }
    }
}

//! Causal attention over the f16 KV cache on the CPU: grouped KV heads, optional sliding
//! window, numerically stable softmax in f32.
//!
//! Work is split into units of (query token, KV head, key chunk). During decode there is one
//! query token and often a single KV head, so keys are split into chunks across threads and
//! the partial softmax results (max, sum, weighted values) are merged, as in flash-decoding.

use super::vec::{axpy_f16_heads, dot_f16_heads, exp_sub_sum};
use crate::backend::{kv_row as kv_row_of, AttnParams};
use half::f16;
use rayon::prelude::*;

/// Keys per chunk below which splitting is not worth it.
const MIN_CHUNK: usize = 64;

pub fn attention(
    pool: &rayon::ThreadPool,
    q: &[f32],
    k: &[f16],
    v: &[f16],
    out: &mut [f32],
    p: &AttnParams,
    partials: &mut Vec<f32>,
) {
    let hd = p.head_dim;
    let n_rep = p.n_head / p.n_head_kv;
    let kv_row = p.n_head_kv * hd;
    let q_row = p.n_head * hd;
    // positions wrap around the cache's rows in a ring (the identity in a linear cache)
    let rows = k.len().min(v.len()) / kv_row;
    let units = p.n_tokens * p.n_head_kv;
    // this sequence's rows of the batch
    let q = &q[p.row0 * q_row..];
    let out = &mut out[p.row0 * q_row..];
    let threads = pool.current_num_threads().max(1);
    // longest key range any query sees
    let max_keys = key_range(p, p.n_tokens - 1).len();
    let n_chunks = if units >= threads {
        1
    } else {
        (threads * 2 / units).clamp(1, (max_keys / MIN_CHUNK).max(1))
    };
    // per (unit, chunk): n_rep * (max, sum) + n_rep * hd weighted values
    let part_len = n_rep * (hd + 2);
    partials.resize(units * n_chunks * part_len, 0.0);

    pool.install(|| {
        partials[..units * n_chunks * part_len]
            .par_chunks_mut(part_len)
            .enumerate()
            .for_each_init(
                || (Vec::new(), vec![0f32; n_rep]),
                |(scores, col), (i, part)| {
                    let (unit, chunk) = (i / n_chunks, i % n_chunks);
                    let (t, g) = (unit / p.n_head_kv, unit % p.n_head_kv);
                    let keys = key_range(p, t);
                    let len = keys.len();
                    let c0 = keys.start + len * chunk / n_chunks;
                    let c1 = keys.start + len * (chunk + 1) / n_chunks;
                    let len = c1 - c0;
                    let (stats, acc) = part.split_at_mut(2 * n_rep);
                    // the group's query heads, contiguous: [n_rep][hd]
                    let qg = &q[t * q_row + g * n_rep * hd..t * q_row + (g + 1) * n_rep * hd];
                    // scores: [head][key]
                    scores.resize(n_rep * len, 0.0);
                    for (jj, j) in (c0..c1).enumerate() {
                        let r = kv_row_of(j, rows);
                        dot_f16_heads(&k[r * kv_row + g * hd..][..hd], qg, col);
                        for (r, c) in col.iter().enumerate() {
                            scores[r * len + jj] = p.scale * c;
                        }
                    }
                    if let Some(c) = p.softcap {
                        for sj in scores.iter_mut() {
                            *sj = c * (*sj / c).tanh();
                        }
                    }
                    for r in 0..n_rep {
                        let s = &mut scores[r * len..(r + 1) * len];
                        let m = s.iter().fold(f32::NEG_INFINITY, |a, &b| a.max(b));
                        stats[2 * r] = m;
                        stats[2 * r + 1] = exp_sub_sum(s, m);
                    }
                    acc.fill(0.0);
                    for (jj, j) in (c0..c1).enumerate() {
                        let vj = &v[kv_row_of(j, rows) * kv_row + g * hd..][..hd];
                        axpy_f16_heads(acc, &scores[jj..], len, vj);
                    }
                },
            );

        // merge the chunks of each unit into the output rows
        let partials: &[f32] = partials;
        out[..p.n_tokens * q_row]
            .par_chunks_mut(n_rep * hd)
            .enumerate()
            .for_each(|(unit, o)| {
                let parts = &partials[unit * n_chunks * part_len..(unit + 1) * n_chunks * part_len];
                for r in 0..n_rep {
                    let m = parts
                        .chunks(part_len)
                        .map(|pc| pc[2 * r])
                        .fold(f32::NEG_INFINITY, f32::max);
                    let oh = &mut o[r * hd..(r + 1) * hd];
                    oh.fill(0.0);
                    let mut total = 0f32;
                    for pc in parts.chunks(part_len) {
                        let (pm, ps) = (pc[2 * r], pc[2 * r + 1]);
                        if ps == 0.0 {
                            continue;
                        }
                        let w = (pm - m).exp();
                        total += w * ps;
                        let acc = &pc[2 * n_rep + r * hd..2 * n_rep + (r + 1) * hd];
                        for (a, b) in oh.iter_mut().zip(acc) {
                            *a += w * b;
                        }
                    }
                    let inv = 1.0 / total;
                    for a in oh.iter_mut() {
                        *a *= inv;
                    }
                }
            });
    });
}

/// Key positions query token `t` attends to.
pub fn key_range(p: &AttnParams, t: usize) -> std::ops::Range<usize> {
    let pos = p.pos0 + t;
    let lo = match p.window {
        Some(w) => (pos + 1).saturating_sub(w),
        None => 0,
    };
    lo..pos + 1
}

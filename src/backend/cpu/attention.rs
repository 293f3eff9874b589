//! Causal attention over the f16 KV cache on the CPU: grouped KV heads, optional sliding
//! window, numerically stable softmax in f32.
//!
//! Work is split into units of (query token, KV head, key chunk). During decode there is one
//! query token and often a single KV head, so keys are split into chunks across threads and
//! the partial softmax results (max, sum, weighted values) are merged, as in flash-decoding.

use super::vec::{axpy_f16, dot_f16};
use crate::backend::AttnParams;
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
            .for_each_init(Vec::new, |scores, (i, part)| {
                let (unit, chunk) = (i / n_chunks, i % n_chunks);
                let (t, g) = (unit / p.n_head_kv, unit % p.n_head_kv);
                let keys = key_range(p, t);
                let len = keys.len();
                let c0 = keys.start + len * chunk / n_chunks;
                let c1 = keys.start + len * (chunk + 1) / n_chunks;
                let (stats, acc) = part.split_at_mut(2 * n_rep);
                acc.fill(0.0);
                scores.resize(n_rep * (c1 - c0), 0.0);
                for r in 0..n_rep {
                    let h = g * n_rep + r;
                    let qh = &q[t * q_row + h * hd..t * q_row + (h + 1) * hd];
                    let s = &mut scores[r * (c1 - c0)..(r + 1) * (c1 - c0)];
                    for (j, sj) in (c0..c1).zip(s.iter_mut()) {
                        *sj = p.scale * dot_f16(&k[j * kv_row + g * hd..][..hd], qh);
                    }
                    if let Some(c) = p.softcap {
                        for sj in s.iter_mut() {
                            *sj = c * (*sj / c).tanh();
                        }
                    }
                    let m = s.iter().fold(f32::NEG_INFINITY, |a, &b| a.max(b));
                    let mut sum = 0f32;
                    for sj in s.iter_mut() {
                        *sj = (*sj - m).exp();
                        sum += *sj;
                    }
                    stats[2 * r] = m;
                    stats[2 * r + 1] = sum;
                }
                for (jj, j) in (c0..c1).enumerate() {
                    let vj = &v[j * kv_row + g * hd..][..hd];
                    for r in 0..n_rep {
                        let w = scores[r * (c1 - c0) + jj];
                        axpy_f16(&mut acc[r * hd..(r + 1) * hd], w, vj);
                    }
                }
            });

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

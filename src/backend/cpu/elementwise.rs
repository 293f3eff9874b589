//! Row-wise and elementwise ops on the CPU: RMS norm, RoPE, gated activations, residual adds.
//! They are O(hidden size) per token, so they run single-threaded for decode and across rows
//! in parallel for prefill.

use crate::backend::{Glu, Rope};
use half::f16;
use rayon::prelude::*;

/// Rows at or above which row ops run in parallel.
const PAR_ROWS: usize = 8;

/// RMS norm (sum of squares in f64, as ggml does) times `w`.
pub fn rms_norm(pool: &rayon::ThreadPool, x: &mut [f32], w: &[f32], eps: f32) {
    let dim = w.len();
    let norm = |row: &mut [f32]| {
        let ss: f64 = row.iter().map(|&v| (v as f64) * (v as f64)).sum();
        let scale = 1.0 / ((ss / dim as f64) as f32 + eps).sqrt();
        for (v, g) in row.iter_mut().zip(w) {
            *v = *v * scale * g;
        }
    };
    if x.len() / dim >= PAR_ROWS {
        pool.install(|| x.par_chunks_mut(dim).for_each(norm));
    } else {
        x.chunks_mut(dim).for_each(norm);
    }
}

/// Rotates the pairs of every head of every token ([`Rope::pair`]): `cs` holds `(cos, sin)`
/// per position and pair.
pub fn rope(x: &mut [f32], cs: &[f32], rope: &Rope, n: usize, heads: usize, pos0: usize) {
    let hd = rope.head_dim;
    for t in 0..n {
        let table = &cs[(pos0 + t) * hd..(pos0 + t + 1) * hd];
        for h in 0..heads {
            let v = &mut x[(t * heads + h) * hd..(t * heads + h + 1) * hd];
            // the pairs past n_rot / 2 have (cos, sin) = (1, 0): skip them
            for i in 0..rope.n_rot / 2 {
                let (c, s) = (table[2 * i], table[2 * i + 1]);
                let (ia, ib) = Rope::pair(rope.layout, rope.n_rot, i);
                let (x0, x1) = (v[ia], v[ib]);
                v[ia] = x0 * c - x1 * s;
                v[ib] = x0 * s + x1 * c;
            }
        }
    }
}

fn gelu(x: f32) -> f32 {
    const SQRT_2_OVER_PI: f32 = 0.797_884_6;
    const C: f32 = 0.044_715;
    0.5 * x * (1.0 + (SQRT_2_OVER_PI * x * (1.0 + C * x * x)).tanh())
}

/// GELU as ggml's CPU backend computes it: the input rounded to f16 indexes a table of
/// f16-rounded results (`ggml_vec_geglu_f32` with `GGML_GELU_FP16`). Faster than `tanh` and
/// the same numbers as llama.cpp.
fn gelu_table(x: f32) -> f32 {
    static TABLE: std::sync::OnceLock<Vec<f32>> = std::sync::OnceLock::new();
    if x <= -10.0 {
        return 0.0;
    }
    if x >= 10.0 {
        return x;
    }
    let t = TABLE.get_or_init(|| {
        (0..=u16::MAX)
            .map(|bits| f16::from_f32(gelu(f16::from_bits(bits).to_f32())).to_f32())
            .collect()
    });
    t[f16::from_f32(x).to_bits() as usize]
}

/// `gate[i] = act(gate[i]) * up[i]` on the calling thread. Each element's result depends on
/// its own inputs only, so any split of the rows gives the same bits.
pub fn glu_serial(kind: Glu, gate: &mut [f32], up: &[f32]) {
    match kind {
        Glu::Gelu => {
            for (g, u) in gate.iter_mut().zip(up) {
                *g = gelu_table(*g) * u;
            }
        }
        Glu::Silu => super::vec::silu_mul(gate, up),
    }
}

/// `gate[i] = act(gate[i]) * up[i]`.
pub fn glu(pool: &rayon::ThreadPool, kind: Glu, gate: &mut [f32], up: &[f32]) {
    let run = |(g, u): (&mut [f32], &[f32])| glu_serial(kind, g, u);
    const CHUNK: usize = 16 * 1024;
    if gate.len() >= 4 * CHUNK {
        pool.install(|| {
            gate.par_chunks_mut(CHUNK)
                .zip(up.par_chunks(CHUNK))
                .for_each(run)
        });
    } else {
        run((gate, up));
    }
}

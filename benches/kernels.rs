//! Row-kernel speed on a real model's weights (run with `cargo bench --bench kernels`):
//! for each weight type of the model and each instruction-set level this CPU runs, the
//! decode dot product (one weight row × one quantized activation row) in GB/s of weight
//! bytes, twice — on 32 rows that stay in L1, and streamed from memory over every tensor of
//! the type. When the two are close, decode on that type is compute-bound on one core and
//! a faster kernel is a faster token; when the stream is far below, it is memory-bound.
//! A third figure is the four-token kernel (small batches) in L1, in weight bytes × 4 a
//! second, where the type has one (`-` where not). One thread; levels alternate within each repetition and the best repetition is kept
//! (neighbours on a shared machine slow single cores by up to ~30 %).
//!
//! Environment: TOKENFAB_MODEL (default models/qwen2.5-coder-1.5b-instruct-q4_k_m.gguf),
//! TOKENFAB_BENCH_REPS (default 5).

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Instant;
use tokenfab::gguf::{GgmlType, GgufFile, TensorInfo};
use tokenfab::quant::{row_kernel, Isa, RowKernel};

/// Rows kept in L1 for the compute-bound figure (32 × 864 bytes for a 1536-wide Q4_K).
const L1_ROWS: usize = 32;
/// Weight bytes each in-L1 measurement runs through.
const L1_BYTES: usize = 200 << 20;

/// An activation row quantized for `k`, deterministic and in the range real ones take.
fn activation(k: &RowKernel, n: usize) -> Vec<u8> {
    let x: Vec<f32> = (0..n)
        .map(|i| ((i * 37 % 101) as f32 - 50.0) / 30.0)
        .collect();
    let mut q = vec![0u8; k.act.row_bytes(n)];
    k.act.quantize(&x, &mut q);
    q
}

/// Seconds to run `k.dot4` (four activation rows) over every row of `w`, and a checksum.
fn pass4(k: &RowKernel, w: &[u8], rb: usize, x: &[u8]) -> Option<(f64, f32)> {
    let dot4 = k.dot4?;
    let t = Instant::now();
    let s: f32 = w
        .chunks_exact(rb)
        .map(|r| dot4(r, [x; 4]).iter().sum::<f32>())
        .sum();
    Some((t.elapsed().as_secs_f64(), s))
}

/// Seconds to run `k.dot` over every row of `w` (`rb` bytes a row), and a checksum.
fn pass(k: &RowKernel, w: &[u8], rb: usize, x: &[u8]) -> (f64, f32) {
    let t = Instant::now();
    let s: f32 = w.chunks_exact(rb).map(|r| (k.dot)(r, x)).sum();
    (t.elapsed().as_secs_f64(), s)
}

fn main() {
    let reps: usize = std::env::var("TOKENFAB_BENCH_REPS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(5)
        .max(1);
    let path = std::env::var_os("TOKENFAB_MODEL")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(env!("CARGO_MANIFEST_DIR"))
                .join("models/qwen2.5-coder-1.5b-instruct-q4_k_m.gguf")
        });
    let file = match GgufFile::open(&path) {
        Ok(f) => f,
        Err(e) => {
            eprintln!("{e}: run scripts/fetch-models.sh, or set TOKENFAB_MODEL");
            std::process::exit(1);
        }
    };
    let levels: Vec<Isa> = Isa::ALL.into_iter().filter(|i| i.runs_here()).collect();
    // matrices by type (the token embedding is read a row at a time, unless tied as output)
    let mut by_type: BTreeMap<&str, (GgmlType, Vec<&TensorInfo>)> = BTreeMap::new();
    for t in file.tensors() {
        if t.dims.len() == 2 && t.n_rows() >= L1_ROWS as u64 {
            by_type
                .entry(t.dtype.name())
                .or_insert((t.dtype, Vec::new()))
                .1
                .push(t);
        }
    }
    println!(
        "row kernels on {} | 1 thread | best of {reps}",
        path.display()
    );
    println!("| type | level | in L1 GB/s | streamed GB/s | 4 tokens, in L1 GB/s | streamed MB |");
    println!("|---|---|---|---|---|---|");
    let mut checksum = 0f32;
    for (name, (dtype, tensors)) in &by_type {
        let kernels: Vec<(Isa, RowKernel)> = levels
            .iter()
            .filter_map(|&i| row_kernel(*dtype, i).map(|k| (i, k)))
            .collect();
        let bytes: usize = tensors.iter().map(|t| t.n_bytes as usize).sum();
        let first = tensors[0];
        let n = first.row_len() as usize;
        let Some(rb) = dtype.row_bytes(n as u64) else {
            continue;
        };
        let l1 = &file.tensor_data(first)[..L1_ROWS * rb as usize];
        let mut best = vec![(0f64, 0f64, 0f64); kernels.len()];
        // touch every page once so the first level does not pay the page faults
        for t in tensors {
            checksum += file
                .tensor_data(t)
                .iter()
                .step_by(4096)
                .map(|&b| b as f32)
                .sum::<f32>();
        }
        for _ in 0..reps {
            for (i, (_, k)) in kernels.iter().enumerate() {
                let x = activation(k, n);
                let mut secs = 0.0;
                for _ in 0..L1_BYTES / l1.len() {
                    let (t, s) = pass(k, l1, rb as usize, &x);
                    secs += t;
                    checksum += s;
                }
                let in_l1 = (L1_BYTES / l1.len() * l1.len()) as f64 / secs / 1e9;
                let mut secs4 = 0.0;
                for _ in 0..L1_BYTES / l1.len() / 4 {
                    if let Some((t, s)) = pass4(k, l1, rb as usize, &x) {
                        secs4 += t;
                        checksum += s;
                    }
                }
                let four = (L1_BYTES / l1.len() / 4 * l1.len() * 4) as f64 / secs4 / 1e9;
                let mut secs = 0.0;
                for t in tensors {
                    let trb = dtype.row_bytes(t.row_len()).unwrap_or(rb) as usize;
                    let tx = if t.row_len() as usize == n {
                        x.clone()
                    } else {
                        activation(k, t.row_len() as usize)
                    };
                    let (dt, s) = pass(k, file.tensor_data(t), trb, &tx);
                    secs += dt;
                    checksum += s;
                }
                let streamed = bytes as f64 / secs / 1e9;
                let four = if secs4 > 0.0 { four } else { 0.0 };
                best[i] = (
                    best[i].0.max(in_l1),
                    best[i].1.max(streamed),
                    best[i].2.max(four),
                );
            }
        }
        for ((isa, _), (in_l1, streamed, four)) in kernels.iter().zip(best) {
            let four = if four > 0.0 {
                format!("{four:.1}")
            } else {
                "-".into()
            };
            println!(
                "| {name} | {} | {in_l1:.1} | {streamed:.1} | {four} | {:.0} |",
                isa.name(),
                bytes as f64 / 1e6
            );
        }
    }
    // keeps the dot products from being optimised away
    eprintln!("checksum {checksum}");
}

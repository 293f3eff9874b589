//! `tokenfab bench --kernels PRESET[,PRESET]`: the wgpu matrix kernels alone, on every matrix
//! shape of a synthetic preset's decode step, for each `--kernel-types` type, at one token
//! (the decode matvec) and at each `-p` prompt length (the prefill GEMM). One line per kernel
//! call: GPU time (timestamps) and host time per call, weight GB/s, TFLOP/s, and the share
//! of the adapter's measured peak read bandwidth (`tokenfab probe`, cached).

use super::bench::BenchArgs;
use anyhow::{bail, Context, Result};
use std::io::Write;
use tokenfab::backend::wgpu::{KernelTiming, WgpuBackend};
use tokenfab::gguf::GgmlType;

pub fn run(a: &BenchArgs) -> Result<()> {
    if !matches!(a.backend.as_str(), "auto" | "wgpu") {
        bail!(
            "--kernels times the wgpu kernels: use --backend wgpu (got {:?})",
            a.backend
        );
    }
    if !matches!(a.output.as_str(), "md" | "json" | "jsonl") {
        bail!(
            "--kernels: -o must be md, json or jsonl (got {:?})",
            a.output
        );
    }
    if a.kernel_reps == 0 {
        bail!("--kernel-reps must be at least 1");
    }
    let presets = a
        .kernels
        .iter()
        .map(|n| {
            tokenfab::synth::preset(n).with_context(|| {
                let names: Vec<&str> = tokenfab::synth::PRESETS.iter().map(|p| p.name).collect();
                format!("unknown preset {n:?} (known: {})", names.join(", "))
            })
        })
        .collect::<Result<Vec<_>>>()?;
    let types = a
        .kernel_types
        .iter()
        .map(|t| {
            GgmlType::from_name(t)
                .filter(|t| tokenfab::backend::wgpu::GPU_TYPES.contains(t))
                .with_context(|| {
                    format!("--kernel-types: {t:?} is not a type the wgpu kernels run")
                })
        })
        .collect::<Result<Vec<_>>>()?;
    let mut tokens = vec![1];
    tokens.extend(a.n_prompt.iter().copied().filter(|&p| p > 1));
    // timestamps where the adapter has them
    let mut gpu = match WgpuBackend::new(true) {
        Ok(b) => b,
        Err(_) => WgpuBackend::new(false)?,
    };
    let peak = tokenfab::telemetry::probe::gpu_peak(
        &mut gpu,
        tokenfab::telemetry::probe::Measure::CachedOnly,
    )
    .map(|(g, _)| g);
    let mut rows: Vec<(String, KernelTiming)> = Vec::new();
    let mut out = std::io::stdout().lock();
    if a.output == "md" {
        writeln!(
            out,
            "| preset | matrix | kernel | rows x cols | tokens | GPU us | host us | GB/s | % peak | TFLOP/s |"
        )?;
        writeln!(out, "|---|---|---|---|---:|---:|---:|---:|---:|---:|")?;
    }
    for p in &presets {
        for (name, r, c) in tokenfab::synth::matrix_shapes(p) {
            for &t in &types {
                if c % t.block_size() != 0 {
                    continue;
                }
                for &n in &tokens {
                    let reps = if n == 1 {
                        a.kernel_reps
                    } else {
                        a.kernel_reps.div_ceil(10)
                    };
                    let k = gpu
                        .time_matmul(t, r, c, n, reps)
                        .with_context(|| format!("{} {name} {t} x {n} tokens", p.name))?;
                    match a.output.as_str() {
                        "md" => writeln!(
                            out,
                            "| {} | {name} | {} | {r} x {c} | {n} | {} | {:.1} | {:.1} | {} | {:.3} |",
                            p.name,
                            k.kernel,
                            k.gpu_us.map_or("-".into(), |g| format!("{g:.1}")),
                            k.host_us,
                            k.gb_s,
                            peak.map_or("-".into(), |pk| format!("{:.0}", 100.0 * k.gb_s / pk)),
                            k.tflop_s
                        )?,
                        "jsonl" => writeln!(
                            out,
                            "{}",
                            serde_json::json!({"preset": p.name, "matrix": name, "timing": k})
                        )?,
                        _ => {}
                    }
                    rows.push((format!("{} {name}", p.name), k));
                }
            }
        }
    }
    match a.output.as_str() {
        "json" => {
            let v: Vec<_> = rows
                .iter()
                .map(|(m, k)| serde_json::json!({"matrix": m, "timing": k}))
                .collect();
            writeln!(out, "{}", serde_json::to_string_pretty(&v)?)?;
        }
        "md" => writeln!(
            out,
            "\nadapter: {}; peak read bandwidth {}",
            gpu.adapter().name,
            peak.map_or("unknown (run `tokenfab probe`)".into(), |p| format!(
                "{p:.0} GB/s (tokenfab probe)"
            ))
        )?,
        _ => {}
    }
    Ok(())
}

//! What opening the wgpu backend can choose ([`WgpuOptions`], [`Tuning`]) and what it counts
//! while it runs ([`Counters`]: the GPU work a token costs, for the structural tests).

use std::sync::atomic::{AtomicU64, Ordering};

/// What the backend asked of the GPU so far (for tests and structural checks: dispatches per
/// decoded token, one submit per token, no host wait but the token's read back).
#[derive(Debug, Default)]
pub struct Counters {
    pub dispatches: AtomicU64,
    pub passes: AtomicU64,
    pub submits: AtomicU64,
    /// Host waits for the GPU: a read back (a token, logits) or a sync.
    pub host_waits: AtomicU64,
}

impl Counters {
    /// (dispatches, passes, submits, host waits) now.
    pub fn snapshot(&self) -> [u64; 4] {
        [
            self.dispatches.load(Ordering::Relaxed),
            self.passes.load(Ordering::Relaxed),
            self.submits.load(Ordering::Relaxed),
            self.host_waits.load(Ordering::Relaxed),
        ]
    }
}

/// Choices when opening the backend.
#[derive(Clone, Debug)]
pub struct WgpuOptions {
    /// Per-kernel timestamps (`--profile`).
    pub profile: bool,
    /// Use subgroup reductions where the adapter has SUBGROUP.
    pub subgroups: bool,
    /// Keep the KV cache in f16 where the adapter has SHADER_F16 (f32 otherwise).
    pub f16_kv: bool,
    /// Use the decode matvec and tiled GEMM kernels and the fused ops (matvec epilogues,
    /// rope + KV store). False: `matmul.wgsl` for every product and one dispatch per op, as
    /// before them; for A/B measurements.
    pub fast_kernels: bool,
    /// Which of the fast paths to take (see [`Tuning`]).
    pub tuning: Tuning,
    /// Open the adapter whose name contains this (any case) instead of the best one.
    pub adapter: Option<String>,
    /// Fault injection for tests: destroy the device after this many submits (the way a
    /// driver reset or an unplugged eGPU ends it). From `TOKENFAB_FAULT=wgpu-lose-device-after=N`.
    pub lose_device_after: Option<u64>,
}

/// Reads `TOKENFAB_FAULT` (fault injection for the tests of what a device loss does to a run
/// and to the server): `wgpu-lose-device-after=N`. Anything else is refused, so a typo does
/// not silently test nothing.
pub fn fault_from_env() -> Result<Option<u64>, String> {
    let Ok(v) = std::env::var("TOKENFAB_FAULT") else {
        return Ok(None);
    };
    v.strip_prefix("wgpu-lose-device-after=")
        .and_then(|n| n.parse().ok())
        .map(Some)
        .ok_or_else(|| format!("TOKENFAB_FAULT={v:?}: expected wgpu-lose-device-after=N"))
}

/// Kernel choices that depend on what runs the shaders. A GPU pays a few microseconds per
/// dispatch and little per barrier; a software adapter (lavapipe: shaders on CPU threads)
/// the other way round, and it executes every invocation of a half-empty tile. Measured on
/// lavapipe (2 vCPUs, synthetic Llama 3.2 1B): decode 1.04 t/s with the RMS norm inside the
/// matvecs vs 1.25 with it apart; 32-token prefill 1.21 t/s with the 64 x 64 GEMM tile vs
/// 1.77 with `matmul.wgsl` (at 64 tokens, Gemma 3: 18.9 vs 14.4 for the GEMM).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Tuning {
    /// GPU for hardware adapters, software for CPU-type ones.
    Auto,
    /// The RMS norm inside the matvecs; the tiled GEMM from 9 tokens.
    Gpu,
    /// The RMS norm as its own dispatch; the tiled GEMM from 64 tokens.
    Software,
}

impl Default for WgpuOptions {
    fn default() -> Self {
        WgpuOptions {
            profile: false,
            subgroups: true,
            f16_kv: true,
            fast_kernels: true,
            tuning: Tuning::Auto,
            adapter: None,
            lose_device_after: None,
        }
    }
}

//! Choosing a backend by name (`--backend auto|cpu|wgpu|cuda|reference`), the one place the CLI and
//! the benches turn a flag into a [`Backend`].

use super::cpu::CpuBackend;
use super::wgpu::{has_discrete_gpu, Tuning, WgpuBackend, WgpuOptions};
use super::{Backend, BackendError, Result};

/// Which backend to open.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BackendKind {
    /// wgpu on a discrete GPU when there is one, else the CPU.
    Auto,
    Cpu,
    Wgpu,
    Cuda,
    /// Exact arithmetic (f64) on the CPU, for measuring the others ([`super::reference`]).
    Reference,
}

impl std::str::FromStr for BackendKind {
    type Err = BackendError;
    fn from_str(s: &str) -> Result<Self> {
        match s {
            "auto" => Ok(BackendKind::Auto),
            "cpu" => Ok(BackendKind::Cpu),
            "wgpu" => Ok(BackendKind::Wgpu),
            "cuda" => Ok(BackendKind::Cuda),
            "reference" => Ok(BackendKind::Reference),
            other => Err(BackendError::Invalid(format!(
                "unknown backend {other:?} (expected auto, cpu, wgpu, cuda or reference)"
            ))),
        }
    }
}

/// Settings of the GPU backends; the defaults are what a user wants, the rest is for
/// diagnosis and A/B measurements (the CLI takes them from `TOKENFAB_WGPU_*` /
/// `TOKENFAB_CUDA_EVENTS`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GpuOptions {
    /// wgpu: the adapter whose name contains this (any case).
    pub adapter: Option<String>,
    /// wgpu: subgroup reductions where the adapter has them.
    pub subgroups: bool,
    /// wgpu: an f16 KV cache where the adapter has SHADER_F16.
    pub f16_kv: bool,
    /// wgpu: the matvec/GEMM kernels and fused ops (false: the general kernel, one dispatch
    /// per op).
    pub fast_kernels: bool,
    /// cuda: keep cudarc's per-allocation CUDA events (off by default: they guard nothing on
    /// candle's one stream and cost ~9 % of decode).
    pub cuda_events: bool,
}

impl Default for GpuOptions {
    fn default() -> Self {
        GpuOptions {
            adapter: None,
            subgroups: true,
            f16_kv: true,
            fast_kernels: true,
            cuda_events: false,
        }
    }
}

/// A backend choice with its settings.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BackendSpec {
    pub kind: BackendKind,
    /// CPU threads (0 = all cores); the CPU and reference backends only.
    pub threads: usize,
    /// Per-kernel GPU timestamps; GPU backends only.
    pub profile: bool,
    pub gpu: GpuOptions,
}

impl Default for BackendSpec {
    /// `auto`, all cores, no profiling.
    fn default() -> Self {
        BackendSpec {
            kind: BackendKind::Auto,
            threads: 0,
            profile: false,
            gpu: GpuOptions::default(),
        }
    }
}

impl BackendSpec {
    pub fn cpu(threads: usize) -> Self {
        BackendSpec {
            kind: BackendKind::Cpu,
            threads,
            profile: false,
            gpu: GpuOptions::default(),
        }
    }

    /// Whether `--profile` times ops by synchronizing around each (CUDA through candle has no
    /// kernel timestamps; see [`crate::backend::Ops::time_ops_by_sync`]).
    pub fn times_ops_by_sync(&self) -> bool {
        self.profile && self.resolved() == BackendKind::Cuda
    }

    /// What `Auto` resolves to on this machine.
    pub fn resolved(&self) -> BackendKind {
        match self.kind {
            BackendKind::Auto if has_discrete_gpu() => BackendKind::Wgpu,
            BackendKind::Auto => BackendKind::Cpu,
            k => k,
        }
    }

    /// Opens the backend.
    pub fn open(&self) -> Result<Box<dyn Backend>> {
        match self.resolved() {
            BackendKind::Cpu | BackendKind::Auto => {
                if self.profile {
                    return Err(BackendError::Invalid(
                        "--profile times GPU kernels; the cpu backend has none".into(),
                    ));
                }
                Ok(Box::new(CpuBackend::new(self.threads)?))
            }
            BackendKind::Wgpu => {
                let g = &self.gpu;
                Ok(Box::new(WgpuBackend::with_options(WgpuOptions {
                    profile: self.profile,
                    subgroups: g.subgroups,
                    f16_kv: g.f16_kv,
                    fast_kernels: g.fast_kernels,
                    tuning: Tuning::Auto,
                    adapter: g.adapter.clone(),
                    lose_device_after: super::wgpu::fault_from_env()
                        .map_err(BackendError::Invalid)?,
                })?))
            }
            BackendKind::Cuda => Ok(Box::new(super::candle::CandleBackend::cuda_with(
                self.gpu.cuda_events,
            )?)),
            BackendKind::Reference => Ok(Box::new(super::reference::ReferenceBackend::new(
                self.threads,
            )?)),
        }
    }
}

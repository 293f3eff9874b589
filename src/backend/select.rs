//! Choosing a backend by name (`--backend auto|cpu|wgpu|cuda`), the one place the CLI and
//! the benches turn a flag into a [`Backend`].

use super::cpu::CpuBackend;
use super::wgpu::{has_discrete_gpu, WgpuBackend};
use super::{Backend, BackendError, Result};

/// Which backend to open.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BackendKind {
    /// wgpu on a discrete GPU when there is one, else the CPU.
    Auto,
    Cpu,
    Wgpu,
    Cuda,
}

impl std::str::FromStr for BackendKind {
    type Err = BackendError;
    fn from_str(s: &str) -> Result<Self> {
        match s {
            "auto" => Ok(BackendKind::Auto),
            "cpu" => Ok(BackendKind::Cpu),
            "wgpu" => Ok(BackendKind::Wgpu),
            "cuda" => Ok(BackendKind::Cuda),
            other => Err(BackendError::Invalid(format!(
                "unknown backend {other:?} (expected auto, cpu, wgpu or cuda)"
            ))),
        }
    }
}

/// A backend choice with its settings.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BackendSpec {
    pub kind: BackendKind,
    /// CPU threads (0 = all cores); the CPU backend only.
    pub threads: usize,
    /// Per-kernel GPU timestamps; GPU backends only.
    pub profile: bool,
}

impl Default for BackendSpec {
    /// `auto`, all cores, no profiling.
    fn default() -> Self {
        BackendSpec {
            kind: BackendKind::Auto,
            threads: 0,
            profile: false,
        }
    }
}

impl BackendSpec {
    pub fn cpu(threads: usize) -> Self {
        BackendSpec {
            kind: BackendKind::Cpu,
            threads,
            profile: false,
        }
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
            BackendKind::Wgpu => Ok(Box::new(WgpuBackend::new(self.profile)?)),
            BackendKind::Cuda => Ok(Box::new(super::candle::CandleBackend::cuda()?)),
        }
    }
}

//! NVIDIA GPU energy through NVML's total-energy counter (`nvmlDeviceGetTotalEnergyConsumption`,
//! mJ since driver load). `nvml-wrapper` loads `libnvidia-ml.so` at run time, so builds and
//! machines without NVIDIA are unaffected: opening simply fails with the reason. The counter
//! updates about every 100 ms, so energy is only attributed over longer windows.

use super::{EnergyError, EnergyMeter, SourceKind};
use std::time::Duration;

pub struct NvmlMeter {
    nvml: nvml_wrapper::Nvml,
    index: u32,
    name: String,
    start_mj: u64,
}

impl NvmlMeter {
    /// Opens GPU 0.
    pub fn open() -> Result<Self, EnergyError> {
        let nvml = nvml_wrapper::Nvml::init().map_err(|e| {
            EnergyError::Unavailable(format!("NVML not available ({e}); no NVIDIA driver"))
        })?;
        let dev = nvml
            .device_by_index(0)
            .map_err(|e| EnergyError::Unavailable(format!("NVML: no GPU 0 ({e})")))?;
        let name = dev.name().unwrap_or_else(|_| "GPU 0".into());
        let start_mj = dev.total_energy_consumption().map_err(|e| {
            EnergyError::Unavailable(format!("NVML: {name} has no energy counter ({e})"))
        })?;
        Ok(NvmlMeter {
            nvml,
            index: 0,
            name,
            start_mj,
        })
    }

    /// Instantaneous board power in watts.
    pub fn power_w(&self) -> Option<f64> {
        let dev = self.nvml.device_by_index(self.index).ok()?;
        dev.power_usage().ok().map(|mw| mw as f64 / 1e3)
    }
}

impl EnergyMeter for NvmlMeter {
    fn kind(&self) -> SourceKind {
        SourceKind::Nvml
    }

    fn describe(&self) -> String {
        format!("NVML total energy of {} (GPU {})", self.name, self.index)
    }

    fn interval(&self) -> Duration {
        Duration::from_millis(100)
    }

    fn read_j(&mut self) -> Result<f64, EnergyError> {
        let dev = self
            .nvml
            .device_by_index(self.index)
            .map_err(|e| EnergyError::Unavailable(format!("NVML: {e}")))?;
        let mj = dev
            .total_energy_consumption()
            .map_err(|e| EnergyError::Unavailable(format!("NVML: {e}")))?;
        Ok(mj.saturating_sub(self.start_mj) as f64 / 1e3)
    }
}

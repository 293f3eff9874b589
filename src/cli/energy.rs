//! The energy flags shared by `run`, `bench`, `cost` and `tradeoff`, turned into the library's
//! [`EnergyOptions`] (which source, which coefficient table and row, how long idle power is
//! measured); the choosing itself is `tokenfab::telemetry::energy::select`.

use anyhow::Result;
use clap::Args;
use std::path::PathBuf;
use std::time::Duration;
use tokenfab::telemetry::bench::EnergyProbe;
use tokenfab::telemetry::energy::estimate::DeviceTable;
use tokenfab::telemetry::energy::select::{self, EnergyOptions};
use tokenfab::telemetry::energy::SourceStatus;
use tokenfab::telemetry::recorder::Recorder;

#[derive(Args, Debug, Clone)]
pub struct EnergyArgs {
    /// Energy source: auto (first sensor found, else the estimate), nvml, rapl, battery, estimate.
    #[arg(long = "energy", default_value = "auto")]
    pub energy: String,
    /// Extra or replacement rows for the energy-estimate coefficient table (TOML).
    #[arg(long = "energy-table")]
    pub energy_table: Option<PathBuf>,
    /// Coefficient row to use for estimates (default: matched from the CPU model).
    #[arg(long = "energy-device")]
    pub energy_device: Option<String>,
    /// Idle power measured for this long before the run (measured sources only).
    #[arg(long = "idle-ms", default_value_t = 500)]
    pub idle_ms: u64,
}

impl EnergyArgs {
    /// The flags as library options.
    pub fn options(&self) -> Result<EnergyOptions> {
        Ok(EnergyOptions {
            source: EnergyOptions::parse_source(&self.energy)?,
            table: self.energy_table.clone(),
            device: self.energy_device.clone(),
            idle: Duration::from_millis(self.idle_ms),
            ..EnergyOptions::default()
        })
    }
}

/// The coefficient table: built in, then ~/.config/tokenfab/energy.toml, then `extra`.
pub fn device_table(extra: Option<&PathBuf>) -> Result<DeviceTable> {
    let opts = EnergyOptions {
        table: extra.cloned(),
        ..EnergyOptions::default()
    };
    Ok(select::device_table(&opts)?)
}

/// A recorder for one run on `threads` threads or on `gpu` (see [`select::recorder`]).
pub fn recorder(
    a: &EnergyArgs,
    threads: usize,
    gpu: Option<(String, bool)>,
) -> Result<(Recorder, Vec<SourceStatus>)> {
    Ok(select::recorder(&a.options()?, threads, gpu)?)
}

/// The energy source for `tokenfab bench` windows of a run on `threads` threads or `gpu`.
pub fn bench_probe(
    a: &EnergyArgs,
    threads: usize,
    gpu: Option<(String, bool)>,
) -> Result<EnergyProbe> {
    Ok(select::bench_probe(&a.options()?, threads, gpu)?)
}

//! Energy flags shared by `run` and `bench`, turned into a [`Recorder`]: which source to use,
//! which coefficient table and device row for estimates, how long to measure idle power.

use anyhow::{bail, Context, Result};
use clap::Args;
use std::path::PathBuf;
use std::time::Duration;
use tokenfab::telemetry::bench::EnergyProbe;
use tokenfab::telemetry::energy::estimate::{DeviceTable, EnergyModel};
use tokenfab::telemetry::energy::{open_meter, EnergyMeter, SourceKind, SourceStatus, SysRoots};
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

/// The coefficient table: built in, then ~/.config/tokenfab/energy.toml, then --energy-table.
pub fn device_table(extra: Option<&PathBuf>) -> Result<DeviceTable> {
    let mut t = DeviceTable::builtin();
    if let Some(home) = std::env::var_os("HOME") {
        let user = PathBuf::from(home).join(".config/tokenfab/energy.toml");
        if user.exists() {
            t.merge_file(&user)?;
        }
    }
    if let Some(p) = extra {
        t.merge_file(p)
            .with_context(|| format!("cannot use --energy-table {}", p.display()))?;
    }
    Ok(t)
}

/// The estimate model for a run with `threads` threads on the CPU, or on `gpu` (the
/// backend's [`energy_gpu`](tokenfab::backend::Backend::energy_gpu): name, integrated?).
pub fn energy_model(
    a: &EnergyArgs,
    threads: usize,
    gpu: Option<(String, bool)>,
) -> Result<EnergyModel> {
    let table = device_table(a.energy_table.as_ref())?;
    let cpu = tokenfab::telemetry::probe::cpu_info();
    let gpu = gpu.as_ref().map(|(n, i)| (n.as_str(), *i));
    let row = match &a.energy_device {
        Some(id) => table.get(id).cloned().ok_or_else(|| {
            let ids: Vec<&str> = table.rows.iter().map(|r| r.id.as_str()).collect();
            anyhow::anyhow!(
                "--energy-device {id:?} is not in the table (have: {})",
                ids.join(", ")
            )
        })?,
        None => table.row_for(&cpu.model, gpu).cloned().ok_or_else(|| {
            anyhow::anyhow!(
                "no row in the energy table for {:?}",
                gpu.map_or(cpu.model.as_str(), |g| g.0)
            )
        })?,
    };
    Ok(EnergyModel::new(row, threads))
}

/// The meter to use (none: estimate), the estimate model, and every source's status.
struct Selection {
    meter: Option<Box<dyn EnergyMeter>>,
    model: EnergyModel,
    statuses: Vec<SourceStatus>,
}

fn select(a: &EnergyArgs, threads: usize, gpu: Option<(String, bool)>) -> Result<Selection> {
    let want = match a.energy.as_str() {
        "auto" => None,
        s => Some(SourceKind::parse(s).ok_or_else(|| {
            anyhow::anyhow!("--energy must be auto, nvml, rapl, battery or estimate (got {s:?})")
        })?),
    };
    let model = energy_model(a, threads, gpu)?;
    let (meter, statuses) = match want {
        Some(SourceKind::Estimate) => (None, Vec::new()),
        _ => open_meter(want, &SysRoots::default()),
    };
    if let (Some(k), None) = (want, &meter) {
        if k != SourceKind::Estimate {
            let why = statuses.first().map_or(String::new(), |s| s.detail.clone());
            bail!("--energy {}: not available here: {why}", a.energy);
        }
    }
    Ok(Selection {
        meter,
        model,
        statuses,
    })
}

/// A recorder for one run on `threads` threads or on `gpu` (idle power measured first for
/// real sensors), and the status of every source tried.
pub fn recorder(
    a: &EnergyArgs,
    threads: usize,
    gpu: Option<(String, bool)>,
) -> Result<(Recorder, Vec<SourceStatus>)> {
    let Selection {
        meter,
        model,
        statuses,
    } = select(a, threads, gpu)?;
    let measured = meter.is_some();
    let mut rec = Recorder::new(meter, model, Duration::from_secs(1));
    if measured {
        rec.measure_idle(Duration::from_millis(a.idle_ms));
    }
    Ok((rec, statuses))
}

/// The energy source for `tokenfab bench` windows of a run on `threads` threads or `gpu`.
pub fn bench_probe(
    a: &EnergyArgs,
    threads: usize,
    gpu: Option<(String, bool)>,
) -> Result<EnergyProbe> {
    let s = select(a, threads, gpu)?;
    Ok(EnergyProbe {
        meter: s.meter,
        model: s.model,
    })
}

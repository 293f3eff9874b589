//! Choosing where energy figures come from for a run: which meter (a sensor, or none and the
//! estimate), which coefficient table and row the estimate uses, how long idle power is
//! measured — as [`EnergyOptions`], so the CLI, the server and an embedding app choose the
//! same way. Turned into a [`Recorder`] for a run, or into an [`EnergyProbe`] for `bench`.

use super::estimate::{DeviceTable, EnergyModel, TableError};
use super::{open_meter, EnergyMeter, SourceKind, SourceStatus, SysRoots};
use crate::telemetry::bench::EnergyProbe;
use crate::telemetry::recorder::Recorder;
use std::path::PathBuf;
use std::time::Duration;

/// How to account for energy (the `--energy*` and `--idle-ms` flags).
#[derive(Clone, Debug)]
pub struct EnergyOptions {
    /// A source to insist on, or `None` for the first sensor found, else the estimate.
    pub source: Option<SourceKind>,
    /// Extra or replacement rows for the coefficient table (TOML).
    pub table: Option<PathBuf>,
    /// Coefficient row for estimates (default: matched from the CPU or GPU model).
    pub device: Option<String>,
    /// Idle power measured for this long before a run (measured sources only).
    pub idle: Duration,
    /// The user's own table rows (default: `~/.config/tokenfab/energy.toml` when it exists).
    pub user_table: Option<PathBuf>,
}

impl Default for EnergyOptions {
    fn default() -> Self {
        EnergyOptions {
            source: None,
            table: None,
            device: None,
            idle: Duration::from_millis(500),
            user_table: std::env::var_os("HOME")
                .map(|h| PathBuf::from(h).join(".config/tokenfab/energy.toml")),
        }
    }
}

impl EnergyOptions {
    /// `auto`, `nvml`, `rapl`, `battery` or `estimate` as [`EnergyOptions::source`].
    pub fn parse_source(s: &str) -> Result<Option<SourceKind>, SelectError> {
        match s {
            "auto" => Ok(None),
            s => SourceKind::parse(s).map(Some).ok_or_else(|| {
                SelectError(format!(
                    "--energy must be auto, nvml, rapl, battery or estimate (got {s:?})"
                ))
            }),
        }
    }
}

/// Why the requested energy accounting cannot be set up.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct SelectError(pub String);

impl From<TableError> for SelectError {
    fn from(e: TableError) -> Self {
        SelectError(e.to_string())
    }
}

/// The coefficient table: built in, then the user's file, then `opts.table`.
pub fn device_table(opts: &EnergyOptions) -> Result<DeviceTable, SelectError> {
    let mut t = DeviceTable::builtin();
    if let Some(user) = opts.user_table.as_ref().filter(|p| p.exists()) {
        t.merge_file(user)?;
    }
    if let Some(p) = &opts.table {
        t.merge_file(p)
            .map_err(|e| SelectError(format!("cannot use --energy-table {}: {e}", p.display())))?;
    }
    Ok(t)
}

/// The estimate model for work on `threads` CPU threads, or on `gpu` (the backend's
/// [`energy_gpu`](crate::backend::Backend::energy_gpu): name, integrated?). Static power is
/// charged for the threads the hardware can run at once: asking for more threads than there
/// are logical cores oversubscribes them, it does not power more cores.
pub fn energy_model(
    opts: &EnergyOptions,
    threads: usize,
    gpu: Option<(String, bool)>,
) -> Result<EnergyModel, SelectError> {
    let table = device_table(opts)?;
    let cpu = crate::telemetry::probe::cpu_info();
    let gpu = gpu.as_ref().map(|(n, i)| (n.as_str(), *i));
    let row = match &opts.device {
        Some(id) => table.get(id).cloned().ok_or_else(|| {
            let ids: Vec<&str> = table.rows.iter().map(|r| r.id.as_str()).collect();
            SelectError(format!(
                "--energy-device {id:?} is not in the table (have: {})",
                ids.join(", ")
            ))
        })?,
        None => table.row_for(&cpu.model, gpu).cloned().ok_or_else(|| {
            SelectError(format!(
                "no row in the energy table for {:?}",
                gpu.map_or(cpu.model.as_str(), |g| g.0)
            ))
        })?,
    };
    Ok(EnergyModel::new(row, threads.min(cpu.logical_cores)))
}

/// The meter to use (none: estimate), the estimate model, and every source's status.
pub struct Selection {
    pub meter: Option<Box<dyn EnergyMeter>>,
    pub model: EnergyModel,
    pub statuses: Vec<SourceStatus>,
}

/// Opens the meter `opts` asks for (an error if a requested sensor is missing).
pub fn select(
    opts: &EnergyOptions,
    threads: usize,
    gpu: Option<(String, bool)>,
) -> Result<Selection, SelectError> {
    let want = opts.source;
    let model = energy_model(opts, threads, gpu)?;
    let (meter, statuses) = match want {
        Some(SourceKind::Estimate) => (None, Vec::new()),
        _ => open_meter(want, &SysRoots::default()),
    };
    if let (Some(k), None) = (want, &meter) {
        if k != SourceKind::Estimate {
            let why = statuses.first().map_or(String::new(), |s| s.detail.clone());
            return Err(SelectError(format!(
                "--energy {}: not available here: {why}",
                k.label()
            )));
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
    opts: &EnergyOptions,
    threads: usize,
    gpu: Option<(String, bool)>,
) -> Result<(Recorder, Vec<SourceStatus>), SelectError> {
    let Selection {
        meter,
        model,
        statuses,
    } = select(opts, threads, gpu)?;
    let measured = meter.is_some();
    let mut rec = Recorder::new(meter, model, Duration::from_secs(1));
    if measured {
        rec.measure_idle(opts.idle);
    }
    Ok((rec, statuses))
}

/// The energy source for `tokenfab bench` windows of a run on `threads` threads or `gpu`.
pub fn bench_probe(
    opts: &EnergyOptions,
    threads: usize,
    gpu: Option<(String, bool)>,
) -> Result<EnergyProbe, SelectError> {
    let s = select(opts, threads, gpu)?;
    Ok(EnergyProbe {
        meter: s.meter,
        model: s.model,
    })
}

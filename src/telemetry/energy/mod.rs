//! Energy: one [`EnergyMeter`] interface over the sensors a machine may have — NVML's total-
//! energy counter ([`nvml`]), RAPL through powercap ([`rapl`]), a laptop battery ([`battery`])
//! — and, where none exists (VMs, CI), an explicit estimate from a documented coefficient
//! table ([`estimate`]). Every figure carries its [`EnergySource`] label and sampling interval.
//!
//! Meters are cumulative counters read at window boundaries: energy is attributed to tokens
//! per window (a phase, or a span of many decode steps), never per single token of a counter
//! that only updates every ~100 ms.

pub mod battery;
pub mod estimate;
pub mod nvml;
pub mod rapl;
pub mod select;

use serde::{Deserialize, Serialize};
use std::path::Path;
use std::time::Duration;

/// Where an energy figure came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum SourceKind {
    #[serde(rename = "measured:nvml")]
    Nvml,
    #[serde(rename = "measured:rapl")]
    Rapl,
    #[serde(rename = "measured:battery")]
    Battery,
    #[serde(rename = "estimated:model")]
    Estimate,
}

impl SourceKind {
    pub const ALL: [SourceKind; 4] = [
        SourceKind::Nvml,
        SourceKind::Rapl,
        SourceKind::Battery,
        SourceKind::Estimate,
    ];

    /// The label reports print (`measured:rapl`, `estimated:model` …).
    pub fn label(self) -> &'static str {
        match self {
            SourceKind::Nvml => "measured:nvml",
            SourceKind::Rapl => "measured:rapl",
            SourceKind::Battery => "measured:battery",
            SourceKind::Estimate => "estimated:model",
        }
    }

    /// Parses `nvml`, `rapl`, `battery`, `estimate` (or the full labels).
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "nvml" | "measured:nvml" => Some(SourceKind::Nvml),
            "rapl" | "measured:rapl" => Some(SourceKind::Rapl),
            "battery" | "measured:battery" => Some(SourceKind::Battery),
            "estimate" | "estimated" | "estimated:model" => Some(SourceKind::Estimate),
            _ => None,
        }
    }
}

impl std::fmt::Display for SourceKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.label())
    }
}

#[derive(Debug, thiserror::Error)]
pub enum EnergyError {
    #[error("{0}")]
    Unavailable(String),
    #[error("permission denied reading {path}: {hint}")]
    Permission { path: String, hint: String },
    #[error("{path}: {msg}")]
    Read { path: String, msg: String },
}

/// A cumulative energy counter.
pub trait EnergyMeter: Send {
    fn kind(&self) -> SourceKind;
    /// What is measured, e.g. `RAPL package-0 + dram (2 domains)`.
    fn describe(&self) -> String;
    /// How often the underlying counter updates; windows shorter than this are meaningless.
    fn interval(&self) -> Duration;
    /// Joules consumed since the meter was opened (wraparound handled).
    fn read_j(&mut self) -> Result<f64, EnergyError>;
}

/// Why a source is (not) available, for `tokenfab probe` and run reports.
#[derive(Clone, Debug, Serialize)]
pub struct SourceStatus {
    pub kind: SourceKind,
    pub available: bool,
    pub detail: String,
}

/// Roots of the sysfs trees meters read (overridable for tests).
#[derive(Clone, Debug)]
pub struct SysRoots {
    pub powercap: std::path::PathBuf,
    pub power_supply: std::path::PathBuf,
}

impl Default for SysRoots {
    fn default() -> Self {
        SysRoots {
            powercap: "/sys/class/powercap".into(),
            power_supply: "/sys/class/power_supply".into(),
        }
    }
}

/// Tries every measured source in preference order (NVML, RAPL, battery) or just `only`;
/// returns the first that opens, and the status of each tried.
pub fn open_meter(
    only: Option<SourceKind>,
    roots: &SysRoots,
) -> (Option<Box<dyn EnergyMeter>>, Vec<SourceStatus>) {
    let mut statuses = Vec::new();
    let order = [SourceKind::Nvml, SourceKind::Rapl, SourceKind::Battery];
    for kind in order {
        if only.is_some_and(|o| o != kind) {
            continue;
        }
        let opened: Result<Box<dyn EnergyMeter>, EnergyError> = match kind {
            SourceKind::Nvml => {
                nvml::NvmlMeter::open().map(|m| Box::new(m) as Box<dyn EnergyMeter>)
            }
            SourceKind::Rapl => rapl::RaplMeter::open(&roots.powercap).map(|m| Box::new(m) as _),
            SourceKind::Battery => {
                battery::BatteryMeter::open(&roots.power_supply).map(|m| Box::new(m) as _)
            }
            SourceKind::Estimate => unreachable!(),
        };
        match opened {
            Ok(mut m) => match m.read_j() {
                Ok(_) => {
                    statuses.push(SourceStatus {
                        kind,
                        available: true,
                        detail: m.describe(),
                    });
                    return (Some(m), statuses);
                }
                Err(e) => statuses.push(SourceStatus {
                    kind,
                    available: false,
                    detail: e.to_string(),
                }),
            },
            Err(e) => statuses.push(SourceStatus {
                kind,
                available: false,
                detail: e.to_string(),
            }),
        }
    }
    (None, statuses)
}

/// Reads a trimmed text file, mapping permission errors to an explanation.
pub(crate) fn read_text(path: &Path, hint: &str) -> Result<String, EnergyError> {
    std::fs::read_to_string(path)
        .map(|s| s.trim().to_string())
        .map_err(|e| io_error(path, e, hint))
}

pub(crate) fn io_error(path: &Path, e: std::io::Error, hint: &str) -> EnergyError {
    match e.kind() {
        std::io::ErrorKind::PermissionDenied => EnergyError::Permission {
            path: path.display().to_string(),
            hint: hint.to_string(),
        },
        _ => EnergyError::Read {
            path: path.display().to_string(),
            msg: e.to_string(),
        },
    }
}

pub(crate) fn read_u64(path: &Path, hint: &str) -> Result<u64, EnergyError> {
    let s = read_text(path, hint)?;
    s.parse().map_err(|_| EnergyError::Read {
        path: path.display().to_string(),
        msg: format!("not a number: {s:?}"),
    })
}

#[cfg(test)]
mod tests;

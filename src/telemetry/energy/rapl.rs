//! RAPL energy counters through Linux powercap (`/sys/class/powercap/intel-rapl:*`; AMD Zen
//! exposes the same driver). Package zones (`intel-rapl:N`) and their DRAM sub-zones are
//! summed; core/uncore sub-zones are already inside the package. Each counter wraps at
//! `max_energy_range_uj`, which is handled per read. Reading `energy_uj` needs root since Linux
//! 5.10; the error says so.

use super::{read_text, read_u64, EnergyError, EnergyMeter, SourceKind};
use std::path::{Path, PathBuf};
use std::time::Duration;

const HINT: &str = "RAPL counters are root-only since Linux 5.10 (CVE-2020-8694); run as root, \
                    or grant read access: sudo chmod o+r /sys/class/powercap/intel-rapl:*/energy_uj";

struct Domain {
    name: String,
    energy: PathBuf,
    max_uj: u64,
    last_uj: u64,
    total_uj: u128,
}

pub struct RaplMeter {
    domains: Vec<Domain>,
}

impl RaplMeter {
    /// Opens every package zone and DRAM sub-zone under `root`.
    pub fn open(root: &Path) -> Result<Self, EnergyError> {
        let entries = std::fs::read_dir(root)
            .map_err(|e| EnergyError::Unavailable(format!("no RAPL: {} ({e})", root.display())))?;
        let mut zones: Vec<PathBuf> = entries
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| {
                p.file_name()
                    .and_then(|n| n.to_str())
                    .is_some_and(|n| n.starts_with("intel-rapl:"))
            })
            .collect();
        zones.sort();
        let mut domains = Vec::new();
        for z in zones {
            let file = z
                .file_name()
                .and_then(|n| n.to_str())
                .unwrap_or_default()
                .to_string();
            let depth = file.matches(':').count();
            let name = read_text(&z.join("name"), HINT).unwrap_or_else(|_| file.clone());
            // packages are "intel-rapl:N"; keep sub-zones only for DRAM
            let keep = depth == 1 || (depth == 2 && name == "dram");
            if !keep {
                continue;
            }
            let energy = z.join("energy_uj");
            let max_uj = read_u64(&z.join("max_energy_range_uj"), HINT)?;
            let last_uj = read_u64(&energy, HINT)?;
            domains.push(Domain {
                name,
                energy,
                max_uj,
                last_uj,
                total_uj: 0,
            });
        }
        if domains.is_empty() {
            return Err(EnergyError::Unavailable(format!(
                "no RAPL zones under {}",
                root.display()
            )));
        }
        Ok(RaplMeter { domains })
    }

    /// Per-domain joules since open.
    pub fn domains_j(&self) -> Vec<(String, f64)> {
        self.domains
            .iter()
            .map(|d| (d.name.clone(), d.total_uj as f64 / 1e6))
            .collect()
    }
}

/// Microjoules between two readings of a counter that wraps at `max`.
pub fn delta_uj(last: u64, now: u64, max: u64) -> u64 {
    if now >= last {
        now - last
    } else {
        // wrapped: the counter went up to max and restarted from 0
        max.saturating_sub(last) + now
    }
}

impl EnergyMeter for RaplMeter {
    fn kind(&self) -> SourceKind {
        SourceKind::Rapl
    }

    fn describe(&self) -> String {
        let names: Vec<&str> = self.domains.iter().map(|d| d.name.as_str()).collect();
        format!("RAPL {} ({} domains)", names.join(" + "), names.len())
    }

    fn interval(&self) -> Duration {
        // RAPL updates about every millisecond
        Duration::from_millis(1)
    }

    fn read_j(&mut self) -> Result<f64, EnergyError> {
        for d in &mut self.domains {
            let now = read_u64(&d.energy, HINT)?;
            d.total_uj += delta_uj(d.last_uj, now, d.max_uj) as u128;
            d.last_uj = now;
        }
        Ok(self.domains.iter().map(|d| d.total_uj as f64).sum::<f64>() / 1e6)
    }
}

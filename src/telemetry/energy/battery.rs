//! Laptop battery energy through `/sys/class/power_supply/BAT*`: while discharging, the drop in
//! `energy_now` (µWh; or `charge_now` µAh × `voltage_now` µV) is the energy the machine drew.
//! Firmware updates these every few seconds, so only long windows mean anything.

use super::{read_text, read_u64, EnergyError, EnergyMeter, SourceKind};
use std::path::{Path, PathBuf};
use std::time::Duration;

const HINT: &str = "battery files should be world-readable; check the power_supply driver";

pub struct BatteryMeter {
    dir: PathBuf,
    start_wh: f64,
}

/// Stored energy in watt-hours.
fn stored_wh(dir: &Path) -> Result<f64, EnergyError> {
    if dir.join("energy_now").exists() {
        return Ok(read_u64(&dir.join("energy_now"), HINT)? as f64 / 1e6);
    }
    let charge = read_u64(&dir.join("charge_now"), HINT)? as f64 / 1e6; // Ah
    let volts = read_u64(&dir.join("voltage_now"), HINT)? as f64 / 1e6;
    Ok(charge * volts)
}

impl BatteryMeter {
    pub fn open(root: &Path) -> Result<Self, EnergyError> {
        let entries = std::fs::read_dir(root).map_err(|e| {
            EnergyError::Unavailable(format!("no power_supply class: {} ({e})", root.display()))
        })?;
        let mut bats: Vec<PathBuf> = entries
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| {
                p.file_name()
                    .and_then(|n| n.to_str())
                    .is_some_and(|n| n.starts_with("BAT"))
            })
            .collect();
        bats.sort();
        let dir = bats
            .into_iter()
            .next()
            .ok_or_else(|| EnergyError::Unavailable("no battery (BAT*) found".into()))?;
        let status = read_text(&dir.join("status"), HINT)?;
        if status != "Discharging" {
            return Err(EnergyError::Unavailable(format!(
                "{} is {status:?}, not discharging: on mains power the battery does not see the load",
                dir.display()
            )));
        }
        let start_wh = stored_wh(&dir)?;
        Ok(BatteryMeter { dir, start_wh })
    }

    /// Instantaneous power draw in watts (`power_now`), if the driver reports it.
    pub fn power_w(&self) -> Option<f64> {
        read_u64(&self.dir.join("power_now"), HINT)
            .ok()
            .map(|uw| uw as f64 / 1e6)
    }
}

impl EnergyMeter for BatteryMeter {
    fn kind(&self) -> SourceKind {
        SourceKind::Battery
    }

    fn describe(&self) -> String {
        format!("battery {} (discharging)", self.dir.display())
    }

    fn interval(&self) -> Duration {
        Duration::from_secs(5)
    }

    fn read_j(&mut self) -> Result<f64, EnergyError> {
        let now = stored_wh(&self.dir)?;
        Ok(((self.start_wh - now) * 3600.0).max(0.0))
    }
}

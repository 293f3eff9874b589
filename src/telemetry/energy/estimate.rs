//! The energy estimate for machines without a sensor: `E = P_static·t + e_mem·bytes +
//! e_op·FLOPs`, with per-device coefficients from a documented, user-editable table
//! (`devices.toml`, shipped in the binary; rows can be replaced from a file). The result keeps
//! its three terms apart, so reports can show what the estimate is made of.

use serde::{Deserialize, Serialize};
use std::path::Path;

const BUILTIN: &str = include_str!("devices.toml");

/// One row of the coefficient table.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct DeviceRow {
    pub id: String,
    /// `cpu`, `gpu` (a discrete GPU) or `igpu` (one sharing the CPU's memory).
    pub kind: String,
    /// Substrings of the CPU model name / GPU name this row applies to (empty: fallback).
    #[serde(default, rename = "match")]
    pub matches: Vec<String>,
    /// Busy power of the whole device, W.
    #[serde(default)]
    pub p_static_w: Option<f64>,
    /// Busy power per hardware thread (CPU slices), W.
    #[serde(default)]
    pub p_static_w_per_thread: Option<f64>,
    pub e_mem_pj_per_byte: f64,
    pub e_op_pj_per_flop: f64,
    pub source: String,
    pub as_of: String,
}

#[derive(Debug, Deserialize)]
struct TableFile {
    device: Vec<DeviceRow>,
}

#[derive(Debug, thiserror::Error)]
pub enum TableError {
    #[error("{file}: {msg}")]
    Invalid { file: String, msg: String },
    #[error("{file}: {source}")]
    Io {
        file: String,
        #[source]
        source: std::io::Error,
    },
}

/// The coefficient table.
#[derive(Clone, Debug)]
pub struct DeviceTable {
    pub rows: Vec<DeviceRow>,
}

impl DeviceTable {
    /// The table shipped with tokenfab.
    pub fn builtin() -> Self {
        // the built-in table is validated by a unit test; a broken build fails there
        Self::parse("<builtin devices.toml>", BUILTIN).unwrap_or(DeviceTable { rows: Vec::new() })
    }

    pub fn parse(file: &str, text: &str) -> Result<Self, TableError> {
        let invalid = |msg: String| TableError::Invalid {
            file: file.to_string(),
            msg,
        };
        let t: TableFile = toml::from_str(text).map_err(|e| invalid(e.to_string()))?;
        let mut seen = std::collections::HashSet::new();
        for r in &t.device {
            if !seen.insert(r.id.clone()) {
                return Err(invalid(format!("device id {:?} appears twice", r.id)));
            }
            if !["cpu", "gpu", "igpu"].contains(&r.kind.as_str()) {
                return Err(invalid(format!(
                    "device {:?}: kind must be \"cpu\", \"gpu\" or \"igpu\"",
                    r.id
                )));
            }
            match (r.p_static_w, r.p_static_w_per_thread) {
                (Some(_), Some(_)) | (None, None) => {
                    return Err(invalid(format!(
                        "device {:?}: give exactly one of p_static_w, p_static_w_per_thread",
                        r.id
                    )))
                }
                _ => {}
            }
            let nums = [
                ("p_static_w", r.p_static_w.unwrap_or(0.0)),
                (
                    "p_static_w_per_thread",
                    r.p_static_w_per_thread.unwrap_or(0.0),
                ),
                ("e_mem_pj_per_byte", r.e_mem_pj_per_byte),
                ("e_op_pj_per_flop", r.e_op_pj_per_flop),
            ];
            for (name, v) in nums {
                if !v.is_finite() || v < 0.0 {
                    return Err(invalid(format!(
                        "device {:?}: {name} = {v} must be >= 0",
                        r.id
                    )));
                }
            }
            if r.source.trim().is_empty() || r.as_of.trim().is_empty() {
                return Err(invalid(format!(
                    "device {:?}: source and as_of are required",
                    r.id
                )));
            }
        }
        Ok(DeviceTable { rows: t.device })
    }

    /// Replaces or adds rows from a user file.
    pub fn merge_file(&mut self, path: &Path) -> Result<(), TableError> {
        let text = std::fs::read_to_string(path).map_err(|e| TableError::Io {
            file: path.display().to_string(),
            source: e,
        })?;
        let extra = Self::parse(&path.display().to_string(), &text)?;
        for row in extra.rows {
            match self.rows.iter_mut().find(|r| r.id == row.id) {
                Some(slot) => *slot = row,
                None => self.rows.push(row),
            }
        }
        Ok(())
    }

    pub fn get(&self, id: &str) -> Option<&DeviceRow> {
        self.rows.iter().find(|r| r.id == id)
    }

    /// The row for a run: the GPU's (`gpu`: name, integrated?) by name among the `gpu` or
    /// `igpu` rows, else the CPU's by model name among the `cpu` rows.
    pub fn row_for(&self, cpu_model: &str, gpu: Option<(&str, bool)>) -> Option<&DeviceRow> {
        match gpu {
            Some((name, integrated)) => self.find(if integrated { "igpu" } else { "gpu" }, name),
            None => self.find("cpu", cpu_model),
        }
    }

    /// The first row of `kind` whose patterns match `name`, else the first fallback row.
    pub fn find(&self, kind: &str, name: &str) -> Option<&DeviceRow> {
        let of_kind = || self.rows.iter().filter(move |r| r.kind == kind);
        of_kind()
            .find(|r| r.matches.iter().any(|m| name.contains(m.as_str())))
            .or_else(|| of_kind().find(|r| r.matches.is_empty()))
    }
}

/// An estimate's three terms, in joules.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize)]
pub struct Estimate {
    pub static_j: f64,
    pub memory_j: f64,
    pub compute_j: f64,
}

impl Estimate {
    pub fn total_j(&self) -> f64 {
        self.static_j + self.memory_j + self.compute_j
    }
    /// The part above the device's static (idle-like) power.
    pub fn above_static_j(&self) -> f64 {
        self.memory_j + self.compute_j
    }
}

/// A coefficient row bound to a run (threads used, for per-thread rows).
#[derive(Clone, Debug, Serialize)]
pub struct EnergyModel {
    pub device: DeviceRow,
    pub threads: usize,
    /// Static power this run is charged, W.
    pub p_static_w: f64,
}

impl EnergyModel {
    pub fn new(device: DeviceRow, threads: usize) -> Self {
        let p_static_w = device
            .p_static_w
            .unwrap_or_else(|| device.p_static_w_per_thread.unwrap_or(0.0) * threads.max(1) as f64);
        EnergyModel {
            device,
            threads,
            p_static_w,
        }
    }

    pub fn estimate(&self, seconds: f64, bytes: u64, flops: u64) -> Estimate {
        Estimate {
            static_j: self.p_static_w * seconds,
            memory_j: self.device.e_mem_pj_per_byte * 1e-12 * bytes as f64,
            compute_j: self.device.e_op_pj_per_flop * 1e-12 * flops as f64,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gpu_runs_get_gpu_rows_by_adapter_name() {
        let t = DeviceTable::builtin();
        let id = |gpu| t.row_for("AMD EPYC 7763", gpu).map(|r| r.id.as_str());
        assert_eq!(id(None), Some("cpu-amd-epyc-vcpu"));
        assert_eq!(id(Some(("NVIDIA H100 80GB HBM3", false))), Some("h100-sxm"));
        assert_eq!(
            id(Some(("NVIDIA GeForce RTX 4090", false))),
            Some("rtx-4090")
        );
        assert_eq!(
            id(Some(("AMD Radeon RX 7900 XTX", false))),
            Some("gpu-generic-discrete")
        );
        assert_eq!(
            id(Some(("Intel(R) Iris(R) Xe Graphics", true))),
            Some("igpu-generic")
        );
        // a GPU row charges the device's power, not per thread
        let m = EnergyModel::new(t.get("gpu-generic-discrete").unwrap().clone(), 16);
        assert_eq!(m.p_static_w, 250.0);
    }

    #[test]
    fn builtin_table_is_valid_and_matches_this_cpu_kind() {
        let t = DeviceTable::parse("builtin", BUILTIN).unwrap();
        assert!(t.rows.len() >= 4);
        assert_eq!(
            t.find("cpu", "AMD EPYC 7763 64-Core Processor").unwrap().id,
            "cpu-amd-epyc-vcpu"
        );
        assert_eq!(t.find("cpu", "Some Future CPU").unwrap().id, "cpu-generic");
        assert_eq!(
            t.find("gpu", "NVIDIA H100 80GB HBM3").unwrap().id,
            "h100-sxm"
        );
        // an unknown GPU gets the generic row, an assumption that says so in its source
        let generic = t.find("gpu", "Unknown GPU").unwrap();
        assert_eq!(generic.id, "gpu-generic-discrete");
        assert!(generic.source.starts_with("assumption"));
    }

    #[test]
    fn estimate_on_known_inputs() {
        // 2 threads x 2.19 W for 0.5 s = 2.19 J; 1e9 bytes x 160 pJ = 0.16 J;
        // 1e10 FLOPs x 2.3 pJ = 0.023 J
        let t = DeviceTable::builtin();
        let m = EnergyModel::new(t.get("cpu-amd-epyc-vcpu").unwrap().clone(), 2);
        let e = m.estimate(0.5, 1_000_000_000, 10_000_000_000);
        assert!((e.static_j - 2.19).abs() < 1e-12);
        assert!((e.memory_j - 0.16).abs() < 1e-12);
        assert!((e.compute_j - 0.023).abs() < 1e-12);
        assert!((e.total_j() - 2.373).abs() < 1e-12);
        assert!((e.above_static_j() - 0.183).abs() < 1e-12);
        // a whole-device row ignores the thread count
        let mac = EnergyModel::new(t.get("mac-mini-m4-16gb").unwrap().clone(), 8);
        assert_eq!(mac.p_static_w, 5.0);
    }

    #[test]
    fn bad_tables_are_rejected_with_the_reason() {
        let row = |extra: &str| {
            format!(
                "[[device]]\nid = \"x\"\nkind = \"cpu\"\ne_mem_pj_per_byte = 1.0\ne_op_pj_per_flop = 1.0\nsource = \"s\"\nas_of = \"d\"\n{extra}"
            )
        };
        let err = |text: &str| {
            DeviceTable::parse("user.toml", text)
                .unwrap_err()
                .to_string()
        };
        assert!(err(&row("")).contains("exactly one of"));
        assert!(err(&row("p_static_w = -1.0")).contains("must be >= 0"));
        assert!(err(&format!(
            "{}\n{}",
            row("p_static_w = 1.0"),
            row("p_static_w = 2.0")
        ))
        .contains("twice"));
        assert!(err("[[device]]\nid = 3").contains("user.toml"));
        let ok = DeviceTable::parse("user.toml", &row("p_static_w = 1.0")).unwrap();
        assert_eq!(ok.rows[0].p_static_w, Some(1.0));
        // merging replaces rows by id
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("energy.toml");
        std::fs::write(
            &f,
            row("p_static_w = 9.0").replace("\"x\"", "\"cpu-generic\""),
        )
        .unwrap();
        let mut t = DeviceTable::builtin();
        let n = t.rows.len();
        t.merge_file(&f).unwrap();
        assert_eq!(t.rows.len(), n);
        assert_eq!(t.get("cpu-generic").unwrap().p_static_w, Some(9.0));
    }
}

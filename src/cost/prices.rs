//! The price table: cloud API prices, GPU rental, edge devices, electricity, PUE and
//! amortization periods — every row with its source and date. Shipped with tokenfab
//! (`prices.toml`), overridable row by row from a user file, validated on load with errors
//! that name the file, section and row.

use serde::{Deserialize, Serialize};
use std::path::Path;

const BUILTIN: &str = include_str!("prices.toml");

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct CloudApi {
    pub id: String,
    pub usd_per_mtok_in: f64,
    pub usd_per_mtok_out: f64,
    pub source: String,
    pub as_of: String,
    #[serde(default)]
    pub confidence: String,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct GpuRental {
    pub id: String,
    pub gpu: String,
    pub usd_per_hour: f64,
    pub source: String,
    pub as_of: String,
    #[serde(default)]
    pub confidence: String,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct EdgeDevice {
    pub id: String,
    pub usd: f64,
    pub power_w: f64,
    #[serde(default)]
    pub power_note: String,
    pub mem_bw_gb_s: f64,
    /// An `[[amortization]]` id (`consumer`, `datacenter`).
    pub class: String,
    pub source: String,
    pub as_of: String,
    #[serde(default)]
    pub confidence: String,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Electricity {
    pub id: String,
    pub price_per_kwh: f64,
    pub currency: String,
    pub source: String,
    pub as_of: String,
    #[serde(default)]
    pub confidence: String,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Pue {
    pub id: String,
    pub value: f64,
    pub source: String,
    pub as_of: String,
    #[serde(default)]
    pub confidence: String,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Amortization {
    pub id: String,
    pub years: f64,
    pub source: String,
    pub as_of: String,
    #[serde(default)]
    pub confidence: String,
}

/// The whole table. Each section is optional in a user file.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PriceTable {
    #[serde(default)]
    pub cloud_api: Vec<CloudApi>,
    #[serde(default)]
    pub gpu_rental: Vec<GpuRental>,
    #[serde(default)]
    pub edge_device: Vec<EdgeDevice>,
    #[serde(default)]
    pub electricity: Vec<Electricity>,
    #[serde(default)]
    pub pue: Vec<Pue>,
    #[serde(default)]
    pub amortization: Vec<Amortization>,
}

#[derive(Debug, thiserror::Error)]
pub enum PriceError {
    #[error("{file}: {msg}")]
    Invalid { file: String, msg: String },
    #[error("{file}: {source}")]
    Io {
        file: String,
        #[source]
        source: std::io::Error,
    },
}

trait Row {
    fn id(&self) -> &str;
    fn dated(&self) -> (&str, &str);
    /// Named numbers and the range each must lie in.
    fn numbers(&self) -> Vec<(&'static str, f64, f64)>;
}

macro_rules! row {
    ($t:ty, $($field:ident >= $min:expr),*) => {
        impl Row for $t {
            fn id(&self) -> &str {
                &self.id
            }
            fn dated(&self) -> (&str, &str) {
                (&self.source, &self.as_of)
            }
            fn numbers(&self) -> Vec<(&'static str, f64, f64)> {
                vec![$((stringify!($field), self.$field, $min)),*]
            }
        }
    };
}
row!(CloudApi, usd_per_mtok_in >= 0.0, usd_per_mtok_out >= 0.0);
row!(GpuRental, usd_per_hour >= 0.0);
row!(EdgeDevice, usd >= 0.0, power_w >= 0.0, mem_bw_gb_s >= 0.0);
row!(Electricity, price_per_kwh >= 0.0);
row!(Pue, value >= 1.0);
row!(Amortization, years >= 0.01);

fn check_rows<R: Row>(file: &str, section: &str, rows: &[R]) -> Result<(), PriceError> {
    let invalid = |msg: String| PriceError::Invalid {
        file: file.to_string(),
        msg,
    };
    let mut seen = std::collections::HashSet::new();
    for r in rows {
        if r.id().trim().is_empty() {
            return Err(invalid(format!("[[{section}]] row with an empty id")));
        }
        if !seen.insert(r.id().to_string()) {
            return Err(invalid(format!(
                "[[{section}]] id {:?} appears twice",
                r.id()
            )));
        }
        let (source, as_of) = r.dated();
        if source.trim().is_empty() || as_of.trim().is_empty() {
            return Err(invalid(format!(
                "[[{section}]] {:?}: source and as_of are required (every figure says where it comes from)",
                r.id()
            )));
        }
        for (name, v, min) in r.numbers() {
            if !v.is_finite() || v < min {
                return Err(invalid(format!(
                    "[[{section}]] {:?}: {name} = {v} must be a number >= {min}",
                    r.id()
                )));
            }
        }
    }
    Ok(())
}

fn merge_rows<R: Row + Clone>(base: &mut Vec<R>, extra: &[R]) {
    for r in extra {
        match base.iter_mut().find(|b| b.id() == r.id()) {
            Some(slot) => *slot = r.clone(),
            None => base.push(r.clone()),
        }
    }
}

impl PriceTable {
    /// The table shipped with tokenfab (validated by a unit test).
    pub fn builtin() -> Self {
        Self::parse("<builtin prices.toml>", BUILTIN).unwrap_or_default()
    }

    pub fn parse(file: &str, text: &str) -> Result<Self, PriceError> {
        let t: PriceTable = toml::from_str(text).map_err(|e| PriceError::Invalid {
            file: file.to_string(),
            msg: e.to_string(),
        })?;
        t.validate(file)?;
        Ok(t)
    }

    fn validate(&self, file: &str) -> Result<(), PriceError> {
        check_rows(file, "cloud_api", &self.cloud_api)?;
        check_rows(file, "gpu_rental", &self.gpu_rental)?;
        check_rows(file, "edge_device", &self.edge_device)?;
        check_rows(file, "electricity", &self.electricity)?;
        check_rows(file, "pue", &self.pue)?;
        check_rows(file, "amortization", &self.amortization)?;
        Ok(())
    }

    /// Replaces or adds rows from a user file; the merged table is validated again (an edge
    /// device's class must name an amortization row).
    pub fn merge_file(&mut self, path: &Path) -> Result<(), PriceError> {
        let file = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|e| PriceError::Io {
            file: file.clone(),
            source: e,
        })?;
        let extra = Self::parse(&file, &text)?;
        self.merge(&file, &extra)
    }

    /// Replaces or adds the rows of `extra` (parsed from `file`), then validates the result.
    pub fn merge(&mut self, file: &str, extra: &PriceTable) -> Result<(), PriceError> {
        merge_rows(&mut self.cloud_api, &extra.cloud_api);
        merge_rows(&mut self.gpu_rental, &extra.gpu_rental);
        merge_rows(&mut self.edge_device, &extra.edge_device);
        merge_rows(&mut self.electricity, &extra.electricity);
        merge_rows(&mut self.pue, &extra.pue);
        merge_rows(&mut self.amortization, &extra.amortization);
        self.check_links(file)
    }

    /// Cross-row checks.
    pub fn check_links(&self, file: &str) -> Result<(), PriceError> {
        for d in &self.edge_device {
            if !self.amortization.iter().any(|a| a.id == d.class) {
                return Err(PriceError::Invalid {
                    file: file.to_string(),
                    msg: format!(
                        "[[edge_device]] {:?}: class {:?} is not an [[amortization]] id",
                        d.id, d.class
                    ),
                });
            }
        }
        Ok(())
    }

    pub fn edge(&self, id: &str) -> Option<&EdgeDevice> {
        self.edge_device.iter().find(|r| r.id == id)
    }
    pub fn electricity(&self, id: &str) -> Option<&Electricity> {
        self.electricity.iter().find(|r| r.id == id)
    }
    pub fn pue(&self, id: &str) -> Option<&Pue> {
        self.pue.iter().find(|r| r.id == id)
    }
    pub fn amortization(&self, id: &str) -> Option<&Amortization> {
        self.amortization.iter().find(|r| r.id == id)
    }
}

/// "section/id (source, as of date)": how reports cite a table row.
pub fn cite(section: &str, id: &str, source: &str, as_of: &str) -> String {
    format!("table {section}/{id} ({source}, as of {as_of})")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builtin_table_is_valid_and_complete() {
        let t = PriceTable::parse("builtin", BUILTIN).unwrap();
        t.check_links("builtin").unwrap();
        assert_eq!(t.cloud_api.len(), 11);
        assert_eq!(t.gpu_rental.len(), 8);
        assert_eq!(t.edge_device.len(), 4);
        assert_eq!(
            t.electricity("us-residential").unwrap().price_per_kwh,
            0.1648
        );
        assert_eq!(t.pue("industry-average").unwrap().value, 1.54);
        assert_eq!(t.amortization("datacenter").unwrap().years, 5.0);
        assert!(t
            .cloud_api
            .iter()
            .all(|r| !r.as_of.is_empty() && !r.source.is_empty()));
    }

    #[test]
    fn bad_files_name_the_row_and_the_problem() {
        let err = |text: &str| PriceTable::parse("my.toml", text).unwrap_err().to_string();
        let api = |extra: &str| {
            format!(
                "[[cloud_api]]\nid = \"x\"\nusd_per_mtok_in = 1.0\nusd_per_mtok_out = 2.0\n{extra}"
            )
        };
        assert!(err(&api("source = \"s\"")).contains("missing field `as_of`"));
        assert!(err(&api("source = \"\"\nas_of = \"d\"")).contains("source and as_of are required"));
        let neg = "[[cloud_api]]\nid = \"x\"\nusd_per_mtok_in = -1.0\nusd_per_mtok_out = 2.0\nsource = \"s\"\nas_of = \"d\"";
        let e = err(neg);
        assert!(
            e.contains("my.toml") && e.contains("usd_per_mtok_in") && e.contains("\"x\""),
            "{e}"
        );
        let pue = "[[pue]]\nid = \"p\"\nvalue = 0.9\nsource = \"s\"\nas_of = \"d\"";
        assert!(err(pue).contains(">= 1"));
        assert!(err("[[gpu]]\nid = \"x\"").contains("unknown field"));
        let twice = format!(
            "{}\nsource = \"s\"\nas_of = \"d\"\n{}\nsource = \"s\"\nas_of = \"d\"",
            api(""),
            api("")
        );
        assert!(err(&twice).contains("twice"));
    }

    #[test]
    fn user_rows_replace_builtin_ones_and_links_are_checked() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("prices.toml");
        std::fs::write(
            &f,
            "[[electricity]]\nid = \"us-residential\"\nprice_per_kwh = 0.30\ncurrency = \"USD\"\nsource = \"my bill\"\nas_of = \"2026-11\"\n",
        )
        .unwrap();
        let mut t = PriceTable::builtin();
        t.merge_file(&f).unwrap();
        assert_eq!(t.electricity("us-residential").unwrap().price_per_kwh, 0.30);
        assert_eq!(t.electricity.len(), 3, "replaced, not added");
        std::fs::write(
            &f,
            "[[edge_device]]\nid = \"box\"\nusd = 100.0\npower_w = 10.0\nmem_bw_gb_s = 50.0\nclass = \"hobby\"\nsource = \"s\"\nas_of = \"d\"\n",
        )
        .unwrap();
        let e = t.merge_file(&f).unwrap_err().to_string();
        assert!(e.contains("class \"hobby\""), "{e}");
        let missing = t
            .merge_file(&dir.path().join("nope.toml"))
            .unwrap_err()
            .to_string();
        assert!(missing.contains("nope.toml"));
    }
}

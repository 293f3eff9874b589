//! Tables a user can hand in (`--prices FILE`, `~/.config/tokenfab/prices.toml`, the energy
//! device table): the first byte picks the kind, the rest is TOML. A table that parses is then
//! used — prices through the whole cost report on a recorded bench run, devices through the
//! energy estimate — so numbers that parse but make no sense must fail cleanly too.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tokenfab::cost::prices::PriceTable;
use tokenfab::cost::report::{build, CostOptions};
use tokenfab::telemetry::bench::parse_results;
use tokenfab::telemetry::energy::estimate::{DeviceTable, EnergyModel};

const BENCH: &str = include_str!("../../tests/data/cost/bench.json");

fuzz_target!(|data: &[u8]| {
    let Some((&kind, rest)) = data.split_first() else {
        return;
    };
    let text = String::from_utf8_lossy(rest);
    if kind & 1 == 0 {
        let Ok(table) = PriceTable::parse("<fuzz>", &text) else {
            return;
        };
        // also as an overlay on the built-in table, as `--prices` is
        let mut merged = PriceTable::builtin();
        let _ = merged.merge("<fuzz>", &table);
        let results = parse_results(BENCH).expect("the recorded bench file");
        for t in [&table, &merged] {
            let mut o = CostOptions::default();
            if let Some(e) = t.electricity.first() {
                o.electricity = e.id.clone();
                o.usd_per_eur = Some(1.1);
            }
            if let Some(p) = t.pue.first() {
                o.pue = p.id.clone();
            }
            o.device = t.edge_device.first().map(|d| d.id.clone());
            if let Ok(r) = build(&results, t, &o) {
                let _ = r.to_markdown();
                let _ = serde_json::to_string(&r);
            }
        }
    } else {
        let Ok(t) = DeviceTable::parse("<fuzz>", &text) else {
            return;
        };
        for row in &t.rows {
            for threads in [1, 2, 64] {
                let m = EnergyModel::new(row.clone(), threads);
                let e = m.estimate(0.25, 1 << 30, 1 << 33);
                let _ = (e.total_j(), e.above_static_j());
            }
        }
    }
});

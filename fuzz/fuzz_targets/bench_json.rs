//! `tokenfab cost --bench FILE`: a bench JSON file (array or JSON lines) from anywhere, then
//! the whole cost report on it with the built-in price table, as markdown and JSON.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tokenfab::cost::prices::PriceTable;
use tokenfab::cost::report::{build, CostOptions};
use tokenfab::telemetry::bench::{parse_results, to_csv, to_markdown};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(results) = parse_results(text) else {
        return;
    };
    let _ = to_markdown(&results);
    let _ = to_csv(&results);
    let table = PriceTable::builtin();
    for acceptance in [None, Some(0.5)] {
        let o = CostOptions {
            acceptance,
            ..CostOptions::default()
        };
        if let Ok(r) = build(&results, &table, &o) {
            let _ = r.to_markdown();
            let _ = serde_json::to_string(&r);
        }
    }
});

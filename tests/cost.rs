//! `tokenfab cost` end to end: a golden report from a fixed bench JSON (table and JSON must be
//! stable), the plots, and clear errors for bad input. The arithmetic itself is checked to the
//! cent against hand-computed examples in `src/cost/model.rs`.
//!
//! Re-bless the goldens after an intended change with `TOKENFAB_BLESS=1 cargo test --release --test cost`.

mod common;
use std::path::{Path, PathBuf};
use std::process::Command;

fn data(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data/cost")
        .join(name)
}

/// Runs tokenfab with HOME in an empty temp dir (no user price or energy tables).
fn tokenfab(args: &[&str]) -> (i32, String, String) {
    let home = tempfile::tempdir().unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_tokenfab"))
        .args(args)
        .env("HOME", home.path())
        .env_remove("TOKENFAB_MODEL")
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8(out.stdout).unwrap(),
        String::from_utf8(out.stderr).unwrap(),
    )
}

fn golden(name: &str, got: &str) {
    let p = data(name);
    if std::env::var_os("TOKENFAB_BLESS").is_some() {
        // blessing makes the comparison below pass by construction: never under CI
        assert!(
            std::env::var_os("CI").is_none(),
            "TOKENFAB_BLESS is set under CI: goldens are blessed by a person, not by CI"
        );
        std::fs::write(&p, got).unwrap();
    }
    let want =
        std::fs::read_to_string(&p).unwrap_or_else(|_| panic!("{} missing: bless it", p.display()));
    assert_eq!(
        got, want,
        "{name} changed; re-bless with TOKENFAB_BLESS=1 if intended"
    );
}

const ARGS: [&str; 13] = [
    "--device",
    "mac-mini-m4-16gb",
    "--utilization",
    "0.2",
    "--mix",
    "3:1",
    "--acceptance",
    "0.9",
    "--rental-tok-s",
    "5000,400",
    "--no-plots",
    "--electricity",
    "us-residential",
];

#[test]
fn golden_report_is_stable() {
    let bench = data("bench.json");
    let mut md = vec!["cost", bench.to_str().unwrap()];
    md.extend(ARGS);
    let (code, out, err) = tokenfab(&md);
    assert_eq!(code, 0, "{err}");
    golden("golden.md", &out);
    // worked numbers, by hand: decode energy 0.12 J x 1e6 / 3.6e6 x 0.1648 USD/kWh = 0.0054933;
    // hardware 599 / (3 x 8760 x 0.2) x 1e6 / (50 x 3600) = 0.63313 -> total 0.63863 USD/Mtok,
    // per accepted token (0.9) 0.70959
    assert!(
        out.contains("| decode (vs cloud output) | 0.0055 | 0.6331 | 0.0000 | 0.6386 | 0.7096 |"),
        "{out}"
    );
    let mut js = md.clone();
    js.extend(["-o", "json"]);
    let (code, out, err) = tokenfab(&js);
    assert_eq!(code, 0, "{err}");
    golden("golden.json", &out);
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    let clouds = v["cloud"].as_array().unwrap();
    assert_eq!(clouds.len(), 11);
    assert!(clouds.iter().all(|c| c["break_even"]["kind"].is_string()));
    // rentals priced from the given throughput, rented only for the hours of work: runpod H100
    // at 2.69 USD/h, 3:1 mix of 5000 and 400 tok/s: (3 x 0.149444 + 1.868056) / 4 = 0.579097
    let h100 = v["rentals"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["id"] == "runpod:h100-sxm-community")
        .unwrap();
    let want = (3.0 * 2.69 * 1e6 / (5000.0 * 3600.0) + 2.69 * 1e6 / (400.0 * 3600.0)) / 4.0;
    assert_eq!(format!("{want:.5}"), "0.57910");
    assert!((h100["usd_per_mtok"].as_f64().unwrap() - want).abs() < 1e-9);

    // break-even, by hand: the device costs 599 USD over 3 x 365 days = 0.547032 USD/day and
    // (3 x 0.02 + 1 x 0.12) / 4 = 0.045 J x 0.1648 USD/kWh / 3.6e6 J/kWh = 2.06e-9 USD per
    // token; a cloud token is worth its price x 0.9 (--acceptance), so it breaks even at
    // N = 0.547032 / (0.9 x price - 2.06e-9) tokens/day. The device does at most
    // 1 / ((3 / 250 + 1 / 50) / 4) = 125 tok/s = 1.08e7 tokens/day.
    let per_day = 599.0 / (3.0 * 365.0);
    let energy = 0.045 * 0.1648 / 3.6e6;
    let n = |usd_per_mtok: f64| per_day / (0.9 * usd_per_mtok * 1e-6 - energy);
    let cloud = |id: &str| clouds.iter().find(|c| c["id"] == id).unwrap()["break_even"].clone();
    // together (0.18 USD/Mtok in and out): 3.4202e6 tokens/day, 31.67 % of the device
    let together = cloud("together:llama-3.1-8b-turbo");
    assert_eq!(format!("{:.4e}", n(0.18)), "3.4202e6");
    assert_eq!(together["kind"], "above");
    assert!((together["tokens_per_day"].as_f64().unwrap() - n(0.18)).abs() < 1e-3);
    assert!((together["utilization"].as_f64().unwrap() - n(0.18) / 1.08e7).abs() < 1e-9);
    // groq ((3 x 0.05 + 0.08) / 4 = 0.0575 USD/Mtok): needs 1.101e7 > 1.08e7, never
    assert_eq!(format!("{:.3e}", n(0.0575)), "1.101e7");
    let groq = cloud("groq:llama-3.1-8b-instant");
    assert_eq!(groq["kind"], "never");
    assert!(groq["reason"]
        .as_str()
        .unwrap()
        .contains("needs 1.101e7 tokens/day"));
}

#[test]
fn plots_are_written_as_svg_and_png() {
    let dir = tempfile::tempdir().unwrap();
    let bench = data("bench.json");
    let (code, _, err) = tokenfab(&[
        "cost",
        bench.to_str().unwrap(),
        "--plot-dir",
        dir.path().to_str().unwrap(),
    ]);
    assert_eq!(code, 0, "{err}");
    for stem in ["tokenfab-cost-utilization", "tokenfab-cost-components"] {
        let png = std::fs::read(dir.path().join(format!("{stem}.png"))).unwrap();
        assert_eq!(&png[..8], b"\x89PNG\r\n\x1a\n", "{stem}.png is a PNG");
        assert!(png.len() > 10_000, "{stem}.png has content");
        let svg = std::fs::read_to_string(dir.path().join(format!("{stem}.svg"))).unwrap();
        assert!(
            svg.contains("<svg") && svg.contains("USD per 1M"),
            "{stem}.svg"
        );
        assert!(err.contains(&format!("{stem}.png")));
    }
    let svg = std::fs::read_to_string(dir.path().join("tokenfab-cost-utilization.svg")).unwrap();
    assert!(
        svg.contains("openai:gpt-4o-mini"),
        "every cloud row is a labelled line"
    );
}

#[test]
fn bad_input_gives_clear_errors() {
    let bench = data("bench.json");
    let b = bench.to_str().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let junk = dir.path().join("junk.json");
    std::fs::write(&junk, "{\"not\": \"a bench\"}").unwrap();
    let bad_prices = dir.path().join("prices.toml");
    std::fs::write(
        &bad_prices,
        "[[pue]]\nid = \"x\"\nvalue = 0.5\nsource = \"s\"\nas_of = \"d\"\n",
    )
    .unwrap();
    let cases: Vec<(Vec<&str>, &str)> = vec![
        (
            vec!["cost", junk.to_str().unwrap()],
            "is not `tokenfab bench -o json` output",
        ),
        (
            vec!["cost", "/nonexistent.json"],
            "cannot read bench results",
        ),
        (
            vec!["cost", b, "--electricity", "eu-household", "--no-plots"],
            "--usd-per-eur",
        ),
        (
            vec!["cost", b, "--utilization", "0", "--no-plots"],
            "--utilization must be in (0, 1]",
        ),
        (
            vec!["cost", b, "--device", "toaster", "--no-plots"],
            "rtx-4090",
        ),
        (
            vec!["cost", b, "--acceptance", "1.5", "--no-plots"],
            "--acceptance",
        ),
        (vec!["cost", b, "--mix", "three", "--no-plots"], "--mix"),
        (
            vec![
                "cost",
                b,
                "--prices",
                bad_prices.to_str().unwrap(),
                "--no-plots",
            ],
            "prices.toml",
        ),
        (vec!["cost", b, "-o", "xml"], "-o must be md or json"),
    ];
    for (args, want) in cases {
        let (code, _, err) = tokenfab(&args);
        assert_eq!(code, 1, "{args:?}: {err}");
        assert!(err.contains(want), "{args:?}: {err}");
    }
    // EUR electricity with a rate works and says so
    let (code, out, err) = tokenfab(&[
        "cost",
        b,
        "--electricity",
        "eu-household",
        "--usd-per-eur",
        "1.1",
        "--no-plots",
    ]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("x 1.1 USD/EUR (user)"), "{out}");
}

#[test]
fn cost_can_measure_the_model_itself() {
    common::model_for("gemma");
    let (code, out, err) = tokenfab(&[
        "cost",
        "-m",
        common::model_for("gemma").to_str().unwrap(),
        "-t",
        "2",
        "--no-plots",
        "-o",
        "json",
    ]);
    assert_eq!(code, 0, "{err}");
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert!(v["edge"]["decode"]["energy"].as_f64().unwrap() > 0.0);
    assert!(v["inputs"][0]["origin"]
        .as_str()
        .unwrap()
        .starts_with("measured: tokenfab bench pp128"));
}

/// `--served`: the decode side from what a server on this machine served to concurrent
/// clients (`tokenfab bench --endpoint -o json`), at the best level or the one asked for.
#[test]
fn served_results_replace_the_decode_side() {
    let bench = data("bench.json");
    let b = bench.to_str().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let level = |c: usize, tok_s: f64, j: Option<f64>| {
        serde_json::json!({"concurrency": c, "requests": 16, "failed": 0, "tokens": 2048,
            "seconds": 2048.0 / tok_s, "aggregate_tok_s": tok_s, "stream_tok_s": null,
            "ttft": {}, "itl": {}, "j_per_token": j, "usd_per_mtok": null,
            "energy_source": "estimated:model", "first_error": null})
    };
    let load = dir.path().join("load.json");
    let write = |levels: Vec<serde_json::Value>| {
        let v = serde_json::json!({"endpoint": "http://x", "max_tokens": 128, "levels": levels});
        std::fs::write(&load, v.to_string()).unwrap();
    };
    write(vec![
        level(1, 100.0, Some(0.08)),
        level(8, 170.0, Some(0.033)),
    ]);
    let l = load.to_str().unwrap();
    let input = |args: &[&str], name: &str| -> f64 {
        let mut all = vec!["cost", b, "--served", l, "-o", "json", "--no-plots"];
        all.extend_from_slice(args);
        let (code, out, err) = tokenfab(&all);
        assert_eq!(code, 0, "{err}");
        let v: serde_json::Value = serde_json::from_str(&out).unwrap();
        v["inputs"]
            .as_array()
            .unwrap()
            .iter()
            .find(|i| i["name"] == name)
            .unwrap()["value"]
            .as_f64()
            .unwrap()
    };
    assert_eq!(input(&[], "decode throughput (tok/s)"), 170.0);
    assert_eq!(input(&[], "decode energy (J/token)"), 0.033);
    let one = ["--served-concurrency", "1"];
    assert_eq!(input(&one, "decode throughput (tok/s)"), 100.0);
    assert_eq!(input(&one, "decode energy (J/token)"), 0.08);
    // the bench's prefill stays
    let (_, out, _) = tokenfab(&["cost", b, "-o", "json", "--no-plots"]);
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    let prefill = &v["inputs"][0];
    assert_eq!(prefill["name"], "prefill throughput (tok/s)");
    assert_eq!(
        input(&[], "prefill throughput (tok/s)"),
        prefill["value"].as_f64().unwrap()
    );
    // a level that does not exist, and a server that reported no joules, are errors
    let (code, _, err) = tokenfab(&[
        "cost",
        b,
        "--served",
        l,
        "--served-concurrency",
        "3",
        "--no-plots",
    ]);
    assert_eq!(code, 1);
    assert!(err.contains("no level with concurrency 3"), "{err}");
    write(vec![level(4, 150.0, None)]);
    let (code, _, err) = tokenfab(&["cost", b, "--served", l, "--no-plots"]);
    assert_eq!(code, 1);
    assert!(err.contains("reported no joules"), "{err}");
}

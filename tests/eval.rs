//! `tokenfab eval` end to end on the real 0.5B model: five HumanEval problems generated,
//! extracted, run in the sandbox and priced; retries pay for their failed attempts; a
//! cascade runs; bad flags are refused with the flag named.

mod common;

use serde_json::Value;
use std::process::{Command, Output};

fn eval(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_tokenfab"))
        .arg("eval")
        .args(["-t", "2", "--backend", "cpu"])
        .args(args)
        .env(
            "TOKENFAB_MODELS_DIR",
            common::model(common::QWEN).parent().unwrap(),
        )
        .output()
        .unwrap()
}

fn json(o: &Output) -> Value {
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    serde_json::from_slice(&o.stdout).unwrap()
}

#[test]
fn five_problems_with_a_retry_are_generated_checked_and_priced() {
    let qwen = common::model(common::QWEN);
    let v = json(&eval(&[
        "-m",
        qwen.to_str().unwrap(),
        "--limit",
        "5",
        "--retries",
        "1",
        "-o",
        "json",
    ]));
    assert_eq!(v["problems"], 5);
    let single = &v["policies"][0];
    let retries = &v["policies"][1];
    assert!(
        single["policy"].as_str().unwrap().ends_with("single"),
        "{single}"
    );
    assert!(
        retries["policy"].as_str().unwrap().ends_with("retries=1"),
        "{retries}"
    );
    // measured 4 of 5 greedy (HumanEval/1 fails)
    let passed = single["passed"].as_u64().unwrap();
    assert!(passed >= 3, "{single}");
    let usd = single["usd"].as_f64().unwrap();
    assert!(usd > 0.0 && single["joules"].as_f64().unwrap() > 0.0);
    let per = single["usd_per_accepted"].as_f64().unwrap();
    assert!(
        (per - usd / passed as f64).abs() <= 1e-12 * per.max(1.0),
        "{single}"
    );
    // retries: at least as many solved, and every failed attempt is paid for
    assert!(retries["passed"].as_u64().unwrap() >= passed);
    assert!(retries["usd"].as_f64().unwrap() >= usd);
    assert_eq!(
        retries["attempts"].as_u64().unwrap(),
        5 + (5 - passed),
        "one retry per failed problem: {retries}"
    );
    let runs = v["runs"].as_object().unwrap().values().next().unwrap();
    assert_eq!(runs.as_array().unwrap().len(), 5);
    let first = &runs[0]["attempts"][0];
    assert_eq!(runs[0]["task_id"], "HumanEval/0");
    assert!(first["generated_tokens"].as_u64().unwrap() > 0);
    assert!(first["mean_logprob"].as_f64().unwrap() <= 0.0);
    assert!(v["sandbox"].as_str().unwrap().contains("rlimits"));
}

#[test]
fn a_cascade_and_a_cloud_row() {
    let qwen = common::model(common::QWEN);
    let route = format!("{},{}", qwen.display(), qwen.display());
    let plots = tempfile::tempdir().unwrap();
    let v = json(&eval(&[
        "--plot",
        plots.path().to_str().unwrap(),
        "--route",
        &route,
        "--route-by",
        "logprob:-0.01",
        "--large-all",
        "--limit",
        "2",
        "--cloud",
        "openai:gpt-4o-mini",
        "--cloud-pass-rate",
        "0.8",
        "-o",
        "json",
    ]));
    let png = std::fs::read(plots.path().join("tokenfab-eval.png")).unwrap();
    assert!(
        png.starts_with(b"\x89PNG") && png.len() > 10_000,
        "{} bytes",
        png.len()
    );
    assert!(plots.path().join("tokenfab-eval.svg").exists());
    let names: Vec<&str> = v["policies"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["policy"].as_str().unwrap())
        .collect();
    assert_eq!(names.len(), 4, "{names:?}");
    assert!(names[2].contains("escalate on failed tests"), "{names:?}");
    assert!(names[3].contains("mean logprob < -0.01"), "{names:?}");
    let c = &v["cloud"];
    assert_eq!(c["id"], "openai:gpt-4o-mini");
    assert!(c["usd_per_accepted"].as_f64().unwrap() > 0.0, "{c}");
    // with --large-all the router is swept: escalating nothing costs the small model alone
    let points = v["route_sweep"]["points"].as_array().unwrap();
    assert!(!points.is_empty() && points.len() <= 3, "{points:?}");
    assert_eq!(points[0]["escalated"], 0);
    assert_eq!(points[0]["cost"]["usd"], v["policies"][0]["usd"]);
}

#[test]
fn bad_flags_are_refused_with_the_flag_named() {
    let bad = |args: &[&str], want: &str| {
        let o = eval(args);
        assert!(!o.status.success(), "{args:?}");
        let e = String::from_utf8_lossy(&o.stderr);
        assert!(e.contains(want), "{args:?}: {e}");
    };
    let qwen = common::model(common::QWEN);
    let m = qwen.to_str().unwrap();
    bad(&["--suite", "mbpp", "-m", m], "--suite");
    bad(&["--route", m, "--limit", "1"], "two models");
    bad(&["-m", m, "--samples", "2"], "--samples");
    bad(
        &["--route", &format!("{m},{m}"), "--route-by", "entropy"],
        "logprob:T",
    );
    bad(
        &["-m", m, "--suite-file", "/nonexistent/he.jsonl"],
        "fetch-models.sh humaneval",
    );
    bad(
        &[
            "-m",
            m,
            "--cloud",
            "nope",
            "--cloud-pass-rate",
            "0.5",
            "--limit",
            "1",
        ],
        "price table",
    );
    bad(
        &["-m", m, "--cloud", "x", "--cloud-pass-rate", "2"],
        "--cloud-pass-rate",
    );
    bad(&["-m", m, "-o", "csv"], "-o");
    bad(&["--route-by", "logprob:-1"], "--route-by needs");
    bad(&["--from-reports", "/nonexistent/a.json"], "two reports");
}

/// `--rescore REPORT` checks a saved report's answers again: the same verdicts when nothing
/// changed; a report without answers is refused.
#[test]
fn rescore_checks_saved_answers_again() {
    let qwen = common::model(common::QWEN);
    let out = eval(&["-m", qwen.to_str().unwrap(), "--limit", "2", "-o", "json"]);
    let v = json(&out);
    let passed = v["policies"][0]["passed"].as_u64().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let report = dir.path().join("report.json");
    std::fs::write(&report, &out.stdout).unwrap();
    let o = eval(&["--rescore", report.to_str().unwrap()]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let text = String::from_utf8_lossy(&o.stdout);
    assert!(
        text.contains(&format!(
            "2 answers, {passed} passed when recorded, {passed} pass now"
        )),
        "{text}"
    );
    let mut stripped = v.clone();
    for r in stripped["runs"].as_object_mut().unwrap().values_mut() {
        for p in r.as_array_mut().unwrap() {
            p["attempts"][0].as_object_mut().unwrap().remove("answer");
        }
    }
    std::fs::write(&report, stripped.to_string()).unwrap();
    let o = eval(&["--rescore", report.to_str().unwrap()]);
    assert!(!o.status.success());
    assert!(String::from_utf8_lossy(&o.stderr).contains("no saved answers"));
}

/// `--from-reports SMALL,LARGE` costs the cascade from two saved single-model reports (no
/// generation) and sweeps the log-probability router over every threshold — numbers by hand.
#[test]
fn from_reports_costs_the_cascade_and_sweeps_the_router() {
    let attempt = |passed: bool, usd: f64, lp: f64| {
        serde_json::json!({"seed": 0, "temperature": 0.0, "prompt_tokens": 100,
            "generated_tokens": 10, "seconds": 1.0, "bytes": 1, "joules": usd * 100.0,
            "usd": usd, "mean_logprob": lp, "passed": passed, "error": null, "answer": "x"})
    };
    let report = |name: &str, runs: Vec<(bool, f64, f64)>| {
        let runs: Vec<Value> = runs
            .into_iter()
            .enumerate()
            .map(|(i, (p, u, l))| {
                serde_json::json!({"task_id": format!("HumanEval/{i}"),
                    "attempts": [attempt(p, u, l)]})
            })
            .collect();
        serde_json::json!({"energy_source": "estimated:model", "runs": {name: runs}})
    };
    let dir = tempfile::tempdir().unwrap();
    let (s, l) = (dir.path().join("s.json"), dir.path().join("l.json"));
    // small: passes 0 (sure), fails 1 (unsure) and 2; large: fails 0, passes 1 and 2
    let small = report(
        "small",
        vec![(true, 1.0, -0.1), (false, 1.0, -0.5), (false, 1.0, -0.2)],
    );
    let large = report(
        "large",
        vec![(false, 10.0, -0.1), (true, 10.0, -0.1), (true, 10.0, -0.1)],
    );
    std::fs::write(&s, small.to_string()).unwrap();
    std::fs::write(&l, large.to_string()).unwrap();
    let both = format!("{},{}", s.display(), l.display());
    let v = json(&eval(&[
        "--from-reports",
        &both,
        "--limit",
        "3",
        "-o",
        "json",
    ]));
    let p: Vec<(String, u64, f64)> = v["policies"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| {
            let name = p["policy"].as_str().unwrap().to_string();
            (
                name,
                p["passed"].as_u64().unwrap(),
                p["usd"].as_f64().unwrap(),
            )
        })
        .collect();
    assert_eq!(p.len(), 3, "{p:?}");
    assert_eq!((p[0].1, p[0].2), (1, 3.0), "small alone: {p:?}");
    assert_eq!((p[1].1, p[1].2), (2, 30.0), "large alone: {p:?}");
    // oracle: small everywhere (3) + large on 1 and 2 (20): solves all three
    assert_eq!((p[2].1, p[2].2), (3, 23.0), "oracle: {p:?}");
    let sw = &v["route_sweep"];
    assert_eq!(sw["auroc"], 1.0);
    assert_eq!(sw["oracle_escalations"], 2);
    let pts: Vec<(u64, u64, f64, bool)> = sw["points"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| {
            (
                x["escalated"].as_u64().unwrap(),
                x["cost"]["passed"].as_u64().unwrap(),
                x["cost"]["usd"].as_f64().unwrap(),
                x["front"].as_bool().unwrap(),
            )
        })
        .collect();
    // thresholds -0.5 (none), -0.2 (escalate 1), -0.1 (1 and 2), ∞ (all: 0 is lost)
    assert_eq!(
        pts,
        vec![
            (0, 1, 3.0, true),
            (1, 2, 13.0, true),
            (2, 3, 23.0, true),
            (3, 2, 33.0, false)
        ]
    );
    assert_eq!(sw["at_oracle_budget"]["escalated"], 2);
    // the markdown report names the sweep; a report of two runs is refused
    let md = eval(&["--from-reports", &both, "--limit", "3"]);
    let text = String::from_utf8_lossy(&md.stdout);
    assert!(text.contains("AUROC 1.000"), "{text}");
    let mut two = small.clone();
    two["runs"]["other"] = two["runs"]["small"].clone();
    std::fs::write(&s, two.to_string()).unwrap();
    let o = eval(&["--from-reports", &both, "--limit", "3"]);
    assert!(!o.status.success());
    assert!(String::from_utf8_lossy(&o.stderr).contains("one model each"));
}

/// `tokenfab tradeoff --humaneval N` adds pass@1 and USD per accepted output per type: the
/// source and a requantized mix each solve HumanEval/0 (the 0.5B's greedy answer passes here
/// and through llama-server on the same file; docs/eval), priced like `tokenfab eval`.
#[test]
fn tradeoff_adds_pass_at_1_per_type() {
    let qwen = common::model(common::QWEN);
    let text = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/oracle/eval.txt");
    let o = Command::new(env!("CARGO_BIN_EXE_tokenfab"))
        .args(["tradeoff", "-m", qwen.to_str().unwrap(), "-f"])
        .arg(&text)
        .args([
            "-c",
            "128",
            "--chunks",
            "1",
            "--types",
            "q8_0",
            "--bench-gen",
            "8",
        ])
        .args(["-t", "2", "--humaneval", "1", "--no-plots", "-o", "json"])
        .env(
            "TOKENFAB_MODELS_DIR",
            common::model(common::QWEN).parent().unwrap(),
        )
        .output()
        .unwrap();
    let v = json(&o);
    let rows = v["rows"].as_array().unwrap();
    assert_eq!(rows.len(), 2);
    for r in rows {
        let t = &r["task"];
        assert_eq!(
            (t["suite"].as_str(), t["problems"].as_u64()),
            (Some("humaneval"), Some(1))
        );
        assert_eq!(t["passed"], 1, "{}: {t}", r["kind"]);
        assert_eq!(t["pass_at_1"], 1.0);
        let n = t["generated_tokens"].as_u64().unwrap();
        assert!((1..=512).contains(&n), "{t}");
        // one problem solved: its answer's whole cost, energy at this machine's estimate
        let usd = t["usd_per_accepted"].as_f64().unwrap();
        assert!(usd > 0.0 && usd < 1e-4, "{t}");
    }
    assert!(v["notes"]
        .as_array()
        .unwrap()
        .iter()
        .any(|n| n.as_str().unwrap().contains("HumanEval problems, greedy")));
}

//! `tokenfab eval`: a task suite with automatic acceptance (HumanEval), its pass rate and the
//! cost per accepted output under each policy — single attempt, retries, a small → large
//! cascade — and a cloud API's price at a pass rate the user gives. The work is the
//! library's (`tokenfab::eval::tasks`); this file turns flags into options and prints.

use anyhow::{bail, Result};
use clap::Args;
use serde_json::json;
use std::path::PathBuf;
use tokenfab::engine::{Engine, EngineOptions};
use tokenfab::eval::tasks::route;
use tokenfab::eval::tasks::run::{self, Policy, PolicyCost, ProblemRun, RunOptions};
use tokenfab::eval::tasks::sandbox::{Limits, Sandbox};
use tokenfab::eval::tasks::suite;
use tokenfab::model::LoadOptions;

#[derive(Args, Debug)]
pub struct EvalArgs {
    /// The suite: humaneval (models/HumanEval.jsonl.gz; `scripts/fetch-models.sh humaneval`).
    #[arg(long = "suite", default_value = "humaneval")]
    pub suite: String,
    /// The suite's file (default: models/HumanEval.jsonl.gz).
    #[arg(long = "suite-file")]
    pub suite_file: Option<PathBuf>,
    /// GGUF model (default: the default model).
    #[arg(short = 'm', long = "model")]
    pub model: Option<PathBuf>,
    /// The first N problems only.
    #[arg(long = "limit")]
    pub limit: Option<usize>,
    /// Samples per problem at --temp (pass@1 and pass@K); 1 = one attempt plus --retries.
    #[arg(long = "samples", default_value_t = 1)]
    pub samples: usize,
    /// Temperature of the first attempt (0 = greedy) or of every sample.
    #[arg(long = "temp", default_value_t = 0.0)]
    pub temp: f32,
    /// On failure, regenerate up to R times (new seed, --retry-temp).
    #[arg(long = "retries", default_value_t = 0)]
    pub retries: usize,
    #[arg(long = "retry-temp", default_value_t = 0.8)]
    pub retry_temp: f32,
    /// Cascade: SMALL,LARGE models — the small one first, the large one where it fails its
    /// tests (and, with --route-by, where its confidence is low).
    #[arg(long = "route", value_delimiter = ',', conflicts_with = "model")]
    pub route: Vec<PathBuf>,
    /// The signal of the non-oracle cascade: `logprob:T` escalates when the small answer's
    /// mean token log-probability is below T. With --large-all every threshold is costed too
    /// (the report's router sweep).
    #[arg(long = "route-by")]
    pub route_by: Option<String>,
    /// With --route: run the large model on every problem (its own pass rate and cost are
    /// reported too), not only where a cascade escalates.
    #[arg(long = "large-all", requires = "route")]
    pub large_all: bool,
    /// Ask an OpenAI-compatible server (llama-server, tokenfab serve, a cloud API) instead of
    /// a local model: the same prompts, greedy, checked the same way.
    #[arg(long = "endpoint", conflicts_with_all = ["model", "route"])]
    pub endpoint: Option<String>,
    /// Check the answers saved in an earlier `-o json` report again (the current extraction
    /// and sandbox; no generation) and print the pass rate of each run in it.
    #[arg(long = "rescore", conflicts_with_all = ["model", "route", "endpoint"])]
    pub rescore: Option<PathBuf>,
    /// Cost the cascade from two saved `-o json` reports instead of generating: SMALL,LARGE,
    /// each holding one model's run of the same problems (the large one's of every problem,
    /// for the router sweep). Prints what `--route SMALL,LARGE --large-all` would.
    #[arg(long = "from-reports", value_delimiter = ',',
          conflicts_with_all = ["model", "route", "endpoint", "rescore"])]
    pub from_reports: Vec<PathBuf>,
    /// `model` field of --endpoint requests.
    #[arg(long = "endpoint-model", requires = "endpoint")]
    pub endpoint_model: Option<String>,
    /// Most tokens of an answer.
    #[arg(short = 'n', long = "n-predict", default_value_t = 512)]
    pub n_predict: usize,
    /// Raw completion of the problem's prompt instead of the chat template (base models).
    #[arg(long = "no-chat")]
    pub no_chat: bool,
    /// Seconds each program may run.
    #[arg(long = "timeout", default_value_t = 10)]
    pub timeout: u64,
    /// A cloud API row of the price table (e.g. `openai:gpt-4o-mini`) to price the suite's
    /// tokens at, with --cloud-pass-rate.
    #[arg(long = "cloud", requires = "cloud_pass_rate")]
    pub cloud: Option<String>,
    /// The cloud model's pass rate on the suite (0..1, from its report or your measurement).
    #[arg(long = "cloud-pass-rate")]
    pub cloud_pass_rate: Option<f64>,
    #[arg(short = 't', long = "threads", default_value_t = 0)]
    pub threads: usize,
    #[arg(long = "backend", default_value = "auto")]
    pub backend: String,
    /// md or json.
    #[arg(short = 'o', long = "output", default_value = "md")]
    pub output: String,
    /// Write the plot of pass rate against cost per accepted output (SVG and PNG) here.
    #[arg(long = "plot")]
    pub plot: Option<PathBuf>,
    #[command(flatten)]
    pub energy: super::energy::EnergyArgs,
}

fn engine(path: &std::path::Path, a: &EvalArgs) -> Result<Engine> {
    let backend = super::backend_spec(&a.backend, a.threads, false)?;
    task_engine(path, backend, a.threads, &a.energy)
}

/// An engine for task suites: a 2048-token context (a HumanEval prompt and a 512-token
/// answer fit) and the chosen energy source. `tokenfab tradeoff --humaneval` uses it too.
pub(super) fn task_engine(
    path: &std::path::Path,
    backend: tokenfab::backend::BackendSpec,
    threads: usize,
    energy: &super::energy::EnergyArgs,
) -> Result<Engine> {
    let opts = EngineOptions {
        backend,
        load: LoadOptions {
            ctx: 2048,
            ..LoadOptions::default()
        },
        energy: energy.options()?,
        threads,
        ..EngineOptions::default()
    };
    Ok(Engine::load(path, &opts)?)
}

pub fn run(a: EvalArgs) -> Result<()> {
    if a.suite != "humaneval" {
        bail!("--suite {:?}: the suites are: humaneval", a.suite);
    }
    if !matches!(a.output.as_str(), "md" | "json") {
        bail!("-o must be md or json (got {:?})", a.output);
    }
    if !a.route.is_empty() && a.route.len() != 2 {
        bail!("--route takes two models, SMALL,LARGE");
    }
    if !a.from_reports.is_empty() && a.from_reports.len() != 2 {
        bail!("--from-reports takes two reports, SMALL,LARGE");
    }
    if a.route_by.is_some() && a.route.is_empty() && a.from_reports.is_empty() {
        bail!("--route-by needs --route SMALL,LARGE or --from-reports SMALL,LARGE");
    }
    for m in &a.route {
        if !m.exists() {
            bail!("model file {} does not exist", m.display());
        }
    }
    if a.samples == 0 {
        bail!("--samples must be at least 1");
    }
    if a.samples > 1 && (a.temp <= 0.0 || a.retries > 0 || !a.route.is_empty()) {
        bail!("--samples K > 1 samples at --temp > 0 and takes no --retries or --route");
    }
    if let Some(p) = a.cloud_pass_rate {
        if !(0.0..=1.0).contains(&p) {
            bail!("--cloud-pass-rate must be in [0, 1], not {p}");
        }
    }
    let route_by = match a.route_by.as_deref() {
        None => None,
        Some(s) => match s.strip_prefix("logprob:").map(str::parse::<f64>) {
            Some(Ok(t)) => Some(t),
            _ => bail!("--route-by takes logprob:T (e.g. logprob:-0.3), not {s:?}"),
        },
    };
    let file = a
        .suite_file
        .clone()
        .unwrap_or_else(|| super::models_dir().join("HumanEval.jsonl.gz"));
    let mut problems = suite::load(&file).map_err(anyhow::Error::msg)?;
    if let Some(n) = a.limit {
        problems.truncate(n);
    }
    let sandbox = Sandbox::new().map_err(anyhow::Error::msg)?;
    if let Some(report) = &a.rescore {
        return rescore(report, &problems, &sandbox, a.timeout);
    }
    let opts = RunOptions {
        max_tokens: a.n_predict,
        temperature: a.temp,
        retries: a.retries,
        retry_temperature: a.retry_temp,
        samples: a.samples,
        chat: !a.no_chat,
        limits: Limits {
            timeout: std::time::Duration::from_secs(a.timeout.max(1)),
            ..Limits::default()
        },
    };
    let mut policies: Vec<PolicyCost> = Vec::new();
    let mut runs_json = serde_json::Map::new();
    let mut models = Vec::new();
    let mut pass_at = None;
    let mut sweep = None;
    let energy_source;
    let first_runs: Vec<ProblemRun>;
    if let Some(url) = &a.endpoint {
        let runs = run::run_endpoint(
            url,
            a.endpoint_model.as_deref(),
            &sandbox,
            &problems,
            &opts,
            &mut progress(url),
        )
        .map_err(anyhow::Error::msg)?;
        energy_source = "from the server's usage.cost, if any".into();
        let mut c = run::cost_single(&runs, &Policy::Single);
        c.policy = format!("{url}: single");
        policies.push(c);
        runs_json.insert(url.clone(), serde_json::to_value(&runs)?);
        models.push(json!({"endpoint": url}));
        first_runs = runs;
    } else if a.route.is_empty() && a.from_reports.is_empty() {
        let path = super::resolve_model(a.model.as_deref())?;
        let mut e = engine(&path, &a)?;
        energy_source = e.energy_source().to_string();
        let name = e.name();
        let runs = run::run(&mut e, &sandbox, &problems, &opts, &mut progress(&name))?;
        if a.samples > 1 {
            let (p1, c) = run::cost_samples(&runs, 1);
            let (pk, _) = run::cost_samples(&runs, a.samples);
            pass_at = Some(json!({"k": a.samples, "pass_at_1": p1, "pass_at_k": pk}));
            policies.push(c);
        } else {
            policies.push(run::cost_single(&runs, &Policy::Single));
            if a.retries > 0 {
                policies.push(run::cost_single(&runs, &Policy::Retries(a.retries)));
            }
        }
        for p in &mut policies {
            p.policy = format!("{name}: {}", p.policy);
        }
        runs_json.insert(name.clone(), serde_json::to_value(&runs)?);
        models.push(json!({"name": name, "path": path}));
        first_runs = runs;
    } else {
        let c = if a.from_reports.is_empty() {
            run_cascade(&a, &sandbox, &problems, &opts, route_by)?
        } else {
            cascade_from_reports(&a.from_reports, &problems)?
        };
        energy_source = c.energy_source;
        policies.push(PolicyCost {
            policy: format!("{}: single", c.small_name),
            ..run::cost_single(&c.small, &Policy::Single)
        });
        let large_all = c.large.iter().all(Option::is_some);
        if large_all {
            let all: Vec<ProblemRun> = c.large.iter().flatten().cloned().collect();
            policies.push(PolicyCost {
                policy: format!("{}: single", c.large_name),
                ..run::cost_single(&all, &Policy::Single)
            });
        }
        let pair = format!("{} → {}", c.small_name, c.large_name);
        let mut oracle = run::cost_cascade(&c.small, &c.large, &Policy::CascadeOracle)
            .map_err(anyhow::Error::msg)?;
        oracle.policy = format!("{pair}: {}", oracle.policy);
        let oracle_escalations = c.small.iter().filter(|r| !r.first_passed()).count();
        policies.push(oracle);
        if let Some(t) = route_by {
            let mut p = run::cost_cascade(&c.small, &c.large, &Policy::CascadeLogprob(t))
                .map_err(anyhow::Error::msg)?;
            p.policy = format!("{pair}: {}", p.policy);
            policies.push(p);
        }
        if large_all {
            let points = route::logprob_sweep(&c.small, &c.large).map_err(anyhow::Error::msg)?;
            let best = route::at_oracle_budget(&points, oracle_escalations).cloned();
            sweep = Some(json!({
                "signal": "mean token log-probability of the small model's answer",
                "auroc": route::logprob_auroc(&c.small),
                "oracle_escalations": oracle_escalations,
                "at_oracle_budget": best,
                "points": points,
            }));
        }
        let small_key = c.small_name.clone();
        runs_json.insert(small_key, serde_json::to_value(&c.small)?);
        runs_json.insert(
            format!("{} (escalations)", c.large_name),
            serde_json::to_value(&c.large)?,
        );
        models.push(json!({"name": c.small_name, "path": c.small_path}));
        models.push(json!({"name": c.large_name, "path": c.large_path}));
        first_runs = c.small;
    }
    let cloud = match (&a.cloud, a.cloud_pass_rate) {
        (Some(id), Some(rate)) => {
            let table = tokenfab::cost::prices::PriceTable::builtin();
            let Some(row) = table.cloud_api.iter().find(|c| &c.id == id) else {
                let ids: Vec<&str> = table.cloud_api.iter().map(|c| c.id.as_str()).collect();
                bail!(
                    "--cloud {id:?} is not in the price table: {}",
                    ids.join(", ")
                );
            };
            let usd = run::cloud_cost(&first_runs, row.usd_per_mtok_in, row.usd_per_mtok_out, rate);
            Some(json!({"id": id, "pass_rate": rate, "usd_per_accepted": usd,
                "usd_per_mtok_in": row.usd_per_mtok_in, "usd_per_mtok_out": row.usd_per_mtok_out,
                "source": row.source, "as_of": row.as_of,
                "note": "the suite's prompt and answer token counts measured here, at the row's prices, over problems × the given pass rate"}))
        }
        _ => None,
    };
    if let Some(dir) = &a.plot {
        let mut extra: Vec<(String, f64, f64)> = cloud
            .as_ref()
            .and_then(|c| {
                let usd = c["usd_per_accepted"].as_f64()?;
                Some((
                    format!("cloud {}", c["id"].as_str()?),
                    usd,
                    c["pass_rate"].as_f64()?,
                ))
            })
            .into_iter()
            .collect();
        // the router's thresholds on its own front, unlabelled but the one at the oracle's
        // escalation budget
        if let Some(sw) = &sweep {
            let at = sw["at_oracle_budget"]["threshold"].as_f64();
            for p in sw["points"].as_array().into_iter().flatten() {
                let (Some(usd), Some(passed)) =
                    (p["cost"]["usd"].as_f64(), p["cost"]["passed"].as_f64())
                else {
                    continue;
                };
                let t = p["threshold"].as_f64();
                if passed > 0.0 && (p["front"] == true || t == at) {
                    let label = match t {
                        Some(t) if Some(t) == at => {
                            format!("router (mean logprob < {t:.3}) at the oracle's budget")
                        }
                        _ => String::new(),
                    };
                    extra.push((label, usd / passed, passed / problems.len() as f64));
                }
            }
        }
        let title = format!(
            "HumanEval: pass rate vs cost per accepted output ({} problems)",
            problems.len()
        );
        for f in run::plot(dir, &title, &policies, &extra).map_err(anyhow::Error::msg)? {
            eprintln!("tokenfab eval: wrote {}", f.display());
        }
    }
    let rows: Vec<serde_json::Value> = policies
        .iter()
        .map(|p| {
            let mut v = serde_json::to_value(p).unwrap_or_default();
            v["pass_rate"] = p.pass_rate().into();
            v["usd_per_accepted"] = p.usd_per_accepted().into();
            v["joules_per_accepted"] = p.joules_per_accepted().into();
            v["usd_per_mtok"] = p.usd_per_mtok().into();
            v
        })
        .collect();
    let report = json!({
        "suite": a.suite, "suite_file": file, "problems": problems.len(),
        "sandbox": sandbox.describe(), "energy_source": energy_source,
        "models": models, "policies": rows, "pass_at_k": pass_at, "cloud": cloud,
        "route_sweep": sweep,
        "runs": runs_json,
    });
    if a.output == "json" {
        println!("{}", serde_json::to_string_pretty(&report)?);
        return Ok(());
    }
    println!("| policy | pass rate | attempts | generated tokens | time s | J | USD | USD per accepted output | J per accepted output | USD per Mtok |");
    println!("|---|---|---|---|---|---|---|---|---|---|");
    for p in &policies {
        let opt = |v: Option<f64>, f: &dyn Fn(f64) -> String| v.map_or("-".into(), f);
        println!(
            "| {} | {:.1} % ({}/{}) | {} | {} | {:.1} | {:.2} | {:.2e} | {} | {} | {:.3} |",
            p.policy,
            100.0 * p.pass_rate(),
            p.passed,
            p.problems,
            p.attempts,
            p.work.generated_tokens,
            p.work.seconds,
            p.work.joules,
            p.work.usd,
            opt(p.usd_per_accepted(), &|x| format!("{x:.2e}")),
            opt(p.joules_per_accepted(), &|x| format!("{x:.2}")),
            p.usd_per_mtok(),
        );
    }
    if let Some(sw) = &sweep {
        print_sweep(sw);
    }
    if let Some(pk) = &report["pass_at_k"].as_object() {
        println!(
            "\npass@1 {:.3}, pass@{} {:.3}",
            pk["pass_at_1"], pk["k"], pk["pass_at_k"]
        );
    }
    if let Some(c) = &cloud {
        println!(
            "\ncloud {}: ${} per accepted output at a {:.0} % pass rate (${}/Mtok in, ${}/Mtok out; {}, {})",
            c["id"].as_str().unwrap_or(""),
            c["usd_per_accepted"].as_f64().map_or("-".into(), |x| format!("{x:.2e}")),
            100.0 * c["pass_rate"].as_f64().unwrap_or(0.0),
            c["usd_per_mtok_in"], c["usd_per_mtok_out"],
            c["source"].as_str().unwrap_or(""), c["as_of"].as_str().unwrap_or(""),
        );
    }
    println!(
        "\n{} problems of {}; energy {}; sandbox: {}",
        problems.len(),
        file.display(),
        energy_source,
        sandbox.describe()
    );
    Ok(())
}

/// The router sweep in the markdown report: the signal's AUROC, the router at the oracle's
/// escalation budget, and the thresholds on the sweep's Pareto front.
fn print_sweep(sw: &serde_json::Value) {
    let pct = |p: &serde_json::Value| {
        let passed = p["cost"]["passed"].as_f64().unwrap_or(0.0);
        let n = p["cost"]["problems"].as_f64().unwrap_or(1.0).max(1.0);
        format!("{:.1} % ({passed}/{n})", 100.0 * passed / n)
    };
    let usd_acc = |p: &serde_json::Value| {
        let passed = p["cost"]["passed"].as_f64().unwrap_or(0.0);
        match p["cost"]["usd"].as_f64() {
            Some(u) if passed > 0.0 => format!("{:.2e}", u / passed),
            _ => "-".into(),
        }
    };
    println!(
        "\nrouter sweep (escalate when the small answer's mean token log-probability < T): AUROC {} (0.5 = no signal)",
        sw["auroc"].as_f64().map_or("-".into(), |x| format!("{x:.3}"))
    );
    let b = &sw["at_oracle_budget"];
    if b.is_object() {
        println!(
            "at the oracle's budget ({} escalations) the router escalates {} and solves {}",
            sw["oracle_escalations"],
            b["escalated"],
            pct(b)
        );
    }
    println!("\n| T | escalated | pass rate | USD per accepted output |\n|---|---|---|---|");
    for p in sw["points"].as_array().into_iter().flatten() {
        if p["front"] == true {
            let t = p["threshold"]
                .as_f64()
                .map_or("∞".into(), |t| format!("{t:.4}"));
            println!("| {t} | {} | {} | {} |", p["escalated"], pct(p), usd_acc(p));
        }
    }
}

/// One line per problem on stderr as a run goes.
fn progress(name: &str) -> Box<dyn FnMut(&ProblemRun)> {
    let name = name.to_string();
    Box::new(move |r: &ProblemRun| {
        let ok = r.attempts.iter().any(|x| x.passed);
        eprintln!(
            "tokenfab eval: {name} {} {} ({} attempt{})",
            r.task_id,
            if ok { "passed" } else { "failed" },
            r.attempts.len(),
            if r.attempts.len() == 1 { "" } else { "s" }
        );
    })
}

/// Both models' runs of a cascade, generated or read back.
struct Cascade {
    small_name: String,
    small_path: PathBuf,
    small: Vec<ProblemRun>,
    large_name: String,
    large_path: PathBuf,
    /// The large model's run of each problem where it ran (all with --large-all).
    large: Vec<Option<ProblemRun>>,
    energy_source: String,
}

/// `--route SMALL,LARGE`: the small model on every problem, then the large one where a
/// cascade escalates (its tests failed, or its mean log-probability is below `route_by`) or
/// everywhere with --large-all.
fn run_cascade(
    a: &EvalArgs,
    sandbox: &Sandbox,
    problems: &[suite::Problem],
    opts: &RunOptions,
    route_by: Option<f64>,
) -> Result<Cascade> {
    let (small_path, large_path) = (a.route[0].clone(), a.route[1].clone());
    let mut small = engine(&small_path, a)?;
    let energy_source = small.energy_source().to_string();
    let small_name = small.name();
    let s_runs = run::run(
        &mut small,
        sandbox,
        problems,
        opts,
        &mut progress(&small_name),
    )?;
    drop(small);
    let mut large = engine(&large_path, a)?;
    let large_name = large.name();
    let mut l_runs = Vec::new();
    for (p, r) in problems.iter().zip(&s_runs) {
        let f = r.attempts.first();
        let escalate = !f.is_some_and(|x| x.passed)
            || route_by.is_some_and(|t| f.is_some_and(|x| x.mean_logprob < t));
        l_runs.push(if escalate || a.large_all {
            let once = RunOptions {
                retries: 0,
                ..opts.clone()
            };
            let r = run::run(
                &mut large,
                sandbox,
                std::slice::from_ref(p),
                &once,
                &mut progress(&large_name),
            )?;
            r.into_iter().next()
        } else {
            None
        });
    }
    Ok(Cascade {
        small_name,
        small_path,
        small: s_runs,
        large_name,
        large_path,
        large: l_runs,
        energy_source,
    })
}

/// `--from-reports SMALL,LARGE`: each report's one run, matched to the suite's problems by
/// task id (the large report may lack problems: then no sweep).
fn cascade_from_reports(paths: &[PathBuf], problems: &[suite::Problem]) -> Result<Cascade> {
    let read = |path: &PathBuf| -> Result<(String, Vec<ProblemRun>, String)> {
        let v = read_report(path)?;
        let runs = report_runs(&v, path)?;
        let (Some((name, list)), 1) = (runs.iter().next(), runs.len()) else {
            let names: Vec<&String> = runs.keys().collect();
            bail!(
                "{}: holds {} runs ({names:?}); --from-reports takes reports of one model each",
                path.display(),
                runs.len()
            );
        };
        let list: Vec<ProblemRun> = serde_json::from_value(list.clone())
            .map_err(|e| anyhow::anyhow!("{}: {name}: unreadable runs: {e}", path.display()))?;
        let energy = v["energy_source"].as_str().unwrap_or("unknown").to_string();
        Ok((name.clone(), list, energy))
    };
    let (small_name, small_all, energy_source) = read(&paths[0])?;
    let (large_name, large_all, _) = read(&paths[1])?;
    let mut small = Vec::new();
    let mut large = Vec::new();
    for p in problems {
        let Some(s) = small_all.iter().find(|r| r.task_id == p.task_id) else {
            bail!("{}: no run of {}", paths[0].display(), p.task_id);
        };
        small.push(s.clone());
        large.push(large_all.iter().find(|r| r.task_id == p.task_id).cloned());
    }
    Ok(Cascade {
        small_name,
        small_path: paths[0].clone(),
        small,
        large_name,
        large_path: paths[1].clone(),
        large,
        energy_source,
    })
}

/// A saved `tokenfab eval -o json` report.
fn read_report(path: &std::path::Path) -> Result<serde_json::Value> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| anyhow::anyhow!("cannot read {}: {e}", path.display()))?;
    serde_json::from_str(&text).map_err(|e| {
        anyhow::anyhow!(
            "{}: not a tokenfab eval -o json report: {e}",
            path.display()
        )
    })
}

/// A report's runs by name.
fn report_runs<'a>(
    v: &'a serde_json::Value,
    path: &std::path::Path,
) -> Result<&'a serde_json::Map<String, serde_json::Value>> {
    v["runs"].as_object().ok_or_else(|| {
        anyhow::anyhow!(
            "{}: no \"runs\" (not a tokenfab eval -o json report)",
            path.display()
        )
    })
}

/// `--rescore REPORT`: every saved answer checked again; per run, passed then and now.
fn rescore(
    report: &std::path::Path,
    problems: &[suite::Problem],
    sandbox: &Sandbox,
    timeout: u64,
) -> Result<()> {
    let v = read_report(report)?;
    let runs = report_runs(&v, report)?;
    let limits = Limits {
        timeout: std::time::Duration::from_secs(timeout.max(1)),
        ..Limits::default()
    };
    for (name, list) in runs {
        let (mut n, mut before, mut now) = (0, 0, 0);
        for r in list.as_array().into_iter().flatten() {
            let Some(a) = r["attempts"].get(0) else {
                continue;
            };
            let Some(answer) = a["answer"].as_str() else {
                bail!(
                    "{}: {name} has no saved answers (made before answers were saved)",
                    report.display()
                );
            };
            let id = r["task_id"].as_str().unwrap_or("");
            let Some(p) = problems.iter().find(|p| p.task_id == id) else {
                bail!("{}: {id} is not in the suite", report.display());
            };
            let program =
                tokenfab::eval::tasks::extract::program(&p.prompt, &p.entry_point, answer);
            n += 1;
            before += a["passed"].as_bool().unwrap_or(false) as usize;
            now += sandbox
                .check(&program, &p.test, &p.entry_point, limits)
                .passed() as usize;
        }
        println!("{name}: {n} answers, {before} passed when recorded, {now} pass now");
    }
    Ok(())
}

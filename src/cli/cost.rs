//! `tokenfab cost`: what a token costs here against the cloud, from a `tokenfab bench` JSON
//! (or a short bench it runs first), as a table, JSON and plots.

use anyhow::{bail, Context, Result};
use clap::Args;
use std::io::Write;
use std::path::PathBuf;
use tokenfab::cost::model::Mix;
use tokenfab::cost::prices::PriceTable;
use tokenfab::cost::report::{build, CostOptions};
use tokenfab::telemetry::bench::BenchResult;

#[derive(Args, Debug)]
pub struct CostArgs {
    /// A `tokenfab bench -o json` (or jsonl) file measured on the edge machine.
    pub bench: Option<PathBuf>,
    /// Run a short bench on this model first (pp128, tg32, 2 repetitions) instead.
    #[arg(short = 'm', long = "model", conflicts_with = "bench")]
    pub model: Option<PathBuf>,
    /// Threads for the bench run by -m.
    #[arg(short = 't', long = "threads", default_value_t = 0)]
    pub threads: usize,
    /// Extra or replacement price rows (TOML; also read: ~/.config/tokenfab/prices.toml).
    #[arg(long = "prices")]
    pub prices: Option<PathBuf>,
    /// Edge device row for the hardware price and amortization (e.g. rtx-4090).
    #[arg(long = "device")]
    pub device: Option<String>,
    /// Hardware purchase price in USD (overrides --device's).
    #[arg(long = "hardware-usd")]
    pub hardware_usd: Option<f64>,
    #[arg(long = "amortization-years")]
    pub amortization_years: Option<f64>,
    /// Electricity row (us-residential, eu-household, eu-non-household, or your own).
    #[arg(long = "electricity", default_value = "us-residential")]
    pub electricity: String,
    /// Exchange rate for electricity priced in EUR.
    #[arg(long = "usd-per-eur")]
    pub usd_per_eur: Option<f64>,
    /// PUE row (edge, industry-average, hyperscale).
    #[arg(long = "pue", default_value = "edge")]
    pub pue: String,
    /// Share of the hours the edge device does this work (0, 1].
    #[arg(long = "utilization", default_value_t = 0.1)]
    pub utilization: f64,
    /// Operator cost per hour of the device (staff, space, network), USD.
    #[arg(long = "overhead-usd-per-hour", default_value_t = 0.0)]
    pub overhead: f64,
    /// Share of the local model's tokens that are acceptable (quality adjustment).
    #[arg(long = "acceptance")]
    pub acceptance: Option<f64>,
    /// Workload mix of input to output tokens, e.g. 3:1.
    #[arg(long = "mix", default_value = "1:1")]
    pub mix: String,
    /// Throughput of the rented GPUs: PREFILL,DECODE tok/s measured there.
    #[arg(long = "rental-tok-s", conflicts_with = "rental_bench")]
    pub rental_tok_s: Option<String>,
    /// A bench JSON measured on the rented GPU (its prefill and decode tok/s are used).
    #[arg(long = "rental-bench")]
    pub rental_bench: Option<PathBuf>,
    /// A `tokenfab bench --endpoint URL -o json` file from a tokenfab server on this machine:
    /// decode throughput and J/token served to concurrent clients replace the bench's
    /// single-stream decode (the cost of a token when the machine is shared).
    #[arg(long = "served")]
    pub served: Option<PathBuf>,
    /// The --served concurrency level to use (default: the highest aggregate throughput).
    #[arg(long = "served-concurrency", requires = "served")]
    pub served_concurrency: Option<usize>,
    /// Output: md or json.
    #[arg(short = 'o', long = "output", default_value = "md")]
    pub output: String,
    /// Where to write the plots (SVG and PNG).
    #[arg(long = "plot-dir", default_value = ".")]
    pub plot_dir: PathBuf,
    /// Do not write plots.
    #[arg(long = "no-plots")]
    pub no_plots: bool,
    #[command(flatten)]
    pub energy: super::energy::EnergyArgs,
}

fn read_bench(path: &PathBuf) -> Result<Vec<BenchResult>> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read bench results {}", path.display()))?;
    tokenfab::telemetry::bench::parse_results(&text).with_context(|| {
        format!(
            "{} is not `tokenfab bench -o json` output (schema_version 1)",
            path.display()
        )
    })
}

fn parse_mix(s: &str) -> Result<Mix> {
    let (i, o) = s
        .split_once(':')
        .with_context(|| format!("--mix takes INPUT:OUTPUT, e.g. 3:1 (got {s:?})"))?;
    let p = |v: &str| {
        v.trim()
            .parse::<f64>()
            .with_context(|| format!("--mix: {v:?} is not a number"))
    };
    Ok(Mix {
        input: p(i)?,
        output: p(o)?,
    })
}

fn price_table(extra: Option<&PathBuf>) -> Result<PriceTable> {
    let mut t = PriceTable::builtin();
    if let Some(home) = std::env::var_os("HOME") {
        let user = PathBuf::from(home).join(".config/tokenfab/prices.toml");
        if user.exists() {
            t.merge_file(&user)?;
        }
    }
    if let Some(p) = extra {
        t.merge_file(p)?;
    }
    Ok(t)
}

pub fn run(a: CostArgs) -> Result<()> {
    if !matches!(a.output.as_str(), "md" | "json") {
        bail!("-o must be md or json (got {:?})", a.output);
    }
    let results = match (&a.bench, &a.model) {
        (Some(b), _) => read_bench(b)?,
        (None, m) => {
            let path = super::resolve_model(m.as_deref())?;
            let threads = if a.threads == 0 {
                std::thread::available_parallelism().map_or(1, |n| n.get())
            } else {
                a.threads
            };
            eprintln!(
                "tokenfab cost: no bench file given, measuring {} (pp128, tg32, 2 repetitions)",
                path.display()
            );
            super::bench::measure(&path, threads, &[128], &[32], 2, &a.energy)?
        }
    };
    let results = match &a.served {
        Some(f) => served(results, f, a.served_concurrency)?,
        None => results,
    };
    let rental_tok_s = match (&a.rental_tok_s, &a.rental_bench) {
        (Some(s), _) => {
            let (p, d) = s
                .split_once(',')
                .with_context(|| format!("--rental-tok-s takes PREFILL,DECODE (got {s:?})"))?;
            let p: f64 = p.trim().parse().context("--rental-tok-s prefill")?;
            let d: f64 = d.trim().parse().context("--rental-tok-s decode")?;
            if p <= 0.0 || d <= 0.0 {
                bail!("--rental-tok-s values must be positive");
            }
            Some((p, d, "user (--rental-tok-s)".to_string()))
        }
        (None, Some(f)) => {
            let r = read_bench(f)?;
            let p = r.iter().find_map(|x| x.prefill_tok_s);
            let d = r.iter().find_map(|x| x.decode_tok_s);
            match (p, d) {
                (Some(p), Some(d)) => Some((
                    p,
                    d,
                    format!("measured: {} ({})", f.display(), r[0].machine.cpu),
                )),
                _ => bail!("{}: needs a prefill and a decode test", f.display()),
            }
        }
        (None, None) => None,
    };
    let opts = CostOptions {
        device: a.device.clone(),
        hardware_usd: a.hardware_usd,
        amortization_years: a.amortization_years,
        electricity: a.electricity.clone(),
        usd_per_eur: a.usd_per_eur,
        pue: a.pue.clone(),
        utilization: a.utilization,
        overhead_usd_per_hour: a.overhead,
        acceptance: a.acceptance,
        mix: parse_mix(&a.mix)?,
        rental_tok_s,
    };
    let table = price_table(a.prices.as_ref())?;
    let report = build(&results, &table, &opts)?;
    let mut out = std::io::stdout().lock();
    match a.output.as_str() {
        "json" => writeln!(out, "{}", serde_json::to_string_pretty(&report)?)?,
        _ => write!(out, "{}", report.to_markdown())?,
    }
    if !a.no_plots {
        let files =
            tokenfab::cost::plot::write_all(&report, &a.plot_dir).map_err(anyhow::Error::msg)?;
        for f in files {
            eprintln!("tokenfab cost: wrote {}", f.display());
        }
    }
    Ok(())
}

/// The bench results with the decode test replaced by what a server on this machine served
/// (`--served`): aggregate decode tok/s and J/token at one concurrency level.
fn served(
    mut results: Vec<BenchResult>,
    path: &PathBuf,
    concurrency: Option<usize>,
) -> Result<Vec<BenchResult>> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read served results {}", path.display()))?;
    let report: tokenfab::loadgen::LoadReport = serde_json::from_str(&text).with_context(|| {
        format!(
            "{} is not `tokenfab bench --endpoint URL -o json` output",
            path.display()
        )
    })?;
    let level = report
        .level(concurrency)
        .with_context(|| match concurrency {
            Some(c) => format!("{}: no level with concurrency {c}", path.display()),
            None => format!("{}: no level without failures", path.display()),
        })?;
    let j = level.j_per_token.with_context(|| {
        format!(
            "{}: the server reported no joules (usage.cost): served results give the cost of a \
             token only from a tokenfab server",
            path.display()
        )
    })?;
    let dec = results
        .iter()
        .find(|r| r.decode_tok_s.is_some())
        .cloned()
        .context("--served replaces the bench's decode test: give bench results with one (-n)")?;
    let mut s = dec;
    s.test = format!(
        "served to {} concurrent clients ({} tokens each, {})",
        level.concurrency, report.max_tokens, report.endpoint
    );
    s.decode_tok_s = Some(level.aggregate_tok_s);
    s.decode_j_per_token = Some(j);
    s.energy_source = level
        .energy_source
        .clone()
        .unwrap_or_else(|| "estimated:model".into());
    results.retain(|r| r.decode_tok_s.is_none() || r.prefill_tok_s.is_some());
    for r in results.iter_mut() {
        // pp+tg tests keep their prefill; their decode gives way to the served one
        r.decode_tok_s = None;
        r.decode_j_per_token = None;
    }
    results.push(s);
    Ok(results)
}

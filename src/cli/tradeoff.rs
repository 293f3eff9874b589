//! `tokenfab tradeoff`: quantize a model to several mixes (in a temp dir), then for each report
//! size, bits/weight, perplexity, KL divergence against the source, decode speed, J/token and
//! $/Mtok (and with `--humaneval N` pass@1 and USD per accepted output) — as a table and a
//! Pareto plot.

use anyhow::{bail, Context, Result};
use clap::Args;
use std::io::Write;
use std::path::PathBuf;
use tokenfab::backend::BackendSpec;
use tokenfab::cost::model::Mix as WorkMix;
use tokenfab::cost::prices::PriceTable;
use tokenfab::cost::report::{build, CostOptions};
use tokenfab::eval::kld::{KldBase, KldCompare};
use tokenfab::eval::perplexity::{perplexity, KldMode, PerplexityOptions};
use tokenfab::eval::tasks::run::{self, Policy, RunOptions};
use tokenfab::eval::tasks::sandbox::Sandbox;
use tokenfab::eval::tasks::suite;
use tokenfab::eval::tradeoff::{TaskScore, Tradeoff, TradeoffRow};
use tokenfab::gguf::GgufFile;
use tokenfab::model::LoadOptions;
use tokenfab::quantize::{quantize_file, Mix, PlanOptions};

#[derive(Args, Debug)]
pub struct TradeoffArgs {
    /// Source GGUF (default: the default model).
    #[arg(short = 'm', long = "model")]
    pub model: Option<PathBuf>,
    /// Mixes to compare.
    #[arg(
        long = "types",
        value_delimiter = ',',
        default_value = "q8_0,q6_k,q5_k_m,q4_k_m,q4_0,q3_k_m,q2_k"
    )]
    pub types: Vec<String>,
    /// Text for perplexity and KL divergence.
    #[arg(short = 'f', long = "file")]
    pub file: PathBuf,
    #[arg(short = 'c', long = "ctx-size", default_value_t = 512)]
    pub ctx: usize,
    /// Score at most this many chunks per model (all by default).
    #[arg(long = "chunks")]
    pub chunks: Option<usize>,
    #[arg(short = 't', long = "threads", default_value_t = 0)]
    pub threads: usize,
    /// Generated tokens in each speed test.
    #[arg(long = "bench-gen", default_value_t = 64)]
    pub bench_gen: usize,
    /// Workload mix of input:output tokens for $/Mtok.
    #[arg(long = "mix", default_value = "1:1")]
    pub mix: String,
    /// Electricity row for $/Mtok.
    #[arg(long = "electricity", default_value = "us-residential")]
    pub electricity: String,
    /// Edge device row for the hardware share of $/Mtok (default: energy only).
    #[arg(long = "device")]
    pub device: Option<String>,
    #[arg(long = "utilization", default_value_t = 0.1)]
    pub utilization: f64,
    /// Keep the quantized files here instead of a temporary directory.
    #[arg(long = "keep")]
    pub keep: Option<PathBuf>,
    #[arg(short = 'o', long = "output", default_value = "md")]
    pub output: String,
    #[arg(long = "plot-dir", default_value = ".")]
    pub plot_dir: PathBuf,
    #[arg(long = "no-plots")]
    pub no_plots: bool,
    /// Also solve the first N HumanEval problems with every type (greedy, one attempt, the
    /// chat template; models/HumanEval.jsonl.gz from `scripts/fetch-models.sh humaneval`):
    /// pass@1 and USD per accepted output as quality columns, as `tokenfab eval` measures.
    #[arg(long = "humaneval")]
    pub humaneval: Option<usize>,
    /// Most tokens of a HumanEval answer.
    #[arg(long = "humaneval-tokens", default_value_t = 512)]
    pub humaneval_tokens: usize,
    #[command(flatten)]
    pub energy: super::energy::EnergyArgs,
}

pub fn run(a: TradeoffArgs) -> Result<()> {
    if !matches!(a.output.as_str(), "md" | "json") {
        bail!("-o must be md or json (got {:?})", a.output);
    }
    let mixes: Vec<Mix> = a
        .types
        .iter()
        .map(|t| {
            Mix::parse(t).with_context(|| {
                let names: Vec<&str> = Mix::ALL.iter().map(|m| m.name()).collect();
                format!("--types: {t:?} is not one of {}", names.join(", "))
            })
        })
        .collect::<Result<_>>()?;
    let src_path = super::resolve_model(a.model.as_deref())?;
    let tasks = match a.humaneval {
        Some(0) => bail!("--humaneval takes a number of problems, at least 1"),
        Some(n) => {
            let file = super::models_dir().join("HumanEval.jsonl.gz");
            let mut problems = suite::load(&file).map_err(anyhow::Error::msg)?;
            problems.truncate(n);
            let sandbox = Sandbox::new().map_err(anyhow::Error::msg)?;
            Some((problems, sandbox))
        }
        None => None,
    };
    let text = std::fs::read_to_string(&a.file)
        .with_context(|| format!("cannot read text file {}", a.file.display()))?;
    let threads = if a.threads == 0 {
        std::thread::available_parallelism().map_or(1, |n| n.get())
    } else {
        a.threads
    };
    let (wi, wo) = a.mix.split_once(':').context("--mix takes INPUT:OUTPUT")?;
    let work_mix = WorkMix {
        input: wi.trim().parse().context("--mix input")?,
        output: wo.trim().parse().context("--mix output")?,
    };
    let temp;
    let dir = match &a.keep {
        Some(d) => {
            std::fs::create_dir_all(d)?;
            d.clone()
        }
        None => {
            temp = tempfile::tempdir()?;
            temp.path().to_path_buf()
        }
    };
    let table = PriceTable::builtin();
    let popts = PerplexityOptions {
        n_ctx: a.ctx,
        max_chunks: a.chunks,
    };
    let load_opts = LoadOptions {
        ctx: a.ctx.max(a.bench_gen + 1).max(129),
        batch: a.ctx.max(128),
        logit_rows: 32.min(a.ctx),
        n_seq: 1,
        // scoring and speed per type: nothing is compared across batch sizes
        batch_invariant: false,
        ..LoadOptions::default()
    };
    let kld_path = dir.join("source.kld");
    let mut rows = Vec::new();
    let mut notes = Vec::new();
    let src =
        GgufFile::open(&src_path).with_context(|| format!("cannot open {}", src_path.display()))?;
    if src.tensors().iter().any(|t| t.dtype.is_quantized()) {
        notes.push(format!(
            "the source {} is already quantized: every mix is requantized from it, so quality is bounded by the source and KLD is measured against it",
            src_path.display()
        ));
    }
    let src_bpw = src.tensors().iter().map(|t| t.n_bytes).sum::<u64>() as f64 * 8.0
        / src
            .tensors()
            .iter()
            .map(|t| t.n_elements())
            .sum::<u64>()
            .max(1) as f64;
    drop(src);
    let mut src_ppl = None;
    let candidates: Vec<(String, PathBuf, Option<f64>)> =
        std::iter::once(("source".to_string(), src_path.clone(), Some(src_bpw)))
            .chain(mixes.iter().map(|m| {
                (
                    m.name().to_string(),
                    dir.join(format!("{}.gguf", m.name())),
                    None,
                )
            }))
            .collect();
    for (i, (kind, path, bpw)) in candidates.iter().enumerate() {
        let mut bpw = *bpw;
        if i > 0 {
            let mix = mixes[i - 1];
            eprintln!("tokenfab tradeoff: quantizing to {kind}");
            let s = quantize_file(
                &GgufFile::open(&src_path)?,
                path,
                mix,
                &PlanOptions::default(),
                &mut |_, _| {},
            )?;
            bpw = Some(s.bits_per_weight);
        }
        eprintln!("tokenfab tradeoff: perplexity and KLD of {kind}");
        let (tk, mut model) = super::run::load(path, &BackendSpec::cpu(threads), &load_opts)?;
        let (report, kld) = if i == 0 {
            let mut base = KldBase::new(&kld_path, 32);
            let r = perplexity(
                &mut model,
                &tk,
                &text,
                &popts,
                KldMode::Save(&mut base),
                &mut |_, _| {},
            )?;
            base.finish()?;
            (r, None)
        } else {
            let mut cmp = KldCompare::open(&kld_path)?;
            let r = perplexity(
                &mut model,
                &tk,
                &text,
                &popts,
                KldMode::Compare(&mut cmp),
                &mut |_, _| {},
            )?;
            (r, Some(cmp.finish()?))
        };
        drop(model);
        let size = std::fs::metadata(path).map(|m| m.len()).unwrap_or(0);
        eprintln!("tokenfab tradeoff: speed and energy of {kind}");
        let bench = super::bench::measure(path, threads, &[128], &[a.bench_gen], 2, &a.energy)?;
        let cost = build(
            &bench,
            &table,
            &CostOptions {
                device: a.device.clone(),
                electricity: a.electricity.clone(),
                utilization: a.utilization,
                mix: work_mix,
                ..Default::default()
            },
        )?;
        let task = match &tasks {
            Some((problems, sandbox)) => {
                eprintln!(
                    "tokenfab tradeoff: {} HumanEval problems with {kind}",
                    problems.len()
                );
                let backend = BackendSpec::cpu(threads);
                let mut e = super::eval::task_engine(path, backend, threads, &a.energy)?;
                let opts = RunOptions {
                    max_tokens: a.humaneval_tokens,
                    ..RunOptions::default()
                };
                let runs = run::run(&mut e, sandbox, problems, &opts, &mut |_| {})?;
                let c = run::cost_single(&runs, &Policy::Single);
                Some(TaskScore::from_cost("humaneval", &c))
            }
            None => None,
        };
        let base_ppl = *src_ppl.get_or_insert(report.ppl);
        let dec = bench.iter().find(|b| b.decode_tok_s.is_some());
        let pre = bench.iter().find(|b| b.prefill_tok_s.is_some());
        rows.push(TradeoffRow {
            kind: kind.clone(),
            size_bytes: size,
            bits_per_weight: bpw.unwrap_or(0.0),
            ppl: report.ppl,
            ppl_stderr: report.ppl_stderr,
            ppl_delta_pct: 100.0 * (report.ppl - base_ppl) / base_ppl,
            kld,
            decode_tok_s: dec.and_then(|b| b.decode_tok_s).unwrap_or(0.0),
            prefill_tok_s: pre.and_then(|b| b.prefill_tok_s).unwrap_or(0.0),
            decode_j_per_token: dec.and_then(|b| b.decode_j_per_token).unwrap_or(0.0),
            usd_per_mtok: cost.edge_per_accepted.total(),
            energy_source: dec.map_or(String::new(), |b| b.energy_source.clone()),
            task,
        });
    }
    if let Some((problems, sandbox)) = &tasks {
        notes.push(format!(
            "pass@1: the first {} HumanEval problems, greedy, at most {} tokens, EvalPlus's instruction through the chat template, tests in the sandbox ({}); USD per accepted output = all answers' USD / problems solved",
            problems.len(),
            a.humaneval_tokens,
            sandbox.describe()
        ));
    }
    if a.device.is_none() {
        notes.push("USD/Mtok is energy only (no --device given to price the hardware)".into());
    }
    notes.push(format!(
        "J/token and USD/Mtok: {} (see tokenfab bench/cost); KLD: {}",
        rows.first().map_or("", |r| r.energy_source.as_str()),
        rows.iter()
            .find_map(|r| r.kld.as_ref())
            .map_or("", |k| k.method.as_str())
    ));
    let t = Tradeoff {
        model: src_path.display().to_string(),
        text: a.file.display().to_string(),
        chunks: a.chunks.unwrap_or(0),
        n_ctx: a.ctx,
        rows,
        notes,
    };
    let mut out = std::io::stdout().lock();
    match a.output.as_str() {
        "json" => writeln!(out, "{}", serde_json::to_string_pretty(&t)?)?,
        _ => write!(out, "{}", t.to_markdown())?,
    }
    if !a.no_plots {
        for f in t.plot(&a.plot_dir).map_err(anyhow::Error::msg)? {
            eprintln!("tokenfab tradeoff: wrote {}", f.display());
        }
    }
    Ok(())
}

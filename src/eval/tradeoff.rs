//! The quantization trade-off table: per type, file size, bits per weight, perplexity, KL
//! divergence against the source model, decode speed, J/token and $/Mtok, and optionally a
//! task's pass@1 with its cost per accepted output — and a Pareto plot of quality loss
//! against cost. The CLI (`tokenfab tradeoff`) runs the measurements; this
//! module holds the rows, their rendering and the plot.

use super::kld::KldReport;
use crate::cost::plot::{pareto_plot, ParetoPoint};
use serde::Serialize;
use std::path::{Path, PathBuf};

#[derive(Clone, Debug, Serialize)]
pub struct TradeoffRow {
    /// `source` for the unmodified model, else the mix name.
    pub kind: String,
    pub size_bytes: u64,
    pub bits_per_weight: f64,
    pub ppl: f64,
    pub ppl_stderr: f64,
    /// PPL change against the source, %.
    pub ppl_delta_pct: f64,
    /// None for the source itself.
    pub kld: Option<KldReport>,
    pub decode_tok_s: f64,
    pub prefill_tok_s: f64,
    pub decode_j_per_token: f64,
    /// Edge USD per 1M tokens of the workload mix (see `cost`), per accepted token = same here.
    pub usd_per_mtok: f64,
    pub energy_source: String,
    /// The first problems of a task suite solved with this type (`--humaneval N`).
    pub task: Option<TaskScore>,
}

/// A type's pass@1 on the first problems of a task suite (greedy, one attempt each) and what
/// an accepted output cost ([`super::tasks::run`]).
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct TaskScore {
    pub suite: String,
    pub problems: usize,
    pub passed: usize,
    pub pass_at_1: f64,
    pub generated_tokens: usize,
    /// All attempts' dollars ÷ problems solved (`None` when none was).
    pub usd_per_accepted: Option<f64>,
}

impl TaskScore {
    pub fn from_cost(suite: &str, c: &super::tasks::run::PolicyCost) -> TaskScore {
        TaskScore {
            suite: suite.into(),
            problems: c.problems,
            passed: c.passed,
            pass_at_1: c.pass_rate(),
            generated_tokens: c.work.generated_tokens,
            usd_per_accepted: c.usd_per_accepted(),
        }
    }
}

#[derive(Clone, Debug, Serialize)]
pub struct Tradeoff {
    pub model: String,
    pub text: String,
    pub chunks: usize,
    pub n_ctx: usize,
    pub rows: Vec<TradeoffRow>,
    pub notes: Vec<String>,
}

impl Tradeoff {
    /// Rows no other row beats on both cost and quality loss (mean KLD).
    pub fn pareto(&self) -> Vec<&str> {
        let loss = |r: &TradeoffRow| r.kld.as_ref().map_or(0.0, |k| k.mean_kld);
        self.rows
            .iter()
            .filter(|a| {
                !self.rows.iter().any(|b| {
                    (b.usd_per_mtok <= a.usd_per_mtok && loss(b) <= loss(a))
                        && (b.usd_per_mtok < a.usd_per_mtok || loss(b) < loss(a))
                })
            })
            .map(|r| r.kind.as_str())
            .collect()
    }

    pub fn to_markdown(&self) -> String {
        let pareto = self.pareto();
        let task = self.rows.iter().find_map(|r| r.task.as_ref());
        let (task_head, task_rule) = match task {
            Some(t) => (
                format!(
                    " pass@1 ({}, {} problems) | USD per accepted output |",
                    t.suite, t.problems
                ),
                " ---: | ---: |",
            ),
            None => (String::new(), ""),
        };
        let mut s = format!(
            "# Quantization trade-offs: {}\n\nPerplexity and KL divergence on {} ({} chunks of {} tokens); KLD against the source model.\n\n| type | size MB | bits/weight | PPL | ΔPPL % | mean KLD | p99 KLD | same top % | decode tok/s | prefill tok/s | J/token (decode) | USD/Mtok |{task_head} Pareto |\n| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |{task_rule} :---: |\n",
            self.model, self.text, self.chunks, self.n_ctx
        );
        for r in &self.rows {
            let (kl, p99, same) = match &r.kld {
                Some(k) => (
                    format!("{:.5}", k.mean_kld),
                    format!("{:.4}", k.p99_kld),
                    format!("{:.2}", k.same_top_pct),
                ),
                None => ("-".into(), "-".into(), "-".into()),
            };
            let task_cells = match (task, &r.task) {
                (None, _) => String::new(),
                (Some(_), None) => " - | - |".into(),
                (Some(_), Some(t)) => format!(
                    " {:.1} % ({}/{}) | {} |",
                    100.0 * t.pass_at_1,
                    t.passed,
                    t.problems,
                    t.usd_per_accepted
                        .map_or("-".into(), |u| format!("{u:.2e}"))
                ),
            };
            s.push_str(&format!(
                "| {} | {:.1} | {:.2} | {:.4} ± {:.4} | {:+.2} | {} | {} | {} | {:.1} | {:.1} | {:.4} | {:.4} |{task_cells} {} |\n",
                r.kind,
                r.size_bytes as f64 / 1e6,
                r.bits_per_weight,
                r.ppl,
                r.ppl_stderr,
                r.ppl_delta_pct,
                kl,
                p99,
                same,
                r.decode_tok_s,
                r.prefill_tok_s,
                r.decode_j_per_token,
                r.usd_per_mtok,
                if pareto.contains(&r.kind.as_str()) { "yes" } else { "" }
            ));
        }
        if !self.notes.is_empty() {
            s.push('\n');
            for n in &self.notes {
                s.push_str(&format!("- {n}\n"));
            }
        }
        s
    }

    /// The Pareto plot (quality loss against $/Mtok), as SVG and PNG in `dir`.
    pub fn plot(&self, dir: &Path) -> Result<Vec<PathBuf>, String> {
        let pareto = self.pareto();
        let pts: Vec<ParetoPoint> = self
            .rows
            .iter()
            .map(|r| ParetoPoint {
                x: r.usd_per_mtok,
                y: r.kld.as_ref().map_or(0.0, |k| k.mean_kld),
                label: r.kind.clone(),
                front: pareto.contains(&r.kind.as_str()),
            })
            .collect();
        pareto_plot(
            &dir.join("tokenfab-tradeoff"),
            &format!("Quality loss vs cost: {}", self.model),
            "USD per 1M tokens (workload mix)",
            "mean KL divergence vs source (lower is better)",
            &|v| format!("{v:.4}"),
            &pts,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(kind: &str, usd: f64, task: Option<TaskScore>) -> TradeoffRow {
        TradeoffRow {
            kind: kind.into(),
            size_bytes: 1_000_000,
            bits_per_weight: 4.5,
            ppl: 10.0,
            ppl_stderr: 0.1,
            ppl_delta_pct: 0.0,
            kld: None,
            decode_tok_s: 1.0,
            prefill_tok_s: 1.0,
            decode_j_per_token: 0.1,
            usd_per_mtok: usd,
            energy_source: "estimated:model".into(),
            task,
        }
    }

    #[test]
    fn the_task_columns_appear_when_a_row_was_scored() {
        let score = |passed| TaskScore {
            suite: "humaneval".into(),
            problems: 3,
            passed,
            pass_at_1: passed as f64 / 3.0,
            generated_tokens: 300,
            usd_per_accepted: (passed > 0).then(|| 6e-6 / passed as f64),
        };
        let mut t = Tradeoff {
            model: "m".into(),
            text: "t".into(),
            chunks: 1,
            n_ctx: 128,
            rows: vec![
                row("source", 1.0, Some(score(2))),
                row("q4_0", 0.5, Some(score(0))),
            ],
            notes: vec![],
        };
        let md = t.to_markdown();
        assert!(md.contains("| pass@1 (humaneval, 3 problems) | USD per accepted output |"));
        assert!(md.contains("| 66.7 % (2/3) | 3.00e-6 |"), "{md}");
        assert!(md.contains("| 0.0 % (0/3) | - |"), "{md}");
        // every line of the table has the same number of cells
        let cells: Vec<usize> = md
            .lines()
            .filter(|l| l.starts_with('|'))
            .map(|l| l.matches('|').count())
            .collect();
        assert!(cells.iter().all(|c| *c == cells[0]), "{cells:?}");
        for r in &mut t.rows {
            r.task = None;
        }
        assert!(!t.to_markdown().contains("pass@1"));
    }
}

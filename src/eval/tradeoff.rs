//! The quantization trade-off table: per type, file size, bits per weight, perplexity, KL
//! divergence against the source model, decode speed, J/token and $/Mtok — and a Pareto plot
//! of quality loss against cost. The CLI (`tokenfab tradeoff`) runs the measurements; this
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
        let mut s = format!(
            "# Quantization trade-offs: {}\n\nPerplexity and KL divergence on {} ({} chunks of {} tokens); KLD against the source model.\n\n| type | size MB | bits/weight | PPL | ΔPPL % | mean KLD | p99 KLD | same top % | decode tok/s | prefill tok/s | J/token (decode) | USD/Mtok | Pareto |\n| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | :---: |\n",
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
            s.push_str(&format!(
                "| {} | {:.1} | {:.2} | {:.4} ± {:.4} | {:+.2} | {} | {} | {} | {:.1} | {:.1} | {:.4} | {:.4} | {} |\n",
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

//! The quantization trade-off table: per type, file size, bits per weight, perplexity, KL
//! divergence against the source model, decode speed, J/token and $/Mtok — and a Pareto plot
//! of quality loss against cost. The CLI (`tokenfab tradeoff`) runs the measurements; this
//! module holds the rows, their rendering and the plot.

use super::kld::KldReport;
use plotters::prelude::*;
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
        crate::cost::plot::register_font()?;
        std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        let stem = dir.join("tokenfab-tradeoff");
        let (svg, png) = (stem.with_extension("svg"), stem.with_extension("png"));
        self.draw(SVGBackend::new(&svg, (900, 600)).into_drawing_area())?;
        self.draw(BitMapBackend::new(&png, (900, 600)).into_drawing_area())?;
        Ok(vec![svg, png])
    }

    fn draw<DB: DrawingBackend>(
        &self,
        root: DrawingArea<DB, plotters::coord::Shift>,
    ) -> Result<(), String>
    where
        DB::ErrorType: 'static,
    {
        let err = |e: DrawingAreaErrorKind<DB::ErrorType>| format!("plot: {e:?}");
        root.fill(&WHITE).map_err(err)?;
        let pts: Vec<(f64, f64, &str)> = self
            .rows
            .iter()
            .map(|r| {
                (
                    r.usd_per_mtok,
                    r.kld.as_ref().map_or(0.0, |k| k.mean_kld),
                    r.kind.as_str(),
                )
            })
            .collect();
        let xmax = pts.iter().map(|p| p.0).fold(0.0, f64::max).max(1e-9) * 1.15;
        let ymax = pts.iter().map(|p| p.1).fold(0.0, f64::max).max(1e-6) * 1.15;
        let xmin = pts.iter().map(|p| p.0).fold(f64::MAX, f64::min).min(xmax) * 0.85;
        let mut chart = ChartBuilder::on(&root)
            .caption(
                format!("Quality loss vs cost: {}", self.model),
                ("sans-serif", 20),
            )
            .margin(14)
            .x_label_area_size(46)
            .y_label_area_size(70)
            .build_cartesian_2d(xmin..xmax, 0.0..ymax)
            .map_err(err)?;
        chart
            .configure_mesh()
            .x_desc("USD per 1M tokens (workload mix)")
            .y_desc("mean KL divergence vs source (lower is better)")
            .x_label_formatter(&|v| format!("{v:.4}"))
            .y_label_formatter(&|v| format!("{v:.3}"))
            .label_style(("sans-serif", 13))
            .axis_desc_style(("sans-serif", 15))
            .draw()
            .map_err(err)?;
        let pareto = self.pareto();
        let mut front: Vec<(f64, f64)> = pts
            .iter()
            .filter(|p| pareto.contains(&p.2))
            .map(|p| (p.0, p.1))
            .collect();
        front.sort_by(|a, b| a.0.total_cmp(&b.0));
        chart
            .draw_series(LineSeries::new(
                front,
                ShapeStyle::from(&RGBColor(86, 180, 233)).stroke_width(2),
            ))
            .map_err(err)?
            .label("Pareto front")
            .legend(|(x, y)| {
                PathElement::new(
                    vec![(x, y), (x + 20, y)],
                    RGBColor(86, 180, 233).stroke_width(2),
                )
            });
        for &(x, y, name) in &pts {
            let color = if pareto.contains(&name) {
                RGBColor(213, 94, 0)
            } else {
                RGBColor(120, 120, 120)
            };
            chart
                .draw_series(std::iter::once(Circle::new((x, y), 6, color.filled())))
                .map_err(err)?;
            chart
                .draw_series(std::iter::once(Text::new(
                    name.to_string(),
                    (x, y + ymax * 0.03),
                    ("sans-serif", 14).into_font(),
                )))
                .map_err(err)?;
        }
        chart
            .configure_series_labels()
            .position(SeriesLabelPosition::UpperRight)
            .label_font(("sans-serif", 13))
            .background_style(WHITE.mix(0.85))
            .border_style(BLACK)
            .draw()
            .map_err(err)?;
        root.present().map_err(err)
    }
}

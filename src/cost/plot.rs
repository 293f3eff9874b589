//! Plots of a cost report with `plotters`, each written as SVG and PNG: edge USD per 1M
//! tokens over utilization with every cloud API row as a line, and the edge cost components
//! as stacked bars. Text uses DejaVu Sans embedded in the binary (fonts/, Bitstream Vera
//! license), so PNGs render the same on machines without fonts.

use super::report::CostReport;
use plotters::prelude::*;
use std::path::{Path, PathBuf};

const FONT: &[u8] = include_bytes!("fonts/DejaVuSans.ttf");

pub(crate) fn register_font() -> Result<(), String> {
    static DONE: std::sync::OnceLock<Result<(), String>> = std::sync::OnceLock::new();
    DONE.get_or_init(|| {
        plotters::style::register_font("sans-serif", FontStyle::Normal, FONT)
            .map_err(|_| "cannot load the embedded font".to_string())
    })
    .clone()
}

/// One point of a [`pareto_plot`]: x, y, its label, and whether it is on the Pareto front.
pub struct ParetoPoint {
    pub x: f64,
    pub y: f64,
    pub label: String,
    pub front: bool,
}

/// A scatter of labelled points with their Pareto front drawn through them, as `stem.svg` and
/// `stem.png` (the trade-off plot, `tokenfab eval`'s pass rate against cost).
pub fn pareto_plot(
    stem: &Path,
    title: &str,
    x_desc: &str,
    y_desc: &str,
    x_label: &dyn Fn(&f64) -> String,
    pts: &[ParetoPoint],
) -> Result<Vec<PathBuf>, String> {
    register_font()?;
    if let Some(dir) = stem.parent() {
        std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    }
    let (svg, png) = (stem.with_extension("svg"), stem.with_extension("png"));
    let args = (title, x_desc, y_desc, x_label, pts);
    draw_pareto(SVGBackend::new(&svg, (900, 600)).into_drawing_area(), args)?;
    draw_pareto(
        BitMapBackend::new(&png, (900, 600)).into_drawing_area(),
        args,
    )?;
    Ok(vec![svg, png])
}

type PlotArgs<'a> = (
    &'a str,
    &'a str,
    &'a str,
    &'a dyn Fn(&f64) -> String,
    &'a [ParetoPoint],
);

fn draw_pareto<DB: DrawingBackend>(
    root: DrawingArea<DB, plotters::coord::Shift>,
    (title, x_desc, y_desc, x_label, pts): PlotArgs,
) -> Result<(), String>
where
    DB::ErrorType: 'static,
{
    let err = |e: DrawingAreaErrorKind<DB::ErrorType>| format!("plot: {e:?}");
    root.fill(&WHITE).map_err(err)?;
    let xmax = pts.iter().map(|p| p.x).fold(0.0, f64::max).max(1e-9) * 1.15;
    let ymax = pts.iter().map(|p| p.y).fold(0.0, f64::max).max(1e-6) * 1.15;
    let xmin = pts.iter().map(|p| p.x).fold(f64::MAX, f64::min).min(xmax) * 0.85;
    let mut chart = ChartBuilder::on(&root)
        .caption(title, ("sans-serif", 20))
        .margin(14)
        .x_label_area_size(46)
        .y_label_area_size(70)
        .build_cartesian_2d(xmin..xmax, 0.0..ymax)
        .map_err(err)?;
    chart
        .configure_mesh()
        .x_desc(x_desc)
        .y_desc(y_desc)
        .x_label_formatter(x_label)
        .y_label_formatter(&|v| format!("{v:.3}"))
        .label_style(("sans-serif", 13))
        .axis_desc_style(("sans-serif", 15))
        .draw()
        .map_err(err)?;
    let mut front: Vec<(f64, f64)> = pts.iter().filter(|p| p.front).map(|p| (p.x, p.y)).collect();
    front.sort_by(|a, b| a.0.total_cmp(&b.0));
    let blue = RGBColor(86, 180, 233);
    chart
        .draw_series(LineSeries::new(
            front,
            ShapeStyle::from(&blue).stroke_width(2),
        ))
        .map_err(err)?
        .label("Pareto front")
        .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], blue.stroke_width(2)));
    for p in pts {
        let color = if p.front {
            RGBColor(213, 94, 0)
        } else {
            RGBColor(120, 120, 120)
        };
        chart
            .draw_series(std::iter::once(Circle::new((p.x, p.y), 6, color.filled())))
            .map_err(err)?;
        chart
            .draw_series(std::iter::once(Text::new(
                p.label.clone(),
                (p.x, p.y + ymax * 0.03),
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

/// Writes both charts as SVG and PNG into `dir`; returns the files written.
pub fn write_all(r: &CostReport, dir: &Path) -> Result<Vec<PathBuf>, String> {
    register_font()?;
    std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    let mut out = Vec::new();
    let util = dir.join("tokenfab-cost-utilization");
    let comp = dir.join("tokenfab-cost-components");
    let (svg, png) = (util.with_extension("svg"), util.with_extension("png"));
    utilization(r, SVGBackend::new(&svg, (1000, 640)).into_drawing_area())?;
    utilization(r, BitMapBackend::new(&png, (1000, 640)).into_drawing_area())?;
    out.extend([svg, png]);
    let (svg, png) = (comp.with_extension("svg"), comp.with_extension("png"));
    components(r, SVGBackend::new(&svg, (800, 540)).into_drawing_area())?;
    components(r, BitMapBackend::new(&png, (800, 540)).into_drawing_area())?;
    out.extend([svg, png]);
    Ok(out)
}

fn err<E: std::fmt::Debug>(e: E) -> String {
    format!("plot: {e:?}")
}

fn utilization<DB: DrawingBackend>(
    r: &CostReport,
    root: DrawingArea<DB, plotters::coord::Shift>,
) -> Result<(), String>
where
    DB::ErrorType: 'static,
{
    root.fill(&WHITE).map_err(err)?;
    let ys = r
        .utilization_curve
        .iter()
        .map(|p| p.1)
        .chain(r.cloud.iter().map(|c| c.usd_per_mtok))
        .filter(|v| *v > 0.0);
    let (lo, hi) = ys.fold((f64::MAX, f64::MIN), |(a, b), v| (a.min(v), b.max(v)));
    let (lo, hi) = if lo <= hi {
        (lo / 2.0, hi * 2.0)
    } else {
        (1e-3, 1.0)
    };
    let mut chart = ChartBuilder::on(&root)
        .caption(
            format!("Edge vs cloud: USD per 1M accepted tokens ({})", r.model),
            ("sans-serif", 20),
        )
        .margin(12)
        .x_label_area_size(46)
        .y_label_area_size(70)
        .build_cartesian_2d((0.01f64..1.0f64).log_scale(), (lo..hi).log_scale())
        .map_err(err)?;
    chart
        .configure_mesh()
        .x_desc("utilization of the edge device")
        .y_desc("USD per 1M tokens (workload mix)")
        .x_label_formatter(&|u| format!("{:.0}%", u * 100.0))
        .y_label_formatter(&|v| format!("{v:.3}"))
        .label_style(("sans-serif", 14))
        .axis_desc_style(("sans-serif", 16))
        .draw()
        .map_err(err)?;
    chart
        .draw_series(LineSeries::new(
            r.utilization_curve.iter().copied(),
            ShapeStyle::from(&BLACK).stroke_width(3),
        ))
        .map_err(err)?
        .label(format!("edge: {}", r.machine))
        .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], BLACK.stroke_width(3)));
    for (i, c) in r.cloud.iter().enumerate() {
        let color = Palette99::pick(i).to_rgba();
        chart
            .draw_series(LineSeries::new(
                [(0.01, c.usd_per_mtok), (1.0, c.usd_per_mtok)],
                ShapeStyle::from(&color).stroke_width(2),
            ))
            .map_err(err)?
            .label(c.id.clone())
            .legend(move |(x, y)| {
                PathElement::new(vec![(x, y), (x + 20, y)], color.stroke_width(2))
            });
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperRight)
        .label_font(("sans-serif", 12))
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK)
        .draw()
        .map_err(err)?;
    root.present().map_err(err)
}

fn components<DB: DrawingBackend>(
    r: &CostReport,
    root: DrawingArea<DB, plotters::coord::Shift>,
) -> Result<(), String>
where
    DB::ErrorType: 'static,
{
    root.fill(&WHITE).map_err(err)?;
    let e = &r.edge;
    let bars = [
        ("prefill", e.prefill),
        ("decode", e.decode),
        ("mix", e.blended),
    ];
    let top = bars
        .iter()
        .map(|b| b.1.total())
        .fold(0.0f64, f64::max)
        .max(1e-9)
        * 1.15;
    let mut chart = ChartBuilder::on(&root)
        .caption(
            format!(
                "Edge cost components at {:.0}% utilization (USD per 1M tokens)",
                e.utilization * 100.0
            ),
            ("sans-serif", 18),
        )
        .margin(12)
        .x_label_area_size(40)
        .y_label_area_size(70)
        .build_cartesian_2d((0usize..2usize).into_segmented(), 0.0f64..top)
        .map_err(err)?;
    chart
        .configure_mesh()
        .disable_x_mesh()
        .x_label_formatter(&|v| match v {
            SegmentValue::CenterOf(i) | SegmentValue::Exact(i) => {
                bars.get(*i).map_or(String::new(), |b| b.0.to_string())
            }
            SegmentValue::Last => String::new(),
        })
        .y_desc("USD per 1M tokens")
        .y_label_formatter(&|v| format!("{v:.3}"))
        .label_style(("sans-serif", 14))
        .axis_desc_style(("sans-serif", 16))
        .draw()
        .map_err(err)?;
    type Part = (&'static str, RGBColor, fn(&super::model::Components) -> f64);
    let parts: [Part; 3] = [
        ("energy", RGBColor(230, 159, 0), |c| c.energy),
        ("hardware", RGBColor(86, 180, 233), |c| c.hardware),
        ("overhead", RGBColor(0, 158, 115), |c| c.overhead),
    ];
    for (name, color, get) in parts {
        let rects: Vec<_> = bars
            .iter()
            .enumerate()
            .map(|(i, (_, c))| {
                let below: f64 = parts
                    .iter()
                    .take_while(|p| p.0 != name)
                    .map(|p| (p.2)(c))
                    .sum();
                let mut bar = Rectangle::new(
                    [
                        (SegmentValue::Exact(i), below),
                        (SegmentValue::Exact(i + 1), below + get(c)),
                    ],
                    color.filled(),
                );
                bar.set_margin(0, 0, 30, 30);
                bar
            })
            .collect();
        chart
            .draw_series(rects)
            .map_err(err)?
            .label(name)
            .legend(move |(x, y)| Rectangle::new([(x, y - 6), (x + 14, y + 6)], color.filled()));
    }
    // totals above the bars
    chart
        .draw_series(bars.iter().enumerate().map(|(i, (_, c))| {
            Text::new(
                format!("{:.4}", c.total()),
                (SegmentValue::CenterOf(i), c.total() + top * 0.02),
                ("sans-serif", 14).into_font(),
            )
        }))
        .map_err(err)?;
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperLeft)
        .label_font(("sans-serif", 14))
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK)
        .draw()
        .map_err(err)?;
    root.present().map_err(err)
}

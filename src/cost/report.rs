//! The cost report: inputs with their origins, edge cost per 1M tokens (prefill, decode, the
//! workload mix) with its components, the curve over utilization, every cloud API and rental
//! row with break-even, and the quality-adjusted cost per accepted token. Rendered as Markdown
//! or JSON; deterministic for given inputs (no clock, no randomness).

use super::model::*;
use super::prices::{cite, PriceTable};
use crate::telemetry::bench::BenchResult;
use serde::Serialize;

/// What the user chose.
#[derive(Clone, Debug)]
pub struct CostOptions {
    /// An `[[edge_device]]` id whose purchase price and amortization class to use.
    pub device: Option<String>,
    /// Purchase price (overrides the device row's).
    pub hardware_usd: Option<f64>,
    pub amortization_years: Option<f64>,
    /// An `[[electricity]]` id.
    pub electricity: String,
    /// Exchange rate for electricity rows priced in EUR (no rate is shipped).
    pub usd_per_eur: Option<f64>,
    /// A `[[pue]]` id.
    pub pue: String,
    pub utilization: f64,
    pub overhead_usd_per_hour: f64,
    /// Share of the local model's tokens that are acceptable (1.0 = no adjustment).
    pub acceptance: Option<f64>,
    pub mix: Mix,
    /// Throughput (prefill, decode tok/s) of the rented GPUs, with its origin.
    pub rental_tok_s: Option<(f64, f64, String)>,
}

impl Default for CostOptions {
    fn default() -> Self {
        CostOptions {
            device: None,
            hardware_usd: None,
            amortization_years: None,
            electricity: "us-residential".into(),
            usd_per_eur: None,
            pue: "edge".into(),
            utilization: 0.1,
            overhead_usd_per_hour: 0.0,
            acceptance: None,
            mix: Mix {
                input: 1.0,
                output: 1.0,
            },
            rental_tok_s: None,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum CostError {
    #[error("{0}")]
    Input(String),
}

#[derive(Clone, Debug, Serialize)]
pub struct NamedInput {
    pub name: String,
    pub value: f64,
    pub origin: String,
}

#[derive(Clone, Debug, Serialize)]
pub struct CloudLine {
    pub id: String,
    pub usd_per_mtok_in: f64,
    pub usd_per_mtok_out: f64,
    /// At the workload mix.
    pub usd_per_mtok: f64,
    /// Edge cost per accepted token ÷ this row's cost (below 1: edge is cheaper).
    pub edge_ratio: f64,
    pub break_even: BreakEven,
    pub origin: String,
}

#[derive(Clone, Debug, Serialize)]
pub struct RentalLine {
    pub id: String,
    pub gpu: String,
    pub usd_per_hour: f64,
    /// Rented only for the hours of work (`USD/h ÷ (tok/s × 3600) × 1e6`); `None` without a
    /// throughput for it.
    pub usd_per_mtok: Option<f64>,
    pub break_even: Option<BreakEven>,
    pub origin: String,
}

#[derive(Clone, Debug, Serialize)]
pub struct CostReport {
    pub model: String,
    pub machine: String,
    /// Named inputs in report order.
    pub inputs: Vec<NamedInput>,
    pub mix: Mix,
    pub acceptance: Input,
    pub edge: EdgeCost,
    /// Edge cost of the mix per 1M *accepted* tokens.
    pub edge_per_accepted: Components,
    /// (utilization, edge USD per 1M accepted mixed tokens).
    pub utilization_curve: Vec<(f64, f64)>,
    pub cloud: Vec<CloudLine>,
    pub rentals: Vec<RentalLine>,
    pub notes: Vec<String>,
}

/// The first bench result carrying prefill numbers, and the first carrying decode numbers.
fn pick(results: &[BenchResult]) -> Result<(&BenchResult, &BenchResult), CostError> {
    let pre = results
        .iter()
        .find(|r| r.prefill_tok_s.is_some() && r.prefill_j_per_token.is_some())
        .ok_or_else(|| {
            CostError::Input(
                "the bench results have no prefill test (run tokenfab bench with -p)".into(),
            )
        })?;
    let dec = results
        .iter()
        .find(|r| r.decode_tok_s.is_some() && r.decode_j_per_token.is_some())
        .ok_or_else(|| {
            CostError::Input(
                "the bench results have no decode test (run tokenfab bench with -n)".into(),
            )
        })?;
    Ok((pre, dec))
}

fn utilization_points() -> Vec<f64> {
    [0.01, 0.02, 0.05, 0.1, 0.2, 0.3, 0.5, 0.7, 1.0].to_vec()
}

/// A note when no cloud row of `table` prices the benchmarked model itself: the comparison is
/// then with other models (names compared by their letters and digits, e.g. "Gemma 3 4B" and
/// `deepinfra:gemma-3-4b`).
fn cloud_note(model: &str, table: &PriceTable) -> Option<String> {
    let norm = |s: &str| -> String {
        s.chars()
            .filter(char::is_ascii_alphanumeric)
            .map(|c| c.to_ascii_lowercase())
            .collect()
    };
    let m = norm(model);
    let priced = table
        .cloud_api
        .iter()
        .any(|c| norm(c.id.split_once(':').map_or(c.id.as_str(), |(_, name)| name)) == m);
    (!priced).then(|| {
        format!(
            "the price table has no hosted endpoint for {model}: the cloud rows are other \
             models, whose quality differs (--acceptance weighs that)"
        )
    })
}

pub fn build(
    results: &[BenchResult],
    table: &PriceTable,
    o: &CostOptions,
) -> Result<CostReport, CostError> {
    let bad = |m: String| CostError::Input(m);
    if !(o.utilization > 0.0 && o.utilization <= 1.0) {
        return Err(bad(format!(
            "--utilization must be in (0, 1] (got {})",
            o.utilization
        )));
    }
    if o.mix.input < 0.0 || o.mix.output < 0.0 || o.mix.input + o.mix.output <= 0.0 {
        return Err(bad(
            "--mix needs non-negative input:output weights, not both zero".into(),
        ));
    }
    let (pre, dec) = pick(results)?;
    let bench_origin = |r: &BenchResult, what: &str| {
        format!(
            "measured: tokenfab bench {} ({}) on {}, {} threads",
            r.test, what, r.machine.cpu, r.threads
        )
    };
    let energy_origin = |r: &BenchResult| format!("{}: tokenfab bench {}", r.energy_source, r.test);
    let mut notes = Vec::new();

    let el = table.electricity(&o.electricity).ok_or_else(|| {
        let ids: Vec<&str> = table.electricity.iter().map(|r| r.id.as_str()).collect();
        bad(format!(
            "--electricity {:?} is not in the price table (have: {})",
            o.electricity,
            ids.join(", ")
        ))
    })?;
    let el_cite = cite("electricity", &el.id, &el.source, &el.as_of);
    let usd_per_kwh = match el.currency.as_str() {
        "USD" => Input::new(el.price_per_kwh, el_cite),
        "EUR" => {
            let fx = o.usd_per_eur.ok_or_else(|| {
                bad(format!(
                    "electricity row {:?} is priced in EUR; give --usd-per-eur RATE (tokenfab ships no exchange rate)",
                    el.id
                ))
            })?;
            Input::new(
                el.price_per_kwh * fx,
                format!("{el_cite} x {fx} USD/EUR (user)"),
            )
        }
        other => {
            return Err(bad(format!(
                "electricity row {:?}: unsupported currency {other:?}",
                el.id
            )))
        }
    };
    let pue_row = table
        .pue(&o.pue)
        .ok_or_else(|| bad(format!("--pue {:?} is not in the price table", o.pue)))?;
    let pue = Input::new(
        pue_row.value,
        cite("pue", &pue_row.id, &pue_row.source, &pue_row.as_of),
    );

    let device = match &o.device {
        Some(id) => Some(table.edge(id).ok_or_else(|| {
            let ids: Vec<&str> = table.edge_device.iter().map(|r| r.id.as_str()).collect();
            bad(format!(
                "--device {id:?} is not in the price table (have: {})",
                ids.join(", ")
            ))
        })?),
        None => None,
    };
    let hardware_usd = match (o.hardware_usd, device) {
        (Some(v), _) => Input::new(v, "user (--hardware-usd)"),
        (None, Some(d)) => Input::new(d.usd, cite("edge_device", &d.id, &d.source, &d.as_of)),
        (None, None) => {
            notes.push("hardware not priced (no --device or --hardware-usd): edge cost is energy (+ overhead) only".into());
            Input::new(0.0, "not priced")
        }
    };
    let amortization_years = match (o.amortization_years, device) {
        (Some(y), _) => Input::new(y, "user (--amortization-years)"),
        (None, Some(d)) => {
            let a = table
                .amortization(&d.class)
                .ok_or_else(|| bad(format!("amortization class {:?} missing", d.class)))?;
            Input::new(a.years, cite("amortization", &a.id, &a.source, &a.as_of))
        }
        (None, None) => {
            let a = table
                .amortization("consumer")
                .ok_or_else(|| bad("no consumer amortization row".into()))?;
            Input::new(a.years, cite("amortization", &a.id, &a.source, &a.as_of))
        }
    };
    if let Some(d) = device {
        if !pre.machine.cpu.is_empty() {
            notes.push(format!(
                "the bench ran on {}; the price of {} is applied to that machine's measured throughput and energy",
                pre.machine.cpu, d.id
            ));
        }
    }
    let e = EdgeInputs {
        prefill: PhaseInputs {
            tok_s: Input::new(
                pre.prefill_tok_s.unwrap_or_default(),
                bench_origin(pre, "prefill tok/s"),
            ),
            j_per_token: Input::new(
                pre.prefill_j_per_token.unwrap_or_default(),
                energy_origin(pre),
            ),
        },
        decode: PhaseInputs {
            tok_s: Input::new(
                dec.decode_tok_s.unwrap_or_default(),
                bench_origin(dec, "decode tok/s"),
            ),
            j_per_token: Input::new(
                dec.decode_j_per_token.unwrap_or_default(),
                energy_origin(dec),
            ),
        },
        usd_per_kwh,
        pue,
        hardware_usd,
        amortization_years,
        overhead_usd_per_hour: Input::new(
            o.overhead_usd_per_hour,
            if o.overhead_usd_per_hour > 0.0 {
                "user (--overhead-usd-per-hour)"
            } else {
                "none"
            },
        ),
    };
    if e.prefill.tok_s.value <= 0.0 || e.decode.tok_s.value <= 0.0 {
        return Err(bad("the bench results have a zero throughput".into()));
    }
    if pre.energy_source.starts_with("estimated") || dec.energy_source.starts_with("estimated") {
        notes.push("energy is estimated (no sensor on the bench machine): see the bench's energy_detail for the coefficients".into());
    }
    let acceptance = match o.acceptance {
        Some(a) if a > 0.0 && a <= 1.0 => Input::new(
            a,
            "user (--acceptance): cost per accepted token = cost / acceptance",
        ),
        Some(a) => return Err(bad(format!("--acceptance must be in (0, 1] (got {a})"))),
        None => Input::new(
            1.0,
            "default 1.0: no quality adjustment (give --acceptance from a quality evaluation)",
        ),
    };
    let utilization = Input::new(
        o.utilization,
        "user (--utilization): share of the hours the device does this work",
    );
    let edge = edge_cost(&e, o.utilization, o.mix);
    let edge_per_accepted = edge.blended.scaled(1.0 / acceptance.value);
    let curve = utilization_points()
        .into_iter()
        .map(|u| {
            (
                u,
                edge_cost(&e, u, o.mix).blended.total() / acceptance.value,
            )
        })
        .collect();

    // break-even uses the cost per accepted token: scale the edge's inputs' effect by 1/acceptance
    let adjusted = |cloud: f64| cloud * acceptance.value;
    let cloud = table
        .cloud_api
        .iter()
        .map(|c| {
            let blended = o.mix.blend(c.usd_per_mtok_in, c.usd_per_mtok_out);
            CloudLine {
                id: c.id.clone(),
                usd_per_mtok_in: c.usd_per_mtok_in,
                usd_per_mtok_out: c.usd_per_mtok_out,
                usd_per_mtok: blended,
                edge_ratio: edge_per_accepted.total() / blended,
                break_even: break_even(&e, o.mix, adjusted(blended)),
                origin: cite("cloud_api", &c.id, &c.source, &c.as_of),
            }
        })
        .collect();
    if o.rental_tok_s.is_none() {
        notes.push("GPU rental rows need the throughput measured on that GPU: give --rental-tok-s PREFILL,DECODE or --rental-bench FILE".into());
    }
    let rentals = table
        .gpu_rental
        .iter()
        .map(|r| {
            let usd = o.rental_tok_s.as_ref().map(|(p, d, _)| {
                o.mix.blend(
                    rental_usd_per_mtok(r.usd_per_hour, *p, 1.0),
                    rental_usd_per_mtok(r.usd_per_hour, *d, 1.0),
                )
            });
            RentalLine {
                id: r.id.clone(),
                gpu: r.gpu.clone(),
                usd_per_hour: r.usd_per_hour,
                usd_per_mtok: usd,
                break_even: usd.map(|u| break_even(&e, o.mix, adjusted(u))),
                origin: format!(
                    "{}{}",
                    cite("gpu_rental", &r.id, &r.source, &r.as_of),
                    o.rental_tok_s
                        .as_ref()
                        .map_or(String::new(), |(_, _, s)| format!("; throughput: {s}"))
                ),
            }
        })
        .collect();
    let mut inputs = vec![
        (
            "prefill throughput (tok/s)".to_string(),
            e.prefill.tok_s.clone(),
        ),
        (
            "decode throughput (tok/s)".to_string(),
            e.decode.tok_s.clone(),
        ),
        (
            "prefill energy (J/token)".to_string(),
            e.prefill.j_per_token.clone(),
        ),
        (
            "decode energy (J/token)".to_string(),
            e.decode.j_per_token.clone(),
        ),
        ("electricity (USD/kWh)".to_string(), e.usd_per_kwh.clone()),
        ("PUE".to_string(), e.pue.clone()),
        ("hardware (USD)".to_string(), e.hardware_usd.clone()),
        (
            "amortization (years)".to_string(),
            e.amortization_years.clone(),
        ),
        (
            "operator overhead (USD/h)".to_string(),
            e.overhead_usd_per_hour.clone(),
        ),
        ("utilization".to_string(), utilization),
        (
            "workload mix (input:output tokens)".to_string(),
            Input::new(
                o.mix.input / (o.mix.input + o.mix.output),
                format!("{}:{} (--mix)", o.mix.input, o.mix.output),
            ),
        ),
    ];
    inputs.push(("acceptance".to_string(), acceptance.clone()));
    let inputs = inputs
        .into_iter()
        .map(|(name, i)| NamedInput {
            name,
            value: i.value,
            origin: i.origin,
        })
        .collect();
    notes.extend(cloud_note(&pre.model.name, table));
    Ok(CostReport {
        model: format!(
            "{} ({}, {})",
            pre.model.name, pre.model.arch, pre.model.file_type
        ),
        machine: format!("{} ({} threads)", pre.machine.cpu, pre.threads),
        inputs,
        mix: o.mix,
        acceptance,
        edge,
        edge_per_accepted,
        utilization_curve: curve,
        cloud,
        rentals,
        notes,
    })
}

fn usd(v: f64) -> String {
    if v >= 100.0 {
        format!("{v:.0}")
    } else if v >= 1.0 {
        format!("{v:.2}")
    } else {
        format!("{v:.4}")
    }
}

fn be(b: &BreakEven) -> String {
    match b {
        BreakEven::Above {
            tokens_per_day,
            utilization,
        } => {
            format!(
                "above {:.3e} tokens/day ({:.1} % utilization)",
                tokens_per_day,
                utilization * 100.0
            )
        }
        BreakEven::Always => "from the first token".into(),
        BreakEven::Never { reason } => format!("never ({reason})"),
    }
}

impl CostReport {
    pub fn to_markdown(&self) -> String {
        let mut s = String::new();
        s.push_str(&format!(
            "# Cost per token: {} on {}\n\n",
            self.model, self.machine
        ));
        s.push_str("## Inputs\n\n| input | value | origin |\n| --- | ---: | --- |\n");
        for i in &self.inputs {
            s.push_str(&format!(
                "| {} | {} | {} |\n",
                i.name,
                trim(i.value),
                i.origin
            ));
        }
        let e = &self.edge;
        s.push_str(&format!(
            "\n## Edge cost, USD per 1M tokens at {:.0} % utilization\n\n| | energy | hardware | overhead | total | per accepted token |\n| --- | ---: | ---: | ---: | ---: | ---: |\n",
            e.utilization * 100.0
        ));
        for (name, c) in [
            ("prefill (vs cloud input)", e.prefill),
            ("decode (vs cloud output)", e.decode),
            ("workload mix", e.blended),
        ] {
            s.push_str(&format!(
                "| {name} | {} | {} | {} | {} | {} |\n",
                usd(c.energy),
                usd(c.hardware),
                usd(c.overhead),
                usd(c.total()),
                usd(c.total() / self.acceptance.value)
            ));
        }
        s.push_str("\n## Over utilization (edge, USD per 1M accepted tokens of the mix)\n\n| utilization | USD/Mtok |\n| ---: | ---: |\n");
        for (u, v) in &self.utilization_curve {
            s.push_str(&format!("| {:.0} % | {} |\n", u * 100.0, usd(*v)));
        }
        s.push_str("\n## Cloud APIs (USD per 1M tokens)\n\n| row | input | output | mix | edge / cloud | edge is cheaper | as of |\n| --- | ---: | ---: | ---: | ---: | --- | --- |\n");
        for c in &self.cloud {
            s.push_str(&format!(
                "| {} | {} | {} | {} | {:.2}x | {} | {} |\n",
                c.id,
                usd(c.usd_per_mtok_in),
                usd(c.usd_per_mtok_out),
                usd(c.usd_per_mtok),
                c.edge_ratio,
                be(&c.break_even),
                c.origin
            ));
        }
        s.push_str("\n## GPU rental (rented only for the hours of work)\n\n| row | GPU | USD/h | USD/Mtok (mix) | edge is cheaper | origin |\n| --- | --- | ---: | ---: | --- | --- |\n");
        for r in &self.rentals {
            s.push_str(&format!(
                "| {} | {} | {} | {} | {} | {} |\n",
                r.id,
                r.gpu,
                usd(r.usd_per_hour),
                r.usd_per_mtok.map_or("needs throughput".into(), usd),
                r.break_even.as_ref().map_or("-".into(), be),
                r.origin
            ));
        }
        if !self.notes.is_empty() {
            s.push_str("\n## Notes\n\n");
            for n in &self.notes {
                s.push_str(&format!("- {n}\n"));
            }
        }
        s
    }
}

/// Up to 6 significant decimals, no trailing zeros.
fn trim(v: f64) -> String {
    let s = format!("{v:.6}");
    let s = s.trim_end_matches('0').trim_end_matches('.');
    s.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_cloud_note_comes_from_the_price_table() {
        let table = PriceTable::builtin();
        let note = cloud_note("Gemma 3 270m", &table).unwrap();
        assert!(
            note.contains("no hosted endpoint for Gemma 3 270m"),
            "{note}"
        );
        // a model the table does price gets no note
        assert_eq!(cloud_note("Gemma 3 4B", &table), None);
        assert_eq!(cloud_note("Llama-3.1-8B", &table), None);
    }
}

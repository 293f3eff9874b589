//! The cost model. Edge cost per 1M tokens, prefill and decode apart (they compare with cloud
//! input and output prices):
//!
//! ```text
//! energy   = J/token × 1e6 / 3.6e6 [kWh per Mtok] × USD/kWh × PUE
//! hardware = purchase / (years × 8760 h × utilization) [USD per busy hour] × hours per Mtok
//! overhead = operator USD/h / utilization × hours per Mtok
//! hours per Mtok = 1e6 / (tok/s × 3600)
//! ```
//!
//! Cloud: API rows directly; rented GPUs as `USD/h ÷ (tok/s × 3600) × 1e6` (rented for the
//! hours of work; [`rental_usd_per_mtok`] takes a utilization for rentals kept running).
//! Break-even: with a workload mix of input:output tokens, edge costs `fixed/day + v × V` for
//! V tokens a day (v: energy per token) and the cloud `c × V`; edge wins above
//! `V* = fixed/day ÷ (c − v)`, "never" when `c ≤ v` (energy alone loses) or when V* exceeds
//! what the device can process in a day. Cost per accepted token = cost ÷ acceptance rate.

use serde::Serialize;

pub const HOURS_PER_YEAR: f64 = 8760.0;
pub const J_PER_KWH: f64 = 3.6e6;

/// A number with where it came from (measured, estimated, table row and date, user).
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Input {
    pub value: f64,
    pub origin: String,
}

impl Input {
    pub fn new(value: f64, origin: impl Into<String>) -> Self {
        Input {
            value,
            origin: origin.into(),
        }
    }
}

/// Throughput and energy of one phase on the edge machine.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct PhaseInputs {
    pub tok_s: Input,
    pub j_per_token: Input,
}

/// Everything the edge cost depends on.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct EdgeInputs {
    pub prefill: PhaseInputs,
    pub decode: PhaseInputs,
    pub usd_per_kwh: Input,
    pub pue: Input,
    /// Purchase price; 0 when no hardware is priced.
    pub hardware_usd: Input,
    pub amortization_years: Input,
    pub overhead_usd_per_hour: Input,
}

/// USD per 1M tokens, by component.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize)]
pub struct Components {
    pub energy: f64,
    pub hardware: f64,
    pub overhead: f64,
}

impl Components {
    pub fn total(&self) -> f64 {
        self.energy + self.hardware + self.overhead
    }

    fn blend(a: Components, b: Components, wa: f64, wb: f64) -> Components {
        let w = wa + wb;
        Components {
            energy: (a.energy * wa + b.energy * wb) / w,
            hardware: (a.hardware * wa + b.hardware * wb) / w,
            overhead: (a.overhead * wa + b.overhead * wb) / w,
        }
    }

    pub fn scaled(&self, k: f64) -> Components {
        Components {
            energy: self.energy * k,
            hardware: self.hardware * k,
            overhead: self.overhead * k,
        }
    }
}

/// Hours a device needs for 1M tokens at `tok_s`.
pub fn hours_per_mtok(tok_s: f64) -> f64 {
    1e6 / (tok_s * 3600.0)
}

/// Edge USD per 1M tokens of one phase at `utilization` (0..=1].
pub fn edge_phase(p: &PhaseInputs, e: &EdgeInputs, utilization: f64) -> Components {
    let h = hours_per_mtok(p.tok_s.value);
    Components {
        energy: p.j_per_token.value * 1e6 / J_PER_KWH * e.usd_per_kwh.value * e.pue.value,
        hardware: e.hardware_usd.value
            / (e.amortization_years.value * HOURS_PER_YEAR * utilization)
            * h,
        overhead: e.overhead_usd_per_hour.value / utilization * h,
    }
}

/// A workload's input:output token mix.
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
pub struct Mix {
    pub input: f64,
    pub output: f64,
}

impl Mix {
    pub fn blend(&self, input_cost: f64, output_cost: f64) -> f64 {
        (self.input * input_cost + self.output * output_cost) / (self.input + self.output)
    }
}

/// Edge cost per 1M tokens: prefill, decode, and the mix.
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
pub struct EdgeCost {
    pub utilization: f64,
    pub prefill: Components,
    pub decode: Components,
    pub blended: Components,
}

pub fn edge_cost(e: &EdgeInputs, utilization: f64, mix: Mix) -> EdgeCost {
    let prefill = edge_phase(&e.prefill, e, utilization);
    let decode = edge_phase(&e.decode, e, utilization);
    EdgeCost {
        utilization,
        prefill,
        decode,
        blended: Components::blend(prefill, decode, mix.input, mix.output),
    }
}

/// Seconds the edge device spends per token of the mix.
pub fn seconds_per_mixed_token(e: &EdgeInputs, mix: Mix) -> f64 {
    mix.blend(1.0 / e.prefill.tok_s.value, 1.0 / e.decode.tok_s.value)
}

/// Rented GPU cost per 1M tokens for a phase throughput measured there.
pub fn rental_usd_per_mtok(usd_per_hour: f64, tok_s: f64, utilization: f64) -> f64 {
    usd_per_hour / utilization * hours_per_mtok(tok_s)
}

/// When the edge device becomes cheaper than a cloud price.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum BreakEven {
    /// Edge is cheaper above this many tokens a day (and this utilization).
    Above {
        tokens_per_day: f64,
        utilization: f64,
    },
    /// No hardware cost is priced and energy costs less: cheaper from the first token.
    Always,
    /// Never: the reason says which ("energy alone costs more", "beyond capacity").
    Never { reason: String },
}

/// Break-even of the edge device against a cloud price (USD per 1M mixed tokens).
pub fn break_even(e: &EdgeInputs, mix: Mix, cloud_usd_per_mtok: f64) -> BreakEven {
    let energy = Components::blend(
        edge_phase(&e.prefill, e, 1.0),
        edge_phase(&e.decode, e, 1.0),
        mix.input,
        mix.output,
    )
    .energy;
    if cloud_usd_per_mtok <= energy {
        return BreakEven::Never {
            reason: format!(
                "energy alone costs {energy:.4} USD/Mtok, the cloud {cloud_usd_per_mtok:.4}"
            ),
        };
    }
    let fixed_per_day = e.hardware_usd.value / (e.amortization_years.value * 365.0)
        + e.overhead_usd_per_hour.value * 24.0;
    if fixed_per_day <= 0.0 {
        return BreakEven::Always;
    }
    let tokens_per_day = fixed_per_day / ((cloud_usd_per_mtok - energy) / 1e6);
    let capacity = 86400.0 / seconds_per_mixed_token(e, mix);
    if tokens_per_day > capacity {
        return BreakEven::Never {
            reason: format!(
                "needs {tokens_per_day:.3e} tokens/day, the device can do at most {capacity:.3e}"
            ),
        };
    }
    BreakEven::Above {
        tokens_per_day,
        utilization: tokens_per_day / capacity,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A worked example, by hand:
    /// prefill 400 tok/s at 0.02 J/token, decode 50 tok/s at 0.12 J/token;
    /// electricity 0.20 USD/kWh, PUE 1.5; a 600 USD device over 3 years; no overhead.
    fn inputs() -> EdgeInputs {
        let i = |v: f64| Input::new(v, "test");
        EdgeInputs {
            prefill: PhaseInputs {
                tok_s: i(400.0),
                j_per_token: i(0.02),
            },
            decode: PhaseInputs {
                tok_s: i(50.0),
                j_per_token: i(0.12),
            },
            usd_per_kwh: i(0.20),
            pue: i(1.5),
            hardware_usd: i(600.0),
            amortization_years: i(3.0),
            overhead_usd_per_hour: i(0.0),
        }
    }

    fn close(a: f64, b: f64) -> bool {
        (a - b).abs() < 1e-9 * b.abs().max(1.0)
    }

    #[test]
    fn edge_cost_worked_example() {
        let e = inputs();
        // energy, decode: 0.12 J x 1e6 = 120 000 J = 0.0333... kWh; x 0.20 x 1.5 = 0.01 USD/Mtok
        // energy, prefill: 0.02 J x 1e6 = 20 000 J = 0.005555 kWh; x 0.30 = 0.001666 USD/Mtok
        // hardware per busy hour at 25 %: 600 / (3 x 8760 x 0.25) = 0.091324 USD/h
        // decode: 1e6 / (50 x 3600) = 5.5556 h per Mtok -> 0.50736 USD/Mtok
        // prefill: 1e6 / (400 x 3600) = 0.69444 h -> 0.063420 USD/Mtok
        let c = edge_cost(
            &e,
            0.25,
            Mix {
                input: 3.0,
                output: 1.0,
            },
        );
        assert!(close(c.decode.energy, 0.01));
        assert!(close(c.prefill.energy, 0.02 * 1e6 / 3.6e6 * 0.3));
        assert!(close(
            c.decode.hardware,
            600.0 / (3.0 * 8760.0 * 0.25) * 1e6 / (50.0 * 3600.0)
        ));
        assert_eq!(format!("{:.2}", c.decode.hardware), "0.51", "to the cent");
        assert_eq!(format!("{:.2}", c.decode.total()), "0.52");
        assert_eq!(format!("{:.2}", c.prefill.total()), "0.07");
        // a 3:1 input:output mix: (3 x 0.065087 + 0.517364) / 4 = 0.178156
        assert_eq!(format!("{:.2}", c.blended.total()), "0.18");
        assert!(close(
            c.blended.total(),
            (3.0 * c.prefill.total() + c.decode.total()) / 4.0
        ));
        // halving utilization doubles the hardware share only
        let half = edge_cost(
            &e,
            0.125,
            Mix {
                input: 3.0,
                output: 1.0,
            },
        );
        assert!(close(half.decode.hardware, 2.0 * c.decode.hardware));
        assert!(close(half.decode.energy, c.decode.energy));
    }

    #[test]
    fn rental_worked_example() {
        // an H100 at 2.69 USD/h doing 1000 tok/s fully used: 2.69 / 3.6 = 0.7472 USD/Mtok
        assert_eq!(
            format!("{:.2}", rental_usd_per_mtok(2.69, 1000.0, 1.0)),
            "0.75"
        );
        // at 50 % utilization you pay for idle hours too
        assert!(close(
            rental_usd_per_mtok(2.69, 1000.0, 0.5),
            2.0 * 2.69 / 3.6
        ));
    }

    #[test]
    fn break_even_worked_examples() {
        let e = inputs();
        let mix = Mix {
            input: 0.0,
            output: 1.0,
        };
        // decode-only: energy 0.01 USD/Mtok; fixed 600 / (3 x 365) = 0.547945 USD/day
        // against 0.40 USD/Mtok: V* = 0.5479452 / (0.39 / 1e6) = 1 404 987.7 tokens/day;
        // capacity 86400 x 50 = 4 320 000/day -> utilization 0.3252
        match break_even(&e, mix, 0.40) {
            BreakEven::Above {
                tokens_per_day,
                utilization,
            } => {
                assert_eq!(format!("{tokens_per_day:.0}"), "1404988");
                assert_eq!(format!("{utilization:.4}"), "0.3252");
            }
            other => panic!("{other:?}"),
        }
        // against 0.08 USD/Mtok the device would need 7.8e6 tokens/day: beyond its capacity
        assert!(
            matches!(break_even(&e, mix, 0.08), BreakEven::Never { ref reason } if reason.contains("at most"))
        );
        // energy alone (0.01) costs more than 0.005 USD/Mtok
        assert!(
            matches!(break_even(&e, mix, 0.005), BreakEven::Never { ref reason } if reason.contains("energy alone"))
        );
        // hardware not priced: cheaper from the first token
        let mut free = inputs();
        free.hardware_usd.value = 0.0;
        assert_eq!(break_even(&free, mix, 0.40), BreakEven::Always);
    }
}

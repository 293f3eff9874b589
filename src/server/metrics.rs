//! The server's counters, gauges and histograms, and their Prometheus text form
//! (`GET /metrics`): requests by endpoint and status, prompt and generated tokens, time to
//! first token and inter-token latency, queue length, busy slots, KV-cache use, prefix-cache
//! hits, joules and dollars.

use std::collections::BTreeMap;
use std::fmt::Write;

/// Upper bounds of the latency buckets, in seconds.
const BUCKETS: [f64; 12] = [
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
];

#[derive(Clone, Debug, Default)]
pub struct Histogram {
    counts: [u64; BUCKETS.len()],
    count: u64,
    sum: f64,
}

impl Histogram {
    pub fn observe(&mut self, seconds: f64) {
        for (c, &le) in self.counts.iter_mut().zip(&BUCKETS) {
            if seconds <= le {
                *c += 1;
            }
        }
        self.count += 1;
        self.sum += seconds;
    }

    fn render(&self, out: &mut String, name: &str, help: &str) {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} histogram");
        for (c, le) in self.counts.iter().zip(BUCKETS) {
            let _ = writeln!(out, "{name}_bucket{{le=\"{le}\"}} {c}");
        }
        let _ = writeln!(out, "{name}_bucket{{le=\"+Inf\"}} {}", self.count);
        let _ = writeln!(out, "{name}_sum {}", self.sum);
        let _ = writeln!(out, "{name}_count {}", self.count);
    }
}

/// Everything `/metrics` reports.
#[derive(Clone, Debug, Default)]
pub struct Metrics {
    /// (endpoint, HTTP status) → requests answered.
    pub requests: BTreeMap<(String, u16), u64>,
    pub prompt_tokens: u64,
    pub generated_tokens: u64,
    /// Requests whose client went away before the end.
    pub cancelled: u64,
    /// Requests ended by a budget.
    pub budget_stops: u64,
    pub ttft: Histogram,
    pub itl: Histogram,
    pub queue_len: usize,
    pub busy_slots: usize,
    pub slots: usize,
    /// KV-cache positions in use over all slots, and their total.
    pub kv_used: usize,
    pub kv_total: usize,
    pub prefix_lookups: u64,
    pub prefix_hits: u64,
    pub reused_tokens: u64,
    pub joules: f64,
    pub usd: f64,
    /// Steps run and tokens in them (for the mean batch size).
    pub steps: u64,
    pub step_tokens: u64,
    /// Why the last step failed (a lost device, non-finite numbers), until a step succeeds:
    /// `/health` answers 503 with it.
    pub fault: Option<String>,
}

impl Metrics {
    pub fn count_request(&mut self, endpoint: &str, status: u16) {
        *self
            .requests
            .entry((endpoint.to_string(), status))
            .or_insert(0) += 1;
    }

    /// Prometheus text exposition format.
    pub fn render(&self, energy_source: &str) -> String {
        let mut o = String::new();
        let mut line = |name: &str, kind: &str, help: &str, value: String| {
            let _ = writeln!(
                o,
                "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {value}"
            );
        };
        line(
            "tokenfab_prompt_tokens_total",
            "counter",
            "Prompt tokens of finished requests.",
            self.prompt_tokens.to_string(),
        );
        line(
            "tokenfab_generated_tokens_total",
            "counter",
            "Generated tokens.",
            self.generated_tokens.to_string(),
        );
        line(
            "tokenfab_requests_cancelled_total",
            "counter",
            "Requests whose client disconnected before the end.",
            self.cancelled.to_string(),
        );
        line(
            "tokenfab_requests_budget_stopped_total",
            "counter",
            "Requests ended by max_energy_j or max_cost_usd.",
            self.budget_stops.to_string(),
        );
        line(
            "tokenfab_queue_length",
            "gauge",
            "Requests waiting for a slot.",
            self.queue_len.to_string(),
        );
        line(
            "tokenfab_slots_busy",
            "gauge",
            "Slots decoding a request.",
            self.busy_slots.to_string(),
        );
        line(
            "tokenfab_slots",
            "gauge",
            "Slots (--parallel).",
            self.slots.to_string(),
        );
        let kv = if self.kv_total > 0 {
            self.kv_used as f64 / self.kv_total as f64
        } else {
            0.0
        };
        line(
            "tokenfab_kv_cache_usage_ratio",
            "gauge",
            "KV-cache positions in use over all slots.",
            kv.to_string(),
        );
        line(
            "tokenfab_prefix_cache_lookups_total",
            "counter",
            "Requests matched against the prompts held by free slots.",
            self.prefix_lookups.to_string(),
        );
        line(
            "tokenfab_prefix_cache_hits_total",
            "counter",
            "Requests that reused a cached prompt prefix.",
            self.prefix_hits.to_string(),
        );
        line(
            "tokenfab_prefix_cache_reused_tokens_total",
            "counter",
            "Prompt tokens taken from the cache instead of being prefilled.",
            self.reused_tokens.to_string(),
        );
        let hit_rate = if self.prefix_lookups > 0 {
            self.prefix_hits as f64 / self.prefix_lookups as f64
        } else {
            0.0
        };
        line(
            "tokenfab_prefix_cache_hit_ratio",
            "gauge",
            "Prefix-cache hits over lookups.",
            hit_rate.to_string(),
        );
        line(
            "tokenfab_energy_joules_total",
            "counter",
            &format!("Energy of all tokens ({energy_source})."),
            self.joules.to_string(),
        );
        line(
            "tokenfab_cost_usd_total",
            "counter",
            "Electricity cost of all tokens, US dollars.",
            self.usd.to_string(),
        );
        line(
            "tokenfab_steps_total",
            "counter",
            "Forward passes (steps of continuous batching).",
            self.steps.to_string(),
        );
        line(
            "tokenfab_step_tokens_total",
            "counter",
            "Tokens run in all steps.",
            self.step_tokens.to_string(),
        );
        let _ = writeln!(
            o,
            "# HELP tokenfab_requests_total HTTP requests answered.\n# TYPE tokenfab_requests_total counter"
        );
        for ((endpoint, status), n) in &self.requests {
            let _ = writeln!(
                o,
                "tokenfab_requests_total{{endpoint=\"{endpoint}\",status=\"{status}\"}} {n}"
            );
        }
        self.ttft.render(
            &mut o,
            "tokenfab_time_to_first_token_seconds",
            "From request to first generated token.",
        );
        self.itl.render(
            &mut o,
            "tokenfab_inter_token_latency_seconds",
            "Between consecutive generated tokens of a request.",
        );
        o
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histogram_buckets_are_cumulative() {
        let mut h = Histogram::default();
        for s in [0.001, 0.02, 0.02, 7.0, 100.0] {
            h.observe(s);
        }
        let mut out = String::new();
        h.render(&mut out, "x_seconds", "x");
        assert!(out.contains("x_seconds_bucket{le=\"0.005\"} 1\n"), "{out}");
        assert!(out.contains("x_seconds_bucket{le=\"0.025\"} 3\n"), "{out}");
        assert!(out.contains("x_seconds_bucket{le=\"10\"} 4\n"), "{out}");
        assert!(out.contains("x_seconds_bucket{le=\"+Inf\"} 5\n"), "{out}");
        assert!(out.contains("x_seconds_count 5\n"), "{out}");
    }
}

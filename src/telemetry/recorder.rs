//! Per-token records of a generation and the report made from them: time, bytes, FLOPs and
//! energy per token; TTFT, inter-token latency percentiles, tok/s, GB/s, MBU and J/token for
//! prefill and decode, each energy figure labelled with its source.
//!
//! Energy attribution: with an estimate, each token gets `P_static·t + e_mem·bytes +
//! e_op·FLOPs` for its own work. With a measured counter, the counter is read at window
//! boundaries — the end of the prefill, then every `window` of decoding — and each window's
//! joules are shared among its tokens in proportion to their durations (a counter that updates
//! every ~100 ms cannot be read per token).

use super::energy::estimate::{EnergyModel, Estimate};
use super::energy::{EnergyMeter, SourceKind};
use super::ledger::Traffic;
use super::stats::{mean, percentile};
use crate::generate::{Phase, TokenEvent};
use serde::Serialize;
use std::time::{Duration, Instant};

/// One token as recorded (a line of `--trace`).
#[derive(Clone, Debug, Serialize)]
pub struct TokenRecord {
    pub phase: &'static str,
    pub pos: usize,
    pub token: u32,
    /// Seconds since the generation started, at the end of this token's work.
    pub at_s: f64,
    pub duration_s: f64,
    pub bytes: Traffic,
    /// Joules attributed to this token (see the module docs for how).
    pub energy_j: f64,
    pub energy_source: &'static str,
    /// How the time, bytes and energy were attributed: a prompt token's are an even share of
    /// its prefill pass (batch averages: all tokens of a pass get the same figures), a
    /// generated token's are its own forward pass and sampling.
    pub attribution: &'static str,
}

/// [`TokenRecord::attribution`] of a prompt token.
pub const PREFILL_ATTRIBUTION: &str = "batch average (even share of the prefill pass)";
/// [`TokenRecord::attribution`] of a generated token.
pub const DECODE_ATTRIBUTION: &str = "own (its forward pass and sampling)";

struct Window {
    start: usize,
    end: usize,
    joules: f64,
}

/// Where a [`Recorder`] reads the time and waits (tests drive a fake one).
pub trait Clock: Send {
    fn now(&self) -> Instant;
    fn sleep(&self, d: Duration);
}

/// The real clock.
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> Instant {
        Instant::now()
    }
    fn sleep(&self, d: Duration) {
        std::thread::sleep(d)
    }
}

/// Collects token events and energy readings during one generation.
pub struct Recorder {
    clock: Box<dyn Clock>,
    meter: Option<Box<dyn EnergyMeter>>,
    model: EnergyModel,
    window: Duration,
    records: Vec<TokenRecord>,
    windows: Vec<Window>,
    window_start: usize,
    window_t0: Instant,
    window_j0: f64,
    window_phase: Option<Phase>,
    /// The counter and the time when the latest prefill pass's events arrived (read once per
    /// pass): the prefill window ends there, before the first generated token's work.
    prefill_mark: Option<(f64, Instant)>,
    /// `at` of the latest prompt token: the tokens of one pass follow each other by exactly
    /// their (shared) duration.
    last_prefill_at: Option<Duration>,
    idle_w: Option<f64>,
    meter_error: Option<String>,
}

fn phase_name(p: Phase) -> &'static str {
    match p {
        Phase::Prefill => "prefill",
        Phase::Decode => "decode",
    }
}

impl Recorder {
    /// A recorder using `meter` when there is one, else the estimate `model`. `window` is the
    /// decode attribution window for measured energy (raised to 10 sensor intervals).
    pub fn new(meter: Option<Box<dyn EnergyMeter>>, model: EnergyModel, window: Duration) -> Self {
        Self::with_clock(meter, model, window, Box::new(SystemClock))
    }

    /// [`Recorder::new`] on `clock`.
    pub fn with_clock(
        meter: Option<Box<dyn EnergyMeter>>,
        model: EnergyModel,
        window: Duration,
        clock: Box<dyn Clock>,
    ) -> Self {
        let window = match &meter {
            Some(m) => window.max(m.interval() * 10),
            None => window,
        };
        let now = clock.now();
        Recorder {
            clock,
            meter,
            model,
            window,
            records: Vec::new(),
            windows: Vec::new(),
            window_start: 0,
            window_t0: now,
            window_j0: 0.0,
            window_phase: None,
            prefill_mark: None,
            last_prefill_at: None,
            idle_w: None,
            meter_error: None,
        }
    }

    pub fn source(&self) -> SourceKind {
        self.meter
            .as_ref()
            .map_or(SourceKind::Estimate, |m| m.kind())
    }

    fn read(&mut self) -> f64 {
        match self.meter.as_mut().map(|m| m.read_j()) {
            Some(Ok(j)) => j,
            Some(Err(e)) => {
                self.meter_error.get_or_insert(e.to_string());
                self.window_j0
            }
            None => 0.0,
        }
    }

    /// Measures idle power over `d` before the run (measured sources only; with an estimate
    /// the static term plays the idle part).
    pub fn measure_idle(&mut self, d: Duration) {
        if self.meter.is_none() || d.is_zero() {
            return;
        }
        let j0 = self.read();
        let t0 = self.clock.now();
        self.clock.sleep(d);
        let j1 = self.read();
        let t = (self.clock.now() - t0).as_secs_f64();
        self.idle_w = Some((j1 - j0) / t);
    }

    /// Call right before generation starts.
    pub fn start(&mut self) {
        self.window_j0 = self.read();
        self.window_t0 = self.clock.now();
        self.window_start = self.records.len();
    }

    fn close_window(&mut self) {
        let j = self.read();
        let now = self.clock.now();
        self.close_window_at(j, now);
    }

    /// Ends the current window at counter value `j`, time `t`.
    fn close_window_at(&mut self, j: f64, t: Instant) {
        if self.records.len() == self.window_start {
            return;
        }
        self.windows.push(Window {
            start: self.window_start,
            end: self.records.len(),
            joules: (j - self.window_j0).max(0.0),
        });
        self.window_start = self.records.len();
        self.window_j0 = j;
        self.window_t0 = t;
    }

    /// Records one event from [`crate::generate::generate`].
    pub fn observe(&mut self, ev: &TokenEvent) {
        if ev.flush {
            return;
        }
        if self.meter.is_some() && self.window_phase.is_some_and(|p| p != ev.phase) {
            // the prefill ends where its last pass's events arrived, not here: this event's
            // token was sampled (worked on) since
            match self.prefill_mark.take() {
                Some((j, t)) if ev.phase == Phase::Decode => self.close_window_at(j, t),
                _ => self.close_window(),
            }
        }
        if self.meter.is_some() && ev.phase == Phase::Prefill {
            let same_pass = self
                .last_prefill_at
                .is_some_and(|prev| ev.at.checked_sub(prev) == Some(ev.duration));
            if !same_pass {
                // the first event of a prefill pass: the pass's work is done
                let j = self.read();
                self.prefill_mark = Some((j, self.clock.now()));
            }
            self.last_prefill_at = Some(ev.at);
        }
        self.window_phase = Some(ev.phase);
        let bytes = ev.traffic;
        let energy_j = if self.meter.is_none() {
            self.model
                .estimate(ev.duration.as_secs_f64(), bytes.bytes(), bytes.flops)
                .total_j()
        } else {
            0.0 // filled in when the window closes
        };
        self.records.push(TokenRecord {
            phase: phase_name(ev.phase),
            pos: ev.pos,
            token: ev.token,
            at_s: ev.at.as_secs_f64(),
            duration_s: ev.duration.as_secs_f64(),
            bytes,
            energy_j,
            energy_source: self.source().label(),
            attribution: match ev.phase {
                Phase::Prefill => PREFILL_ATTRIBUTION,
                Phase::Decode => DECODE_ATTRIBUTION,
            },
        });
        if self.meter.is_some()
            && ev.phase == Phase::Decode
            && self.clock.now() - self.window_t0 >= self.window
        {
            self.close_window();
        }
    }

    /// Ends the run: attributes measured energy and builds the report.
    pub fn finish(mut self, peak_gb_s: Option<(f64, String)>) -> (Report, Vec<TokenRecord>) {
        if self.meter.is_some() {
            self.close_window();
            for w in &self.windows {
                let total: f64 = self.records[w.start..w.end]
                    .iter()
                    .map(|r| r.duration_s)
                    .sum();
                let n = (w.end - w.start) as f64;
                for r in &mut self.records[w.start..w.end] {
                    r.energy_j = if total > 0.0 {
                        w.joules * r.duration_s / total
                    } else {
                        w.joules / n
                    };
                }
            }
        }
        let report = Report::build(&self, peak_gb_s);
        (report, self.records)
    }
}

/// Latency percentiles in milliseconds.
#[derive(Clone, Debug, Default, Serialize, serde::Deserialize)]
pub struct Latency {
    pub p50_ms: Option<f64>,
    pub p90_ms: Option<f64>,
    pub p99_ms: Option<f64>,
    pub mean_ms: Option<f64>,
}

impl Latency {
    pub fn of(samples_s: &[f64]) -> Self {
        let ms: Vec<f64> = samples_s.iter().map(|s| s * 1e3).collect();
        Latency {
            p50_ms: percentile(&ms, 50.0),
            p90_ms: percentile(&ms, 90.0),
            p99_ms: percentile(&ms, 99.0),
            mean_ms: mean(&ms),
        }
    }
}

/// Energy of one phase.
#[derive(Clone, Debug, Default, Serialize)]
pub struct PhaseEnergy {
    pub tokens: usize,
    pub joules: f64,
    pub j_per_token: Option<f64>,
    /// Joules above idle (measured: minus idle power × time; estimate: minus the static term).
    pub above_idle_j_per_token: Option<f64>,
}

#[derive(Clone, Debug, Serialize)]
pub struct EnergyReport {
    /// `measured:nvml`, `measured:rapl`, `measured:battery` or `estimated:model`.
    pub source: &'static str,
    pub detail: String,
    /// How energy was sampled or computed.
    pub sampling: String,
    pub idle_w: Option<f64>,
    pub prefill: PhaseEnergy,
    pub decode: PhaseEnergy,
    /// The estimate's terms for the whole run (estimate only).
    pub estimate_terms: Option<Estimate>,
    pub meter_error: Option<String>,
}

/// The summary of one generation.
#[derive(Clone, Debug, Serialize)]
pub struct Report {
    pub n_prompt: usize,
    pub n_generated: usize,
    pub ttft_s: Option<f64>,
    /// Latency between generated tokens (every generated token after the first).
    pub itl: Latency,
    pub prefill_tok_s: Option<f64>,
    pub decode_tok_s: Option<f64>,
    /// Weight + KV-cache bytes per generated token (the DRAM-relevant traffic).
    pub decode_bytes_per_token: Option<f64>,
    /// All bytes per generated token, activations included.
    pub decode_all_bytes_per_token: Option<f64>,
    pub decode_gb_s: Option<f64>,
    pub peak_gb_s: Option<f64>,
    pub peak_source: Option<String>,
    /// Decode GB/s as a percentage of the measured peak read bandwidth.
    pub mbu_pct: Option<f64>,
    pub energy: EnergyReport,
}

/// Weight and KV-cache bytes: the traffic that must come from DRAM at batch 1.
pub fn dram_bytes(t: &Traffic) -> u64 {
    t.weight_bytes + t.kv_read_bytes + t.kv_write_bytes
}

impl Report {
    fn build(r: &Recorder, peak: Option<(f64, String)>) -> Self {
        let prefill: Vec<&TokenRecord> =
            r.records.iter().filter(|x| x.phase == "prefill").collect();
        let decode: Vec<&TokenRecord> = r.records.iter().filter(|x| x.phase == "decode").collect();
        let sum_t = |v: &[&TokenRecord]| v.iter().map(|x| x.duration_s).sum::<f64>();
        let rate = |n: usize, t: f64| (n > 0 && t > 0.0).then(|| n as f64 / t);
        // generated tokens after the first carry a forward pass each
        let steps: Vec<&TokenRecord> = decode.iter().skip(1).copied().collect();
        let steps_t = sum_t(&steps);
        let per_step = |f: &dyn Fn(&TokenRecord) -> u64| {
            (!steps.is_empty())
                .then(|| steps.iter().map(|x| f(x) as f64).sum::<f64>() / steps.len() as f64)
        };
        let decode_bytes = per_step(&|x| dram_bytes(&x.bytes));
        let decode_gb_s = (steps_t > 0.0).then(|| {
            steps
                .iter()
                .map(|x| dram_bytes(&x.bytes) as f64)
                .sum::<f64>()
                / steps_t
                / 1e9
        });
        let ttft = decode.first().map(|d| d.at_s);
        let phase_energy = |v: &[&TokenRecord]| {
            let joules: f64 = v.iter().map(|x| x.energy_j).sum();
            let t = sum_t(v);
            let idle_j = match (&r.meter, r.idle_w) {
                (Some(_), Some(w)) => Some(w * t),
                (Some(_), None) => None,
                (None, _) => Some(r.model.p_static_w * t),
            };
            let n = v.len();
            PhaseEnergy {
                tokens: n,
                joules,
                j_per_token: (n > 0).then(|| joules / n as f64),
                above_idle_j_per_token: idle_j
                    .filter(|_| n > 0)
                    .map(|i| (joules - i).max(0.0) / n as f64),
            }
        };
        let (detail, sampling) = match &r.meter {
            Some(m) => (
                m.describe(),
                format!(
                    "counter read at the end of the prefill and every {:.1} s of decoding; each window's energy shared by its tokens in proportion to their time (counter updates every {:?})",
                    r.window.as_secs_f64(),
                    m.interval()
                ),
            ),
            None => (
                format!(
                    "{} ({}, {:.2} W static for {} thread(s), {} pJ/byte, {} pJ/FLOP; {}, as of {})",
                    r.model.device.id,
                    r.model.device.kind,
                    r.model.p_static_w,
                    r.model.threads,
                    r.model.device.e_mem_pj_per_byte,
                    r.model.device.e_op_pj_per_flop,
                    r.model.device.source,
                    r.model.device.as_of
                ),
                "no sensor: E = P_static*t + e_mem*bytes + e_op*FLOPs per token".to_string(),
            ),
        };
        let estimate_terms = r.meter.is_none().then(|| {
            let t: f64 = r.records.iter().map(|x| x.duration_s).sum();
            let bytes: u64 = r.records.iter().map(|x| x.bytes.bytes()).sum();
            let flops: u64 = r.records.iter().map(|x| x.bytes.flops).sum();
            r.model.estimate(t, bytes, flops)
        });
        let (peak_gb_s, peak_source) = match peak {
            Some((g, s)) => (Some(g), Some(s)),
            None => (None, None),
        };
        Report {
            n_prompt: prefill.len(),
            n_generated: decode.len(),
            ttft_s: ttft,
            itl: Latency::of(&steps.iter().map(|x| x.duration_s).collect::<Vec<_>>()),
            prefill_tok_s: rate(prefill.len(), sum_t(&prefill)),
            decode_tok_s: rate(steps.len(), steps_t),
            decode_bytes_per_token: decode_bytes,
            decode_all_bytes_per_token: per_step(&|x| x.bytes.bytes()),
            decode_gb_s,
            peak_gb_s,
            peak_source,
            mbu_pct: match (decode_gb_s, peak_gb_s) {
                (Some(g), Some(p)) => super::probe::utilization(g, p),
                _ => None,
            },
            energy: EnergyReport {
                source: r.source().label(),
                detail,
                sampling,
                idle_w: r.idle_w,
                prefill: phase_energy(&prefill),
                decode: phase_energy(&decode),
                estimate_terms,
                meter_error: r.meter_error.clone(),
            },
        }
    }

    /// The summary lines `tokenfab run` prints to stderr.
    pub fn summary_lines(&self) -> Vec<String> {
        let f = |v: Option<f64>, unit: &str, prec: usize| {
            v.map_or("n/a".to_string(), |x| format!("{x:.prec$}{unit}"))
        };
        let mut out = vec![format!(
            "latency: ttft {} | inter-token p50 {} p90 {} p99 {}",
            f(self.ttft_s.map(|s| s * 1e3), " ms", 1),
            f(self.itl.p50_ms, " ms", 1),
            f(self.itl.p90_ms, " ms", 1),
            f(self.itl.p99_ms, " ms", 1)
        )];
        out.push(format!(
            "memory: {} per token (weights + KV), {} achieved, MBU {}{}",
            f(self.decode_bytes_per_token.map(|b| b / 1e6), " MB", 1),
            f(self.decode_gb_s, " GB/s", 1),
            f(self.mbu_pct, " %", 0),
            match (&self.peak_gb_s, &self.peak_source, self.decode_gb_s) {
                (Some(p), _, Some(g)) if super::probe::impossible_peak(g, *p).is_some() => {
                    format!(
                        " ({})",
                        super::probe::impossible_peak(g, *p).unwrap_or_default()
                    )
                }
                (Some(p), Some(s), _) => format!(" of {p:.1} GB/s ({s})"),
                _ => " (peak unknown: run `tokenfab probe`)".to_string(),
            }
        ));
        let e = &self.energy;
        out.push(format!(
            "energy [{}]: prefill {} /token ({} above idle), decode {} /token ({} above idle)",
            e.source,
            f(e.prefill.j_per_token, " J", 4),
            f(e.prefill.above_idle_j_per_token, " J", 4),
            f(e.decode.j_per_token, " J", 4),
            f(e.decode.above_idle_j_per_token, " J", 4),
        ));
        out.push(format!("energy source: {}; {}", e.detail, e.sampling));
        if let Some(err) = &e.meter_error {
            out.push(format!("energy meter error: {err}"));
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::telemetry::energy::estimate::DeviceTable;
    use crate::telemetry::energy::EnergyError;
    use std::sync::{Arc, Mutex};

    /// A counter whose value the test sets.
    struct FakeMeter(Arc<Mutex<f64>>);

    impl EnergyMeter for FakeMeter {
        fn kind(&self) -> SourceKind {
            SourceKind::Rapl
        }
        fn describe(&self) -> String {
            "fake".into()
        }
        fn interval(&self) -> Duration {
            Duration::from_millis(1)
        }
        fn read_j(&mut self) -> Result<f64, EnergyError> {
            Ok(*self.0.lock().unwrap())
        }
    }

    fn model() -> EnergyModel {
        EnergyModel::new(
            DeviceTable::builtin().get("cpu-generic").unwrap().clone(),
            2,
        )
    }

    fn ev(phase: Phase, pos: usize, ms: u64, weights: u64) -> TokenEvent<'static> {
        TokenEvent {
            phase,
            pos,
            token: pos as u32,
            text: "",
            at: Duration::from_millis(ms * (pos as u64 + 1)),
            duration: Duration::from_millis(ms),
            traffic: Traffic {
                weight_bytes: weights,
                flops: 1000,
                ..Default::default()
            },
            flush: false,
            logprob: None,
        }
    }

    #[test]
    fn measured_energy_is_shared_within_windows_by_time() {
        let counter = Arc::new(Mutex::new(100.0));
        let mut r = Recorder::new(
            Some(Box::new(FakeMeter(counter.clone()))),
            model(),
            Duration::from_secs(3600),
        );
        r.start();
        // prefill of 3 tokens used 6 J
        *counter.lock().unwrap() = 106.0;
        for i in 0..3 {
            r.observe(&ev(Phase::Prefill, i, 10, 100));
        }
        // decode: tokens of 20 ms and 60 ms share 8 J as 2 J and 6 J
        r.observe(&ev(Phase::Decode, 3, 20, 1000));
        r.observe(&ev(Phase::Decode, 4, 60, 1000));
        *counter.lock().unwrap() = 114.0;
        let flush = TokenEvent {
            flush: true,
            ..ev(Phase::Decode, 5, 0, 0)
        };
        r.observe(&flush);
        let (report, records) = r.finish(Some((10.0, "test".into())));
        assert_eq!(records.len(), 5, "flush events are not tokens");
        for rec in &records[..3] {
            assert!((rec.energy_j - 2.0).abs() < 1e-9, "{rec:?}");
            assert_eq!(rec.energy_source, "measured:rapl");
        }
        assert!((records[3].energy_j - 2.0).abs() < 1e-9);
        assert!((records[4].energy_j - 6.0).abs() < 1e-9);
        assert!((report.energy.prefill.j_per_token.unwrap() - 2.0).abs() < 1e-9);
        assert!((report.energy.decode.joules - 8.0).abs() < 1e-9);
        assert_eq!(report.n_prompt, 3);
        assert_eq!(report.n_generated, 2);
        // one decode step (the second generated token) of 60 ms moving 1000 bytes
        assert_eq!(report.itl.p50_ms, Some(60.0));
        assert!((report.decode_gb_s.unwrap() - 1000.0 / 0.06 / 1e9).abs() < 1e-12);
        // 1.67e-5 GB/s of a 10 GB/s peak
        assert!((report.mbu_pct.unwrap() - 100.0 * (1000.0 / 0.06 / 1e9) / 10.0).abs() < 1e-9);
        // a cached peak below what the run achieved is refused, and the summary says why
        let mut impossible = report.clone();
        impossible.peak_gb_s = Some(1e-6);
        let line = impossible.summary_lines().join("\n");
        assert!(
            line.contains("above the cached peak") && line.contains("tokenfab probe"),
            "{line}"
        );
        // no idle measurement was taken: above-idle energy is unknown, not zero
        assert!(report.energy.decode.above_idle_j_per_token.is_none());
    }

    /// A device drawing a known power over fake time: the counter is the integral.
    #[derive(Clone)]
    struct Sim(Arc<Mutex<SimState>>);
    struct SimState {
        base: Instant,
        t: Duration,
        watts: f64,
        joules: f64,
    }
    impl Sim {
        fn new(watts: f64) -> Self {
            Sim(Arc::new(Mutex::new(SimState {
                base: Instant::now(),
                t: Duration::ZERO,
                watts,
                joules: 0.0,
            })))
        }
        /// Runs for `d` at the current power.
        fn run(&self, d: Duration) {
            let mut s = self.0.lock().unwrap();
            s.t += d;
            s.joules += s.watts * d.as_secs_f64();
        }
        fn set_watts(&self, w: f64) {
            self.0.lock().unwrap().watts = w;
        }
    }
    impl Clock for Sim {
        fn now(&self) -> Instant {
            let s = self.0.lock().unwrap();
            s.base + s.t
        }
        fn sleep(&self, d: Duration) {
            self.run(d)
        }
    }
    impl EnergyMeter for Sim {
        fn kind(&self) -> SourceKind {
            SourceKind::Rapl
        }
        fn describe(&self) -> String {
            "simulated".into()
        }
        fn interval(&self) -> Duration {
            Duration::from_millis(50)
        }
        fn read_j(&mut self) -> Result<f64, EnergyError> {
            Ok(self.0.lock().unwrap().joules)
        }
    }

    /// The idle measurement and the 1-second decode windows on a fake clock, every number by
    /// hand: 5 W idle for 2 s; a prefill of 4 tokens in 0.4 s at 30 W; 20 decode tokens
    /// alternating 50 and 150 ms (2 s) at 40 W, read in two 1-second windows.
    #[test]
    fn idle_and_decode_windows_on_a_fake_clock() {
        let sim = Sim::new(5.0);
        let mut r = Recorder::with_clock(
            Some(Box::new(sim.clone())),
            model(),
            Duration::from_secs(1),
            Box::new(sim.clone()),
        );
        r.measure_idle(Duration::from_secs(2));
        r.start();
        // one prefill pass: its four events arrive together when it is done
        sim.set_watts(30.0);
        sim.run(Duration::from_millis(400));
        for i in 0..4 {
            r.observe(&ev(Phase::Prefill, i, 100, 1000));
        }
        sim.set_watts(40.0);
        for i in 0..20 {
            let ms = if i % 2 == 0 { 50 } else { 150 };
            sim.run(Duration::from_millis(ms));
            r.observe(&ev(Phase::Decode, 4 + i as usize, ms, 1000));
        }
        let (report, records) = r.finish(None);
        let e = &report.energy;
        assert!(
            (e.idle_w.unwrap() - 5.0).abs() < 1e-9,
            "idle {:?} W",
            e.idle_w
        );
        // prefill: 30 W x 0.4 s = 12 J, 3 J a token; 5 W x 0.1 s = 0.5 J of it is idle
        for rec in &records[..4] {
            assert!((rec.energy_j - 3.0).abs() < 1e-9, "{rec:?}");
        }
        assert!((e.prefill.above_idle_j_per_token.unwrap() - 2.5).abs() < 1e-9);
        // decode: the window closes once 1 s has passed (after 10 tokens), then at the end;
        // 40 J per window, shared by time: 2 J for a 50 ms token, 6 J for a 150 ms one
        for (i, rec) in records[4..].iter().enumerate() {
            let want = if i % 2 == 0 { 2.0 } else { 6.0 };
            assert!((rec.energy_j - want).abs() < 1e-9, "token {i}: {rec:?}");
        }
        assert!((e.decode.joules - 80.0).abs() < 1e-9);
        // above idle: (80 J - 5 W x 2 s) / 20 tokens
        assert!((e.decode.above_idle_j_per_token.unwrap() - 3.5).abs() < 1e-9);
    }

    #[test]
    fn estimate_is_per_token_and_static_is_the_idle_part() {
        let m = model();
        let mut r = Recorder::new(None, m.clone(), Duration::from_secs(1));
        r.start();
        r.observe(&ev(Phase::Prefill, 0, 100, 1_000_000));
        r.observe(&ev(Phase::Decode, 1, 50, 2_000_000));
        let (report, records) = r.finish(None);
        let want0 = m.estimate(0.1, 1_000_000, 1000).total_j();
        assert!((records[0].energy_j - want0).abs() < 1e-12);
        assert_eq!(records[0].energy_source, "estimated:model");
        let above = report.energy.prefill.above_idle_j_per_token.unwrap();
        assert!((above - m.estimate(0.1, 1_000_000, 1000).above_static_j()).abs() < 1e-12);
        assert!(report.mbu_pct.is_none(), "no peak bandwidth, no MBU");
        assert!(report
            .summary_lines()
            .iter()
            .any(|l| l.contains("run `tokenfab probe`")));
    }
}

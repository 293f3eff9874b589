//! A load generator for OpenAI-compatible servers (`tokenfab bench --endpoint URL`): at each
//! concurrency level, that many clients send streaming completions back to back; the level
//! reports aggregate decode throughput, time to first token and inter-token latency
//! percentiles, and — where the server reports it, as `tokenfab serve` does in `usage.cost` —
//! joules and dollars per token. It speaks plain HTTP + JSON + server-sent events, so the same
//! command measures tokenfab, llama-server, vLLM or a cloud API.

use crate::telemetry::recorder::Latency;
use serde::Serialize;
use serde_json::{json, Value};
use std::io::{BufRead, BufReader};
use std::time::{Duration, Instant};

/// What to send.
#[derive(Clone, Debug)]
pub struct LoadOptions {
    /// Base URL, e.g. `http://127.0.0.1:8080` (`/v1/completions` is appended).
    pub endpoint: String,
    pub api_key: Option<String>,
    /// `model` field of the requests (some servers require one).
    pub model: Option<String>,
    /// Concurrency levels, in order.
    pub concurrency: Vec<usize>,
    /// Requests per level (at least the concurrency).
    pub requests: usize,
    /// Tokens per request (`max_tokens`, with `ignore_eos` so every request decodes them).
    pub max_tokens: usize,
    /// Prompt of each request; `{i}` is replaced by the request's index (distinct prompts, so
    /// no prefix cache serves them).
    pub prompt: String,
    pub timeout: Duration,
}

/// One request's measurements.
#[derive(Clone, Debug, Default)]
struct Sample {
    tokens: usize,
    ttft_s: Option<f64>,
    itl_s: Vec<f64>,
    joules: Option<f64>,
    usd: Option<f64>,
    source: Option<String>,
    error: Option<String>,
}

/// One concurrency level's results.
#[derive(Clone, Debug, Serialize, serde::Deserialize)]
pub struct Level {
    pub concurrency: usize,
    pub requests: usize,
    pub failed: usize,
    pub tokens: usize,
    pub seconds: f64,
    /// Generated tokens of all requests over the level's wall time.
    pub aggregate_tok_s: f64,
    /// Mean over requests of (tokens after the first) / (time after the first token).
    pub stream_tok_s: Option<f64>,
    pub ttft: Latency,
    pub itl: Latency,
    /// From the server's `usage.cost` (tokenfab), when every request had it.
    pub j_per_token: Option<f64>,
    pub usd_per_mtok: Option<f64>,
    pub energy_source: Option<String>,
    pub first_error: Option<String>,
}

/// Why a load run could not start.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error("invalid option: {0}")]
    Options(String),
    #[error("{endpoint} did not answer: {msg}")]
    Unreachable { endpoint: String, msg: String },
}

fn agent(timeout: Duration) -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(timeout))
        .build()
        .into()
}

/// Runs every level; `on_level` sees each result as it comes.
pub fn run(opts: &LoadOptions, on_level: &mut dyn FnMut(&Level)) -> Result<Vec<Level>, LoadError> {
    if opts.concurrency.is_empty() || opts.concurrency.contains(&0) || opts.max_tokens == 0 {
        return Err(LoadError::Options(
            "--concurrency levels and max tokens must be at least 1".into(),
        ));
    }
    // one warm-up request, which also checks the server is there
    let warm = one(opts, 0);
    if let Some(e) = warm.error {
        return Err(LoadError::Unreachable {
            endpoint: opts.endpoint.clone(),
            msg: e,
        });
    }
    let mut out = Vec::new();
    let mut next = 1;
    for &c in &opts.concurrency {
        let n = opts.requests.max(c);
        let counter = std::sync::atomic::AtomicUsize::new(0);
        let t0 = Instant::now();
        let samples: Vec<Sample> = std::thread::scope(|s| {
            let hs: Vec<_> = (0..c)
                .map(|_| {
                    let counter = &counter;
                    s.spawn(move || {
                        let mut mine = Vec::new();
                        loop {
                            let k = counter.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                            if k >= n {
                                return mine;
                            }
                            mine.push(one(opts, next + k));
                        }
                    })
                })
                .collect();
            hs.into_iter()
                .flat_map(|h| h.join().unwrap_or_default())
                .collect()
        });
        next += n;
        let level = summarize(c, &samples, t0.elapsed().as_secs_f64(), opts);
        on_level(&level);
        out.push(level);
    }
    Ok(out)
}

fn summarize(c: usize, samples: &[Sample], seconds: f64, _opts: &LoadOptions) -> Level {
    let ok: Vec<&Sample> = samples.iter().filter(|s| s.error.is_none()).collect();
    let tokens: usize = ok.iter().map(|s| s.tokens).sum();
    let ttft: Vec<f64> = ok.iter().filter_map(|s| s.ttft_s).collect();
    let itl: Vec<f64> = ok.iter().flat_map(|s| s.itl_s.iter().copied()).collect();
    let stream: Vec<f64> = ok
        .iter()
        .filter(|s| !s.itl_s.is_empty())
        .map(|s| s.itl_s.len() as f64 / s.itl_s.iter().sum::<f64>().max(1e-9))
        .collect();
    let all_priced = !ok.is_empty() && ok.iter().all(|s| s.joules.is_some());
    let joules: f64 = ok.iter().filter_map(|s| s.joules).sum();
    let usd: f64 = ok.iter().filter_map(|s| s.usd).sum();
    Level {
        concurrency: c,
        requests: samples.len(),
        failed: samples.len() - ok.len(),
        tokens,
        seconds,
        aggregate_tok_s: tokens as f64 / seconds.max(1e-9),
        stream_tok_s: crate::telemetry::stats::mean(&stream),
        ttft: Latency::of(&ttft),
        itl: Latency::of(&itl),
        j_per_token: (all_priced && tokens > 0).then(|| joules / tokens as f64),
        usd_per_mtok: (all_priced && tokens > 0).then(|| usd / tokens as f64 * 1e6),
        energy_source: ok.iter().find_map(|s| s.source.clone()),
        first_error: samples.iter().find_map(|s| s.error.clone()),
    }
}

/// One streaming completion, timed.
fn one(opts: &LoadOptions, i: usize) -> Sample {
    let mut s = Sample::default();
    let mut body = json!({
        "prompt": opts.prompt.replace("{i}", &i.to_string()),
        "max_tokens": opts.max_tokens,
        "temperature": 0,
        "ignore_eos": true,
        "stream": true,
        "stream_options": {"include_usage": true},
    });
    if let Some(m) = &opts.model {
        body["model"] = json!(m);
    }
    let url = format!("{}/v1/completions", opts.endpoint.trim_end_matches('/'));
    let mut req = agent(opts.timeout)
        .post(&url)
        .header("Content-Type", "application/json");
    if let Some(k) = &opts.api_key {
        req = req.header("Authorization", &format!("Bearer {k}"));
    }
    let t0 = Instant::now();
    let resp = match req.send(body.to_string()) {
        Ok(r) => r,
        Err(e) => {
            s.error = Some(e.to_string());
            return s;
        }
    };
    if resp.status().as_u16() != 200 {
        let code = resp.status().as_u16();
        let text = resp.into_body().read_to_string().unwrap_or_default();
        s.error = Some(format!(
            "HTTP {code}: {}",
            text.chars().take(200).collect::<String>()
        ));
        return s;
    }
    let mut last: Option<Instant> = None;
    let mut chunks = 0;
    let mut usage_tokens = None;
    for line in BufReader::new(resp.into_body().into_reader()).lines() {
        let Ok(line) = line else {
            s.error = Some("the stream broke".into());
            return s;
        };
        let Some(data) = line
            .strip_prefix("data: ")
            .or_else(|| line.strip_prefix("data:"))
        else {
            continue;
        };
        if data.trim() == "[DONE]" {
            break;
        }
        let Ok(v) = serde_json::from_str::<Value>(data) else {
            continue;
        };
        let text = v["choices"]
            .get(0)
            .and_then(|c| c["text"].as_str().or(c["delta"]["content"].as_str()))
            .unwrap_or("");
        if !text.is_empty() {
            let now = Instant::now();
            match last {
                None => s.ttft_s = Some((now - t0).as_secs_f64()),
                Some(p) => s.itl_s.push((now - p).as_secs_f64()),
            }
            last = Some(now);
            chunks += 1;
        }
        let u = &v["usage"];
        if let Some(n) = u["completion_tokens"].as_u64() {
            usage_tokens = Some(n as usize);
            s.joules = u["cost"]["joules"].as_f64();
            s.usd = u["cost"]["usd"].as_f64();
            s.source = u["cost"]["energy_source"].as_str().map(str::to_string);
        }
    }
    s.tokens = usage_tokens.unwrap_or(chunks);
    s
}

/// What `tokenfab bench --endpoint -o json` writes (and `tokenfab cost --served` reads).
#[derive(Clone, Debug, Serialize, serde::Deserialize)]
pub struct LoadReport {
    pub endpoint: String,
    pub max_tokens: usize,
    pub levels: Vec<Level>,
}

impl LoadReport {
    /// The level with `concurrency`, or the one with the highest aggregate throughput.
    pub fn level(&self, concurrency: Option<usize>) -> Option<&Level> {
        match concurrency {
            Some(c) => self.levels.iter().find(|l| l.concurrency == c),
            None => self
                .levels
                .iter()
                .filter(|l| l.failed == 0)
                .max_by(|a, b| a.aggregate_tok_s.total_cmp(&b.aggregate_tok_s)),
        }
    }
}

/// A Markdown table of the levels.
pub fn table(levels: &[Level]) -> String {
    let f = |v: Option<f64>, p: usize| v.map_or("-".to_string(), |x| format!("{x:.p$}"));
    let mut o = String::from(
        "| concurrency | requests | failed | tokens | seconds | aggregate tok/s | per-stream tok/s | TTFT p50 / p90 ms | ITL p50 / p90 / p99 ms | J/token | $/Mtok |\n|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n",
    );
    for l in levels {
        o.push_str(&format!(
            "| {} | {} | {} | {} | {:.2} | {:.1} | {} | {} / {} | {} / {} / {} | {} | {} |\n",
            l.concurrency,
            l.requests,
            l.failed,
            l.tokens,
            l.seconds,
            l.aggregate_tok_s,
            f(l.stream_tok_s, 1),
            f(l.ttft.p50_ms, 1),
            f(l.ttft.p90_ms, 1),
            f(l.itl.p50_ms, 1),
            f(l.itl.p90_ms, 1),
            f(l.itl.p99_ms, 1),
            f(l.j_per_token, 4),
            f(l.usd_per_mtok, 4),
        ));
    }
    o
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_level_adds_tokens_and_prices_only_when_every_request_had_one() {
        let s = |tokens, j: Option<f64>| Sample {
            tokens,
            ttft_s: Some(0.1),
            itl_s: vec![0.05; tokens.saturating_sub(1)],
            joules: j,
            usd: j.map(|j| j * 1e-7),
            source: None,
            error: None,
        };
        let opts = LoadOptions {
            endpoint: String::new(),
            api_key: None,
            model: None,
            concurrency: vec![2],
            requests: 2,
            max_tokens: 8,
            prompt: String::new(),
            timeout: Duration::from_secs(1),
        };
        let l = summarize(2, &[s(8, Some(0.8)), s(8, Some(0.8))], 2.0, &opts);
        assert_eq!((l.tokens, l.failed), (16, 0));
        assert!((l.aggregate_tok_s - 8.0).abs() < 1e-9);
        assert!((l.stream_tok_s.unwrap() - 20.0).abs() < 1e-9);
        assert!((l.j_per_token.unwrap() - 0.1).abs() < 1e-12);
        let l = summarize(2, &[s(8, Some(0.8)), s(8, None)], 2.0, &opts);
        assert_eq!(l.j_per_token, None);
        let mut bad = s(0, None);
        bad.error = Some("HTTP 503".into());
        let l = summarize(2, &[s(8, None), bad], 2.0, &opts);
        assert_eq!((l.tokens, l.failed), (8, 1));
        assert_eq!(l.first_error.as_deref(), Some("HTTP 503"));
    }
}

//! `tokenfab serve` end to end on the default model: the real server on a free port, talked
//! to over raw HTTP — chat and completions, streaming and not, stop strings, logprobs, seeds,
//! usage with what the tokens cost, budgets, the API key, /metrics, bad requests (4xx JSON and
//! the server stays up), greedy equality alone and in a batch, the queue's 503, the prefix
//! cache, and a load of 64 streaming clients with 16 that hang up. The official `openai`
//! Python client is exercised in `tests/openai_client.rs`.

use common::server::Server;
use serde_json::{json, Value};
use std::io::{BufRead, BufReader};
use std::time::{Duration, Instant};

mod common;

fn completion(prompt: &str, n: usize) -> Value {
    json!({"prompt": prompt, "max_tokens": n, "temperature": 0, "ignore_eos": true})
}

/// Text of a streamed answer, and the finish reason of its last choice.
fn streamed_text(events: &[String]) -> (String, String, Option<Value>) {
    let mut text = String::new();
    let (mut reason, mut usage) = (String::new(), None);
    for e in events.iter().filter(|e| *e != "[DONE]") {
        let v: Value = serde_json::from_str(e).unwrap();
        if let Some(c) = v["choices"].get(0) {
            let t = c["delta"]["content"].as_str().or(c["text"].as_str());
            text.push_str(t.unwrap_or(""));
            if let Some(r) = c["finish_reason"].as_str() {
                reason = r.to_string();
            }
        }
        if !v["usage"].is_null() {
            usage = Some(v["usage"].clone());
        }
    }
    (text, reason, usage)
}

#[test]
fn serves_chat_and_completions_with_usage_and_cost() {
    let s = Server::start(&["--parallel", "4"]);
    assert_eq!(s.get("/health"), (200, r#"{"status":"ok"}"#.to_string()));
    let (st, models) = s.get("/v1/models");
    let models: Value = serde_json::from_str(&models).unwrap();
    assert_eq!(st, 200);
    let id = models["data"][0]["id"].as_str().unwrap().to_string();
    assert_eq!(id, "gemma-3-270m-q4_k_m");

    // chat, not streamed: the built-in Gemma template, usage with the cost
    let body = json!({"model": id, "messages": [{"role": "user", "content": "Say hello."}],
        "max_tokens": 8, "temperature": 0});
    let (st, v) = s.post("/v1/chat/completions", &body.to_string());
    assert_eq!(st, 200, "{v}");
    assert_eq!(v["object"], "chat.completion");
    assert_eq!(v["choices"][0]["message"]["role"], "assistant");
    let u = &v["usage"];
    // <bos> <start_of_turn> user \n Say ▁hello . <end_of_turn> \n <start_of_turn> model \n
    assert_eq!(u["prompt_tokens"], 12, "{u}");
    let n = u["completion_tokens"].as_u64().unwrap();
    assert!((1..=8).contains(&n), "{u}");
    assert_eq!(u["total_tokens"].as_u64().unwrap(), 12 + n);
    let c = &u["cost"];
    assert_eq!(c["energy_source"], "estimated:model");
    let j = c["joules"].as_f64().unwrap();
    assert!(j > 0.0, "{c}");
    // dollars are joules at the default electricity row's price
    let usd_per_kwh = tokenfab::cost::prices::PriceTable::builtin()
        .electricity("us-residential")
        .unwrap()
        .price_per_kwh;
    let usd = c["usd"].as_f64().unwrap();
    assert!(
        (usd - j / 3.6e6 * usd_per_kwh).abs() <= 1e-12 + 1e-9 * usd,
        "{c}"
    );
    assert!(c["weight_bytes"].as_u64().unwrap() > 200_000_000, "{c}"); // one step reads ~235 MB
    assert!(c["prefill_seconds"].as_f64().unwrap() > 0.0);

    // completions: streamed and whole give the same greedy text
    let whole = s.post(
        "/v1/completions",
        &completion("Once upon a time", 12).to_string(),
    );
    assert_eq!(whole.0, 200, "{}", whole.1);
    assert_eq!(whole.1["object"], "text_completion");
    assert_eq!(whole.1["choices"][0]["finish_reason"], "length");
    assert_eq!(whole.1["usage"]["completion_tokens"], 12);
    let mut body = completion("Once upon a time", 12);
    body["stream"] = json!(true);
    body["stream_options"] = json!({"include_usage": true});
    let events = s.stream("/v1/completions", &body);
    assert_eq!(events.last().map(String::as_str), Some("[DONE]"));
    let (text, reason, usage) = streamed_text(&events);
    assert_eq!(text, whole.1["choices"][0]["text"].as_str().unwrap());
    assert_eq!(reason, "length");
    assert_eq!(usage.unwrap()["completion_tokens"], 12);

    // chat streamed: role first, then content deltas, the finish, [DONE]
    let body = json!({"messages": [{"role": "user", "content": "Count to five."}],
        "max_tokens": 6, "temperature": 0, "stream": true});
    let events = s.stream("/v1/chat/completions", &body);
    let first: Value = serde_json::from_str(&events[0]).unwrap();
    assert_eq!(first["object"], "chat.completion.chunk");
    assert_eq!(first["choices"][0]["delta"]["role"], "assistant");
    let (_, reason, usage) = streamed_text(&events);
    assert!(reason == "length" || reason == "stop");
    assert!(
        usage.is_none(),
        "usage only with stream_options.include_usage"
    );

    // stop strings end the text before them
    let text = whole.1["choices"][0]["text"].as_str().unwrap().to_string();
    let cut = text.char_indices().nth(text.chars().count() / 2).unwrap().0;
    let stop = text[cut..].chars().take(3).collect::<String>();
    let mut body = completion("Once upon a time", 12);
    body["stop"] = json!([stop]);
    let (_, v) = s.post("/v1/completions", &body.to_string());
    let got = v["choices"][0]["text"].as_str().unwrap();
    assert!(
        text.starts_with(got) && got.len() <= cut,
        "{got:?} vs {text:?} stop {stop:?}"
    );
    assert_eq!(v["choices"][0]["finish_reason"], "stop");

    // logprobs: the chosen token's and the top alternatives, largest first
    let body = json!({"messages": [{"role": "user", "content": "Hi"}], "max_tokens": 3,
        "temperature": 0, "logprobs": true, "top_logprobs": 3});
    let (_, v) = s.post("/v1/chat/completions", &body.to_string());
    let lp = &v["choices"][0]["logprobs"]["content"];
    assert_eq!(
        lp.as_array().unwrap().len() as u64,
        v["usage"]["completion_tokens"].as_u64().unwrap()
    );
    for e in lp.as_array().unwrap() {
        let top = e["top_logprobs"].as_array().unwrap();
        assert_eq!(top.len(), 3);
        // greedy: the chosen token is the most likely one
        assert_eq!(top[0]["logprob"], e["logprob"], "{e}");
        assert!(top[0]["logprob"].as_f64() >= top[1]["logprob"].as_f64());
        assert!(e["logprob"].as_f64().unwrap() <= 0.0);
    }

    // a seed makes sampling reproducible
    let body = json!({"prompt": "The weather today", "max_tokens": 10, "temperature": 1.0,
        "seed": 42, "ignore_eos": true});
    let a = s.post("/v1/completions", &body.to_string()).1;
    let b = s.post("/v1/completions", &body.to_string()).1;
    assert_eq!(a["choices"][0]["text"], b["choices"][0]["text"]);

    // tokenize / detokenize round trip
    let (st, t) = s.post("/tokenize", r#"{"content": "Hello world"}"#);
    assert_eq!(st, 200);
    let ids = t["tokens"].clone();
    let (_, d) = s.post("/detokenize", &json!({"tokens": ids}).to_string());
    assert_eq!(d["content"], "Hello world");
}

#[test]
fn budgets_end_a_stream_and_say_which() {
    let s = Server::start(&["--parallel", "2"]);
    // what 16 tokens cost, then a budget of a third of that
    let (_, v) = s.post(
        "/v1/completions",
        &completion("Tell me a story", 16).to_string(),
    );
    let j = v["usage"]["cost"]["joules"].as_f64().unwrap();
    let usd = v["usage"]["cost"]["usd"].as_f64().unwrap();
    for (field, limit, name) in [
        ("max_energy_j", j / 3.0, "max_energy_j"),
        ("max_cost_usd", usd / 3.0, "max_cost_usd"),
    ] {
        let mut body = completion("Tell me a story", 16);
        body[field] = json!(limit);
        body["stream"] = json!(true);
        body["stream_options"] = json!({"include_usage": true});
        let events = s.stream("/v1/completions", &body);
        let (_, reason, usage) = streamed_text(&events);
        assert_eq!(reason, "length");
        let last: Value = serde_json::from_str(&events[events.len() - 3]).unwrap();
        assert_eq!(last["choices"][0]["stop_budget"], name, "{last}");
        let u = usage.unwrap();
        let n = u["completion_tokens"].as_u64().unwrap();
        assert!(n < 16, "{field}: {n} tokens");
        let spent = u["cost"][if field == "max_energy_j" {
            "joules"
        } else {
            "usd"
        }]
        .as_f64()
        .unwrap();
        assert!(
            spent >= limit,
            "{field}: stopped at {spent} under the budget {limit}"
        );
    }
    assert_eq!(s.metric("tokenfab_requests_budget_stopped_total"), 2.0);
}

#[test]
fn bad_requests_get_4xx_json_and_the_server_stays_up() {
    let s = Server::start(&["--parallel", "2"]);
    let chat = "/v1/chat/completions";
    let long_prompt = "word ".repeat(600);
    let cases: Vec<(&str, String, u16, &str)> = vec![
        (chat, "{not json".into(), 400, "not valid JSON"),
        (chat, r#"{"messages": 5}"#.into(), 400, "messages"),
        (chat, r#"{"messages": []}"#.into(), 400, "messages"),
        (
            chat,
            r#"{"messages": [{"role": "user", "content": "x"}], "temperature": "warm"}"#.into(),
            400,
            "temperature",
        ),
        (
            chat,
            r#"{"messages": [{"role": "user", "content": "x"}], "max_tokens": 0}"#.into(),
            400,
            "max_tokens",
        ),
        (
            chat,
            r#"{"messages": [{"role": "user", "content": "x"}], "max_tokens": 100000}"#.into(),
            400,
            "context",
        ),
        (
            chat,
            r#"{"messages": [{"role": "user", "content": "x"}], "max_tokens": 18446744073709551615}"#
                .into(),
            400,
            "context",
        ),
        (
            chat,
            r#"{"messages": [{"role": "user", "content": "x"}], "model": "gpt-5"}"#.into(),
            404,
            "does not exist",
        ),
        (
            chat,
            r#"{"messages": [{"role": "user", "content": "a"}, {"role": "user", "content": "b"}]}"#
                .into(),
            400,
            "alternate",
        ),
        (
            "/v1/completions",
            json!({"prompt": long_prompt}).to_string(),
            400,
            "context",
        ),
        (
            "/v1/completions",
            r#"{"prompt": [1, 99999999]}"#.into(),
            400,
            "vocabulary",
        ),
        ("/detokenize", r#"{"tokens": [-1]}"#.into(), 400, "tokens"),
        ("/v1/nothing", "{}".into(), 404, "no such endpoint"),
    ];
    for (path, body, status, says) in cases {
        let (st, v) = s.post(path, &body);
        assert_eq!(st, status, "{path} {body}: {v}");
        let msg = v["error"]["message"]
            .as_str()
            .unwrap_or_else(|| panic!("{v}"));
        assert!(msg.contains(says), "{path} {body}: {msg}");
        assert!(v["error"]["type"].is_string());
    }
    // still serving
    let (st, v) = s.post("/v1/completions", &completion("Hello", 2).to_string());
    assert_eq!(
        (st, v["usage"]["completion_tokens"].as_u64()),
        (200, Some(2))
    );
    let (_, m) = s.get("/metrics");
    assert!(
        m.contains("tokenfab_requests_total{endpoint=\"/v1/chat/completions\",status=\"400\"}"),
        "{m}"
    );
}

#[test]
fn the_api_key_is_required_when_set() {
    let s = Server::start(&["--parallel", "1", "--api-key", "sekrit"]);
    let body = completion("Hi", 1).to_string();
    let (st, v) = s.post("/v1/completions", &body);
    assert_eq!(st, 401);
    assert_eq!(v["error"]["code"], "invalid_api_key");
    assert_eq!(s.post_with("/v1/completions", &body, Some("wrong")).0, 401);
    assert_eq!(s.post_with("/v1/completions", &body, Some("sekrit")).0, 200);
    assert_eq!(s.get("/metrics").0, 401);
    assert_eq!(s.get("/health").0, 200);
}

#[test]
fn greedy_is_the_same_alone_and_in_a_batch_of_8() {
    let s = Server::start(&["--parallel", "8", "-b", "64"]);
    let prompts = [
        "Once upon a time",
        "The capital of France is",
        "def fibonacci(n):",
        "1, 2, 3, 4,",
        "The quick brown fox jumps over the lazy dog. The quick brown fox jumps over",
        "Water boils at",
        "In 1492, Columbus",
        "A haiku about the sea:",
    ];
    let alone: Vec<String> = prompts
        .iter()
        .map(|p| {
            let (_, v) = s.post("/v1/completions", &completion(p, 16).to_string());
            v["choices"][0]["text"].as_str().unwrap().to_string()
        })
        .collect();
    // all at once, staggered so prompts are prefilled beside others' decode steps
    let together: Vec<String> = std::thread::scope(|sc| {
        let hs: Vec<_> = prompts
            .iter()
            .enumerate()
            .map(|(i, p)| {
                let s = &s;
                sc.spawn(move || {
                    std::thread::sleep(Duration::from_millis(30 * i as u64));
                    let (_, v) = s.post("/v1/completions", &completion(p, 16).to_string());
                    v["choices"][0]["text"].as_str().unwrap().to_string()
                })
            })
            .collect();
        hs.into_iter().map(|h| h.join().unwrap()).collect()
    });
    assert_eq!(together, alone);
    // the steps really were shared
    let (steps, tokens) = (
        s.metric("tokenfab_steps_total"),
        s.metric("tokenfab_step_tokens_total"),
    );
    assert!(tokens / steps > 1.5, "{tokens} tokens in {steps} steps");
}

#[test]
fn a_full_queue_answers_503_with_retry_after() {
    let s = Server::start(&["--parallel", "1", "--max-queue", "1"]);
    let codes: Vec<(u16, Option<String>)> = std::thread::scope(|sc| {
        let hs: Vec<_> = (0..6)
            .map(|_| {
                let s = &s;
                sc.spawn(move || {
                    let resp = Server::agent()
                        .post(&format!("{}/v1/completions", s.url))
                        .send(completion("Count slowly:", 24).to_string())
                        .unwrap();
                    let retry = resp
                        .headers()
                        .get("retry-after")
                        .map(|h| h.to_str().unwrap().to_string());
                    (resp.status().as_u16(), retry)
                })
            })
            .collect();
        hs.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let busy: Vec<_> = codes.iter().filter(|c| c.0 == 503).collect();
    assert!(!busy.is_empty(), "{codes:?}");
    assert!(
        busy.iter().all(|c| c.1.as_deref() == Some("1")),
        "{codes:?}"
    );
    assert!(codes.iter().all(|c| c.0 == 200 || c.0 == 503), "{codes:?}");
    assert!(codes.iter().any(|c| c.0 == 200));
}

#[test]
fn a_shared_prefix_is_not_prefilled_again() {
    let s = Server::start(&["--parallel", "2"]);
    let system = "You are a careful assistant. ".repeat(12);
    let ask = |q: &str| {
        let body = json!({"messages": [{"role": "system", "content": system},
            {"role": "user", "content": q}], "max_tokens": 2, "temperature": 0});
        s.post("/v1/chat/completions", &body.to_string()).1
    };
    let a = ask("What is 2 + 2?");
    assert_eq!(a["usage"]["prompt_tokens_details"]["cached_tokens"], 0);
    let b = ask("What is 3 + 3?");
    let cached = b["usage"]["prompt_tokens_details"]["cached_tokens"]
        .as_u64()
        .unwrap();
    let prompt = b["usage"]["prompt_tokens"].as_u64().unwrap();
    assert!(cached > 60 && cached < prompt, "{cached} of {prompt}");
    assert_eq!(b["usage"]["cost"]["prefix_cache_hit"], true);
    assert_eq!(s.metric("tokenfab_prefix_cache_hits_total"), 1.0);
    assert_eq!(
        s.metric("tokenfab_prefix_cache_reused_tokens_total"),
        cached as f64
    );
    // the reused prefix gives the same answer as a fresh prefill
    let c = Server::start(&["--parallel", "1"]);
    let body = json!({"messages": [{"role": "system", "content": system},
        {"role": "user", "content": "What is 3 + 3?"}], "max_tokens": 2, "temperature": 0});
    let fresh = c.post("/v1/chat/completions", &body.to_string()).1;
    assert_eq!(fresh["choices"][0]["message"], b["choices"][0]["message"]);
}

#[test]
fn sixty_four_streaming_clients_complete_and_hang_ups_free_their_slots() {
    let s = Server::start(&["--parallel", "8", "--max-queue", "128"]);
    let n = 12;
    let t0 = Instant::now();
    let results: Vec<(usize, usize, String)> = std::thread::scope(|sc| {
        let hs: Vec<_> = (0..64)
            .map(|i| {
                let s = &s;
                sc.spawn(move || {
                    let mut body = completion(&format!("Item {i}: a list of fruits"), n);
                    body["stream"] = json!(true);
                    body["stream_options"] = json!({"include_usage": true});
                    let events = s.stream("/v1/completions", &body);
                    let chunks = events
                        .iter()
                        .filter(|e| e.contains("\"finish_reason\":null"))
                        .count();
                    let (text, _, usage) = streamed_text(&events);
                    let u = usage.map_or(0, |u| u["completion_tokens"].as_u64().unwrap());
                    assert_eq!(events.last().map(String::as_str), Some("[DONE]"));
                    (u as usize, chunks, text)
                })
            })
            .collect();
        hs.into_iter().map(|h| h.join().unwrap()).collect()
    });
    for (i, (tokens, chunks, text)) in results.iter().enumerate() {
        assert_eq!(*tokens, n, "client {i}");
        assert!(*chunks <= n && *chunks >= 1, "client {i}: {chunks} chunks");
        assert!(!text.is_empty(), "client {i}");
    }
    eprintln!(
        "64 clients x {n} tokens in {:.1} s",
        t0.elapsed().as_secs_f64()
    );
    // each client's text is what that prompt gives alone
    for i in [0usize, 37, 63] {
        let (_, v) = s.post(
            "/v1/completions",
            &completion(&format!("Item {i}: a list of fruits"), n).to_string(),
        );
        assert_eq!(
            v["choices"][0]["text"].as_str().unwrap(),
            results[i].2,
            "client {i}"
        );
    }

    // 16 clients read a few events, then hang up
    std::thread::scope(|sc| {
        for i in 0..16 {
            let s = &s;
            sc.spawn(move || {
                let mut body = completion(&format!("Story {i}:"), 400);
                body["stream"] = json!(true);
                let resp = Server::agent()
                    .post(&format!("{}/v1/completions", s.url))
                    .send(body.to_string())
                    .unwrap();
                let mut lines = BufReader::new(resp.into_body().into_reader()).lines();
                for _ in 0..6 {
                    lines.next();
                }
                // dropped here: the connection closes mid-stream
            });
        }
    });
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let busy = s.metric("tokenfab_slots_busy");
        let queued = s.metric("tokenfab_queue_length");
        if busy == 0.0 && queued == 0.0 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "{busy} slots still busy, {queued} queued"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    assert!(s.metric("tokenfab_requests_cancelled_total") >= 16.0);
    // and the server still answers
    let (st, _) = s.post("/v1/completions", &completion("Hello", 2).to_string());
    assert_eq!(st, 200);
}

/// `tokenfab bench --endpoint` measures a live server: every request's tokens counted, TTFT
/// and ITL percentiles, J/token from usage.cost; its JSON is what `tokenfab cost --served`
/// reads.
#[test]
fn the_load_generator_measures_a_server() {
    let s = Server::start(&["--parallel", "2"]);
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_tokenfab"))
        .args(["bench", "--endpoint", &s.url, "--concurrency", "1,2"])
        .args(["--requests", "4", "-n", "6", "-o", "json", "--no-progress"])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    let r: tokenfab::loadgen::LoadReport = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(r.levels.len(), 2);
    for (l, c) in r.levels.iter().zip([1, 2]) {
        assert_eq!((l.concurrency, l.requests, l.failed), (c, 4, 0));
        assert_eq!(l.tokens, 24, "{l:?}");
        assert!(l.aggregate_tok_s > 0.0 && l.ttft.p50_ms.is_some() && l.itl.p50_ms.is_some());
        assert!(l.j_per_token.is_some_and(|j| j > 0.0), "{l:?}");
        assert_eq!(l.energy_source.as_deref(), Some("estimated:model"));
    }
    // an endpoint that is not there is a clear error
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_tokenfab"))
        .args(["bench", "--endpoint", "http://127.0.0.1:9", "-n", "2"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("did not answer"));
}

/// A model that fails in the middle of requests — a NaN planted in a weight block (CPU), a
/// GPU device lost after a few submits (wgpu on lavapipe, `TOKENFAB_FAULT`) — ends the
/// requests in flight with a 500 that says why; the server stays up, `/health` turns 503 with
/// the reason, and later requests get the same clear error instead of a hang.
#[test]
fn a_failing_model_ends_requests_with_the_reason_and_the_server_stays_up() {
    let dir = tempfile::tempdir().unwrap();
    let (bad, _) = common::plant_nan(&common::model(common::GEMMA), dir.path());
    let gemma = common::model(common::GEMMA);
    type Case<'a> = (
        &'a std::path::Path,
        &'a [&'a str],
        &'a [(&'a str, &'a str)],
        &'a str,
    );
    let cases: [Case; 2] = [
        (
            &bad,
            &[],
            &[],
            "in the input of a matrix product in layer 3",
        ),
        (
            &gemma,
            &["--backend", "wgpu", "--parallel", "1"],
            &[("TOKENFAB_FAULT", "wgpu-lose-device-after=4")],
            "the device was lost",
        ),
    ];
    for (model, extra, env, why) in cases {
        let s = Server::start_with(model, extra, env);
        let (code, body) = s.get("/health");
        assert_eq!(code, 200, "{body}");
        let t0 = Instant::now();
        for _ in 0..2 {
            let (code, v) = s.post(
                "/v1/completions",
                &completion("Once upon a time", 8).to_string(),
            );
            assert_eq!(code, 500, "{v}");
            let msg = v["error"]["message"].as_str().unwrap_or_default();
            assert!(msg.contains(why), "{msg}");
            let (code, body) = s.get("/health");
            assert_eq!(code, 503, "{body}");
            assert!(body.contains(why), "{body}");
        }
        assert!(t0.elapsed() < Duration::from_secs(120), "no hang");
        // a streaming client gets the error as its last event
        let events = s.stream(
            "/v1/chat/completions",
            &json!({
            "messages": [{"role": "user", "content": "hi"}], "max_tokens": 4, "stream": true}),
        );
        assert!(events.iter().any(|e| e.contains(why)), "{events:?}");
        assert!(
            s.metric("tokenfab_requests_total{endpoint=\"/v1/completions\",status=\"500\"}") >= 2.0
        );
    }
}

//! A `tokenfab serve` process on a free port for the server tests, and raw-HTTP helpers.

use serde_json::Value;
use std::io::{BufRead, BufReader, Read};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// A server process, killed when dropped.
pub struct Server {
    child: Child,
    pub url: String,
}

impl Server {
    pub fn start(extra: &[&str]) -> Server {
        Self::start_with(&super::model(super::GEMMA), extra, &[])
    }

    /// A server of `model` with `extra` arguments after `-c 512` (and `--backend cpu` unless
    /// `extra` names a backend) and `env` variables set.
    pub fn start_with(model: &std::path::Path, extra: &[&str], env: &[(&str, &str)]) -> Server {
        let mut child = Command::new(env!("CARGO_BIN_EXE_tokenfab"))
            .args([
                "serve",
                "-m",
                model.to_str().unwrap(),
                "--port",
                "0",
                "-t",
                "2",
            ])
            .args(["-c", "512"])
            .args(match extra.contains(&"--backend") {
                true => &[][..],
                false => &["--backend", "cpu"][..],
            })
            .args(extra)
            .envs(env.iter().copied())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let mut err = BufReader::new(child.stderr.take().unwrap());
        let mut line = String::new();
        let url = loop {
            line.clear();
            if err.read_line(&mut line).unwrap() == 0 {
                panic!("the server ended before listening: {line}");
            }
            if let Some(rest) = line.split("listening on ").nth(1) {
                break rest.split_whitespace().next().unwrap().to_string();
            }
        };
        // keep draining stderr so the server never blocks on it
        std::thread::spawn(move || {
            let mut sink = String::new();
            let _ = err.read_to_string(&mut sink);
        });
        Server { child, url }
    }

    pub fn agent() -> ureq::Agent {
        ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_global(Some(Duration::from_secs(300)))
            .build()
            .into()
    }

    /// POSTs `body`; returns (status, JSON body).
    pub fn post(&self, path: &str, body: &str) -> (u16, Value) {
        self.post_with(path, body, None)
    }

    pub fn post_with(&self, path: &str, body: &str, key: Option<&str>) -> (u16, Value) {
        let mut req = Self::agent()
            .post(&format!("{}{path}", self.url))
            .header("Content-Type", "application/json");
        if let Some(k) = key {
            req = req.header("Authorization", &format!("Bearer {k}"));
        }
        let mut resp = req.send(body).unwrap();
        let status = resp.status().as_u16();
        let text = resp.body_mut().read_to_string().unwrap();
        let v = serde_json::from_str(&text).unwrap_or(Value::String(text));
        (status, v)
    }

    pub fn get(&self, path: &str) -> (u16, String) {
        let mut resp = Self::agent()
            .get(&format!("{}{path}", self.url))
            .call()
            .unwrap();
        let status = resp.status().as_u16();
        (status, resp.body_mut().read_to_string().unwrap())
    }

    /// A streaming request's `data:` payloads, in order (`[DONE]` included).
    pub fn stream(&self, path: &str, body: &Value) -> Vec<String> {
        let resp = Self::agent()
            .post(&format!("{}{path}", self.url))
            .header("Content-Type", "application/json")
            .send(body.to_string())
            .unwrap();
        assert_eq!(resp.status().as_u16(), 200);
        let reader = BufReader::new(resp.into_body().into_reader());
        reader
            .lines()
            .map_while(Result::ok)
            .filter_map(|l| l.strip_prefix("data: ").map(str::to_string))
            .collect()
    }

    /// A metric's value from /metrics.
    pub fn metric(&self, name: &str) -> f64 {
        let (_, text) = self.get("/metrics");
        text.lines()
            .find(|l| l.starts_with(name) && l[name.len()..].starts_with(' '))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("{name} not in /metrics:\n{text}"))
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

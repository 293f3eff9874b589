//! The official `openai` Python client (installed from PyPI into target/openai-venv by
//! `scripts/ensure-openai-client.sh`, which `make test` runs) against the real server:
//! models, chat and completions whole and streamed, usage with its cost, logprobs, seeds,
//! budgets, and errors as the client's exceptions (tests/openai_client.py). Fails, never
//! skips, when the client is missing.

mod common;
use common::server::Server;
use std::process::Command;

#[test]
fn the_openai_python_client_works_against_the_server() {
    let venv = std::env::var_os("TOKENFAB_OPENAI_VENV")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| {
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("target/openai-venv")
        });
    let python = venv.join("bin/python");
    assert!(
        python.exists(),
        "{} is missing: run scripts/ensure-openai-client.sh (make test does)",
        python.display()
    );
    let s = Server::start(&["--parallel", "2", "--api-key", "test-key"]);
    let script = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/openai_client.py");
    let out = Command::new(python)
        .arg(script)
        .args([&s.url, "test-key"])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stdout}\n{stderr}");
    assert!(stdout.contains("all ok"), "{stdout}");
}

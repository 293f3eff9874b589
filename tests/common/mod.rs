//! Shared helpers for tests that run the real models: where the files are, and the llama.cpp
//! oracle outputs (copied from ../shared/oracle into tests/data/oracle).
#![allow(dead_code)]

use std::path::{Path, PathBuf};

pub mod ops;
pub mod server;

pub const GEMMA: &str = "gemma-3-270m-q4_k_m.gguf";
pub const QWEN: &str = "qwen2.5-coder-0.5b-instruct-q4_k_m.gguf";
/// The third real model (`scripts/fetch-models.sh qwen-1.5b`).
pub const QWEN_1_5B: &str = "qwen2.5-coder-1.5b-instruct-q4_k_m.gguf";

/// Path of a real model; panics with the command that fetches it when it is missing (these
/// tests must fail, not skip, when their data is absent).
pub fn model(name: &str) -> PathBuf {
    let dir = std::env::var_os("TOKENFAB_MODELS_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("models"));
    let p = dir.join(name);
    assert!(
        p.exists(),
        "model {} is missing: run `scripts/fetch-models.sh` (or `make test`, which fetches it)",
        p.display()
    );
    p
}

/// The oracle key ("gemma"/"qwen") → model file name.
pub fn model_for(key: &str) -> PathBuf {
    match key {
        "gemma" => model(GEMMA),
        "qwen" => model(QWEN),
        other => panic!("unknown oracle model key {other}"),
    }
}

/// A JSON file under `tests/data/` (the recorded llama.cpp checks: `quantize/llama_cpp.json`,
/// `kld/…`, `synth/…`, `qwen15/…`, each with the command that made it).
pub fn recorded(rel: &str) -> serde_json::Value {
    let p = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data")
        .join(rel);
    let text = std::fs::read_to_string(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
    serde_json::from_str(&text).unwrap()
}

/// The perplexity text (`tests/data/oracle/eval.txt`).
pub fn eval_text() -> String {
    let p = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/data/oracle/eval.txt");
    std::fs::read_to_string(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

/// The sha256 of a file, hex: a recorded check applies to exactly the bytes it was made on.
pub fn sha256(path: &std::path::Path) -> String {
    use sha2::Digest;
    format!("{:x}", sha2::Sha256::digest(std::fs::read(path).unwrap()))
}

pub fn oracle(name: &str) -> serde_json::Value {
    let p = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data/oracle")
        .join(name);
    let text = std::fs::read_to_string(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
    serde_json::from_str(&text).unwrap()
}

pub fn ids(v: &serde_json::Value) -> Vec<u32> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_u64().unwrap() as u32)
        .collect()
}

/// A copy of the model `src` in `dir` with one f16 NaN scale planted in row 1, block 2 of
/// `blk.3.attn_q.weight`; returns its path and the tensor's type.
pub fn plant_nan(src: &Path, dir: &Path) -> (PathBuf, tokenfab::gguf::GgmlType) {
    let f = tokenfab::gguf::GgufFile::open(src).unwrap();
    let t = f
        .tensors()
        .iter()
        .find(|t| t.name == "blk.3.attn_q.weight")
        .unwrap()
        .clone();
    let range = f.tensor_range(&t);
    let dtype = t.dtype;
    drop(f);
    let bad = dir.join("bad.gguf");
    let mut bytes = std::fs::read(src).unwrap();
    // every supported block type starts with an f16 scale (`d`), except the k-quants with a
    // super-block layout, whose `d` is where the type puts it
    let row_bytes = dtype.row_bytes(t.row_len()).unwrap() as usize;
    let block_bytes = row_bytes / (t.row_len() as usize / dtype.block_size());
    let d_at = match dtype {
        tokenfab::gguf::GgmlType::Q6_K => block_bytes - 2,
        _ => 0,
    };
    let at = range.start + row_bytes + 2 * block_bytes + d_at;
    bytes[at..at + 2].copy_from_slice(&0x7e00u16.to_le_bytes()); // f16 NaN
    std::fs::write(&bad, &bytes).unwrap();
    (bad, dtype)
}

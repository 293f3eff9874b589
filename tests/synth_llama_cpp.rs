//! Llama — the architecture no real test model has — against llama.cpp itself, on a seeded
//! synthetic Llama 3.2 1B (Q4_K, random weights) that carries the Qwen file's tokenizer so
//! llama.cpp can tokenize for it (`tokenfab synth --tokenizer-from`). Recorded by
//! `scripts/record-synth-llama-oracle.sh` in `tests/data/synth/llama_cpp.json`: the file is
//! byte-identical to the one llama.cpp ran (sha256), its perplexity on eval.txt (-c 128, 4
//! chunks) is llama-perplexity's to within 1e-4 (measured 7.1e-6 relative: 588 881 509 vs
//! 588 877 330; the mean log-probability per token differs by 7e-6 nats), every chunk's too,
//! and greedy decoding gives llama-simple's text.

mod common;
use std::sync::Arc;
use tokenfab::backend::cpu::CpuBackend;
use tokenfab::eval::perplexity::{perplexity, KldMode, PerplexityOptions};
use tokenfab::gguf::{GgmlType, GgufFile};
use tokenfab::model::{LoadOptions, Model};
use tokenfab::tokenizer::Tokenizer;

#[test]
fn synthetic_llama_should_match_llama_cpp() {
    let rec = common::recorded("synth/llama_cpp.json");
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("llama.gguf");
    let qwen = GgufFile::open(common::model(common::QWEN)).unwrap();
    let p = tokenfab::synth::preset("llama-3.2-1b").unwrap();
    tokenfab::synth::write_with_tokenizer(
        p,
        GgmlType::Q4_K,
        &path,
        7,
        Some(qwen.metadata()),
        &mut |_, _| {},
    )
    .unwrap();
    drop(qwen);
    let sha = common::sha256(&path);
    assert_eq!(sha, rec["sha256"], "not the file llama.cpp was recorded on");

    let f = Arc::new(GgufFile::open(&path).unwrap());
    let tk = Tokenizer::from_metadata(f.metadata()).unwrap();
    let load = LoadOptions {
        ctx: 128,
        batch: 128,
        logit_rows: 32,
        n_seq: 1,
    };
    let mut m = Model::load(f, Box::new(CpuBackend::new(0).unwrap()), &load).unwrap();
    let text = common::eval_text();
    let opts = PerplexityOptions {
        n_ctx: 128,
        max_chunks: Some(4),
    };
    let mut chunks = Vec::new();
    let r = perplexity(&mut m, &tk, &text, &opts, KldMode::None, &mut |i, ppl| {
        chunks.push((i, ppl))
    })
    .unwrap();
    let want = rec["ppl"].as_f64().unwrap();
    let rel = (r.ppl - want).abs() / want;
    eprintln!("PPL {} vs llama.cpp {want}: {rel:.2e} relative", r.ppl);
    assert!(rel < 1e-4, "PPL {} vs llama.cpp {want}", r.ppl);
    let theirs: Vec<f64> = rec["chunk_ppl"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_f64().unwrap())
        .collect();
    assert_eq!(chunks.len(), theirs.len());
    for ((_, ours), want) in chunks.iter().zip(&theirs) {
        assert!(
            (ours - want).abs() / want < 1e-4,
            "chunk PPL {ours} vs {want}"
        );
    }

    // greedy, through the public API
    let prompt = tk.encode(rec["prompt"].as_str().unwrap(), true).unwrap();
    let mut out = String::new();
    let gen = tokenfab::generate::GenerateOptions {
        max_tokens: 12,
        ignore_eog: true,
        ..Default::default()
    };
    tokenfab::generate::generate(
        &mut m,
        &tk,
        &prompt,
        &mut tokenfab::sampling::Sampler::greedy(),
        &gen,
        &mut |ev| {
            out.push_str(ev.text);
            true
        },
    )
    .unwrap();
    assert_eq!(out, rec["llama_simple_greedy"].as_str().unwrap());
}

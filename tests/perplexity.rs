//! Perplexity of both real models on ../shared/oracle/eval.txt with -c 512, against
//! llama-perplexity's values (this proves the forward pass end to end), and KL divergence of a
//! model against itself.

mod common;
use std::sync::Arc;
use tokenfab::backend::cpu::CpuBackend;
use tokenfab::eval::kld::{KldBase, KldCompare};
use tokenfab::eval::perplexity::{perplexity, KldMode, PerplexityOptions};
use tokenfab::gguf::GgufFile;
use tokenfab::model::{LoadOptions, Model};
use tokenfab::tokenizer::Tokenizer;

fn load(key: &str) -> (Model, Tokenizer) {
    let f = Arc::new(GgufFile::open(common::model_for(key)).unwrap());
    let tk = Tokenizer::from_metadata(f.metadata()).unwrap();
    let m = Model::load(
        f,
        Box::new(CpuBackend::new(0).unwrap()),
        &LoadOptions {
            ctx: 512,
            batch: 512,
            logit_rows: 32,
            n_seq: 1,
        },
    )
    .unwrap();
    (m, tk)
}

fn eval_text() -> String {
    std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/oracle/eval.txt"),
    )
    .unwrap()
}

fn check(key: &str, llama_cpp: f64, llama_cpp_err: f64) {
    let (mut m, tk) = load(key);
    let opts = PerplexityOptions {
        n_ctx: 512,
        max_chunks: None,
    };
    let r = perplexity(
        &mut m,
        &tk,
        &eval_text(),
        &opts,
        KldMode::None,
        &mut |_, _| {},
    )
    .unwrap();
    eprintln!(
        "{key}: PPL = {:.4} +/- {:.5} (llama.cpp {llama_cpp} +/- {llama_cpp_err}), {} chunks, {} scored, {:.1} s",
        r.ppl, r.ppl_stderr, r.n_chunks, r.tokens_scored, r.seconds
    );
    assert_eq!(r.n_chunks, 19, "llama-perplexity used 19 chunks of 512");
    assert_eq!(
        r.tokens_scored,
        19 * 255,
        "each chunk scored on its last 255 tokens"
    );
    let rel = (r.ppl - llama_cpp).abs() / llama_cpp;
    assert!(
        rel < 0.01,
        "{key}: PPL {} is {:.2}% from llama.cpp's {llama_cpp}",
        r.ppl,
        rel * 100.0
    );
    assert!(
        (r.ppl_stderr - llama_cpp_err).abs() / llama_cpp_err < 0.05,
        "{key}: stderr {}",
        r.ppl_stderr
    );
}

#[test]
fn gemma_perplexity_should_match_llama_cpp() {
    check("gemma", 13.2277, 0.52856);
}

#[test]
fn qwen_perplexity_should_match_llama_cpp() {
    check("qwen", 4.4853, 0.12971);
}

#[test]
fn kld_of_a_model_against_itself_is_zero() {
    let (mut m, tk) = load("gemma");
    let dir = tempfile::tempdir().unwrap();
    let base_path = dir.path().join("base.kld");
    let opts = PerplexityOptions {
        n_ctx: 128,
        max_chunks: Some(2),
    };
    let text = eval_text();
    let mut base = KldBase::new(&base_path, 16);
    let a = perplexity(
        &mut m,
        &tk,
        &text,
        &opts,
        KldMode::Save(&mut base),
        &mut |_, _| {},
    )
    .unwrap();
    assert_eq!(base.finish().unwrap(), 2 * 63);
    let mut cmp = KldCompare::open(&base_path).unwrap();
    let b = perplexity(
        &mut m,
        &tk,
        &text,
        &opts,
        KldMode::Compare(&mut cmp),
        &mut |_, _| {},
    )
    .unwrap();
    let k = cmp.finish().unwrap();
    assert_eq!(a.ppl, b.ppl);
    assert_eq!(k.positions, 126);
    assert!(k.mean_kld < 1e-6 && k.max_kld < 1e-5, "{k:?}");
    assert_eq!(k.same_top_pct, 100.0);
    assert!(k.mean_delta_p.abs() < 1e-6 && k.rms_delta_p < 1e-6, "{k:?}");
    // a base made on another text or -c is refused with the reason
    let other = PerplexityOptions {
        n_ctx: 64,
        max_chunks: Some(2),
    };
    let mut cmp = KldCompare::open(&base_path).unwrap();
    let e = perplexity(
        &mut m,
        &tk,
        &text,
        &other,
        KldMode::Compare(&mut cmp),
        &mut |_, _| {},
    )
    .unwrap_err()
    .to_string();
    assert!(e.contains("-c 128"), "{e}");
    std::fs::write(dir.path().join("junk.kld"), b"nope").unwrap();
    assert!(KldCompare::open(&dir.path().join("junk.kld"))
        .err()
        .unwrap()
        .to_string()
        .contains("not a tokenfab KL-divergence"));
}

//! The architectures no real test model has, against llama.cpp itself, on seeded synthetic
//! files with the real shapes (Q8_0 random weights, Q/K at 4x scale so attention is peaked)
//! that carry the Qwen file's tokenizer so llama.cpp can tokenize for them (`tokenfab synth
//! --tokenizer-from`): Llama 3.2 1B with its RoPE divisors (`rope_freqs.weight`), Qwen3
//! 0.6B (per-head Q/K norms), Gemma 2 2B (soft caps, alternating windows), Phi-3.5-mini
//! (fused weights, LongRoPE) and Phi-4-mini (partial rotary), the last three with fewer layers.
//! Recorded by `scripts/record-synth-llama-oracle.sh` in
//! `tests/data/synth/`: each file is byte-identical to the one llama.cpp ran (sha256); over
//! eval.txt's 4 chunks of 128 tokens (252 positions) our distributions are llama-perplexity's
//! to a mean KL below 3e-4 (measured 9.2e-5, 1.4e-6, 2.0e-5, 1.0e-6, 1.1e-6), the perplexity
//! within 1 %, and
//! greedy decoding gives llama-simple's text.
//!
//! Why these files and bounds. Random k-quant blocks are not zero-mean, and such files repeat
//! their input token with probability ~1 (PPL ~6e8), where nothing else shows: Q8_0 blocks are
//! zero-mean. At the Q/K gain of 1 attention is nearly uniform and position encoding hardly
//! matters (the Llama file with its RoPE divisors set to 1 moved the KL by 2e-6); at a gain of 2
//! the same mistake gives a mean KL of 8.7e-4, ten times ours, and at 3 and more the model is
//! chaotic (ours vs llama.cpp 2.4e-3). llama.cpp's own attention paths (-fa on vs off) differ by
//! a mean KL of 3.3e-2 on this file. The top token: see the bound below.

mod common;
use std::sync::Arc;
use tokenfab::backend::cpu::CpuBackend;
use tokenfab::eval::kld::KldCompare;
use tokenfab::eval::perplexity::{perplexity, KldMode, PerplexityOptions};
use tokenfab::gguf::{GgmlType, GgufFile};
use tokenfab::model::{LoadOptions, Model};
use tokenfab::tokenizer::Tokenizer;

/// `greedy`: also compare 12 free-running greedy tokens with llama-simple's (only meaningful
/// where the top token agrees nearly everywhere; see the bound on `same_top_pct`). `layers`
/// and `window` as the recording's `--layers` and `--sliding-window`.
fn check(preset: &str, greedy: bool, layers: Option<usize>, window: Option<usize>) {
    let all = common::recorded("synth/llama_cpp.json");
    let rec = &all["presets"][preset];
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("model.gguf");
    let qwen = GgufFile::open(common::model(common::QWEN)).unwrap();
    let mut p = *tokenfab::synth::preset(preset).unwrap();
    p.qk_gain = 2.0;
    p.n_layer = layers.unwrap_or(p.n_layer);
    p.sliding_window = window.or(p.sliding_window);
    tokenfab::synth::write_with_tokenizer(
        &p,
        GgmlType::Q8_0,
        &path,
        7,
        Some(qwen.metadata()),
        &mut |_, _| {},
    )
    .unwrap();
    drop(qwen);
    let sha = common::sha256(&path);
    assert_eq!(
        sha, rec["sha256"],
        "{preset}: not the file llama.cpp was recorded on"
    );

    let f = Arc::new(GgufFile::open(&path).unwrap());
    let tk = Tokenizer::from_metadata(f.metadata()).unwrap();
    let load = LoadOptions {
        ctx: 128,
        batch: 128,
        logit_rows: 32,
        n_seq: 1,
        batch_invariant: true,
        ..LoadOptions::default()
    };
    let mut m = Model::load(f, Box::new(CpuBackend::new(0).unwrap()), &load).unwrap();
    let text = common::eval_text();
    let opts = PerplexityOptions {
        n_ctx: 128,
        max_chunks: Some(4),
    };
    let mut chunks = Vec::new();
    let base = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join(format!("tests/data/synth/{preset}.tfkld"));
    let mut cmp = KldCompare::open(&base).unwrap();
    let r = perplexity(
        &mut m,
        &tk,
        &text,
        &opts,
        KldMode::Compare(&mut cmp),
        &mut |i, ppl| chunks.push((i, ppl)),
    )
    .unwrap();
    let k = cmp.finish().unwrap();
    eprintln!(
        "{preset}: KL vs llama.cpp mean {:.2e} median {:.2e} max {:.2e}, same top {:.2} % of {}, {:.2} % of the {} where llama.cpp's top leads by >= {} nats",
        k.mean_kld,
        k.median_kld,
        k.max_kld,
        k.same_top_pct,
        k.positions,
        k.same_top_clear_pct,
        k.clear_positions,
        tokenfab::eval::kld::CLEAR_GAP
    );
    assert_eq!(k.positions, 4 * 63);
    // measured: Llama 9.2e-5 (its RoPE divisors set to 1: 8.7e-4), Qwen3 1.4e-6; llama.cpp's
    // own two attention paths (-fa on / off) on the Llama file: 3.3e-2
    assert!(k.mean_kld < 3e-4, "{preset}: mean KL {}", k.mean_kld);
    // random weights spread the probability over the whole vocabulary (PPL ~ 2x its size), so
    // the top token is a near-tie at most positions: measured Llama 67 % (divisors at 1: 32 %),
    // Qwen3 97 %; llama.cpp -fa on vs off on the Llama file: 56 %
    assert!(
        k.same_top_pct >= 60.0,
        "{preset}: same top {} %",
        k.same_top_pct
    );
    // where llama.cpp's top token leads by 0.05 nats or more it must be ours too (issue 17's
    // 99 %). Measured: Gemma 2 at 251 such positions of 252, 100 %; the random-weight Llama,
    // Qwen3 and Phi files have none (PPL ~2e5: every top token is a near-tie), so there the
    // plain same-top figure above measures coin flips
    assert!(
        k.clear_positions == 0 || k.same_top_clear_pct >= 99.0,
        "{preset}: same top at {} clear positions {} %",
        k.clear_positions,
        k.same_top_clear_pct
    );
    let want = rec["ppl"].as_f64().unwrap();
    let rel = (r.ppl - want).abs() / want;
    eprintln!(
        "{preset}: PPL {} vs llama.cpp {want}: {rel:.2e} relative",
        r.ppl
    );
    // measured: Llama 6.8e-3, Qwen3 8.4e-4 (first order in the log-probabilities, where the KL
    // above is second order)
    assert!(rel < 1e-2, "{preset}: PPL {} vs llama.cpp {want}", r.ppl);
    // per chunk (63 positions) the PPL moves by up to 4 %: the KL above is the check
    assert_eq!(chunks.len(), rec["chunk_ppl"].as_array().unwrap().len());

    if !greedy {
        return;
    }
    // greedy, through the public API
    let prompt = tk.encode(all["prompt"].as_str().unwrap(), true).unwrap();
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
    // llama-simple's pieces are not always whole characters: compare up to its first U+FFFD
    let theirs = rec["llama_simple_greedy"].as_str().unwrap();
    let valid = theirs.split('\u{fffd}').next().unwrap_or("");
    assert!(
        valid.chars().count() >= 8,
        "{preset}: too little to compare: {theirs:?}"
    );
    assert!(
        out.starts_with(valid),
        "{preset}: greedy {out:?} vs llama-simple {theirs:?}"
    );
}

/// Llama 3.2 1B shapes with Llama 3's RoPE divisors. No greedy comparison: the top token agrees
/// at 67 % of positions (a near-tie at the first step already), as llama.cpp's two attention
/// paths agree with each other at 56 %.
#[test]
fn synthetic_llama_should_match_llama_cpp() {
    check("llama-3.2-1b", false, None, None);
}

/// Qwen3 0.6B shapes: no biases, RMS norms over each head of Q and K.
#[test]
fn synthetic_qwen3_should_match_llama_cpp() {
    check("qwen3-0.6b", true, None, None);
}

/// Gemma 2 2B shapes (4 of 26 layers): attention scores soft-capped at 50 and logits at 30,
/// sliding-window layers alternating with global ones — a 32-token window, so that within a
/// 128-token chunk the two kinds differ (the same file with the window at 4096: mean KL
/// 2.9e-2 from llama.cpp's; ours with 32: 2.0e-5).
#[test]
fn synthetic_gemma2_should_match_llama_cpp() {
    check("gemma-2-2b", true, Some(4), Some(32));
}

/// Phi-3.5-mini shapes (2 of 32 layers): fused Q‖K‖V and gate‖up read as row ranges of one
/// matrix, LongRoPE's short divisors (128 positions < its original 4096) and magnitude factor
/// (measured: mean KL 1.0e-6, same top 95 %; without the magnitude factor 5.5e-4 and 37 %).
/// No greedy comparison: the first 6 of 12 free-running tokens equal llama-simple's, then a
/// near-tie goes the other way (95 % same top leaves room for one in 12).
#[test]
fn synthetic_phi3_should_match_llama_cpp() {
    check("phi-3.5-mini", false, Some(2), None);
}

/// Phi-4-mini shapes (2 of 32 layers): Phi-3's fused weights and LongRoPE with grouped KV
/// heads, a tied embedding, and partial rotary — RoPE over 96 of each head's 128 dimensions,
/// pairs `(i, i + 48)`, the last 32 dimensions passed through (measured: mean KL 1.1e-6, same
/// top 95 %; pairing them `(i, i + 64)` as a whole head's: 1.4e-2 and 0 %).
#[test]
fn synthetic_phi4_mini_should_match_llama_cpp() {
    check("phi-4-mini", false, Some(2), None);
}

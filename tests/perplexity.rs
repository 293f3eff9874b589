//! Perplexity of both real models on ../shared/oracle/eval.txt with -c 512, against
//! llama-perplexity's values (this proves the forward pass end to end), KL divergence of a
//! model against itself, and of a requantized model against llama-perplexity
//! `--kl-divergence`'s numbers for the same two files (`scripts/record-kld-oracle.sh`), and
//! each backend's distance from exact arithmetic on the same weights next to llama.cpp's
//! (`scripts/record-exact-kld.sh`).

mod common;
use std::sync::Arc;
use tokenfab::backend::cpu::CpuBackend;
use tokenfab::eval::kld::{KldBase, KldCompare, KldReport};
use tokenfab::eval::perplexity::{perplexity, KldMode, PerplexityOptions, PerplexityReport};
use tokenfab::gguf::GgufFile;
use tokenfab::model::{LoadOptions, Model};
use tokenfab::tokenizer::Tokenizer;

fn load(key: &str) -> (Model, Tokenizer) {
    load_file(&common::model_for(key), 512)
}

/// A model file on the CPU with chunks of up to `ctx` tokens, and its tokenizer.
fn load_file(path: &std::path::Path, ctx: usize) -> (Model, Tokenizer) {
    load_on(path, ctx, Box::new(CpuBackend::new(0).unwrap()))
}

fn load_on(
    path: &std::path::Path,
    ctx: usize,
    backend: Box<dyn tokenfab::backend::Backend>,
) -> (Model, Tokenizer) {
    let f = Arc::new(GgufFile::open(path).unwrap());
    let tk = Tokenizer::from_metadata(f.metadata()).unwrap();
    let load = LoadOptions {
        ctx,
        batch: ctx,
        logit_rows: 32,
        n_seq: 1,
        // as `tokenfab perplexity` runs: the CPU's tiled GEMM for each chunk
        batch_invariant: false,
        ..LoadOptions::default()
    };
    let m = Model::load(f, backend, &load).unwrap();
    (m, tk)
}

/// Saves `m`'s distributions on eval.txt (top-`k` + rest) as a KL-divergence reference at
/// `path`; returns the run's perplexity and the positions saved.
fn save_kld_base(
    m: &mut Model,
    tk: &Tokenizer,
    opts: &PerplexityOptions,
    path: &std::path::Path,
    k: usize,
) -> (PerplexityReport, usize) {
    let mut base = KldBase::new(path, k);
    let r = perplexity(
        m,
        tk,
        &common::eval_text(),
        opts,
        KldMode::Save(&mut base),
        &mut |_, _| {},
    )
    .unwrap();
    (r, base.finish().unwrap())
}

/// `m` on eval.txt against the reference at `path`: its perplexity and the KL report.
fn compare_kld(
    m: &mut Model,
    tk: &Tokenizer,
    opts: &PerplexityOptions,
    path: &std::path::Path,
) -> (PerplexityReport, KldReport) {
    let mut cmp = KldCompare::open(path).unwrap();
    let r = perplexity(
        m,
        tk,
        &common::eval_text(),
        opts,
        KldMode::Compare(&mut cmp),
        &mut |_, _| {},
    )
    .unwrap();
    (r, cmp.finish().unwrap())
}

/// `max_rel`: the relative difference allowed from llama.cpp's PPL, set from the measured one.
fn check(key: &str, llama_cpp: f64, llama_cpp_err: f64, max_rel: f64) {
    let (mut m, tk) = load(key);
    let opts = PerplexityOptions {
        n_ctx: 512,
        max_chunks: None,
    };
    let r = perplexity(
        &mut m,
        &tk,
        &common::eval_text(),
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
        rel < max_rel,
        "{key}: PPL {} is {:.2}% from llama.cpp's {llama_cpp}",
        r.ppl,
        rel * 100.0
    );
    // the standard error follows the PPL (measured +0.12 % Gemma, +0.32 % Qwen; was "5 %")
    assert!(
        (r.ppl_stderr - llama_cpp_err).abs() / llama_cpp_err < 0.01,
        "{key}: stderr {}",
        r.ppl_stderr
    );
}

#[test]
fn gemma_perplexity_should_match_llama_cpp() {
    // measured 13.2336: +0.045 % (an earlier commit measured 13.187, -0.31 %). The bound is llama.cpp's own distance from exact arithmetic: on the first 4
    // chunks its PPL is 0.67 % above the f64 reference's (tests/data/exact/llama_cpp.json).
    check("gemma", 13.2277, 0.52856, 0.0075);
}

#[test]
fn qwen_perplexity_should_match_llama_cpp() {
    // measured 4.4910: +0.13 % (an earlier commit measured 4.484, -0.03 %). llama.cpp's own PPL is 0.56 % above exact arithmetic's on the first 4 chunks (ours
    // 0.07 % below; tests/data/exact/llama_cpp.json): a bound of 0.6 %
    check("qwen", 4.4853, 0.12971, 0.006);
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
    let (a, saved) = save_kld_base(&mut m, &tk, &opts, &base_path, 16);
    assert_eq!(saved, 2 * 63);
    let (b, k) = compare_kld(&mut m, &tk, &opts, &base_path);
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
        &common::eval_text(),
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

/// KL divergence of the q4_0 file `tokenfab quantize` writes from the default model, against the
/// default model, next to llama-perplexity `--kl-divergence` on the same two files, text and
/// chunks (recorded in `tests/data/kld/llama_cpp.json`). Ours is computed over the reference's
/// top-256 tokens plus one bin for the rest, a lower bound of the full KL: measured 0.312
/// against llama.cpp's 0.334 ± 0.013 (top-32 gives 0.263). Same-top 68.65 % vs 69.44 ± 2.05 %,
/// mean Δp −2.89 % vs −2.96 ± 0.55 %, RMS Δp 12.48 % vs 12.66 %.
#[test]
fn kld_of_a_requantized_model_matches_llama_perplexity() {
    let rec = common::recorded("kld/llama_cpp.json");
    let want = |k: &str| rec[k].as_f64().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let q4_0 = dir.path().join("q4_0.gguf");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_tokenfab"))
        .args(["quantize", "--type", "q4_0"])
        .arg(common::model(common::GEMMA))
        .arg(&q4_0)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let sha = common::sha256(&q4_0);
    assert_eq!(sha, rec["q4_0_sha256"], "not the file llama.cpp measured");

    let opts = PerplexityOptions {
        n_ctx: 128,
        max_chunks: Some(8),
    };
    let base_path = dir.path().join("base.kld");
    let (mut m, tk) = load("gemma");
    save_kld_base(&mut m, &tk, &opts, &base_path, 256);
    drop(m);
    let (mut q, _) = load_file(&q4_0, 128);
    let (r, k) = compare_kld(&mut q, &tk, &opts, &base_path);
    eprintln!(
        "KLD {:.4} (llama.cpp {}), same top {:.2} % ({}), mean dp {:.3} % ({}), rms dp {:.3} % ({}), PPL(Q) {:.3} ({})",
        k.mean_kld,
        want("mean_kld"),
        k.same_top_pct,
        want("same_top_pct"),
        100.0 * k.mean_delta_p,
        want("mean_delta_p_pct"),
        100.0 * k.rms_delta_p,
        want("rms_delta_p_pct"),
        r.ppl,
        want("ppl_q")
    );
    assert_eq!(k.positions, 8 * 63);
    // a lower bound of llama.cpp's full KL, and not far below it
    let ratio = k.mean_kld / want("mean_kld");
    assert!((0.85..=1.05).contains(&ratio), "KLD ratio {ratio:.3}");
    // exact quantities: within llama.cpp's own error bars
    assert!((k.same_top_pct - want("same_top_pct")).abs() < want("same_top_err"));
    assert!((100.0 * k.mean_delta_p - want("mean_delta_p_pct")).abs() < 0.55);
    assert!((100.0 * k.rms_delta_p - want("rms_delta_p_pct")).abs() < 0.5);
    assert!((r.ppl / want("ppl_q") - 1.0).abs() < 0.01);
}

/// How far our CPU's distributions are from exact arithmetic on the same weights (the f64
/// reference backend's, recorded in `tests/data/exact/` by `scripts/record-exact-kld.sh`:
/// eval.txt, -c 512, 4 chunks, top-32 + rest), next to how far llama.cpp's are in the same
/// bins (recorded with it). Both quantize activations to 8 bits; ours must be no further.
/// Measured here: Gemma mean KLD 0.00385 vs llama.cpp 0.00867 (0.44×), same top 95.9 % vs
/// 96.4 %; Qwen 0.00206 vs 0.00630 (0.33×), 97.8 % vs 97.5 %.
#[test]
fn cpu_is_no_further_from_exact_arithmetic_than_llama_cpp() {
    let rec = common::recorded("exact/llama_cpp.json");
    let opts = PerplexityOptions {
        n_ctx: 512,
        max_chunks: Some(4),
    };
    let data = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/exact");
    for key in ["gemma", "qwen"] {
        let (mut m, tk) = load(key);
        let (r, k) = compare_kld(&mut m, &tk, &opts, &data.join(format!("{key}.tfkld")));
        let theirs = &rec[key];
        let (t_kld, t_same) = (
            theirs["mean_kld"].as_f64().unwrap(),
            theirs["same_top_pct"].as_f64().unwrap(),
        );
        eprintln!(
            "{key}: from exact arithmetic, mean KLD {:.5} (llama.cpp {t_kld:.5}, {:.2}×), same top {:.2} % ({t_same:.2} %), PPL {:.4} (exact {}, llama.cpp {})",
            k.mean_kld,
            k.mean_kld / t_kld,
            k.same_top_pct,
            r.ppl,
            theirs["exact_ppl"],
            theirs["llama_cpp_ppl"]
        );
        assert_eq!(k.positions, 4 * 255);
        assert!(k.mean_kld <= t_kld, "{key}: {} vs {t_kld}", k.mean_kld);
        // same top: within the binomial noise of 1020 positions (~0.6 %)
        assert!(k.same_top_pct >= t_same - 1.5, "{key}: {}", k.same_top_pct);
    }
}

/// wgpu (lavapipe in CI) against exact arithmetic: f32 everywhere, activations unquantized, so
/// only rounding separates them — Gemma, eval.txt -c 128, 2 chunks (the recorded reference
/// `tests/data/exact/gemma-c128.tfkld`, `tokenfab perplexity --backend reference -c 128
/// --chunks 2 --kl-divergence-base`). Measured: mean KLD 5.5e-7, max 6.0e-6, same top 100 %
/// (the CPU: ~4e-3, its 8-bit activations). Any backend is measured the same way by
/// `tokenfab perplexity --backend B -c 512 --chunks 4 --kl-divergence tests/data/exact/gemma.tfkld`
/// (not on the lent GPU yet: the real models do not travel there).
#[test]
fn wgpu_is_within_rounding_of_exact_arithmetic() {
    let path = common::model_for("gemma");
    let backend = tokenfab::backend::BackendSpec {
        kind: tokenfab::backend::BackendKind::Wgpu,
        ..Default::default()
    }
    .open()
    .expect("a wgpu adapter (lavapipe in CI)");
    let (mut m, tk) = load_on(&path, 128, backend);
    let opts = PerplexityOptions {
        n_ctx: 128,
        max_chunks: Some(2),
    };
    let base =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/exact/gemma-c128.tfkld");
    let (_, k) = compare_kld(&mut m, &tk, &opts, &base);
    eprintln!(
        "wgpu from exact arithmetic: mean KLD {:.2e}, max {:.2e}, same top {:.1} %",
        k.mean_kld, k.max_kld, k.same_top_pct
    );
    assert_eq!(k.positions, 2 * 63);
    assert!(k.mean_kld < 5e-6 && k.max_kld < 5e-5, "{k:?}");
    assert!(k.same_top_pct >= 98.0, "{k:?}");
}

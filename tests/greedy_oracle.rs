//! Greedy decoding on both real models against llama.cpp's oracle.
//!
//! Quantized inference is noisy at the level of a few tenths of a logit: against exact
//! arithmetic on the same weights (the f64 reference backend, `backend/reference.rs`),
//! llama.cpp's own logits (relative to its top-1, on its top-5) are up to 0.353 / 0.866 / 0.406
//! off on Gemma's three oracle prompts, ours up to 0.597 / 0.713 / 0.435 (Qwen: llama.cpp
//! 0.197 / 0.222 / 0.285, ours 0.161 / 0.254 / 0.261), and a 1e-6 relative perturbation of one
//! RMS norm moves ours by ~0.3; replacing libm's `expf` in the attention softmax by a vector
//! exp 1.4 ulp from it (tried 2026-11-28, not kept) moved Gemma "The capital…" step 6 by 0.4
//! with mean KLD from exact arithmetic unchanged (0.0038 → 0.0040). Where llama.cpp's top-2
//! gap is smaller than that noise ([`near_tie`]), even exact arithmetic can pick the other token (it picks ours at Gemma
//! "The capital…" step 15: gap 0.012). `near_tie_is_what_llama_cpp_itself_misses_exact_arithmetic_by`
//! measures all this on every run. So: at every
//! step with a clear winner our argmax must equal llama.cpp's; at near-ties our pick must be
//! within [`near_tie`] of llama.cpp's choice in its logits and in ours, and the test prints them.

mod common;
use std::sync::Arc;
use tokenfab::backend::cpu::CpuBackend;
use tokenfab::generate::{generate, GenerateOptions};
use tokenfab::gguf::GgufFile;
use tokenfab::model::{LoadOptions, Logits, Model};
use tokenfab::sampling::{argmax, Sampler, SamplingParams};
use tokenfab::tokenizer::Tokenizer;

/// How far llama.cpp's logits (relative to its top-1, on its top-5) are from exact arithmetic
/// at most over a model's oracle steps; re-measured on every run by
/// `near_tie_is_what_llama_cpp_itself_misses_exact_arithmetic_by`.
fn llama_from_exact(key: &str) -> f32 {
    match key {
        "gemma" => 0.866,
        _ => 0.285,
    }
}

/// A top-2 gap (in logits) below which a step is a near-tie: just under what llama.cpp's own
/// logits miss exact arithmetic by on that model, since a gap smaller than that noise can go
/// either way.
fn near_tie(key: &str) -> f32 {
    0.98 * llama_from_exact(key)
}

/// Largest allowed difference of (logit − top-1 logit) on llama.cpp's top-5: ours may be
/// 1.25× llama.cpp's distance from exact arithmetic (asserted against the f64 reference), so
/// by the triangle inequality 2.25× that distance from llama.cpp's (measured: Gemma 0.82,
/// Qwen 0.34; with a vector exp in the softmax, Gemma 1.26).
fn max_drift(key: &str) -> f32 {
    2.25 * llama_from_exact(key)
}

fn load_on(key: &str, backend: Box<dyn tokenfab::backend::Backend>) -> (Model, Tokenizer) {
    load_with(key, backend, false)
}

fn load_with(
    key: &str,
    backend: Box<dyn tokenfab::backend::Backend>,
    repack: bool,
) -> (Model, Tokenizer) {
    let f = Arc::new(GgufFile::open(common::model_for(key)).unwrap());
    let tk = Tokenizer::from_metadata(f.metadata()).unwrap();
    let m = Model::load(
        f,
        backend,
        &LoadOptions {
            ctx: 512,
            repack,
            ..Default::default()
        },
    )
    .unwrap();
    (m, tk)
}

struct Step {
    id: u32,
    top5: Vec<(u32, f32)>,
}

fn steps(case: &serde_json::Value) -> Vec<Step> {
    case["steps"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| Step {
            id: s["id"].as_u64().unwrap() as u32,
            top5: s["top5"]
                .as_array()
                .unwrap()
                .iter()
                .map(|p| (p[0].as_u64().unwrap() as u32, p[1].as_f64().unwrap() as f32))
                .collect(),
        })
        .collect()
}

/// Teacher-forced: feeds llama.cpp's tokens and checks our choice and logits at each step.
/// Returns the steps where we picked the other token of a near-tie.
fn teacher_forced(key: &str, model: &mut Model, case: &serde_json::Value) -> Vec<usize> {
    let prompt = common::ids(&case["prompt_ids"]);
    let steps = steps(case);
    assert_eq!(steps.len(), 32);
    let mut logits = vec![0f32; model.config.n_vocab];
    let cache = model.new_cache(0).unwrap();
    let mut buf = model.forward(&cache, &prompt, 0, Logits::Last).unwrap();
    let (mut drift, mut flips) = (0f32, Vec::new());
    for (i, st) in steps.iter().enumerate() {
        model.ops().read(buf, 0, &mut logits).unwrap();
        let ours = argmax(&logits);
        let (top_id, top_l) = st.top5[0];
        let gap = top_l - st.top5[1].1;
        // compare logits relative to the top-1 logit: a softmax ignores a common shift
        for &(id, l) in &st.top5 {
            drift =
                drift.max(((logits[id as usize] - logits[top_id as usize]) - (l - top_l)).abs());
        }
        let shown = || {
            st.top5
                .iter()
                .map(|&(id, l)| format!("{id}: llama.cpp {l:.3}, ours {:.3}", logits[id as usize]))
                .collect::<Vec<_>>()
                .join("; ")
        };
        if ours != st.id {
            // llama.cpp's logit for our pick, if it is in its top-5
            let theirs = st.top5.iter().find(|p| p.0 == ours).map(|p| p.1);
            assert!(
                theirs.is_some_and(|l| top_l - l < near_tie(key)),
                "{key} {:?} step {i}: ours {ours}, llama.cpp {} (its top-2 gap {gap:.3}), not a near-tie: {}",
                case["prompt"],
                st.id,
                shown()
            );
            let our_gap = logits[ours as usize] - logits[st.id as usize];
            assert!(
                our_gap < near_tie(key),
                "{key} step {i}: our gap {our_gap:.3} is not a near-tie"
            );
            eprintln!(
                "{key} {:?} step {i}: near-tie (llama.cpp gap {gap:.3}, ours {our_gap:.3}) picked differently: {}",
                case["prompt"],
                shown()
            );
            flips.push(i);
        }
        buf = model
            .forward(&cache, &[st.id], prompt.len() + i, Logits::Last)
            .unwrap();
    }
    eprintln!(
        "{key} {:?}: {}/32 steps pick llama.cpp's token, max |Δ(logit − top-1)| on its top-5 = {drift:.3}",
        case["prompt"],
        32 - flips.len()
    );
    assert!(drift < max_drift(key), "{key}: logits drift {drift}");
    flips
}

/// Free-running greedy generation through the public API: equal to llama.cpp's tokens up to
/// the first near-tie we pick differently, and equal text when there is none.
fn free_running(
    key: &str,
    model: &mut Model,
    tk: &Tokenizer,
    case: &serde_json::Value,
    flips: &[usize],
) {
    let prompt_text = case["prompt"].as_str().unwrap();
    let prompt = tk.encode(prompt_text, true).unwrap();
    assert_eq!(prompt, common::ids(&case["prompt_ids"]));
    let want = common::ids(&case["generated_ids"]);
    let mut sampler = Sampler::new(SamplingParams::greedy());
    let opts = GenerateOptions {
        max_tokens: 32,
        stop: vec![],
        ignore_eog: true,
        ..GenerateOptions::default()
    };
    let s = generate(model, tk, &prompt, &mut sampler, &opts, &mut |_| true).unwrap();
    assert_eq!(s.tokens.len(), 32);
    let upto = flips.first().copied().unwrap_or(32);
    assert_eq!(s.tokens[..upto], want[..upto], "{key} {prompt_text:?}");
    if upto == 32 {
        assert_eq!(
            s.text,
            case["generated_text"].as_str().unwrap(),
            "{key} {prompt_text:?}"
        );
    }
}

fn check(key: &str) {
    check_with(key, false)
}

fn check_with(key: &str, repack: bool) {
    let oracle = common::oracle("greedy_public.json");
    let (mut model, tk) = load_with(key, Box::new(CpuBackend::new(0).unwrap()), repack);
    let (mut total_flips, mut near_ties) = (0, 0);
    for case in oracle[key].as_array().unwrap() {
        let flips = teacher_forced(key, &mut model, case);
        total_flips += flips.len();
        near_ties += steps(case)
            .iter()
            .filter(|s| s.top5[0].1 - s.top5[1].1 < near_tie(key))
            .count();
        free_running(key, &mut model, &tk, case, &flips);
    }
    // a systematic error would flip near-ties wholesale, noise flips a few
    eprintln!("{key}: {total_flips} of {near_ties} near-ties picked differently");
    assert!(
        total_flips <= (near_ties / 4).max(1),
        "{key}: {total_flips} of {near_ties} near-ties flipped"
    );
}

#[test]
fn gemma_greedy_should_match_llama_cpp() {
    check("gemma");
}

#[test]
fn qwen_greedy_should_match_llama_cpp() {
    check("qwen");
}

/// `--repack` (the Q4_K matrices' interleaved copies and their eight-row kernel, whose
/// rounding differs from the row kernel's in the last bits) holds llama.cpp's tokens to the
/// same standard: its pick at every clear step, near-ties within tolerance. (Gemma's 27 Q4_K
/// matrices are copied too: on aarch64 under qemu, `scripts/aarch64-check.sh` runs its test on
/// the `sdot` eight-row kernel.)
#[test]
fn gemma_greedy_with_repack_should_match_llama_cpp() {
    check_with("gemma", true);
}

#[test]
fn qwen_greedy_with_repack_should_match_llama_cpp() {
    check_with("qwen", true);
}

/// The logits of each of a case's 32 steps, teacher-forced on llama.cpp's tokens.
fn forced_logits(model: &mut Model, case: &serde_json::Value) -> Vec<Vec<f32>> {
    let prompt = common::ids(&case["prompt_ids"]);
    let cache = model.new_cache(0).unwrap();
    let mut buf = model.forward(&cache, &prompt, 0, Logits::Last).unwrap();
    let mut out = Vec::new();
    for (i, st) in steps(case).iter().enumerate() {
        let mut l = vec![0f32; model.config.n_vocab];
        model.ops().read(buf, 0, &mut l).unwrap();
        out.push(l);
        buf = model
            .forward(&cache, &[st.id], prompt.len() + i, Logits::Last)
            .unwrap();
    }
    out
}

/// The evidence behind [`near_tie`]: the same steps through the exact-arithmetic reference
/// backend (f64, activations unquantized; `backend/reference.rs`). llama.cpp's own logits are
/// that far from exact arithmetic — so a top-2 gap below it can go either way — and every step
/// where our pick differs from llama.cpp's is a near-tie in exact arithmetic too.
fn exact_reference_check(key: &str) -> (f32, f32) {
    exact_reference_check_with(key, false)
}

fn exact_reference_check_with(key: &str, repack: bool) -> (f32, f32) {
    let oracle = common::oracle("greedy_public.json");
    let (mut exact, _) = load_on(
        key,
        Box::new(tokenfab::backend::reference::ReferenceBackend::new(0).unwrap()),
    );
    let (mut cpu, _) = load_with(key, Box::new(CpuBackend::new(0).unwrap()), repack);
    let (mut theirs_max, mut ours_max) = (0f32, 0f32);
    for case in oracle[key].as_array().unwrap() {
        let ex = forced_logits(&mut exact, case);
        let ours = forced_logits(&mut cpu, case);
        let (mut theirs_d, mut ours_d) = (0f32, 0f32);
        for (i, st) in steps(case).iter().enumerate() {
            let top = st.top5[0].0 as usize;
            let rel = |l: &[f32], id: u32| l[id as usize] - l[top];
            for &(id, l) in &st.top5 {
                let e = rel(&ex[i], id);
                theirs_d = theirs_d.max(((l - st.top5[0].1) - e).abs());
                ours_d = ours_d.max((rel(&ours[i], id) - e).abs());
            }
            let pick = argmax(&ours[i]);
            if pick != st.id {
                let exact_gap = (ex[i][pick as usize] - ex[i][st.id as usize]).abs();
                eprintln!(
                    "{key} {:?} step {i}: ours {pick}, llama.cpp {}, exact arithmetic's gap between them {exact_gap:.3} (exact picks {})",
                    case["prompt"], st.id, argmax(&ex[i])
                );
                assert!(
                    exact_gap < near_tie(key),
                    "{key} step {i}: exact arithmetic separates our pick from llama.cpp's by {exact_gap}"
                );
            }
        }
        eprintln!(
            "{key} {:?}: max |Δ(logit − top-1)| from exact arithmetic on llama.cpp's top-5: llama.cpp {theirs_d:.3}, ours {ours_d:.3}",
            case["prompt"]
        );
        theirs_max = theirs_max.max(theirs_d);
        ours_max = ours_max.max(ours_d);
    }
    (theirs_max, ours_max)
}

#[test]
fn near_tie_is_what_llama_cpp_itself_misses_exact_arithmetic_by() {
    for key in ["gemma", "qwen"] {
        let (theirs, ours) = exact_reference_check(key);
        eprintln!("{key}: llama.cpp up to {theirs:.3} from exact arithmetic, ours up to {ours:.3}");
        // ours no further from exact arithmetic than llama.cpp's (measured: 0.82× on Gemma,
        // 0.92× on Qwen; 1.25× allows another CPU's rounding)
        assert!(
            ours <= 1.25 * theirs,
            "{key}: ours {ours} vs llama.cpp {theirs}"
        );
        // the constant the tolerances derive from is what this run measures
        assert!(
            (theirs - llama_from_exact(key)).abs() < 0.01,
            "{key}: llama.cpp {theirs} from exact arithmetic, the tolerances assume {}",
            llama_from_exact(key)
        );
        // the near-tie tolerance is within llama.cpp's own distance from exact arithmetic
        assert!(
            near_tie(key) < theirs,
            "{key}: near-tie {} vs llama.cpp's {theirs}",
            near_tie(key)
        );
        // `--repack`'s eight-row Q4_K kernel rounds as ggml's repacked gemv does (one integer
        // per row and block): measured Gemma 0.649 (0.75× llama.cpp's), Qwen 0.407 (1.43×;
        // the row kernels' 0.261 on the same run) — the max over ~100 steps of a chaotic
        // quantity, which one different last bit moves by ~0.1 on Qwen. Opt-in, and held to
        // 1.5× (a wrong block scale or min moves it by whole logits)
        let (_, repacked) = exact_reference_check_with(key, true);
        eprintln!("{key} with --repack: up to {repacked:.3} from exact arithmetic");
        assert!(
            repacked <= 1.5 * theirs,
            "{key} with --repack: {repacked} vs llama.cpp {theirs}"
        );
    }
}

//! `tokenfab synth`: synthetic models of real shapes are valid GGUF for another reader
//! (candle-core's), load and run in tokenfab on the CPU, and the Llama, Qwen3, Gemma 2 and Phi
//! shapes (the architectures no real test model has; their CPU forward is checked against
//! llama.cpp in `tests/synth_llama_cpp.rs`) give on wgpu the logits of exact arithmetic (the
//! f64 reference backend); a Mistral-style file's sliding window is applied (on the exact
//! reference) — and, in a `--features cuda` build (run on an NVIDIA machine: it fails without
//! one), on CUDA, where greedy decoding (argmax on the device, token by token) must also
//! follow the reference's.

use std::sync::Arc;
use tokenfab::backend::cpu::CpuBackend;
use tokenfab::backend::reference::ReferenceBackend;
use tokenfab::backend::wgpu::WgpuBackend;
use tokenfab::backend::Backend;
use tokenfab::gguf::{GgmlType, GgufFile};
use tokenfab::model::Logits;
use tokenfab::model::{LoadOptions, Model};
use tokenfab::synth;

/// A preset as these tests write it: the two large ones cut to a few layers (Gemma 2 with a
/// 4-token window, so that its windowed layers differ from the global ones on 8 tokens).
fn reduced(preset: &str) -> synth::Preset {
    let mut p = *synth::preset(preset).unwrap();
    match preset {
        "gemma-2-2b" => {
            p.n_layer = 4;
            p.sliding_window = Some(4);
        }
        "mistral-7b" | "phi-3.5-mini" | "phi-4-mini" => p.n_layer = 2,
        _ => {}
    }
    p
}

fn write(dir: &std::path::Path, preset: &str) -> std::path::PathBuf {
    let path = dir.join(format!("{preset}.gguf"));
    let p = reduced(preset);
    let s = synth::write(&p, GgmlType::Q4_K, &path, 7, &mut |_, _| {}).unwrap();
    assert!(std::fs::metadata(&path).unwrap().len() > s.bytes);
    path
}

fn load(path: &std::path::Path, backend: Box<dyn Backend>) -> Model {
    let f = Arc::new(GgufFile::open(path).unwrap());
    Model::load(
        f,
        backend,
        &LoadOptions {
            ctx: 64,
            batch: 32,
            logit_rows: 4,
            n_seq: 1,
            batch_invariant: true,
            ..LoadOptions::default()
        },
    )
    .unwrap()
}

/// Logits of the last `rows` of `tokens`.
fn logits(model: &mut Model, tokens: &[u32], rows: usize) -> Vec<f32> {
    let mut out = Vec::new();
    let n = tokens.len();
    let cache = model.new_cache(0).unwrap();
    model
        .score(&cache, tokens, 0, n - rows..n, &mut |_, k, l| {
            out.extend_from_slice(&l[..k * (l.len() / k.max(1))])
        })
        .unwrap();
    model.release_cache(cache);
    out
}

#[test]
fn synthetic_presets_should_be_valid_gguf_and_run() {
    let dir = tempfile::tempdir().unwrap();
    for preset in [
        "gemma3-270m",
        "qwen2.5-0.5b",
        "llama-3.2-1b",
        "qwen3-0.6b",
        "gemma-2-2b",
        "mistral-7b",
        "phi-3.5-mini",
        "phi-4-mini",
    ] {
        let path = write(dir.path(), preset);
        // another reader: candle-core's GGUF parser sees the same tensors and shapes
        let mut f = std::fs::File::open(&path).unwrap();
        let content = candle_core::quantized::gguf_file::Content::read(&mut f).unwrap();
        let ours = GgufFile::open(&path).unwrap();
        assert_eq!(content.tensor_infos.len(), ours.tensors().len());
        for t in ours.tensors() {
            let c = &content.tensor_infos[&t.name];
            let dims: Vec<u64> = c.shape.dims().iter().rev().map(|&d| d as u64).collect();
            assert_eq!(dims, t.dims, "{preset} {}", t.name);
        }
        assert_eq!(
            content.metadata["general.architecture"]
                .to_string()
                .unwrap(),
            synth::preset(preset).unwrap().arch
        );
        // and it runs in tokenfab: finite logits over the whole vocabulary
        let mut m = load(&path, Box::new(CpuBackend::new(0).unwrap()));
        let l = logits(&mut m, &[1, 2, 3, 4, 5], 1);
        assert_eq!(l.len(), m.config.n_vocab);
        assert!(
            l.iter().all(|x| x.is_finite()),
            "{preset}: non-finite logits"
        );
        let spread =
            l.iter().cloned().fold(f32::MIN, f32::max) - l.iter().cloned().fold(f32::MAX, f32::min);
        assert!(spread > 1e-3, "{preset}: logits are constant");
    }
}

/// Greedy tokens after `prompt`, one decode step at a time, argmax on the backend; with
/// `gaps`, also the top-2 logit gap of every step over the logits' RMS (read back for that).
fn greedy(model: &mut Model, prompt: &[u32], n: usize, gaps: bool) -> (Vec<u32>, Vec<f32>) {
    let vocab = model.config.n_vocab;
    let (mut out, mut gap) = (Vec::new(), Vec::new());
    let cache = model.new_cache(0).unwrap();
    let mut buf = model.forward(&cache, prompt, 0, Logits::Last).unwrap();
    for i in 0..n {
        let t = model.ops().argmax(buf, 0, vocab).unwrap();
        out.push(t);
        if gaps {
            let mut l = vec![0f32; vocab];
            model.ops().read(buf, 0, &mut l).unwrap();
            let rms = (l.iter().map(|x| x * x).sum::<f32>() / vocab as f32).sqrt();
            l.sort_by(|a, b| b.total_cmp(a));
            gap.push((l[0] - l[1]) / rms);
        }
        if i + 1 < n {
            buf = model
                .forward(&cache, &[t], prompt.len() + i, Logits::Last)
                .unwrap();
        }
    }
    model.release_cache(cache);
    (out, gap)
}

/// Random-weight models have near-Gaussian logits: a differing pick is allowed where the reference's
/// top-2 gap is below this fraction of the logits' RMS.
const NEAR_TIE: f32 = 0.05;

/// `other` against exact arithmetic (the f64 reference backend: no 8-bit activations, which
/// on zero-mean random weights put our CPU 1e-3 away from the GPUs in logits nmse) on a
/// synthetic `preset`: logits of a few rows (nmse), and with `steps` > 0: a varied token
/// sequence teacher-forced through both, where `other`'s argmax must be the reference's except
/// at near-ties; then `other`'s own greedy decoding (argmax on the device, token by token)
/// must repeat the reference's up to its first near-tie.
fn check(preset: &str, other: Box<dyn Backend>, steps: usize) {
    let other_name = other.name();
    let name = format!("{preset} on {other_name}");
    let dir = tempfile::tempdir().unwrap();
    let path = write(dir.path(), preset);
    let mut exact = load(&path, Box::new(ReferenceBackend::new(0).unwrap()));
    let mut gpu = load(&path, other);
    // (the same ids on every preset whose vocabulary has them: Phi-3's has 32 064)
    let n_vocab = exact.config.n_vocab as u32;
    let tokens = [1u32, 500, 7000, 42, 9, 100_000, 3, 77].map(|t| t % n_vocab);
    let (c, g) = (logits(&mut exact, &tokens, 4), logits(&mut gpu, &tokens, 4));
    let num: f64 = c
        .iter()
        .zip(&g)
        .map(|(a, b)| ((a - b) as f64).powi(2))
        .sum();
    let den: f64 = c.iter().map(|a| (*a as f64).powi(2)).sum();
    eprintln!("{name}: logits nmse vs exact {:.2e}", num / den);
    // wgpu: f32 activations and an f16 KV cache, measured 1.0e-7 to 2.6e-7 on lavapipe; candle
    // on CUDA quantizes activations to ggml's q8_1 as our CPU does to 8 bits (CPU vs exact
    // ~1e-3 on these zero-mean weights)
    let limit = if other_name.starts_with("candle") {
        1e-2
    } else {
        1e-6
    };
    assert!(num / den < limit, "{name}: nmse {}", num / den);
    if steps == 0 {
        return;
    }
    let vocab = exact.config.n_vocab;
    let mut seq = tokens.to_vec();
    seq.extend((0..steps as u64 - 1).map(|i| ((i * 2_654_435_761 + 12_345) % vocab as u64) as u32));
    let (mut same, mut near) = (0, 0);
    // one pass each: the logits of the last `steps` positions
    let (c_all, g_all) = (
        logits(&mut exact, &seq, steps),
        logits(&mut gpu, &seq, steps),
    );
    for (i, (c, g)) in c_all.chunks(vocab).zip(g_all.chunks(vocab)).enumerate() {
        let (ca, ga) = (tokenfab::sampling::argmax(c), tokenfab::sampling::argmax(g));
        let rms = (c.iter().map(|x| x * x).sum::<f32>() / vocab as f32).sqrt();
        let gap = c[ca as usize] - c[ga as usize];
        if ca == ga {
            same += 1;
            continue;
        }
        near += 1;
        assert!(
            gap < NEAR_TIE * rms,
            "{name} step {i}: picks {ga}, exact {ca} (exact gap {gap:.4}, logit rms {rms:.3})"
        );
    }
    eprintln!("{name}: {same}/{steps} teacher-forced steps pick the reference's token ({near} near-ties differ)");
    assert!(same * 10 >= steps * 8, "{name}: {same}/{steps}");
    let (want, gaps) = greedy(&mut exact, &tokens, steps, true);
    let (got, _) = greedy(&mut gpu, &tokens, steps, false);
    let first_tie = gaps.iter().position(|&g| g < NEAR_TIE).unwrap_or(steps);
    eprintln!("{name}: greedy {got:?}\n  exact: {want:?} (first near-tie at step {first_tie})");
    assert_eq!(got[..first_tie], want[..first_tie], "{name}: free-running");
}

/// `preset` on wgpu against exact arithmetic; greedy decoding on real GPUs only (lavapipe, in CI,
/// decodes a 1B model at seconds per token).
fn check_wgpu(preset: &str) {
    let gpu = WgpuBackend::new(false)
        .expect("a wgpu adapter is required (apt-get install mesa-vulkan-drivers libvulkan1)");
    let steps = if tokenfab::backend::wgpu::has_discrete_gpu() {
        24
    } else {
        0
    };
    check(preset, Box::new(gpu), steps);
}

#[test]
fn synthetic_llama_should_match_reference_on_wgpu() {
    check_wgpu("llama-3.2-1b");
}

#[test]
fn synthetic_qwen3_should_match_reference_on_wgpu() {
    check_wgpu("qwen3-0.6b");
}

/// Gemma 2's soft caps and alternating windows on wgpu (4 layers, a 4-token window).
#[test]
fn synthetic_gemma2_should_match_reference_on_wgpu() {
    check_wgpu("gemma-2-2b");
}

/// Phi-3's fused weights read as row ranges, and LongRoPE, on wgpu (2 layers).
#[test]
fn synthetic_phi3_should_match_reference_on_wgpu() {
    check_wgpu("phi-3.5-mini");
}

/// Phi-4-mini's partial rotary (96 of 128 dimensions) on wgpu (2 layers).
#[test]
fn synthetic_phi4_mini_should_match_reference_on_wgpu() {
    check_wgpu("phi-4-mini");
}

/// LongRoPE picks its divisors by the context a model is loaded for: the short ones up to the
/// original 4096 positions, the long ones beyond (llama.cpp's `get_rope_factors`). The same
/// 8 tokens give other logits at a context of 8192 than at 64; at 4096 the same as at 64.
#[test]
fn phi3_longrope_uses_the_long_divisors_past_the_original_context() {
    let dir = tempfile::tempdir().unwrap();
    let path = write(dir.path(), "phi-3.5-mini");
    let tokens = [1u32, 500, 7000, 42, 9, 10_000, 3, 77];
    let at = |ctx: usize| {
        let f = Arc::new(GgufFile::open(&path).unwrap());
        let opts = LoadOptions {
            ctx,
            batch: 8,
            logit_rows: 1,
            n_seq: 1,
            batch_invariant: true,
            ..LoadOptions::default()
        };
        let mut m = Model::load(f, Box::new(CpuBackend::new(0).unwrap()), &opts).unwrap();
        assert_eq!(m.config.ctx_orig, synth::PHI3_ORIGINAL_CTX);
        logits(&mut m, &tokens, 1)
    };
    let (short, edge, long) = (at(64), at(synth::PHI3_ORIGINAL_CTX), at(8192));
    assert_eq!(
        short, edge,
        "up to the original context: the short divisors"
    );
    let moved = short.iter().zip(&long).filter(|(a, b)| a != b).count();
    assert!(
        moved > short.len() / 2,
        "{moved} of {} logits moved",
        short.len()
    );
}

/// A Mistral-style Llama file's sliding window (from its metadata) is applied: with one layer
/// and a window of 4, the last of 8 tokens sees only the last 4, so its logits equal those of
/// the 4 tokens alone (RoPE makes attention depend on relative positions only); without the
/// window they do not. On the exact-arithmetic reference backend, so that only the window can
/// make a difference (the CPU's f16 cache of keys rotated to other angles: nmse 1e-4).
#[test]
fn mistral_sliding_window_comes_from_the_metadata() {
    let dir = tempfile::tempdir().unwrap();
    let tokens = [1u32, 500, 7000, 42, 9, 10_000, 3, 77];
    let last = |window: Option<usize>| {
        let mut p = *synth::preset("mistral-7b").unwrap();
        p.n_layer = 1;
        p.qk_gain = 2.0;
        p.sliding_window = window;
        let path = dir.path().join("mistral.gguf");
        synth::write(&p, GgmlType::Q8_0, &path, 7, &mut |_, _| {}).unwrap();
        let exact = tokenfab::backend::reference::ReferenceBackend::new(0).unwrap();
        let mut m = load(&path, Box::new(exact));
        assert_eq!(m.config.window(0), window);
        (logits(&mut m, &tokens, 1), logits(&mut m, &tokens[4..], 1))
    };
    let nmse = |a: &[f32], b: &[f32]| {
        let num: f64 = a.iter().zip(b).map(|(x, y)| ((x - y) as f64).powi(2)).sum();
        num / a.iter().map(|x| (*x as f64).powi(2)).sum::<f64>()
    };
    let (all, tail) = last(Some(4));
    let windowed = nmse(&all, &tail);
    let (all, tail) = last(None);
    let full = nmse(&all, &tail);
    eprintln!("last-token logits, 8 tokens vs their last 4: window 4 nmse {windowed:.2e}, no window {full:.2e}");
    assert!(windowed < 1e-9, "{windowed}");
    assert!(full > 1e3 * windowed.max(1e-9), "{full}");
}

/// `preset` on CUDA (candle) against the CPU, greedy decoding included. Only in a `--features
/// cuda` build, which must then run where there is an NVIDIA GPU.
#[cfg(feature = "cuda")]
fn check_cuda(preset: &str) {
    let gpu = tokenfab::backend::candle::CandleBackend::cuda().expect("an NVIDIA GPU");
    check(preset, Box::new(gpu), 24);
}

#[cfg(feature = "cuda")]
#[test]
fn synthetic_llama_should_match_reference_on_cuda() {
    check_cuda("llama-3.2-1b");
}

#[cfg(feature = "cuda")]
#[test]
fn synthetic_qwen3_should_match_reference_on_cuda() {
    check_cuda("qwen3-0.6b");
}

/// Gemma 2's soft caps and alternating windows on CUDA (4 layers, a 4-token window).
#[cfg(feature = "cuda")]
#[test]
fn synthetic_gemma2_should_match_reference_on_cuda() {
    check_cuda("gemma-2-2b");
}

/// Phi-3's fused weights read as row ranges, and LongRoPE, on CUDA (2 layers).
#[cfg(feature = "cuda")]
#[test]
fn synthetic_phi3_should_match_reference_on_cuda() {
    check_cuda("phi-3.5-mini");
}

/// Phi-4-mini's partial rotary (96 of 128 dimensions) on CUDA (2 layers).
#[cfg(feature = "cuda")]
#[test]
fn synthetic_phi4_mini_should_match_reference_on_cuda() {
    check_cuda("phi-4-mini");
}

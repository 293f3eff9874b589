//! Structural checks of the wgpu backend that need no fast GPU (they run on lavapipe): how
//! many dispatches, compute passes, submits and host waits one decoded token costs on a
//! small Llama-shaped model, with the fused kernels and with the kernels before them.
//! Speed on a real GPU follows from these counts (each dispatch costs a few microseconds of
//! launch and barrier) as much as from the kernels' bandwidth: see ../shared/design/GPU.md.

mod common;

use std::sync::Arc;
use tokenfab::backend::wgpu::{Counters, Tuning, WgpuBackend, WgpuOptions};
use tokenfab::generate::{generate, step, Cost, GenerateOptions, Sequence, StepLimits, TokenEvent};
use tokenfab::gguf::{GgmlType, GgufFile};
use tokenfab::model::{LoadOptions, Logits, Model};
use tokenfab::sampling::{Sampler, SamplingParams};
use tokenfab::synth::{self, Preset};
use tokenfab::tokenizer::Tokenizer;

/// A Llama with real structure and tiny sizes (Q4_K needs 256-multiples of columns).
const TINY: Preset = Preset {
    name: "tiny-llama",
    arch: "llama",
    n_embd: 256,
    n_layer: 3,
    n_head: 4,
    n_head_kv: 2,
    head_dim: 64,
    n_ff: 512,
    n_vocab: 1000,
    ctx: 128,
    rope_base: 500000.0,
    eps: 1e-5,
    tied: true,
    rope_freqs: true,
    qk_gain: 1.0,
    sliding_window: None,
    softcap: None,
    n_rot: None,
};

/// (dispatches, passes, submits, host waits) per decoded token, and the greedy tokens.
fn decode_counts(path: &std::path::Path, fast: bool, tuning: Tuning) -> ([u64; 4], Vec<u32>) {
    let gpu = WgpuBackend::with_options(WgpuOptions {
        fast_kernels: fast,
        tuning,
        ..WgpuOptions::default()
    })
    .expect("a wgpu adapter is required (apt-get install mesa-vulkan-drivers libvulkan1)");
    let counters = gpu.counters();
    let f = Arc::new(GgufFile::open(path).unwrap());
    let opts = LoadOptions {
        ctx: 32,
        batch: 8,
        logit_rows: 1,
        n_seq: 1,
        batch_invariant: true,
        ..LoadOptions::default()
    };
    let mut m = Model::load(f, Box::new(gpu), &opts).unwrap();
    let vocab = m.config.n_vocab;
    // prefill, then decode as `tokenfab bench` does: forward, argmax on the device
    let cache = m.new_cache(0).unwrap();
    let l = m.forward(&cache, &[1, 2, 3, 4], 0, Logits::Last).unwrap();
    let mut tok = m.ops().argmax(l, 0, vocab).unwrap();
    let steps = 4;
    let mut tokens = vec![tok];
    let before = counters.snapshot();
    for i in 0..steps {
        let l = m.forward(&cache, &[tok], 4 + i, Logits::Last).unwrap();
        tok = m.ops().argmax(l, 0, vocab).unwrap();
        tokens.push(tok);
    }
    let after = counters.snapshot();
    let per: Vec<u64> = (0..4)
        .map(|i| {
            let d = after[i] - before[i];
            assert_eq!(d % steps as u64, 0, "counter {i}: {d} over {steps} steps");
            d / steps as u64
        })
        .collect();
    ([per[0], per[1], per[2], per[3]], tokens)
}

#[test]
fn decode_should_cost_six_dispatches_per_layer_one_submit_one_wait() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("tiny-llama.gguf");
    synth::write(&TINY, GgmlType::Q4_K, &path, 3, &mut |_, _| {}).unwrap();
    let layers = TINY.n_layer as u64;
    let (fast, fast_tokens) = decode_counts(&path, true, Tuning::Gpu);
    // per layer: rms_norm+q/k/v, rope+store_kv, attention, wo+residual,
    // rms_norm+gate/up+GLU, down+residual; per token: embed, then the head's copy, rms_norm,
    // output matvec and argmax's two passes
    assert_eq!(fast[0], 6 * layers + 6, "dispatches per token");
    assert_eq!(fast[1], 1, "compute passes per token");
    assert_eq!(fast[2], 1, "submits per token");
    assert_eq!(fast[3], 1, "host waits per token (the token's 4 bytes)");
    // the kernels before the fused ones: 17 dispatches per layer
    let (legacy, legacy_tokens) = decode_counts(&path, false, Tuning::Gpu);
    assert_eq!(legacy[0], 17 * layers + 6, "legacy dispatches per token");
    assert_eq!(legacy[2..], [1, 1]);
    assert_eq!(
        fast_tokens, legacy_tokens,
        "greedy tokens differ between the kernels"
    );
    // software adapters keep the RMS norms apart (see Tuning): 8 per layer
    let (soft, soft_tokens) = decode_counts(&path, true, Tuning::Software);
    assert_eq!(
        soft[0],
        8 * layers + 6,
        "software-tuned dispatches per token"
    );
    assert_eq!(soft[2..], [1, 1]);
    assert_eq!(
        fast_tokens, soft_tokens,
        "greedy tokens differ between the tunings"
    );
}

/// The tiny Llama on the GPU kernel choices, Gemma's tokenizer (the tiny model's ids are
/// below 1000, so it can detokenize them), and the backend's work counters.
fn tiny_on_gpu(opts: LoadOptions) -> (Model, Tokenizer, Arc<Counters>) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("tiny-llama.gguf");
    synth::write(&TINY, GgmlType::Q4_K, &path, 5, &mut |_, _| {}).unwrap();
    let gemma = GgufFile::open(common::model(common::GEMMA)).unwrap();
    let tk = Tokenizer::from_metadata(gemma.metadata()).unwrap();
    let gpu = WgpuBackend::with_options(WgpuOptions {
        tuning: Tuning::Gpu,
        ..WgpuOptions::default()
    })
    .unwrap();
    let counters = gpu.counters();
    let f = Arc::new(GgufFile::open(&path).unwrap());
    (Model::load(f, Box::new(gpu), &opts).unwrap(), tk, counters)
}

/// `tokenfab run`'s loop (`generate`) decodes a token with one submit and one host wait too
/// (it used to synchronize after each forward pass, then read the token: two of each).
#[test]
fn generate_should_submit_once_per_token() {
    let (mut m, tk, counters) = tiny_on_gpu(LoadOptions {
        ctx: 32,
        batch: 8,
        logit_rows: 1,
        n_seq: 1,
        batch_invariant: true,
        ..LoadOptions::default()
    });
    let gen = |m: &mut Model, max_tokens: usize| {
        let before = counters.snapshot();
        let opts = GenerateOptions {
            max_tokens,
            ignore_eog: true,
            ..GenerateOptions::default()
        };
        let s = generate(
            m,
            &tk,
            &[1, 2, 3],
            &mut Sampler::new(SamplingParams::greedy()),
            &opts,
            &mut |_| true,
        )
        .unwrap();
        assert_eq!(s.tokens.len(), max_tokens);
        let after = counters.snapshot();
        [after[2] - before[2], after[3] - before[3]]
    };
    // the difference between 6 and 2 generated tokens is 4 decode steps
    let (long, short) = (gen(&mut m, 6), gen(&mut m, 2));
    assert_eq!(long[0] - short[0], 4, "submits per decoded token");
    assert_eq!(long[1] - short[1], 4, "host waits per decoded token");
}

/// Continuous batching keeps it: a decode step of four greedy sequences at different
/// positions is one submit and one host wait (their argmaxes are read back together), and
/// the RoPE/KV/attention dispatches are per sequence while the products are shared.
#[test]
fn a_batched_decode_step_should_submit_once() {
    let (mut m, tk, counters) = tiny_on_gpu(LoadOptions {
        ctx: 64,
        batch: 32,
        logit_rows: 4,
        n_seq: 4,
        batch_invariant: true,
        ..LoadOptions::default()
    });
    let mut seqs: Vec<Sequence> = (0..4)
        .map(|i| {
            let prompt: Vec<u32> = (1..=2 + 3 * i as u32).collect();
            let cache = m.new_cache(0).unwrap();
            let opts = GenerateOptions {
                max_tokens: 8,
                ignore_eog: true,
                ..GenerateOptions::default()
            };
            Sequence::new(cache, &prompt, Sampler::greedy(), opts).unwrap()
        })
        .collect();
    let free = |_: &TokenEvent| Cost::default();
    let limits = StepLimits { max_tokens: 32 };
    let mut refs: Vec<&mut Sequence> = seqs.iter_mut().collect();
    // the prompts (and the first tokens), then two decode steps
    step(&mut m, &tk, &mut refs, limits, &free, &mut |_, _| true).unwrap();
    let mut per_step = Vec::new();
    for _ in 0..2 {
        let before = counters.snapshot();
        let r = step(&mut m, &tk, &mut refs, limits, &free, &mut |_, _| true).unwrap();
        assert_eq!((r.tokens, r.sequences), (4, 4));
        let after = counters.snapshot();
        per_step.push([
            after[0] - before[0],
            after[2] - before[2],
            after[3] - before[3],
        ]);
    }
    for [dispatches, submits, waits] in per_step {
        assert_eq!((submits, waits), (1, 1), "submits and host waits per step");
        // per layer: the products of all four tokens together — unfused for more than one
        // token (norm, Q, K, V, wo, add, norm, gate, up, GLU, down, add: 12) — and RoPE+KV +
        // attention per sequence (2 x 4); then embed, the head (one copy of the four rows,
        // norm, product) and two argmax passes per sequence
        let per_layer = 12 + 2 * 4;
        assert_eq!(dispatches, TINY.n_layer as u64 * per_layer + 1 + 3 + 2 * 4);
    }
}

//! Continuous batching gives each sequence what it would get alone: greedy continuations of
//! eight prompts decoded together — joining at different steps, so prompt chunks share steps
//! with other sequences' decode tokens at different positions — equal the continuations each
//! prompt gets alone, on the real default model (cpu) and on wgpu (lavapipe in CI).
//!
//! Also: cost is split, not duplicated — the weight bytes of a batched step are shared by its
//! sequences, so eight sequences together account for about one step's weights per step.
//!
//! And a sliding-window ring (Gemma's windowed layers keep window + batch positions) gives a
//! sequence exactly what a whole-context cache gives, and refuses to go back further than it
//! still holds.

use std::sync::Arc;
use tokenfab::backend::candle::CandleBackend;
use tokenfab::backend::cpu::CpuBackend;
use tokenfab::backend::wgpu::WgpuBackend;
use tokenfab::backend::Backend;
use tokenfab::generate::{generate, step, Cost, GenerateOptions, Sequence, StepLimits, TokenEvent};
use tokenfab::gguf::{GgmlType, GgufFile};
use tokenfab::model::{Config, KvCache, LoadOptions, Logits, Model, ModelError};
use tokenfab::sampling::Sampler;
use tokenfab::synth;
use tokenfab::tokenizer::Tokenizer;

mod common;

const PROMPTS: [&str; 8] = [
    "Once upon a time",
    "The capital of France is",
    "def fibonacci(n):",
    "1, 2, 3, 4,",
    "The quick brown fox jumps over the lazy dog. The quick brown fox",
    "Water boils at",
    "In 1492, Columbus",
    "A haiku about the sea:",
];

fn load(backend: Box<dyn Backend>) -> (Tokenizer, Model) {
    let f = Arc::new(GgufFile::open(common::model(common::GEMMA)).unwrap());
    let tk = Tokenizer::from_metadata(f.metadata()).unwrap();
    let opts = LoadOptions {
        ctx: 256,
        batch: 64,
        logit_rows: 8,
        n_seq: 8,
        batch_invariant: true,
        ..LoadOptions::default()
    };
    (tk, Model::load(f, backend, &opts).unwrap())
}

fn opts(n: usize) -> GenerateOptions {
    GenerateOptions {
        max_tokens: n,
        ignore_eog: true,
        ..Default::default()
    }
}

/// Each prompt alone, then all eight in one batch (sequence i joins at step i; at most 16
/// tokens per step, so prompts are prefilled in chunks beside the others' decode steps).
fn check(name: &str, backend: Box<dyn Backend>, n: usize) {
    let (tk, mut m) = load(backend);
    let prompts: Vec<Vec<u32>> = PROMPTS
        .iter()
        .map(|p| tk.encode(p, true).unwrap())
        .collect();
    let alone: Vec<Vec<u32>> = prompts
        .iter()
        .map(|p| {
            let mut s = Sampler::greedy();
            generate(&mut m, &tk, p, &mut s, &opts(n), &mut |_| true)
                .unwrap()
                .tokens
        })
        .collect();

    let mut seqs: Vec<Sequence> = Vec::new();
    let mut texts = vec![String::new(); prompts.len()];
    let limits = StepLimits { max_tokens: 16 };
    let (mut steps, mut shared_steps) = (0, 0);
    let before = m.ops().ledger().total();
    loop {
        if seqs.len() < prompts.len() {
            let cache = m.new_cache(0).unwrap();
            let p = &prompts[seqs.len()];
            seqs.push(Sequence::new(cache, p, Sampler::greedy(), opts(n)).unwrap());
        }
        let mut refs: Vec<&mut Sequence> = seqs.iter_mut().collect();
        let free = |_: &TokenEvent| Cost::default();
        let r = step(&mut m, &tk, &mut refs, limits, &free, &mut |i, ev| {
            texts[i].push_str(ev.text);
            true
        })
        .unwrap();
        steps += 1;
        shared_steps += (r.sequences > 1) as usize;
        assert!(r.tokens <= 16, "{name}: {} tokens in a step", r.tokens);
        if r.tokens == 0 && seqs.len() == prompts.len() {
            break;
        }
    }
    assert!(
        shared_steps > n,
        "{name}: sequences should have shared steps"
    );
    for (i, s) in seqs.iter().enumerate() {
        assert_eq!(
            s.tokens(),
            &alone[i][..],
            "{name}: prompt {i} ({:?}) decoded in a batch differs from alone",
            PROMPTS[i]
        );
        assert_eq!(texts[i], s.text(), "{name}: events carry the text");
    }
    // the weights were read once per step, and their bytes split among the sequences
    let total = m.ops().ledger().total() - before;
    let per_seq: u64 = seqs.iter().map(|s| s.traffic().weight_bytes).sum();
    let diff = (per_seq as f64 - total.weight_bytes as f64).abs() / total.weight_bytes as f64;
    assert!(
        diff < 0.01,
        "{name}: sequences account for {per_seq} weight bytes, the steps read {} ({steps} steps)",
        total.weight_bytes
    );
    for s in seqs {
        m.release_cache(s.into_cache());
    }
}

#[test]
fn greedy_should_be_the_same_alone_and_in_a_batch_of_8_cpu() {
    check("cpu", Box::new(CpuBackend::new(0).unwrap()), 24);
}

#[test]
fn greedy_should_be_the_same_alone_and_in_a_batch_of_8_wgpu() {
    let gpu = WgpuBackend::new(false)
        .expect("a wgpu adapter is required (apt-get install mesa-vulkan-drivers libvulkan1)");
    check("wgpu", Box::new(gpu), 8);
}

/// The ring on every backend that keeps one (wgpu's KV shaders index rows `p % rows` too; the
/// candle backend — `--backend cuda` — writes a wrapped batch as two runs of rows and reads
/// the window back in position order; here on candle's CPU device), on
/// a small synthetic Gemma 3 (6 layers, 5 of them windowed with a window of 8, vocabulary 512;
/// the real model's 512-token window makes this minutes on lavapipe): 64 tokens 4 at a time —
/// the 12-row rings wrap five times — give bitwise the logits of whole-context caches after
/// every batch.
#[test]
fn window_ring_should_give_what_a_whole_context_cache_gives_on_every_backend() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("gemma3-tiny.gguf");
    let mut p = *synth::preset("gemma3-270m").unwrap();
    (p.n_layer, p.n_vocab, p.sliding_window, p.qk_gain) = (6, 512, Some(8), 2.0);
    synth::write(&p, GgmlType::Q8_0, &path, 3, &mut |_, _| {}).unwrap();
    let f = Arc::new(GgufFile::open(&path).unwrap());
    let backend = |name: &str| -> Box<dyn Backend> {
        match name {
            "cpu" => Box::new(CpuBackend::new(2).unwrap()),
            "candle" => Box::new(CandleBackend::new(candle_core::Device::Cpu)),
            _ => Box::new(WgpuBackend::new(false).expect("a wgpu adapter is required")),
        }
    };
    let tokens: Vec<u32> = (0..64).map(|i| (i * 37 + 11) % 512).collect();
    for name in ["cpu", "candle", "wgpu"] {
        let load = |ring: bool| {
            let opts = LoadOptions {
                ctx: 64,
                batch: 4,
                window_ring: ring,
                ..LoadOptions::default()
            };
            Model::load(f.clone(), backend(name), &opts).unwrap()
        };
        let (mut ring, mut full) = (load(true), load(false));
        let (rc, fc) = (ring.new_cache(0).unwrap(), full.new_cache(0).unwrap());
        assert!(rc.has_ring() && !fc.has_ring(), "{name}");
        // 1 global layer of 64 rows, 5 windowed of 8 + 4
        assert_eq!(
            rc.elements() * 6 * 64,
            fc.elements() * (64 + 5 * 12),
            "{name}"
        );
        // what the load's memory check counts (on a GPU: against its free memory)
        let c = Config::from_gguf(&f).unwrap();
        assert_eq!(KvCache::elements_for(&c, 64, 4, true), rc.elements());
        assert_eq!(KvCache::elements_for(&c, 64, 4, false), fc.elements());
        let (mut a, mut b) = (vec![0f32; 512], vec![0f32; 512]);
        for pos0 in (0..64).step_by(4) {
            for (m, c, out) in [(&mut ring, &rc, &mut a), (&mut full, &fc, &mut b)] {
                let buf = m
                    .forward(c, &tokens[pos0..pos0 + 4], pos0, Logits::Last)
                    .unwrap();
                m.ops().read(buf, 0, out).unwrap();
            }
            assert!(a == b, "{name}: logits differ after the batch at {pos0}");
        }
    }
}

/// Gemma 3 on the CPU with and without the ring (window 512, batch 32: 544 rows for 15 of 18
/// layers): eval.txt's first 760 tokens run 32 at a time — the ring wraps after position 544 —
/// give bitwise the same logits after every batch; then a rewind within the ring's slack
/// (back to 740) gives the same logits again, and one further back (to 100) is refused by the
/// model and answered with "start again" by the cache and by `Sequence::restart`.
#[test]
fn window_ring_should_give_what_a_whole_context_cache_gives() {
    let f = Arc::new(GgufFile::open(common::model(common::GEMMA)).unwrap());
    let tk = Tokenizer::from_metadata(f.metadata()).unwrap();
    let load = |ring: bool| {
        let opts = LoadOptions {
            ctx: 1024,
            batch: 32,
            window_ring: ring,
            ..LoadOptions::default()
        };
        Model::load(f.clone(), Box::new(CpuBackend::new(2).unwrap()), &opts).unwrap()
    };
    let (mut ring, mut full) = (load(true), load(false));
    let (rc, fc) = (ring.new_cache(0).unwrap(), full.new_cache(0).unwrap());
    assert!(rc.has_ring() && !fc.has_ring());
    // 3 global layers of 1024 rows, 15 windowed of 544
    assert_eq!(
        rc.elements() * 18 * 1024,
        fc.elements() * (3 * 1024 + 15 * 544)
    );

    let tokens = tk.encode(&common::eval_text(), true).unwrap();
    let tokens = &tokens[..760];
    let vocab = ring.config.n_vocab;
    let (mut a, mut b) = (vec![0f32; vocab], vec![0f32; vocab]);
    let logits_at = |m: &mut Model, cache: &KvCache, pos0: usize, out: &mut [f32]| {
        let n = 32.min(tokens.len() - pos0);
        let buf = m
            .forward(cache, &tokens[pos0..pos0 + n], pos0, Logits::Last)
            .unwrap();
        m.ops().read(buf, 0, out).unwrap();
    };
    for pos0 in (0..tokens.len()).step_by(32) {
        logits_at(&mut ring, &rc, pos0, &mut a);
        logits_at(&mut full, &fc, pos0, &mut b);
        assert!(a == b, "logits differ after the batch at {pos0}");
    }
    // positions up to 760 written: going back to 740 keeps the window before it
    assert_eq!(rc.reusable(740), 740);
    logits_at(&mut ring, &rc, 740, &mut a);
    logits_at(&mut full, &fc, 740, &mut b);
    assert!(a == b, "logits differ after a rewind to 740");
    // back to 100: rows of positions 0..100 were written over
    assert_eq!(rc.reusable(100), 0);
    assert_eq!(fc.reusable(100), 100);
    let err = ring.forward(&rc, &tokens[100..110], 100, Logits::Last);
    assert!(
        matches!(err, Err(ModelError::KvOverwritten { pos0: 100, .. })),
        "{:?}",
        err.err()
    );
    // a sequence that went past the ring, asked to continue from its first 100 tokens, starts
    // again — and answers what a fresh sequence does
    let gen = |m: &mut Model, seq: &mut Sequence| {
        let mut refs = vec![seq];
        while refs[0].finished().is_none() {
            let free = |_: &TokenEvent| Cost::default();
            let limits = StepLimits { max_tokens: 32 };
            step(m, &tk, &mut refs, limits, &free, &mut |_, _| true).unwrap();
        }
    };
    let mut seq = Sequence::new(rc, &tokens[..700], Sampler::greedy(), opts(4)).unwrap();
    gen(&mut ring, &mut seq);
    let reused = seq
        .restart(&tokens[..100], Sampler::greedy(), opts(8))
        .unwrap();
    assert_eq!(
        reused, 0,
        "the ring wrote over what a 100-token prefix needs"
    );
    gen(&mut ring, &mut seq);
    let mut fresh = Sequence::new(fc, &tokens[..100], Sampler::greedy(), opts(8)).unwrap();
    gen(&mut full, &mut fresh);
    assert_eq!(seq.tokens(), fresh.tokens());
    // within the window nothing is written over: the prefix is reused
    let reused = seq
        .restart(&tokens[..50], Sampler::greedy(), opts(8))
        .unwrap();
    assert_eq!(
        reused, 49,
        "all but the last prompt token, which runs for its logits"
    );
}

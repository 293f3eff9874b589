//! Continuous batching gives each sequence what it would get alone: greedy continuations of
//! eight prompts decoded together — joining at different steps, so prompt chunks share steps
//! with other sequences' decode tokens at different positions — equal the continuations each
//! prompt gets alone, on the real default model (cpu) and on wgpu (lavapipe in CI).
//!
//! Also: cost is split, not duplicated — the weight bytes of a batched step are shared by its
//! sequences, so eight sequences together account for about one step's weights per step.

use std::sync::Arc;
use tokenfab::backend::cpu::CpuBackend;
use tokenfab::backend::wgpu::WgpuBackend;
use tokenfab::backend::Backend;
use tokenfab::generate::{generate, step, Cost, GenerateOptions, Sequence, StepLimits, TokenEvent};
use tokenfab::gguf::GgufFile;
use tokenfab::model::{LoadOptions, Model};
use tokenfab::sampling::Sampler;
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

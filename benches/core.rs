//! Core speed benchmark on the default model (run with `make bench` or
//! `cargo bench --bench core`): load → first token, prefill of a 512-token prompt (pp512),
//! decode of 128 tokens (tg128), peak RSS — medians over repetitions, next to llama.cpp's
//! reference numbers for this machine kind (tests/data/oracle/README.md).
//!
//! Environment: TOKENFAB_BENCH_THREADS (default 2), TOKENFAB_BENCH_REPS (default 5),
//! TOKENFAB_MODEL (default models/gemma-3-270m-q4_k_m.gguf).

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;
use tokenfab::backend::cpu::CpuBackend;
use tokenfab::gguf::GgufFile;
use tokenfab::model::{LoadOptions, Logits, Model};
use tokenfab::tokenizer::Tokenizer;

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn env(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

fn main() {
    let threads = env("TOKENFAB_BENCH_THREADS", 2);
    let reps = env("TOKENFAB_BENCH_REPS", 5).max(1);
    let path = std::env::var_os("TOKENFAB_MODEL")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("models/gemma-3-270m-q4_k_m.gguf")
        });
    assert!(
        path.exists(),
        "{} missing: run scripts/fetch-models.sh gemma",
        path.display()
    );
    let eval = std::fs::read_to_string(
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/data/oracle/eval.txt"),
    )
    .unwrap();

    // load -> first token: open, tokenizer, model, prompt, prefill, first sample
    let load_to_first_token = || {
        let t0 = Instant::now();
        let file = Arc::new(GgufFile::open(&path).unwrap());
        let (tk, mut model) = std::thread::scope(|s| {
            let f2 = Arc::clone(&file);
            let tk = s.spawn(move || Tokenizer::from_metadata(f2.metadata()).unwrap());
            let model = Model::load(
                Arc::clone(&file),
                Box::new(CpuBackend::new(threads).unwrap()),
                &LoadOptions::default(),
            )
            .unwrap();
            (tk.join().unwrap(), model)
        });
        let load = t0.elapsed().as_secs_f64();
        let ids = tk.encode("Once upon a time", true).unwrap();
        let cache = model.new_cache(0).unwrap();
        let logits = model.forward(&cache, &ids, 0, Logits::Last).unwrap();
        model.release_cache(cache);
        let n_vocab = model.config.n_vocab;
        let _ = model.ops().argmax(logits, 0, n_vocab).unwrap();
        (t0.elapsed().as_secs_f64(), load, tk, model)
    };
    let (first, first_load, tk, mut model) = load_to_first_token();
    let vocab = model.config.n_vocab;

    let prompt: Vec<u32> = tk.encode(&eval, true).unwrap()[..512].to_vec();
    let mut pp = Vec::new();
    let mut tg = Vec::new();
    let cache = model.new_cache(0).unwrap();
    for r in 0..=reps {
        let t = Instant::now();
        let logits = model.forward(&cache, &prompt, 0, Logits::Last).unwrap();
        let _ = model.ops().argmax(logits, 0, vocab).unwrap();
        let pp_t = t.elapsed();
        // decode 128 tokens from an empty context, like llama-bench's tg128
        let mut tok = prompt[0];
        let t = Instant::now();
        for i in 0..128 {
            let l = model.forward(&cache, &[tok], i, Logits::Last).unwrap();
            tok = model.ops().argmax(l, 0, vocab).unwrap();
        }
        let d = t.elapsed();
        if r > 0 {
            // the first round is a warm-up
            pp.push(512.0 / pp_t.as_secs_f64());
            tg.push(128.0 / d.as_secs_f64());
        }
    }
    // one model loaded, prefill and decode done: the peak of a real run
    let rss = tokenfab::telemetry::bench::peak_rss_mb().unwrap_or(f64::NAN);
    drop((tk, model));
    let mut ttft = vec![first];
    let mut load_times = vec![first_load];
    for _ in 1..reps {
        let (t, l, _, _) = load_to_first_token();
        ttft.push(t);
        load_times.push(l);
    }
    println!(
        "tokenfab core benchmark: {} | {} threads | {} repetitions (medians)",
        path.display(),
        threads,
        reps
    );
    println!("| metric | tokenfab | llama.cpp (oracle, this machine kind) | target |");
    println!("|---|---|---|---|");
    println!(
        "| load -> first token | {:.3} s (load {:.3} s) | - | < 0.5 s |",
        median(ttft),
        median(load_times)
    );
    println!(
        "| pp512 | {:.1} tok/s | 626 - 726 tok/s | >= 0.5x |",
        median(pp.clone())
    );
    println!(
        "| tg128 | {:.1} tok/s | 74 - 85 tok/s | >= 1.0x |",
        median(tg.clone())
    );
    println!(
        "| peak RSS (one model, after pp512 + tg128) | {rss:.0} MB | 320 - 340 MB | < 600 MB |"
    );
    println!(
        "all pp512: {:?}",
        pp.iter().map(|x| format!("{x:.1}")).collect::<Vec<_>>()
    );
    println!(
        "all tg128: {:?}",
        tg.iter().map(|x| format!("{x:.1}")).collect::<Vec<_>>()
    );
}

//! Embedding tokenfab with a live cost meter, through the `Engine` facade: every token
//! arrives with its time, the bytes it moved, its FLOPs and — from the engine — its joules
//! and dollars; the recorder turns the run into energy windows and a summary at the end.
//!
//! cargo run --release --example cost_meter -- [MODEL.gguf] ["prompt"]

use tokenfab::backend::BackendSpec;
use tokenfab::engine::{Cost, Engine, EngineOptions};
use tokenfab::generate::{GenerateOptions, Phase};
use tokenfab::sampling::Sampler;
use tokenfab::telemetry::energy::select;

fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let path = args
        .next()
        .unwrap_or_else(|| "models/gemma-3-270m-q4_k_m.gguf".into());
    let prompt = args
        .next()
        .unwrap_or_else(|| "The capital of France is".into());
    let threads = 2;
    let opts = EngineOptions {
        backend: BackendSpec::cpu(threads),
        threads,
        ..EngineOptions::default()
    };
    let mut engine = Engine::load(path.as_ref(), &opts)?;

    // a sensor if the machine has one, else the documented estimate for this CPU
    let (mut recorder, _) = select::recorder(&opts.energy, threads, None)?;
    let ids = engine.encode(&prompt, true)?;
    let gen = GenerateOptions {
        max_tokens: 16,
        ..Default::default()
    };
    let pricer = engine.pricer();
    let mut total = Cost::default();
    recorder.start();
    engine.generate(&ids, &mut Sampler::greedy(), &gen, &mut |ev| {
        recorder.observe(ev);
        let c = pricer.cost(ev);
        total += c;
        if ev.phase == Phase::Decode && !ev.flush {
            println!(
                "token {:>6} {:>12?}  {:7.2} ms  {:6.1} MB  {:6.2} GFLOP  {:.4} J  ${:.2e}",
                ev.token,
                ev.text,
                ev.duration.as_secs_f64() * 1e3,
                ev.traffic.bytes() as f64 / 1e6,
                ev.traffic.flops as f64 / 1e9,
                c.joules,
                c.usd,
            );
        }
        true
    })?;
    println!(
        "prompt and generated tokens: {:.3} J, ${:.2e} ({})",
        total.joules,
        total.usd,
        engine.energy_source()
    );
    let (report, _) = recorder.finish(engine.peak_bandwidth());
    for line in report.summary_lines() {
        println!("{line}");
    }
    Ok(())
}

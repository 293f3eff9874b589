//! Embedding tokenfab with a live cost meter: every token arrives with its time, the bytes it
//! moved and its FLOPs; the recorder turns them into energy and a summary at the end.
//!
//! cargo run --release --example cost_meter -- [MODEL.gguf] ["prompt"]

use std::sync::Arc;
use std::time::Duration;
use tokenfab::backend::cpu::CpuBackend;
use tokenfab::generate::{generate, GenerateOptions, Phase};
use tokenfab::gguf::GgufFile;
use tokenfab::model::{LoadOptions, Model};
use tokenfab::sampling::{Sampler, SamplingParams};
use tokenfab::telemetry::energy::estimate::{DeviceTable, EnergyModel};
use tokenfab::telemetry::energy::{open_meter, SysRoots};
use tokenfab::telemetry::recorder::Recorder;
use tokenfab::tokenizer::Tokenizer;

fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let path = args
        .next()
        .unwrap_or_else(|| "models/gemma-3-270m-q4_k_m.gguf".into());
    let prompt = args
        .next()
        .unwrap_or_else(|| "The capital of France is".into());
    let file = Arc::new(GgufFile::open(&path)?);
    let tokenizer = Tokenizer::from_metadata(file.metadata())?;
    let threads = 2;
    let mut model = Model::load(
        file,
        Box::new(CpuBackend::new(threads)?),
        &LoadOptions::default(),
    )?;

    // a sensor if the machine has one, else the documented estimate for this CPU
    let (meter, _) = open_meter(None, &SysRoots::default());
    let cpu = tokenfab::telemetry::probe::cpu_info();
    let row = DeviceTable::builtin()
        .find("cpu", &cpu.model)
        .cloned()
        .expect("a CPU row");
    let mut recorder = Recorder::new(
        meter,
        EnergyModel::new(row, threads),
        Duration::from_secs(1),
    );

    let ids = tokenizer.encode(&prompt, true)?;
    let mut sampler = Sampler::new(SamplingParams::greedy());
    let opts = GenerateOptions {
        max_tokens: 16,
        ..Default::default()
    };
    recorder.start();
    generate(
        &mut model,
        &tokenizer,
        &ids,
        &mut sampler,
        &opts,
        &mut |ev| {
            recorder.observe(ev);
            if ev.phase == Phase::Decode && !ev.flush {
                println!(
                    "token {:>6} {:>12?}  {:7.2} ms  {:6.1} MB  {:6.2} GFLOP  {:?}",
                    ev.token,
                    ev.text,
                    ev.duration.as_secs_f64() * 1e3,
                    ev.traffic.bytes() as f64 / 1e6,
                    ev.traffic.flops as f64 / 1e9,
                    ev.at,
                );
            }
            true
        },
    )?;
    let (report, _) = recorder.finish(tokenfab::telemetry::probe::cpu_peak(threads, false));
    for line in report.summary_lines() {
        println!("{line}");
    }
    Ok(())
}

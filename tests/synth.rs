//! `tokenfab synth`: synthetic models of real shapes are valid GGUF for another reader
//! (candle-core's), load and run in tokenfab on the CPU, and the Llama shape (the one
//! architecture no real test model has) gives the same logits on wgpu as on the CPU.

use std::sync::Arc;
use tokenfab::backend::cpu::CpuBackend;
use tokenfab::backend::wgpu::WgpuBackend;
use tokenfab::backend::Backend;
use tokenfab::gguf::{GgmlType, GgufFile};
use tokenfab::model::{LoadOptions, Model};
use tokenfab::synth;

fn write(dir: &std::path::Path, preset: &str) -> std::path::PathBuf {
    let path = dir.join(format!("{preset}.gguf"));
    let p = synth::preset(preset).unwrap();
    let s = synth::write(p, GgmlType::Q4_K, &path, 7, &mut |_, _| {}).unwrap();
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
            batch: 16,
            logit_rows: 4,
        },
    )
    .unwrap()
}

/// Logits of the last `rows` of `tokens`.
fn logits(model: &mut Model, tokens: &[u32], rows: usize) -> Vec<f32> {
    let mut out = Vec::new();
    let n = tokens.len();
    model
        .score(tokens, 0, n - rows..n, &mut |_, k, l| {
            out.extend_from_slice(&l[..k * (l.len() / k.max(1))])
        })
        .unwrap();
    out
}

#[test]
fn synthetic_presets_should_be_valid_gguf_and_run() {
    let dir = tempfile::tempdir().unwrap();
    for preset in ["gemma3-270m", "qwen2.5-0.5b", "llama-3.2-1b"] {
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

#[test]
fn synthetic_llama_should_match_cpu_on_wgpu() {
    let dir = tempfile::tempdir().unwrap();
    let path = write(dir.path(), "llama-3.2-1b");
    let tokens = [1u32, 500, 7000, 42, 9, 100_000, 3, 77];
    let mut cpu = load(&path, Box::new(CpuBackend::new(0).unwrap()));
    let gpu = WgpuBackend::new(false)
        .expect("a wgpu adapter is required (apt-get install mesa-vulkan-drivers libvulkan1)");
    let mut gpu = load(&path, Box::new(gpu));
    let (c, g) = (logits(&mut cpu, &tokens, 4), logits(&mut gpu, &tokens, 4));
    let num: f64 = c
        .iter()
        .zip(&g)
        .map(|(a, b)| ((a - b) as f64).powi(2))
        .sum();
    let den: f64 = c.iter().map(|a| (*a as f64).powi(2)).sum();
    // the CPU quantizes activations to 8 bits, the GPU does not
    assert!(num / den < 1e-3, "nmse {}", num / den);
}

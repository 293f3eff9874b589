//! The memory-traffic ledger against a closed-form count, on both real models: decoding one
//! token at position `p` reads every weight once (one embedding row; the tied output matrix
//! whole), writes one K/V row per layer, and reads the K/V rows of every position attention
//! sees — `p + 1`, or the sliding window on Gemma's local layers.

mod common;
use std::sync::Arc;
use tokenfab::backend::cpu::CpuBackend;
use tokenfab::gguf::GgufFile;
use tokenfab::model::{weight_bytes_per_token, LoadOptions, Logits, Model};
use tokenfab::telemetry::ledger::OpName;

fn check(key: &str, p: usize) {
    let f = Arc::new(GgufFile::open(common::model_for(key)).unwrap());
    let mut m = Model::load(
        Arc::clone(&f),
        Box::new(CpuBackend::new(0).unwrap()),
        &LoadOptions {
            ctx: 1024,
            ..Default::default()
        },
    )
    .unwrap();
    let c = m.config.clone();
    let prompt: Vec<u32> = (0..p as u32).map(|i| 100 + i % 1000).collect();
    let cache = m.new_cache(0).unwrap();
    m.forward(&cache, &prompt, 0, Logits::Last).unwrap();
    let before = m.ops().ledger().clone();
    m.forward(&cache, &[42], p, Logits::Last).unwrap();
    let after = m.ops().ledger().clone();
    let t = after.total() - before.total();

    assert_eq!(
        t.weight_bytes,
        weight_bytes_per_token(&f),
        "{key}: weight bytes"
    );
    let kv_row_bytes = (c.kv_dim() * 2) as u64; // f16
    assert_eq!(
        t.kv_write_bytes,
        c.n_layer as u64 * 2 * kv_row_bytes,
        "{key}: KV written"
    );
    let keys = |il: usize| -> u64 {
        match c.window(il) {
            Some(w) => (p + 1).min(w) as u64,
            None => (p + 1) as u64,
        }
    };
    let kv_read: u64 = (0..c.n_layer).map(|il| 2 * keys(il) * kv_row_bytes).sum();
    assert_eq!(t.kv_read_bytes, kv_read, "{key}: KV read at position {p}");

    // FLOPs, by op: 2 per weight of every matrix; attention per score
    let op = |name: OpName| {
        let a = after
            .by_op()
            .find(|(o, _, _)| *o == name)
            .map(|x| x.1)
            .unwrap_or_default();
        let b = before
            .by_op()
            .find(|(o, _, _)| *o == name)
            .map(|x| x.1)
            .unwrap_or_default();
        a - b
    };
    let matrices: u64 = f
        .tensors()
        .iter()
        .filter(|t| t.dims.len() == 2 && t.name != "token_embd.weight")
        .map(|t| t.n_elements())
        .sum::<u64>()
        + if f.tensor_info("output.weight").is_none() {
            f.require_tensor("token_embd.weight").unwrap().n_elements()
        } else {
            0
        };
    assert_eq!(
        op(OpName::MatMul).flops,
        2 * matrices,
        "{key}: matmul FLOPs"
    );
    let scores: u64 = (0..c.n_layer).map(|il| keys(il) * c.n_head as u64).sum();
    assert_eq!(
        op(OpName::Attention).flops,
        scores * (4 * c.head_dim as u64 + 5),
        "{key}: attention FLOPs"
    );
    // bytes and FLOPs are kept apart; activations are small next to weights at batch 1
    assert!(
        t.act_read_bytes > 0 && t.act_read_bytes < t.weight_bytes / 10,
        "{key}: {t:?}"
    );
    eprintln!(
        "{key} @ {p}: weights {:.1} MB, KV read {:.2} MB, KV written {} B, activations {:.2} MB, {:.2} GFLOP",
        t.weight_bytes as f64 / 1e6,
        t.kv_read_bytes as f64 / 1e6,
        t.kv_write_bytes,
        (t.act_read_bytes + t.act_write_bytes) as f64 / 1e6,
        t.flops as f64 / 1e9
    );
}

#[test]
fn gemma_ledger_should_match_closed_form_beyond_the_window() {
    check("gemma", 530);
}

#[test]
fn qwen_ledger_should_match_closed_form() {
    check("qwen", 37);
}

#[test]
fn every_op_is_recorded() {
    // a forward pass and a readout touch every op kind but write; each must appear in the
    // ledger with its calls (a dispatch path that forgets to record shows up here)
    let f = Arc::new(GgufFile::open(common::model_for("qwen")).unwrap());
    let mut m = Model::load(
        f,
        Box::new(CpuBackend::new(0).unwrap()),
        &LoadOptions {
            ctx: 64,
            ..Default::default()
        },
    )
    .unwrap();
    let cache = m.new_cache(0).unwrap();
    let b = m.forward(&cache, &[1, 2, 3], 0, Logits::Last).unwrap();
    let v = m.config.n_vocab;
    m.ops().argmax(b, 0, v).unwrap();
    let mut host = vec![0f32; v];
    m.ops().read(b, 0, &mut host).unwrap();
    m.ops().write(b, 0, &host[..4]).unwrap();
    let seen: Vec<OpName> = m.ops().ledger().by_op().map(|(o, _, _)| o).collect();
    for op in OpName::ALL {
        // Qwen does not scale its embeddings nor soft-cap its logits (Gemma 2 does)
        if op != OpName::Scale && op != OpName::Softcap {
            assert!(seen.contains(&op), "{op:?} never recorded: {seen:?}");
        }
    }
}

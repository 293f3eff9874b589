//! Helpers of the backend op tests: random inputs, an error metric, GGUF fixtures of real
//! quantized blocks, buffers with sentinels, and every backend to run the ops on.

use candle_core::quantized::QTensor;
use candle_core::{Device, Tensor};
use rand::{Rng, SeedableRng};
use std::sync::Arc;
use tokenfab::backend::candle::CandleBackend;
use tokenfab::backend::cpu::CpuBackend;
use tokenfab::backend::reference::ReferenceBackend;
use tokenfab::backend::wgpu::{Tuning, WgpuBackend, WgpuOptions};
use tokenfab::backend::{AttnParams, KvBuf, Ops, RopeKv, Weight};
use tokenfab::gguf::{GgmlType, GgufFile, GgufWriter};
use tokenfab::quant::{dequantize, Isa};

pub fn rand_vec(n: usize, seed: u64, scale: f32) -> Vec<f32> {
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    (0..n)
        .map(|_| rng.random_range(-1.0..1.0) * scale)
        .collect()
}

pub fn nmse(got: &[f32], want: &[f64]) -> f64 {
    assert_eq!(got.len(), want.len());
    let num: f64 = got
        .iter()
        .zip(want)
        .map(|(g, w)| (*g as f64 - w).powi(2))
        .sum();
    let den: f64 = want.iter().map(|w| w * w).sum();
    num / den.max(1e-30)
}

/// A fixture GGUF with one weight per entry; returns the file and each weight's dequantized
/// values (the reference sees exactly what the backend reads).
pub fn fixture(specs: &[(&str, GgmlType, usize, usize)]) -> (Arc<GgufFile>, Vec<Vec<f32>>) {
    let mut w = GgufWriter::new();
    let mut deq = Vec::new();
    for (i, &(name, t, rows, cols)) in specs.iter().enumerate() {
        let data = rand_vec(rows * cols, 1000 + i as u64, 1.0);
        let x = Tensor::from_vec(data, (rows, cols), &Device::Cpu).unwrap();
        let q =
            QTensor::quantize(&x, tokenfab::quantize::convert::candle_type(t).unwrap()).unwrap();
        let bytes = q.data().unwrap().into_owned();
        let mut d = vec![0f32; rows * cols];
        assert!(dequantize(t, &bytes, &mut d));
        let dims: Vec<u64> = if rows == 1 {
            vec![cols as u64]
        } else {
            vec![cols as u64, rows as u64]
        };
        w.add_tensor(name, t, &dims, bytes).unwrap();
        deq.push(d);
    }
    let f = GgufFile::from_bytes("<ops fixture>", w.to_bytes().unwrap()).unwrap();
    (Arc::new(f), deq)
}

pub fn upload(ops: &mut Ops, f: &Arc<GgufFile>, name: &str) -> Weight {
    let info = f.require_tensor(name).unwrap().clone();
    ops.backend_mut().upload(f, &info).unwrap()
}

/// A new buffer holding `data` (written, then copied, so `copy` is exercised too).
pub fn put(ops: &mut Ops, data: &[f32]) -> tokenfab::backend::Buf {
    let b = ops.alloc(data.len()).unwrap();
    let src = ops.alloc(data.len()).unwrap();
    write(ops, src, data);
    ops.copy(src, 0, b, 0, data.len()).unwrap();
    b
}

pub fn write(ops: &mut Ops, b: tokenfab::backend::Buf, data: &[f32]) {
    ops.write(b, 0, data).unwrap();
}

pub const GUARD: [f32; 3] = [12345.0, -6789.0, 4242.0];

/// An output buffer of `n` elements followed by sentinel words.
pub fn guarded(ops: &mut Ops, n: usize) -> tokenfab::backend::Buf {
    let b = ops.alloc(n + GUARD.len()).unwrap();
    ops.write(b, n, &GUARD).unwrap();
    b
}

/// Panics if an op wrote past the first `n` elements of a [`guarded`] buffer.
pub fn check_guard(ops: &mut Ops, b: tokenfab::backend::Buf, n: usize, what: &str) {
    let mut tail = [0f32; 3];
    ops.read(b, n, &mut tail).unwrap();
    assert_eq!(tail, GUARD, "{what}: wrote past its output");
}

pub fn read(ops: &mut Ops, b: tokenfab::backend::Buf, n: usize) -> Vec<f32> {
    let mut v = vec![0f32; n];
    ops.read(b, 0, &mut v).unwrap();
    v
}

/// Whether a CPU backend of [`backends`] runs batches through the tiled GEMM (AVX2 and up,
/// NEON with the dot-product extension).
pub fn tiled(name: &str) -> bool {
    name.starts_with("cpu avx") || name == "cpu neon+dotprod"
}

pub fn backends() -> Vec<(&'static str, Ops)> {
    let mut v = vec![(
        "cpu scalar",
        Ops::new(Box::new(CpuBackend::with_isa(2, Isa::Scalar).unwrap())),
    )];
    // every SIMD level this CPU has (row kernels and, for batches, the tiled GEMM of each)
    for (name, isa) in [
        ("cpu avx2", Isa::Avx2),
        ("cpu avx2+vnni", Isa::Avx2Vnni),
        ("cpu avx512", Isa::Avx512),
        ("cpu neon", Isa::Neon),
        ("cpu neon+dotprod", Isa::NeonDot),
    ] {
        if isa.runs_here() {
            v.push((
                name,
                Ops::new(Box::new(CpuBackend::with_isa(2, isa).unwrap())),
            ));
        }
    }
    // the candle backend (what `--backend cuda` runs) on candle's CPU device
    v.push((
        "candle cpu",
        Ops::new(Box::new(CandleBackend::new(candle_core::Device::Cpu))),
    ));
    // the exact-arithmetic reference the whole-model checks measure the others against
    v.push((
        "reference f64",
        Ops::new(Box::new(ReferenceBackend::new(2).unwrap())),
    ));
    // a `--features cuda` build runs every op on the GPU too (and fails without one)
    #[cfg(feature = "cuda")]
    v.push((
        "cuda",
        Ops::new(Box::new(CandleBackend::cuda().expect("an NVIDIA GPU"))),
    ));
    // only for checking CUDA on a machine whose Vulkan is broken: a build without CUDA
    // ignores it (it would leave nothing but the CPU backends tested)
    if cfg!(feature = "cuda") && std::env::var_os("TOKENFAB_TEST_SKIP_WGPU").is_some() {
        eprintln!("TOKENFAB_TEST_SKIP_WGPU: wgpu not tested");
        return v;
    }
    // the wgpu backend on whatever adapter there is (lavapipe in CI: these tests fail, not
    // skip, without one), with its fallbacks, and with weights split into small parts
    let gpu = |opts: WgpuOptions| {
        WgpuBackend::with_options(opts)
            .expect("a wgpu adapter is required (apt-get install mesa-vulkan-drivers libvulkan1)")
    };
    // the GPU kernel choices on any adapter (on lavapipe, `Tuning::Auto` takes the software
    // ones, which the split backend runs)
    let default = gpu(WgpuOptions {
        tuning: Tuning::Gpu,
        ..WgpuOptions::default()
    });
    let fallback = gpu(WgpuOptions {
        subgroups: false,
        f16_kv: false,
        tuning: Tuning::Gpu,
        ..WgpuOptions::default()
    });
    // the two cases must test different shaders: subgroup reductions and an f16 KV cache on
    // the adapter (lavapipe has both), workgroup memory and f32 in the fallback
    let (d, f) = (default.caps(), fallback.caps());
    assert!(
        d.subgroups && d.f16,
        "the adapter {} lacks subgroups or f16: the default shaders would not be tested",
        default.adapter().name
    );
    assert!(!f.subgroups && !f.f16);
    v.push(("wgpu", Ops::new(Box::new(default))));
    v.push(("wgpu shared-memory f32-kv", Ops::new(Box::new(fallback))));
    let mut split = gpu(WgpuOptions::default());
    split.set_max_part_bytes(4096);
    v.push(("wgpu split", Ops::new(Box::new(split))));
    v
}

/// RoPE at `base`, linearly scaled by `freq_scale`, as the models build it.
pub fn rope_spec(head_dim: usize, base: f32, freq_scale: f32) -> tokenfab::model::rope::RopeSpec {
    let mut s = tokenfab::model::rope::RopeSpec::new(head_dim, base);
    s.freq_scale = freq_scale;
    s
}

/// Attention of `n` query rows from `row0` at positions `pos0..` over a whole-context cache,
/// `(n_head, n_head_kv, head_dim)`, scores scaled by `scale`; no window, no soft-cap (set
/// those with `AttnParams { window, ..attn(..) }`).
pub fn attn(
    row0: usize,
    n: usize,
    (n_head, n_head_kv, head_dim): (usize, usize, usize),
    pos0: usize,
    scale: f32,
) -> AttnParams {
    AttnParams {
        row0,
        n_tokens: n,
        pos0,
        n_head,
        n_head_kv,
        head_dim,
        window: None,
        scale,
        softcap: None,
    }
}

/// The fused RoPE + KV write of `n` tokens at rows `row0..` of the batch buffers, positions
/// `pos0..`, with `(n_head, n_head_kv)` heads, into the caches `(k, v)`.
pub fn rope_kv(
    row0: usize,
    n: usize,
    (n_head, n_head_kv): (usize, usize),
    pos0: usize,
    (k_cache, v_cache): (KvBuf, KvBuf),
) -> RopeKv {
    RopeKv {
        row0,
        n,
        n_head,
        n_head_kv,
        pos0,
        k_cache,
        v_cache,
    }
}

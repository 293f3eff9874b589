//! `tokenfab quantize`: rewrite a GGUF with another quantization mix. The type of each tensor is
//! planned like llama.cpp's ([`plan`]), rows are dequantized and quantized again ([`convert`]),
//! and the new file is streamed to disk tensor by tensor, written to a temporary file and renamed
//! into place, with all metadata kept (`general.file_type` updated).

pub mod convert;
pub mod mixes;
pub mod plan;

pub use mixes::Mix;
pub use plan::PlanOptions;

use crate::gguf::{GgmlType, GgufErrorKind, GgufFile, GgufWriter, Value};
use crate::quant::dequantize;
use rayon::prelude::*;
use std::collections::BTreeMap;
use std::path::Path;

#[derive(Debug, thiserror::Error)]
pub enum QuantizeError {
    #[error("{0}")]
    Input(String),
    #[error(transparent)]
    Gguf(#[from] crate::gguf::GgufError),
    #[error("{file}: {msg}")]
    Write { file: String, msg: String },
}

/// What a quantization did.
#[derive(Clone, Debug, serde::Serialize)]
pub struct QuantizeSummary {
    pub tensors: usize,
    pub requantized: usize,
    pub bytes_in: u64,
    pub bytes_out: u64,
    /// Parameters in the output over its tensor bytes.
    pub bits_per_weight: f64,
    pub types: BTreeMap<String, usize>,
    /// The source already had quantized tensors (quality is then bounded by the source).
    pub source_quantized: bool,
}

/// Rows per work item when converting a tensor.
const ROWS_PER_CHUNK: usize = 256;

/// Quantizes `src` into `out` with `mix`; `progress(done_bytes, total_bytes)` as tensors finish.
pub fn quantize_file(
    src: &GgufFile,
    out: &Path,
    mix: Mix,
    opts: &PlanOptions,
    progress: &mut dyn FnMut(u64, u64),
) -> Result<QuantizeSummary, QuantizeError> {
    let md = src.metadata();
    let arch = md
        .opt_str("general.architecture")
        .ok()
        .flatten()
        .unwrap_or("");
    let get = |k: &str| md.opt_u64(&format!("{arch}.{k}")).ok().flatten();
    let n_head = get("attention.head_count").unwrap_or(1) as usize;
    let n_head_kv = get("attention.head_count_kv").unwrap_or(n_head as u64) as usize;
    let tensors = src.tensors();
    let types = plan::plan(tensors, mix, opts, n_head, n_head_kv);

    for (t, &ty) in tensors.iter().zip(&types) {
        if ty != t.dtype && !crate::quant::CPU_TYPES.contains(&t.dtype) {
            return Err(QuantizeError::Input(format!(
                "tensor `{}` is {}, which tokenfab cannot dequantize to requantize",
                t.name, t.dtype
            )));
        }
    }
    let mut w = GgufWriter::new();
    for (k, v) in md.iter() {
        w.set(k, v.clone());
    }
    w.set("general.file_type", Value::U32(mix.ftype()));
    w.set("general.quantization_version", Value::U32(2));
    for (t, &ty) in tensors.iter().zip(&types) {
        w.add_tensor_info(&t.name, ty, &t.dims)
            .map_err(|e| QuantizeError::Input(e.to_string()))?;
    }
    let total: u64 = tensors.iter().map(|t| t.n_bytes).sum();
    let mut done = 0u64;
    let tmp = out.with_extension("gguf.tmp");
    let werr = |msg: String| QuantizeError::Write {
        file: out.display().to_string(),
        msg,
    };
    let file = std::fs::File::create(&tmp).map_err(|e| werr(e.to_string()))?;
    let mut bw = std::io::BufWriter::with_capacity(8 << 20, file);
    let result = w.write_with(&mut bw, &mut |i| {
        let t = &tensors[i];
        let ty = types[i];
        let data = src.tensor_data(t);
        let bytes = if ty == t.dtype {
            data.to_vec()
        } else {
            let cols = t.row_len() as usize;
            let rows = t.n_rows() as usize;
            let rb = data.len() / rows.max(1);
            let parts: Result<Vec<Vec<u8>>, String> = (0..rows)
                .step_by(ROWS_PER_CHUNK)
                .collect::<Vec<_>>()
                .par_iter()
                .map(|&r0| {
                    let n = ROWS_PER_CHUNK.min(rows - r0);
                    let mut f = vec![0f32; n * cols];
                    if !dequantize(t.dtype, &data[r0 * rb..(r0 + n) * rb], &mut f) {
                        return Err(format!("cannot dequantize {}", t.dtype));
                    }
                    convert::encode(ty, &f, n, cols)
                })
                .collect();
            parts
                .map_err(|e| GgufErrorKind::Write(format!("tensor `{}`: {e}", t.name)))?
                .concat()
        };
        done += t.n_bytes;
        progress(done, total);
        Ok(bytes)
    });
    let finish = result
        .map_err(|e| werr(e.to_string()))
        .and_then(|_| std::io::Write::flush(&mut bw).map_err(|e| werr(e.to_string())));
    if let Err(e) = finish {
        let _ = std::fs::remove_file(&tmp);
        return Err(e);
    }
    drop(bw);
    std::fs::rename(&tmp, out).map_err(|e| werr(e.to_string()))?;

    let mut counts = BTreeMap::new();
    for ty in &types {
        *counts.entry(ty.name().to_string()).or_insert(0) += 1;
    }
    let bytes_out: u64 = tensors
        .iter()
        .zip(&types)
        .map(|(t, ty)| ty.row_bytes(t.row_len()).unwrap_or(0) * t.n_rows())
        .sum();
    let params: u64 = tensors.iter().map(|t| t.n_elements()).sum();
    Ok(QuantizeSummary {
        tensors: tensors.len(),
        requantized: tensors
            .iter()
            .zip(&types)
            .filter(|(t, ty)| t.dtype != **ty)
            .count(),
        bytes_in: total,
        bytes_out,
        bits_per_weight: bytes_out as f64 * 8.0 / params.max(1) as f64,
        types: counts,
        source_quantized: tensors
            .iter()
            .any(|t| t.dtype.is_quantized() && t.dtype != GgmlType::F32),
    })
}

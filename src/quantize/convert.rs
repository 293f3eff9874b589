//! Turning f32 rows into a tensor type's bytes: plain floats directly, quantized types with
//! candle-core's quantizers (ports of ggml's reference `quantize_row_*` — what
//! `llama-quantize` uses without an importance matrix).

use crate::gguf::GgmlType;
use candle_core::quantized::{GgmlDType, QTensor};
use candle_core::{Device, Tensor};
use half::{bf16, f16};

pub fn candle_type(t: GgmlType) -> Option<GgmlDType> {
    use GgmlType::*;
    Some(match t {
        F32 => GgmlDType::F32,
        F16 => GgmlDType::F16,
        BF16 => GgmlDType::BF16,
        Q4_0 => GgmlDType::Q4_0,
        Q4_1 => GgmlDType::Q4_1,
        Q5_0 => GgmlDType::Q5_0,
        Q5_1 => GgmlDType::Q5_1,
        Q8_0 => GgmlDType::Q8_0,
        Q2_K => GgmlDType::Q2K,
        Q3_K => GgmlDType::Q3K,
        Q4_K => GgmlDType::Q4K,
        Q5_K => GgmlDType::Q5K,
        Q6_K => GgmlDType::Q6K,
        _ => return None,
    })
}

/// Bytes of `rows × cols` values in type `t`.
pub fn encode(t: GgmlType, data: &[f32], rows: usize, cols: usize) -> Result<Vec<u8>, String> {
    match t {
        GgmlType::F32 => Ok(bytemuck::cast_slice(data).to_vec()),
        GgmlType::F16 => Ok(data
            .iter()
            .flat_map(|&x| f16::from_f32(x).to_le_bytes())
            .collect()),
        GgmlType::BF16 => Ok(data
            .iter()
            .flat_map(|&x| bf16::from_f32(x).to_le_bytes())
            .collect()),
        _ => {
            let dt = candle_type(t).ok_or_else(|| format!("cannot quantize to {t}"))?;
            let x =
                Tensor::from_slice(data, (rows, cols), &Device::Cpu).map_err(|e| e.to_string())?;
            let q = QTensor::quantize(&x, dt).map_err(|e| e.to_string())?;
            Ok(q.data().map_err(|e| e.to_string())?.into_owned())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::quant::dequantize;

    /// ggml's `test-quantize-fns`: data `0.1 + 2 cos(i + offset)` of its length (32 × 128; the
    /// error `sqrt(Σ d²) / n` shrinks as 1/√n, so a longer test is a looser one), each type
    /// under ggml's bound and within 10 % of the error measured here (2026-11-27), so that a
    /// worse quantizer fails even where ggml's bound would still pass.
    #[test]
    fn round_trip_errors_within_ggml_bounds() {
        let n = 32 * 128;
        let data: Vec<f32> = (0..n).map(|i| 0.1 + 2.0 * (i as f32 + 0.1).cos()).collect();
        for (t, measured) in [
            (GgmlType::F16, 4.510e-6),
            (GgmlType::BF16, 3.510e-5),
            (GgmlType::Q8_0, 7.264e-5),
            (GgmlType::Q4_0, 1.127e-3),
            (GgmlType::Q4_1, 1.151e-3),
            (GgmlType::Q5_0, 5.908e-4),
            (GgmlType::Q5_1, 5.584e-4),
            (GgmlType::Q2_K, 4.709e-3),
            (GgmlType::Q3_K, 2.509e-3),
            (GgmlType::Q4_K, 1.091e-3),
            (GgmlType::Q5_K, 5.528e-4),
            (GgmlType::Q6_K, 2.716e-4),
        ] {
            let bytes = encode(t, &data, 1, n).unwrap();
            assert_eq!(bytes.len() as u64, t.row_bytes(n as u64).unwrap(), "{t}");
            let mut back = vec![0f32; n];
            assert!(dequantize(t, &bytes, &mut back));
            let err = data
                .iter()
                .zip(&back)
                .map(|(a, b)| ((a - b) as f64).powi(2))
                .sum::<f64>()
                .sqrt()
                / n as f64;
            // ggml's MAX_QUANTIZATION_TOTAL_ERROR{,_2BITS,_3BITS}
            let ggml = match t {
                GgmlType::Q2_K => 0.0075,
                GgmlType::Q3_K => 0.0040,
                _ => 0.002,
            };
            assert!(
                err < ggml,
                "{t}: total quantization error {err} > ggml's {ggml}"
            );
            assert!(
                err <= measured * 1.1,
                "{t}: total quantization error {err:.3e}, measured {measured:.3e} before"
            );
        }
    }
}

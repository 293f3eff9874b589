//! The CUDA device's memory check before a model loads (`Backend::reserve`): the weights
//! (copied to the GPU) and the rest (KV caches, scratch, logits) against the free memory the
//! driver reports, with room for what candle allocates per op (it allocates each op's output,
//! and cuBLAS keeps a workspace). candle's CPU device, used only by the tests, is not checked.

use crate::backend::BackendError;

/// Room kept free for candle's per-op tensors and cuBLAS: 256 MB plus 5 % of the model.
pub fn headroom(weights: u64, other: u64) -> u64 {
    (256 << 20) + (weights + other) / 20
}

/// Refuses `weights` + `other` bytes (+ [`headroom`]) that do not fit `free` of `total`.
#[cfg_attr(not(feature = "cuda"), allow(dead_code))]
pub fn fits(
    device: &str,
    weights: u64,
    other: u64,
    free: u64,
    total: u64,
) -> Result<(), BackendError> {
    let need = weights + other + headroom(weights, other);
    if need <= free {
        return Ok(());
    }
    let gb = |b: u64| format!("{:.2} GB", b as f64 / 1e9);
    Err(BackendError::InsufficientMemory(format!(
        "{device}: not enough GPU memory: the weights ({}) and the KV caches, scratch and logits \
         ({}) need {} with room for candle's temporaries, and {} of the GPU's {} is free; use a \
         smaller --ctx-size (-c), fewer --parallel sequences, a smaller quantization, or \
         --backend cpu",
        gb(weights),
        gb(other),
        gb(need),
        gb(free),
        gb(total)
    )))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn what_fits_on_an_80_gb_gpu() {
        let (free, total) = (79_000_000_000, 85_000_000_000);
        // Llama 3.1 8B Q4_K (4.9 GB) with 8 GB of caches
        fits("cuda (H100)", 4_900_000_000, 8_000_000_000, free, total).unwrap();
        // 71 GB of caches do not fit with the weights and the headroom (3.8 GB + 256 MiB)
        let e = fits("cuda (H100)", 4_900_000_000, 71_000_000_000, free, total)
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("need 79.96 GB") && e.contains("79.00 GB of the GPU's 85.00 GB is free"),
            "{e}"
        );
        assert!(
            e.starts_with("cuda (H100): not enough GPU memory") && e.contains("--ctx-size"),
            "{e}"
        );
    }
}

//! Quality evaluation: perplexity the way llama-perplexity computes it ([`perplexity`]) and
//! KL divergence against a reference model's saved token distributions ([`kld`]).

pub mod kld;
pub mod perplexity;
pub mod tasks;
pub mod tradeoff;

/// `log p(tok)` under `softmax(logits)`, the way llama.cpp's `log_softmax` computes it (max in
/// f32, sum of `exp` in f64), and the index of the largest logit.
pub fn log_softmax_at(logits: &[f32], tok: usize) -> (f64, usize) {
    let (mut max, mut arg) = (f32::NEG_INFINITY, 0);
    for (i, &l) in logits.iter().enumerate() {
        if l > max {
            max = l;
            arg = i;
        }
    }
    let sum: f64 = logits.iter().map(|&l| ((l - max) as f64).exp()).sum();
    ((logits[tok] - max) as f64 - sum.ln(), arg)
}

//! Choosing the next token from logits: greedy, or llama.cpp's default chain — repetition
//! penalty, top-k, top-p, min-p, temperature, then a draw from a seeded RNG (deterministic for
//! a given seed).

use rand::{Rng, SeedableRng};

/// Index of the largest value (the first one on ties); 0 for an empty slice.
pub fn argmax(v: &[f32]) -> u32 {
    let mut best = 0usize;
    let mut best_v = f32::NEG_INFINITY;
    for (i, &x) in v.iter().enumerate() {
        if x > best_v {
            best_v = x;
            best = i;
        }
    }
    best as u32
}

/// Sampling settings, with llama.cpp's defaults.
#[derive(Clone, Debug, PartialEq)]
pub struct SamplingParams {
    /// 0 (or less) means greedy.
    pub temperature: f32,
    /// 0 disables.
    pub top_k: usize,
    /// 1.0 disables.
    pub top_p: f32,
    /// 0.0 disables.
    pub min_p: f32,
    /// 1.0 disables.
    pub repeat_penalty: f32,
    /// How many recent tokens the penalties look at.
    pub repeat_last_n: usize,
    /// Subtracted from the logit of every token among the recent ones (OpenAI's
    /// `presence_penalty`; 0 disables).
    pub presence_penalty: f32,
    /// Subtracted once per occurrence among the recent tokens (OpenAI's `frequency_penalty`;
    /// 0 disables).
    pub frequency_penalty: f32,
    pub seed: u64,
}

impl Default for SamplingParams {
    fn default() -> Self {
        SamplingParams {
            temperature: 0.8,
            top_k: 40,
            top_p: 0.95,
            min_p: 0.05,
            repeat_penalty: 1.0,
            repeat_last_n: 64,
            presence_penalty: 0.0,
            frequency_penalty: 0.0,
            seed: 0,
        }
    }
}

impl SamplingParams {
    pub fn greedy() -> Self {
        SamplingParams {
            temperature: 0.0,
            ..Default::default()
        }
    }

    /// Checks ranges, naming the flag at fault.
    pub fn validate(&self) -> Result<(), String> {
        if !self.temperature.is_finite() || self.temperature < 0.0 {
            return Err(format!("--temp must be >= 0 (got {})", self.temperature));
        }
        if !(0.0..=1.0).contains(&self.top_p) {
            return Err(format!("--top-p must be in [0, 1] (got {})", self.top_p));
        }
        if !(0.0..=1.0).contains(&self.min_p) {
            return Err(format!("--min-p must be in [0, 1] (got {})", self.min_p));
        }
        if !self.repeat_penalty.is_finite() || self.repeat_penalty <= 0.0 {
            return Err(format!(
                "--repeat-penalty must be > 0 (got {})",
                self.repeat_penalty
            ));
        }
        for (name, v) in [
            ("presence_penalty", self.presence_penalty),
            ("frequency_penalty", self.frequency_penalty),
        ] {
            if !v.is_finite() || !(-2.0..=2.0).contains(&v) {
                return Err(format!("{name} must be in [-2, 2] (got {v})"));
            }
        }
        Ok(())
    }

    /// Whether any penalty looks at the recent tokens.
    pub fn penalizes(&self) -> bool {
        self.repeat_last_n > 0
            && (self.repeat_penalty != 1.0
                || self.presence_penalty != 0.0
                || self.frequency_penalty != 0.0)
    }
}

/// A sampler with its RNG state.
pub struct Sampler {
    params: SamplingParams,
    rng: rand::rngs::StdRng,
    candidates: Vec<(u32, f32)>,
}

impl Sampler {
    pub fn new(params: SamplingParams) -> Self {
        let rng = rand::rngs::StdRng::seed_from_u64(params.seed);
        Sampler {
            params,
            rng,
            candidates: Vec::new(),
        }
    }

    /// A greedy sampler.
    pub fn greedy() -> Self {
        Sampler::new(SamplingParams::greedy())
    }

    pub fn params(&self) -> &SamplingParams {
        &self.params
    }

    pub fn is_greedy(&self) -> bool {
        self.params.temperature <= 0.0
    }

    /// The k of a top-k the sampler can work from instead of all logits (temperature sampling
    /// with top-k on and no penalty), for backends that select on the device.
    pub fn top_k_only(&self) -> Option<usize> {
        let p = &self.params;
        (p.temperature > 0.0 && p.top_k > 0 && !p.penalizes()).then_some(p.top_k)
    }

    /// Whether the token is the logits' argmax (greedy, no penalty): backends find it on the
    /// device without reading the logits back.
    pub fn argmax_only(&self) -> bool {
        self.is_greedy() && !self.params.penalizes()
    }

    /// Picks a token from the top-k candidates (`top_k(logits, k)` for the sampler's k): the
    /// same token, for the same RNG state, as [`Sampler::sample`] on all the logits.
    pub fn sample_top_k(&mut self, top: &[(u32, f32)]) -> u32 {
        self.candidates.clear();
        self.candidates.extend_from_slice(top);
        self.finish()
    }

    /// Picks a token from `logits`, given the tokens so far (`history`, for the penalty).
    pub fn sample(&mut self, logits: &[f32], history: &[u32]) -> u32 {
        let p = &self.params;
        let penalize = p.penalizes() && !history.is_empty();
        if p.temperature <= 0.0 && !penalize {
            return argmax(logits);
        }
        self.candidates.clear();
        self.candidates
            .extend(logits.iter().enumerate().map(|(i, &l)| (i as u32, l)));
        let c = &mut self.candidates;
        if penalize {
            let recent = &history[history.len().saturating_sub(p.repeat_last_n)..];
            let mut counts = std::collections::HashMap::new();
            for &t in recent {
                *counts.entry(t).or_insert(0u32) += 1;
            }
            for (&t, &n) in &counts {
                if let Some(e) = c.get_mut(t as usize) {
                    // llama.cpp: divide positive logits, multiply negative ones; then the
                    // OpenAI-style frequency and presence penalties
                    e.1 = if e.1 > 0.0 {
                        e.1 / p.repeat_penalty
                    } else {
                        e.1 * p.repeat_penalty
                    };
                    e.1 -= n as f32 * p.frequency_penalty + p.presence_penalty;
                }
            }
        }
        if p.temperature <= 0.0 {
            let best = c.iter().fold(
                (0u32, f32::NEG_INFINITY),
                |b, &e| if e.1 > b.1 { e } else { b },
            );
            return best.0;
        }
        self.finish()
    }

    /// top-k, top-p, min-p and temperature over `self.candidates`.
    fn finish(&mut self) -> u32 {
        let p = &self.params;
        let c = &mut self.candidates;
        // top-k: keep the k largest, sorted descending
        if p.top_k > 0 && p.top_k < c.len() {
            c.select_nth_unstable_by(p.top_k - 1, desc);
            c.truncate(p.top_k);
        }
        c.sort_unstable_by(desc);
        // softmax (over the remaining candidates, before temperature, as llama.cpp's top-p
        // and min-p see them)
        let probs = softmax(c.iter().map(|e| e.1), 1.0);
        let mut keep = c.len();
        if p.top_p < 1.0 {
            let mut cum = 0.0;
            for (i, pr) in probs.iter().enumerate() {
                cum += pr;
                if cum >= p.top_p {
                    keep = keep.min(i + 1);
                    break;
                }
            }
        }
        if p.min_p > 0.0 {
            let limit = probs[0] * p.min_p;
            let n = probs.iter().take_while(|&&pr| pr >= limit).count().max(1);
            keep = keep.min(n);
        }
        c.truncate(keep.max(1));
        let probs = softmax(c.iter().map(|e| e.1), p.temperature);
        let r: f32 = self.rng.random();
        let mut cum = 0.0;
        for (e, pr) in c.iter().zip(&probs) {
            cum += pr;
            if r < cum {
                return e.0;
            }
        }
        c.last().map_or(0, |e| e.0)
    }
}

/// Largest value first, ties to the lower index.
fn desc(a: &(u32, f32), b: &(u32, f32)) -> std::cmp::Ordering {
    b.1.total_cmp(&a.1).then(a.0.cmp(&b.0))
}

/// Sorts candidates largest first, ties to the lower index.
pub fn sort_desc(c: &mut [(u32, f32)]) {
    c.sort_unstable_by(desc);
}

/// The `k` largest of `v` as (index, value), largest first, ties to the lower index.
pub fn top_k(v: &[f32], k: usize) -> Vec<(u32, f32)> {
    let mut c: Vec<(u32, f32)> = v.iter().enumerate().map(|(i, &x)| (i as u32, x)).collect();
    let k = k.min(c.len());
    if k > 0 && k < c.len() {
        c.select_nth_unstable_by(k - 1, desc);
        c.truncate(k);
    }
    c.sort_unstable_by(desc);
    c
}

fn softmax(logits: impl Iterator<Item = f32> + Clone, temperature: f32) -> Vec<f32> {
    let m = logits.clone().fold(f32::NEG_INFINITY, f32::max);
    let e: Vec<f32> = logits.map(|l| ((l - m) / temperature).exp()).collect();
    let s: f32 = e.iter().sum();
    e.into_iter().map(|x| x / s).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Sampling from the top-k candidates a device returns picks what sampling from all the
    /// logits picks, for the same seed.
    #[test]
    fn top_k_candidates_sample_like_the_full_logits() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(3);
        let mut logits: Vec<f32> = (0..5000).map(|_| rng.random_range(-5.0..5.0)).collect();
        logits[17] = logits[4000]; // a tie
        for seed in 0..20 {
            let params = SamplingParams {
                temperature: 0.9,
                top_k: 40,
                top_p: 0.95,
                min_p: 0.02,
                repeat_penalty: 1.0,
                repeat_last_n: 64,
                presence_penalty: 0.0,
                frequency_penalty: 0.0,
                seed,
            };
            let mut a = Sampler::new(params.clone());
            let mut b = Sampler::new(params);
            let k = b.top_k_only().unwrap();
            for _ in 0..5 {
                assert_eq!(a.sample(&logits, &[]), b.sample_top_k(&top_k(&logits, k)));
            }
        }
        let t = top_k(&[1.0, 3.0, 3.0, 2.0], 2);
        assert_eq!(t, vec![(1, 3.0), (2, 3.0)]);
    }

    #[test]
    fn greedy_picks_the_first_maximum() {
        assert_eq!(argmax(&[1.0, 3.0, 3.0, -1.0]), 1);
        let mut s = Sampler::new(SamplingParams::greedy());
        assert_eq!(s.sample(&[0.1, 0.5, 0.2], &[]), 1);
    }

    #[test]
    fn same_seed_same_tokens_and_filters_hold() {
        // distinct values (37 is coprime with 1000, so this is a permutation)
        let logits: Vec<f32> = (0..1000)
            .map(|i| ((i * 37) % 1000) as f32 / 100.0)
            .collect();
        let params = SamplingParams {
            seed: 42,
            ..Default::default()
        };
        let run = |params: SamplingParams| {
            let mut s = Sampler::new(params);
            (0..50).map(|_| s.sample(&logits, &[])).collect::<Vec<_>>()
        };
        assert_eq!(run(params.clone()), run(params.clone()));
        assert_ne!(
            run(params.clone()),
            run(SamplingParams {
                seed: 43,
                ..params.clone()
            })
        );
        // top-k 1 is greedy
        let top1 = run(SamplingParams {
            top_k: 1,
            ..params.clone()
        });
        assert!(top1.iter().all(|&t| t == argmax(&logits)));
        // min-p 1.0 keeps only the best
        let minp = run(SamplingParams {
            min_p: 1.0,
            top_k: 0,
            ..params.clone()
        });
        assert!(minp.iter().all(|&t| t == argmax(&logits)));
        // top-k 5: only the five largest logits ever come out
        let mut sorted: Vec<u32> = (0..1000).collect();
        sorted.sort_by(|&a, &b| {
            logits[b as usize]
                .total_cmp(&logits[a as usize])
                .then(a.cmp(&b))
        });
        let top5 = run(SamplingParams {
            top_k: 5,
            top_p: 1.0,
            min_p: 0.0,
            ..params
        });
        assert!(top5.iter().all(|t| sorted[..5].contains(t)), "{top5:?}");
    }

    #[test]
    fn repeat_penalty_discourages_recent_tokens() {
        let mut s = Sampler::new(SamplingParams {
            temperature: 0.0,
            repeat_penalty: 2.0,
            ..Default::default()
        });
        assert_eq!(s.sample(&[1.0, 1.5, 0.2], &[1]), 0);
    }

    #[test]
    fn presence_and_frequency_penalties_subtract_per_token_and_per_occurrence() {
        // token 1 seen twice, token 0 once: frequency 0.3 takes 0.6 and 0.3 off them
        let mut s = Sampler::new(SamplingParams {
            temperature: 0.0,
            frequency_penalty: 0.3,
            ..Default::default()
        });
        assert!(!s.argmax_only());
        assert_eq!(s.sample(&[1.0, 1.5, 0.95], &[1, 0, 1]), 2);
        // presence 0.6 takes 0.6 off each seen token once: 0.4, 0.9, 0.95
        let mut s = Sampler::new(SamplingParams {
            temperature: 0.0,
            presence_penalty: 0.6,
            ..Default::default()
        });
        assert_eq!(s.sample(&[1.0, 1.5, 0.95], &[1, 0, 1]), 2);
        let mut s = Sampler::new(SamplingParams {
            temperature: 0.0,
            presence_penalty: 0.4,
            ..Default::default()
        });
        assert_eq!(s.sample(&[1.0, 1.5, 0.95], &[1, 0, 1]), 1);
        let bad = SamplingParams {
            presence_penalty: 3.0,
            ..Default::default()
        };
        assert!(bad.validate().unwrap_err().contains("presence_penalty"));
    }

    #[test]
    fn validation_names_the_flag() {
        let bad = SamplingParams {
            top_p: 1.5,
            ..Default::default()
        };
        assert!(bad.validate().unwrap_err().contains("--top-p"));
    }
}

//! KL divergence of a model's next-token distributions against a reference model's, on the
//! positions perplexity scores.
//!
//! Storing full distributions of a 262k vocabulary is too large (1 MB per position), so the
//! reference keeps, per position, its top-K log-probabilities plus the probability mass of
//! everything else, the log-probability of the actual next token, and its argmax. KL is then
//! computed over those K+1 bins — exactly the KL of the coarsened distributions, a lower bound
//! of the full KL (reports say so). Same-top-token % and Δp of the actual token (mean and RMS)
//! are exact.
//!
//! File (little-endian): magic `TFKLDv1\0`, u32 vocab, u32 n_ctx, u32 K, u64 FNV-1a hash of the
//! token ids, u32 rows, then per row: K × (u32 id, f32 logp), f32 logp_rest, f32 logp_target,
//! u32 argmax.

use super::perplexity::EvalError;
use crate::telemetry::stats::percentile;
use rayon::prelude::*;
use serde::Serialize;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

const MAGIC: &[u8; 8] = b"TFKLDv1\0";

/// A position is a clear one when the reference's top token leads its second by at least this
/// many nats (a 5 % probability ratio): where it leads by less, two sound implementations may
/// pick differently (see [`KldReport::same_top_clear_pct`]).
pub const CLEAR_GAP: f32 = 0.05;

/// One reference position.
#[derive(Clone, Debug, PartialEq)]
pub struct Row {
    pub top: Vec<(u32, f32)>,
    pub logp_rest: f32,
    pub logp_target: f32,
    pub argmax: u32,
}

fn fnv(tokens: &[u32]) -> u64 {
    let mut h: u64 = 0xcbf29ce484222325;
    for t in tokens {
        for b in t.to_le_bytes() {
            h ^= b as u64;
            h = h.wrapping_mul(0x100000001b3);
        }
    }
    h
}

/// Log-softmax normalizer (max, log Σ exp(l - max)) and argmax.
fn lse(logits: &[f32]) -> (f32, f64, u32) {
    let (mut max, mut arg) = (f32::NEG_INFINITY, 0u32);
    for (i, &l) in logits.iter().enumerate() {
        if l > max {
            max = l;
            arg = i as u32;
        }
    }
    let s: f64 = logits.iter().map(|&l| ((l - max) as f64).exp()).sum();
    (max, s.ln(), arg)
}

fn summarize(logits: &[f32], target: u32, k: usize) -> Row {
    let (max, ln_sum, argmax) = lse(logits);
    let logp = |i: usize| ((logits[i] - max) as f64 - ln_sum) as f32;
    let mut idx: Vec<u32> = (0..logits.len() as u32).collect();
    let k = k.min(idx.len());
    idx.select_nth_unstable_by(k - 1, |&a, &b| {
        logits[b as usize].total_cmp(&logits[a as usize])
    });
    idx.truncate(k);
    idx.sort_by(|&a, &b| {
        logits[b as usize]
            .total_cmp(&logits[a as usize])
            .then(a.cmp(&b))
    });
    let top: Vec<(u32, f32)> = idx.iter().map(|&i| (i, logp(i as usize))).collect();
    let mass: f64 = top.iter().map(|&(_, lp)| (lp as f64).exp()).sum();
    Row {
        top,
        logp_rest: (1.0 - mass).max(1e-30).ln() as f32,
        logp_target: logp(target as usize),
        argmax,
    }
}

/// Collects the reference distributions and writes them.
pub struct KldBase {
    path: PathBuf,
    k: usize,
    header: Option<(u32, u32, u64)>,
    rows: Vec<Row>,
}

impl KldBase {
    pub fn new(path: &Path, k: usize) -> Self {
        KldBase {
            path: path.to_path_buf(),
            k: k.max(1),
            header: None,
            rows: Vec::new(),
        }
    }

    pub(crate) fn start(&mut self, tokens: &[u32], vocab: usize, n_ctx: usize) {
        self.header = Some((vocab as u32, n_ctx as u32, fnv(tokens)));
    }

    /// Records `n` positions (`logits` is `n × vocab`).
    pub fn record_rows(&mut self, logits: &[f32], targets: &[u32]) {
        let vocab = logits.len() / targets.len().max(1);
        let k = self.k;
        let rows: Vec<Row> = targets
            .par_iter()
            .enumerate()
            .map(|(r, &t)| summarize(&logits[r * vocab..(r + 1) * vocab], t, k))
            .collect();
        self.rows.extend(rows);
    }

    /// Writes the file (atomically: temp file, then rename).
    pub fn finish(self) -> Result<usize, EvalError> {
        let io = |e: std::io::Error| EvalError::File {
            file: self.path.display().to_string(),
            msg: e.to_string(),
        };
        let (vocab, n_ctx, hash) = self.header.unwrap_or((0, 0, 0));
        let mut buf = Vec::with_capacity(32 + self.rows.len() * (self.k * 8 + 12));
        buf.extend_from_slice(MAGIC);
        for v in [vocab, n_ctx, self.k as u32] {
            buf.extend_from_slice(&v.to_le_bytes());
        }
        buf.extend_from_slice(&hash.to_le_bytes());
        buf.extend_from_slice(&(self.rows.len() as u32).to_le_bytes());
        for r in &self.rows {
            for i in 0..self.k {
                let (id, lp) = r
                    .top
                    .get(i)
                    .copied()
                    .unwrap_or((u32::MAX, f32::NEG_INFINITY));
                buf.extend_from_slice(&id.to_le_bytes());
                buf.extend_from_slice(&lp.to_le_bytes());
            }
            buf.extend_from_slice(&r.logp_rest.to_le_bytes());
            buf.extend_from_slice(&r.logp_target.to_le_bytes());
            buf.extend_from_slice(&r.argmax.to_le_bytes());
        }
        let tmp = self.path.with_extension("tmp");
        std::fs::File::create(&tmp)
            .and_then(|mut f| f.write_all(&buf))
            .map_err(io)?;
        std::fs::rename(&tmp, &self.path).map_err(io)?;
        Ok(self.rows.len())
    }
}

/// KL divergence results.
#[derive(Clone, Debug, Serialize)]
pub struct KldReport {
    pub positions: usize,
    /// Bins used: the reference's top-K plus the rest.
    pub top_k: usize,
    pub mean_kld: f64,
    pub median_kld: f64,
    pub p90_kld: f64,
    pub p99_kld: f64,
    pub max_kld: f64,
    pub same_top_pct: f64,
    /// Positions where the reference's top token leads by at least [`CLEAR_GAP`] nats.
    pub clear_positions: usize,
    /// Same top token at those positions, %.
    pub same_top_clear_pct: f64,
    /// Mean and RMS of p(actual next token) new − reference.
    pub mean_delta_p: f64,
    pub rms_delta_p: f64,
    pub method: String,
}

/// Compares a model against a saved reference, position by position.
pub struct KldCompare {
    path: String,
    vocab: u32,
    n_ctx: u32,
    k: usize,
    hash: u64,
    rows: Vec<Row>,
    next: usize,
    kld: Vec<f64>,
    same_top: usize,
    clear: usize,
    same_top_clear: usize,
    delta_p: Vec<f64>,
}

impl KldCompare {
    pub fn open(path: &Path) -> Result<Self, EvalError> {
        let file = path.display().to_string();
        let bad = |msg: String| EvalError::File {
            file: file.clone(),
            msg,
        };
        let mut data = Vec::new();
        std::fs::File::open(path)
            .and_then(|mut f| f.read_to_end(&mut data))
            .map_err(|e| bad(e.to_string()))?;
        if data.len() < 32 || &data[..8] != MAGIC {
            return Err(bad(
                "not a tokenfab KL-divergence base file (make one with --kl-divergence-base)"
                    .into(),
            ));
        }
        let u32_at =
            |o: usize| u32::from_le_bytes([data[o], data[o + 1], data[o + 2], data[o + 3]]);
        let (vocab, n_ctx, k) = (u32_at(8), u32_at(12), u32_at(16) as usize);
        let hash = u64::from_le_bytes(
            data[20..28]
                .try_into()
                .map_err(|_| bad("truncated header".into()))?,
        );
        let n = u32_at(28) as usize;
        let row_bytes = k * 8 + 12;
        if k == 0 || data.len() != 32 + n * row_bytes {
            return Err(bad(format!(
                "{} bytes do not hold {n} rows of top-{k}",
                data.len()
            )));
        }
        let rows = (0..n)
            .map(|i| {
                let o = 32 + i * row_bytes;
                let f32_at = |o: usize| f32::from_bits(u32_at(o));
                Row {
                    top: (0..k)
                        .map(|j| (u32_at(o + 8 * j), f32_at(o + 8 * j + 4)))
                        .filter(|&(id, _)| id != u32::MAX)
                        .collect(),
                    logp_rest: f32_at(o + 8 * k),
                    logp_target: f32_at(o + 8 * k + 4),
                    argmax: u32_at(o + 8 * k + 8),
                }
            })
            .collect();
        Ok(KldCompare {
            path: file,
            vocab,
            n_ctx,
            k,
            hash,
            rows,
            next: 0,
            kld: Vec::new(),
            same_top: 0,
            clear: 0,
            same_top_clear: 0,
            delta_p: Vec::new(),
        })
    }

    pub(crate) fn check(
        &self,
        tokens: &[u32],
        vocab: usize,
        n_ctx: usize,
    ) -> Result<(), EvalError> {
        let bad = |msg: String| EvalError::File {
            file: self.path.clone(),
            msg,
        };
        if self.vocab as usize != vocab {
            return Err(bad(format!(
                "made with a vocabulary of {}, this model has {vocab}",
                self.vocab
            )));
        }
        if self.n_ctx as usize != n_ctx {
            return Err(bad(format!(
                "made with -c {}, this run uses -c {n_ctx}",
                self.n_ctx
            )));
        }
        if self.hash != fnv(tokens) {
            return Err(bad(
                "made on another text (or with fewer/more chunks): the token ids differ".into(),
            ));
        }
        Ok(())
    }

    /// Compares `n` positions (`logits` is `n × vocab`).
    pub fn compare_rows(&mut self, logits: &[f32], targets: &[u32]) {
        let vocab = logits.len() / targets.len().max(1);
        let base = &self.rows[self.next.min(self.rows.len())..];
        let results: Vec<(f64, bool, bool, f64)> = targets
            .par_iter()
            .enumerate()
            .zip(base.par_iter())
            .map(|((r, &t), b)| {
                let row = &logits[r * vocab..(r + 1) * vocab];
                let (max, ln_sum, argmax) = lse(row);
                let logq = |i: u32| (row[i as usize] - max) as f64 - ln_sum;
                let mut kl = 0.0;
                let mut q_mass = 0.0;
                for &(id, lp) in &b.top {
                    let lq = logq(id);
                    q_mass += lq.exp();
                    kl += (lp as f64).exp() * (lp as f64 - lq);
                }
                let p_rest = (b.logp_rest as f64).exp();
                let q_rest = (1.0 - q_mass).max(1e-30);
                kl += p_rest * (b.logp_rest as f64 - q_rest.ln());
                let dp = logq(t).exp() - (b.logp_target as f64).exp();
                // the lead of the reference's top token over its second
                let first = b.top.iter().map(|x| x.1).fold(f32::NEG_INFINITY, f32::max);
                let second = b
                    .top
                    .iter()
                    .filter(|x| x.0 != b.argmax)
                    .map(|x| x.1)
                    .fold(b.logp_rest, f32::max);
                let clear = first - second >= CLEAR_GAP;
                (kl.max(0.0), argmax == b.argmax, clear, dp)
            })
            .collect();
        self.next += results.len();
        for (kl, same, clear, dp) in results {
            self.kld.push(kl);
            self.same_top += same as usize;
            self.clear += clear as usize;
            self.same_top_clear += (clear && same) as usize;
            self.delta_p.push(dp);
        }
    }

    pub fn finish(self) -> Result<KldReport, EvalError> {
        if self.next != self.rows.len() {
            return Err(EvalError::File {
                file: self.path,
                msg: format!(
                    "compared {} positions, the base has {}",
                    self.next,
                    self.rows.len()
                ),
            });
        }
        let n = self.kld.len().max(1) as f64;
        let p = |q| percentile(&self.kld, q).unwrap_or(0.0);
        Ok(KldReport {
            positions: self.kld.len(),
            top_k: self.k,
            mean_kld: self.kld.iter().sum::<f64>() / n,
            median_kld: p(50.0),
            p90_kld: p(90.0),
            p99_kld: p(99.0),
            max_kld: self.kld.iter().cloned().fold(0.0, f64::max),
            same_top_pct: 100.0 * self.same_top as f64 / n,
            clear_positions: self.clear,
            same_top_clear_pct: 100.0 * self.same_top_clear as f64 / self.clear.max(1) as f64,
            mean_delta_p: self.delta_p.iter().sum::<f64>() / n,
            rms_delta_p: (self.delta_p.iter().map(|d| d * d).sum::<f64>() / n).sqrt(),
            method: format!(
                "KL over the reference's top-{} tokens plus one bin for the rest (a lower bound of the full KL); same-top and Δp of the actual next token are exact",
                self.k
            ),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn logits(p: &[f64]) -> Vec<f32> {
        p.iter().map(|&p| p.ln() as f32).collect()
    }

    /// Two positions over a 4-token vocabulary, KL over the top-2 + rest bins, every number
    /// worked out by hand (the only other test compares a model with itself, which any formula
    /// giving 0 passes).
    #[test]
    fn kld_matches_a_hand_computed_example() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("base.kld");
        let p = [[0.5, 0.3, 0.15, 0.05], [0.1, 0.2, 0.3, 0.4]];
        let q = [[0.4, 0.4, 0.1, 0.1], [0.4, 0.3, 0.2, 0.1]];
        let targets = [2u32, 3];
        let mut base = KldBase::new(&path, 2);
        base.start(&[1, 2, 3], 4, 3);
        base.record_rows(&[logits(&p[0]), logits(&p[1])].concat(), &targets);
        assert_eq!(base.finish().unwrap(), 2);
        let mut cmp = KldCompare::open(&path).unwrap();
        cmp.check(&[1, 2, 3], 4, 3).unwrap();
        cmp.compare_rows(&[logits(&q[0]), logits(&q[1])].concat(), &targets);
        let r = cmp.finish().unwrap();
        // position 0: bins {0, 1, rest}: P (.5, .3, .2), Q (.4, .4, .2)
        //   .5 ln(.5/.4) + .3 ln(.3/.4) + .2 ln(.2/.2) = .1115718 - .0863046 = .0252672
        //   (the full KL is .0514296: the coarse one is a lower bound)
        // position 1: bins {3, 2, rest}: P (.4, .3, .3), Q (.1, .2, .7)
        //   .4 ln 4 + .3 ln 1.5 + .3 ln(3/7) = .5545177 + .1216395 - .2541894 = .4219679
        let (k0, k1) = (0.025_267_154, 0.421_967_91);
        let close = |a: f64, b: f64| (a - b).abs() < 1e-6;
        assert!(close(r.mean_kld, (k0 + k1) / 2.0), "{r:?}");
        assert!(close(r.max_kld, k1), "{r:?}");
        // argmax: 0 and 0 (P, Q at position 0), 3 and 0 at position 1
        assert_eq!(r.same_top_pct, 50.0);
        // the reference's lead: ln(.5/.3) = .51 and ln(.4/.3) = .29 nats, both clear
        assert_eq!((r.clear_positions, r.same_top_clear_pct), (2, 50.0));
        // p(target) new - reference: .1 - .15, .1 - .4
        assert!(close(r.mean_delta_p, (-0.05 - 0.3) / 2.0), "{r:?}");
        assert!(
            close(r.rms_delta_p, ((0.05f64.powi(2) + 0.09) / 2.0).sqrt()),
            "{r:?}"
        );
        assert_eq!((r.positions, r.top_k), (2, 2));
    }
}

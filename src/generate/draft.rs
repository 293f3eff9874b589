//! Speculative decoding's drafts: a [`Drafter`] proposes the next few tokens of a decoding
//! [`Sequence`] cheaply — a small draft model decoding greedily, or prompt lookup (the tokens
//! that followed the latest earlier occurrence of the text's last n-gram) — and the next
//! [`super::step`] has the target verify them all in one forward pass (its `verify`). The
//! target reads its weights once for up to `max + 1` tokens; on a memory-bound device that is
//! what makes a *useful* token cheaper.
//!
//! A draft model keeps one KV cache per sequence (in the sequence, returned with
//! [`Drafter::release`]) holding a prefix of the sequence's text; each proposal first runs the
//! tokens the target accepted since the last one, so rejected draft tokens are simply
//! overwritten (a rewind is a shorter list of cached tokens). What drafting costs — time and
//! the draft model's traffic — is charged to the tokens of the step that verifies it.
//!
//! This module does not decide what is accepted: that is `step`'s, with the target's own
//! sampler, so output never depends on the draft's quality, only speed does.

use super::{GenerateError, Sequence};
use crate::gguf::GgufFile;
use crate::model::{KvCache, Logits, Model, ModelError};
use crate::telemetry::ledger::Traffic;
use std::time::Instant;

/// How much to draft (llama.cpp's `--draft-max`, `--draft-min`, `--draft-p-min`).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct DraftOptions {
    /// Most tokens drafted per step.
    pub max: usize,
    /// Fewer drafted tokens than this are dropped (the step decodes one token).
    pub min: usize,
    /// A draft model stops drafting at a token whose probability under it is below this
    /// (0 = never; reads the draft's logits when set).
    pub p_min: f32,
    /// Choose each draft's length (up to `max`) from the measured cost of verifying and
    /// drafting and the sequence's acceptance so far ([`best_length`]); off: always `max`
    /// (llama.cpp's behaviour).
    pub adaptive: bool,
}

impl Default for DraftOptions {
    fn default() -> Self {
        DraftOptions {
            max: 8,
            min: 0,
            p_min: 0.0,
            adaptive: true,
        }
    }
}

impl DraftOptions {
    pub fn validate(&self) -> Result<(), String> {
        if self.max == 0 {
            return Err("--draft-max must be at least 1".into());
        }
        if self.min > self.max {
            return Err(format!(
                "--draft-min ({}) is larger than --draft-max ({})",
                self.min, self.max
            ));
        }
        if !(0.0..=1.0).contains(&self.p_min) {
            return Err(format!(
                "--draft-p-min must be in [0, 1], not {}",
                self.p_min
            ));
        }
        Ok(())
    }
}

/// Speculative decoding's counters for one generation, and what drafting cost.
#[derive(Clone, Copy, Debug, Default, PartialEq, serde::Serialize)]
pub struct SpecStats {
    /// Decode forward passes of the target (each verifies a draft, or decodes one token).
    pub target_forwards: usize,
    /// Those that verified a draft.
    pub rounds: usize,
    /// Tokens drafted and verified.
    pub drafted: usize,
    /// Drafted tokens the target accepted.
    pub accepted: usize,
    /// Verifications that accepted their whole draft.
    pub full: usize,
    /// Forward passes of the draft model (0 for prompt lookup).
    pub draft_forwards: usize,
    /// Time spent drafting, seconds.
    pub draft_s: f64,
    /// Bytes the draft model moved.
    pub draft_bytes: u64,
}

impl SpecStats {
    /// Accepted / drafted (`None` before anything was drafted).
    pub fn acceptance(&self) -> Option<f64> {
        (self.drafted > 0).then(|| self.accepted as f64 / self.drafted as f64)
    }

    /// Tokens each target forward pass of the decode produced: the accepted draft tokens
    /// and the target's own one (1.0 without speculation).
    pub fn tokens_per_forward(&self) -> Option<f64> {
        (self.target_forwards > 0)
            .then(|| (self.target_forwards + self.accepted) as f64 / self.target_forwards as f64)
    }

    /// Mean accepted draft tokens per verification.
    pub fn mean_accepted(&self) -> Option<f64> {
        (self.rounds > 0).then(|| self.accepted as f64 / self.rounds as f64)
    }

    /// The counters, their rates and the drafter's kind as JSON (run traces, bench results,
    /// server usage).
    pub fn json(&self, kind: &str) -> serde_json::Value {
        let mut v = serde_json::to_value(self).unwrap_or_default();
        v["kind"] = kind.into();
        v["acceptance"] = self.acceptance().into();
        v["mean_accepted"] = self.mean_accepted().into();
        v["tokens_per_target_forward"] = self.tokens_per_forward().into();
        v
    }
}

/// Where drafts come from.
pub enum DraftSource {
    /// A small model sharing the target's vocabulary, decoding greedily.
    Model(Box<Model>),
    /// Prompt lookup: the latest earlier occurrence of the text's last `ngram` tokens (down
    /// to one token), and what followed it.
    Lookup { ngram: usize },
}

/// Proposes tokens for decoding sequences (see the module docs).
pub struct Drafter {
    source: DraftSource,
    opts: DraftOptions,
    cost: PassCost,
    /// Moving average of a draft model's seconds per drafted token (catching up included; a
    /// prompt's prefill not), for [`best_length`].
    token_s: Option<f64>,
}

/// Measured seconds of a decode step by the tokens it ran (moving averages), for the cost
/// model of [`best_length`].
#[derive(Clone, Debug, Default)]
struct PassCost {
    /// `secs[n - 1]`: a step of `n` tokens.
    secs: Vec<Option<f64>>,
}

impl PassCost {
    fn observe(&mut self, n: usize, secs: f64) {
        if n == 0 {
            return;
        }
        if self.secs.len() < n {
            self.secs.resize(n, None);
        }
        let e = &mut self.secs[n - 1];
        *e = Some(e.map_or(secs, |old| 0.8 * old + 0.2 * secs));
    }

    /// (c0, c1): a step of `n` tokens takes about `c0 + c1 * (n - 1)`, from the one-token
    /// average and the largest measured size; (c0, 0) until a larger one was measured.
    fn model(&self) -> Option<(f64, f64)> {
        let c0 = self.secs.first().copied().flatten()?;
        let slope = (2..=self.secs.len())
            .rev()
            .find_map(|n| self.secs[n - 1].map(|c| (c - c0).max(0.0) / (n - 1) as f64));
        Some((c0, slope.unwrap_or(0.0)))
    }
}

/// The draft length among `0..=max` that maximizes expected tokens per second: a draft of
/// `k` tokens, each accepted with probability `alpha` while the ones before it were, yields
/// `1 + alpha + ... + alpha^k` tokens for a verification of `c0 + c1 * k` seconds plus `d * k`
/// seconds of drafting.
pub fn best_length(max: usize, alpha: f64, c0: f64, c1: f64, d: f64) -> usize {
    let (mut best, mut best_rate) = (0, 0.0);
    let (mut tokens, mut term) = (0.0, 1.0);
    for k in 0..=max {
        tokens += term;
        term *= alpha;
        let rate = tokens / (c0 + (c1 + d) * k as f64).max(1e-12);
        if rate > best_rate * (1.0 + 1e-9) {
            (best, best_rate) = (k, rate);
        }
    }
    best
}

/// A draft model's state for one sequence: its cache and the tokens whose keys and values
/// it holds.
pub struct DraftSlot {
    pub(crate) cache: KvCache,
    cached: Vec<u32>,
}

impl Drafter {
    /// Prompt lookup matching n-grams of up to `ngram` tokens.
    pub fn lookup(ngram: usize, opts: DraftOptions) -> Result<Self, String> {
        opts.validate()?;
        if ngram == 0 {
            return Err("--lookup needs an n-gram size of at least 1".into());
        }
        Ok(Drafter {
            source: DraftSource::Lookup { ngram },
            opts,
            cost: PassCost::default(),
            token_s: None,
        })
    }

    /// A draft model for `target`: refused unless both have the same vocabulary (token
    /// strings, BOS and EOS).
    pub fn model(draft: Model, target: &GgufFile, opts: DraftOptions) -> Result<Self, String> {
        opts.validate()?;
        same_vocabulary(draft.file(), target)?;
        Ok(Drafter {
            source: DraftSource::Model(Box::new(draft)),
            opts,
            cost: PassCost::default(),
            token_s: None,
        })
    }

    pub fn options(&self) -> &DraftOptions {
        &self.opts
    }

    /// `draft-model` or `lookup`.
    pub fn kind(&self) -> &'static str {
        match self.source {
            DraftSource::Model(_) => "draft-model",
            DraftSource::Lookup { .. } => "lookup",
        }
    }

    /// The draft model, if drafts come from one.
    pub fn draft_model(&mut self) -> Option<&mut Model> {
        match &mut self.source {
            DraftSource::Model(m) => Some(m),
            DraftSource::Lookup { .. } => None,
        }
    }

    /// Fills `s`'s draft for the next step, if it is decoding and has room for one: at most
    /// `max` tokens, no more than its token limit and context leave room to verify.
    pub fn propose(&mut self, s: &mut Sequence) -> Result<(), GenerateError> {
        if !s.wants_draft() {
            return Ok(());
        }
        // the pending token, then the draft, then one position for the target's own token
        let left = s.opts.max_tokens.saturating_sub(s.generated.len() + 1);
        let room = s.cache.ctx.saturating_sub(s.cached.len() + 1);
        let mut max = self.opts.max.min(left).min(room);
        let t0 = Instant::now();
        s.acceptance.settle(&s.spec);
        if self.opts.adaptive && matches!(self.source, DraftSource::Model(_)) {
            max = max.min(self.length(s.acceptance.alpha(0)));
        }
        if max == 0 || max < self.opts.min {
            return Ok(());
        }
        let draft = match &mut self.source {
            DraftSource::Lookup { ngram } => {
                let text: Vec<u32> = s.context().copied().collect();
                let (mut draft, n) = lookup(&text, *ngram, max);
                if self.opts.adaptive && !draft.is_empty() {
                    // acceptance of drafts from matches of this length
                    let alpha = s.acceptance.alpha(n);
                    let mut k = length(&self.cost, self.opts.max, alpha, 0.0);
                    if k == 0 && s.spec.target_forwards % 16 == 15 {
                        k = 2; // look again now and then: copying may have begun
                    }
                    draft.truncate(k);
                }
                s.acceptance.expect(n, &s.spec);
                draft
            }
            DraftSource::Model(m) => {
                let (draft, traffic, forwards, per) = draft_greedy(m, s, max, self.opts.p_min)?;
                if let Some(per) = per {
                    self.token_s = Some(self.token_s.map_or(per, |o| 0.8 * o + 0.2 * per));
                }
                s.acceptance.expect(0, &s.spec);
                s.spec.draft_forwards += forwards;
                s.spec.draft_bytes += traffic.bytes();
                s.draft_cost.1 += traffic;
                draft
            }
        };
        let took = t0.elapsed();
        s.spec.draft_s += took.as_secs_f64();
        s.draft_cost.0 += took;
        if !draft.is_empty() && draft.len() >= self.opts.min {
            s.draft = draft;
        }
        Ok(())
    }

    /// Records a decode step that ran `tokens` tokens in `secs` seconds (its verification
    /// and sampling), for the cost model that sets draft lengths.
    pub fn observe_step(&mut self, tokens: usize, secs: f64) {
        self.cost.observe(tokens, secs);
    }

    /// The draft length for `s`'s next step: [`best_length`] with the acceptance `alpha`
    /// (see [`Acceptance`]), the measured verification cost and the draft model's time per
    /// drafted token (before anything is measured: one token alone, then a full draft).
    fn length(&self, alpha: f64) -> usize {
        length(
            &self.cost,
            self.opts.max,
            alpha,
            self.token_s.unwrap_or(0.0),
        )
    }

    /// Gives `s`'s draft-model cache back to the draft model (call before the sequence is
    /// dropped or its cache released).
    pub fn release(&mut self, s: &mut Sequence) {
        if let (Some(cache), DraftSource::Model(m)) = (s.take_draft_cache(), &mut self.source) {
            m.release_cache(cache);
        }
    }
}

/// [`Drafter::length`] on its parts.
fn length(cost: &PassCost, max: usize, alpha: f64, d: f64) -> usize {
    // nothing measured yet: one token alone first (c0), then a full draft (the slope)
    let Some((c0, c1)) = cost.model() else {
        return 0;
    };
    if cost.secs.len() < 2 {
        return max;
    }
    best_length(max, alpha, c0, c1, d)
}

/// Up to `max` greedy tokens of the draft model after `s`'s text, its traffic, forward
/// passes and seconds per drafted token (not when it caught up on a prompt); stops early at
/// a token below `p_min`.
fn draft_greedy(
    m: &mut Model,
    s: &mut Sequence,
    max: usize,
    p_min: f32,
) -> Result<(Vec<u32>, Traffic, usize, Option<f64>), GenerateError> {
    let l0 = m.ops().ledger().total();
    let text: Vec<u32> = s.context().copied().collect();
    if s.draft_slot.is_none() {
        let cache = m.new_cache(s.cache.ctx.min(m.ctx()))?;
        s.draft_slot = Some(DraftSlot {
            cache,
            cached: Vec::new(),
        });
    }
    let Some(slot) = s.draft_slot.as_mut() else {
        return Ok((Vec::new(), Traffic::default(), 0, None));
    };
    // the draft model's room: the text, then the draft tokens it runs
    let room = slot.cache.ctx.saturating_sub(text.len());
    let max = max.min(room);
    if max == 0 {
        return Ok((Vec::new(), Traffic::default(), 0, None));
    }
    // rewind to what the draft's cache shares with the text; run the rest (at least the
    // last token, for its logits)
    let shared = slot
        .cached
        .iter()
        .zip(&text)
        .take_while(|(a, b)| a == b)
        .count()
        .min(text.len() - 1);
    let keep = slot.cache.reusable(shared);
    slot.cached.truncate(keep);
    let vocab = m.config.n_vocab;
    let t0 = Instant::now();
    let catch_up = text.len() - keep;
    let mut forwards = 0;
    let mut logits = m.forward(&slot.cache, &text[keep..], keep, Logits::Last)?;
    forwards += 1;
    slot.cached.extend_from_slice(&text[keep..]);
    let mut host = Vec::new();
    let mut draft = Vec::with_capacity(max);
    loop {
        let token = if p_min > 0.0 {
            host.resize(vocab, 0.0);
            m.ops()
                .read(logits, 0, &mut host)
                .map_err(ModelError::from)?;
            let (token, p) = top_probability(&host);
            if p < p_min {
                break;
            }
            token
        } else {
            m.ops().argmax(logits, 0, vocab).map_err(ModelError::from)?
        };
        draft.push(token);
        if draft.len() == max {
            break;
        }
        logits = m.forward(&slot.cache, &[token], slot.cached.len(), Logits::Last)?;
        forwards += 1;
        slot.cached.push(token);
    }
    let traffic = m.ops().ledger().total() - l0;
    let per = (catch_up <= max + 2 && !draft.is_empty())
        .then(|| t0.elapsed().as_secs_f64() / draft.len() as f64);
    Ok((draft, traffic, forwards, per))
}

/// The most likely token of a row of logits and its softmax probability.
fn top_probability(logits: &[f32]) -> (u32, f32) {
    let best = crate::sampling::argmax(logits);
    let m = logits.get(best as usize).copied().unwrap_or(0.0);
    let sum: f64 = logits.iter().map(|&l| ((l - m) as f64).exp()).sum();
    (best, (1.0 / sum.max(1.0)) as f32)
}

/// Prompt lookup: for n = `ngram` down to 1, the latest earlier occurrence of `text`'s last n
/// tokens, and up to `max` tokens that followed it; with the n that matched (0: none).
pub fn lookup(text: &[u32], ngram: usize, max: usize) -> (Vec<u32>, usize) {
    let len = text.len();
    for n in (1..=ngram.min(len.saturating_sub(1))).rev() {
        let tail = &text[len - n..];
        // starts before the tail itself, latest first
        if let Some(i) = (0..len - n).rev().find(|&i| &text[i..i + n] == tail) {
            let from = i + n;
            return (text[from..(from + max).min(len)].to_vec(), n);
        }
    }
    (Vec::new(), 0)
}

/// A sequence's acceptance of drafts by where they came from (bucket: the n-gram length of a
/// lookup match, 0 for a draft model), learned from the verifications of its own drafts:
/// Laplace's rule over accepted tokens and rejections, 1/2 before any.
#[derive(Clone, Debug, Default)]
pub struct Acceptance {
    /// (accepted tokens, rejections) per bucket.
    buckets: Vec<(usize, usize)>,
    /// The bucket of the draft in flight and the counters before its verification.
    pending: Option<(usize, SpecStats)>,
}

impl Acceptance {
    /// Credits the verification of the draft in flight (its counters' change) to its bucket.
    fn settle(&mut self, now: &SpecStats) {
        if let Some((b, before)) = self.pending.take() {
            let accepted = now.accepted.saturating_sub(before.accepted);
            let rounds = now.rounds.saturating_sub(before.rounds);
            let full = now.full.saturating_sub(before.full);
            if self.buckets.len() <= b {
                self.buckets.resize(b + 1, (0, 0));
            }
            self.buckets[b].0 += accepted;
            self.buckets[b].1 += rounds.saturating_sub(full);
        }
    }

    /// Notes that the next verification is of a draft from `bucket`.
    fn expect(&mut self, bucket: usize, now: &SpecStats) {
        self.pending = Some((bucket, *now));
    }

    /// Estimated probability that a draft token from `bucket` is accepted.
    pub fn alpha(&self, bucket: usize) -> f64 {
        let (a, r) = self.buckets.get(bucket).copied().unwrap_or((0, 0));
        (a as f64 + 1.0) / ((a + r) as f64 + 2.0)
    }
}

/// Refuses a draft model whose vocabulary is not the target's: the token strings and the
/// BOS/EOS ids must be equal, or drafted ids would mean other text.
pub fn same_vocabulary(draft: &GgufFile, target: &GgufFile) -> Result<(), String> {
    let name = |f: &GgufFile| f.path().display().to_string();
    let tokens = |f: &GgufFile| {
        f.metadata()
            .get_str_array("tokenizer.ggml.tokens")
            .map(|v| v.into_iter().map(str::to_string).collect::<Vec<_>>())
            .map_err(|e| format!("{}: {e}", name(f)))
    };
    let (d, t) = (tokens(draft)?, tokens(target)?);
    let mismatch = |what: String| {
        Err(format!(
            "the draft model {} cannot draft for {}: {what} (draft and target must share a vocabulary)",
            name(draft),
            name(target)
        ))
    };
    if d.len() != t.len() {
        return mismatch(format!("{} tokens vs {}", d.len(), t.len()));
    }
    if let Some(i) = (0..d.len()).find(|&i| d[i] != t[i]) {
        return mismatch(format!("token {i} is {:?} vs {:?}", d[i], t[i]));
    }
    for key in ["tokenizer.ggml.bos_token_id", "tokenizer.ggml.eos_token_id"] {
        let id = |f: &GgufFile| f.metadata().get_u64(key).ok();
        if id(draft) != id(target) {
            return mismatch(format!("{key} {:?} vs {:?}", id(draft), id(target)));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lookup_takes_what_followed_the_latest_longest_match() {
        // "a b c d ... a b" → "c d" follows the earlier "a b"
        let text = [1, 2, 3, 4, 9, 9, 1, 2];
        assert_eq!(lookup(&text, 3, 5), (vec![3, 4, 9, 9, 1], 2));
        assert_eq!(lookup(&text, 3, 2).0, vec![3, 4]);
        // the latest occurrence wins: "7" followed "5" last time
        let text = [5, 6, 0, 5, 7, 0, 5];
        assert_eq!(lookup(&text, 1, 1), (vec![7], 1));
        // a longer match beats a later shorter one
        let text = [8, 5, 6, 1, 9, 5, 2, 9, 8, 5];
        assert_eq!(lookup(&text, 2, 2), (vec![6, 1], 2));
        assert_eq!(lookup(&text, 1, 2), (vec![2, 9], 1));
        // nothing earlier matches
        assert_eq!(lookup(&[1, 2, 3], 2, 4), (vec![], 0));
        assert_eq!(lookup(&[1], 2, 4), (vec![], 0));
        assert_eq!(lookup(&[], 2, 4), (vec![], 0));
    }

    #[test]
    fn options_are_checked() {
        let o = |max, min, p_min| {
            DraftOptions {
                max,
                min,
                p_min,
                adaptive: true,
            }
            .validate()
        };
        assert!(o(8, 0, 0.0).is_ok());
        assert!(o(0, 0, 0.0).unwrap_err().contains("--draft-max"));
        assert!(o(2, 3, 0.0).unwrap_err().contains("--draft-min"));
        assert!(o(2, 0, 1.5).unwrap_err().contains("--draft-p-min"));
        assert!(Drafter::lookup(0, DraftOptions::default()).is_err());
    }

    #[test]
    fn stats_derive_rates() {
        let s = SpecStats {
            target_forwards: 10,
            rounds: 8,
            drafted: 32,
            accepted: 20,
            ..Default::default()
        };
        assert_eq!(s.acceptance(), Some(20.0 / 32.0));
        assert_eq!(s.tokens_per_forward(), Some(3.0));
        assert_eq!(s.mean_accepted(), Some(2.5));
        assert_eq!(SpecStats::default().acceptance(), None);
    }

    #[test]
    fn draft_length_follows_acceptance_and_cost() {
        // free verification: draft all; nothing accepted: draft nothing
        assert_eq!(best_length(8, 0.5, 1.0, 0.0, 0.0), 8);
        assert_eq!(best_length(8, 0.0, 1.0, 0.1, 0.0), 0);
        // each extra row costs half a pass (this CPU's measured slope): only near-certain
        // drafts pay, and then in full
        assert_eq!(best_length(8, 0.6, 1.0, 0.5, 0.0), 1);
        assert_eq!(best_length(8, 0.99, 1.0, 0.5, 0.0), 8);
        // by hand: alpha 0.8, c1 0.2: k=3 gives 2.952 / 1.6 = 1.845, k=4 3.3616 / 1.8 = 1.868,
        // k=5 3.689 / 2.0 = 1.845
        assert_eq!(best_length(8, 0.8, 1.0, 0.2, 0.0), 4);
        // a draft model's own time counts like verification time
        assert_eq!(best_length(8, 0.8, 1.0, 0.0, 0.2), 4);
        let mut c = PassCost::default();
        assert_eq!(c.model(), None);
        c.observe(1, 0.026);
        assert_eq!(c.model(), Some((0.026, 0.0)));
        c.observe(9, 0.126);
        let (c0, c1) = c.model().unwrap();
        assert!((c0 - 0.026).abs() < 1e-12 && (c1 - 0.0125).abs() < 1e-12);
        c.observe(1, 0.036); // a moving average
        assert!((c.model().unwrap().0 - 0.028).abs() < 1e-12);
    }

    #[test]
    fn acceptance_is_learned_per_bucket() {
        let mut a = Acceptance::default();
        assert_eq!(a.alpha(3), 0.5);
        let mut st = SpecStats::default();
        a.expect(3, &st);
        // the verification: 4 of 4 accepted
        st.rounds += 1;
        st.accepted += 4;
        st.full += 1;
        a.settle(&st);
        assert_eq!(a.alpha(3), 5.0 / 6.0);
        assert_eq!(a.alpha(1), 0.5);
        a.expect(1, &st);
        st.rounds += 1; // 0 accepted: one rejection
        a.settle(&st);
        assert_eq!(a.alpha(1), 1.0 / 3.0);
        a.settle(&st); // nothing in flight: no change
        assert_eq!(a.alpha(1), 1.0 / 3.0);
    }

    #[test]
    fn top_probability_is_the_softmax_of_the_maximum() {
        let (t, p) = top_probability(&[0.0, (3f32).ln(), 0.0]);
        assert_eq!(t, 1);
        assert!((p - 0.6).abs() < 1e-6);
    }
}

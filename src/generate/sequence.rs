//! [`Sequence`]: what one conversation owns — its KV cache and the tokens in it, the tokens
//! still to run, its sampler, stop filter and detokenizer, its limits and its telemetry. The
//! model it runs on is shared: [`super::step`] runs the pending tokens of several sequences in
//! one forward pass.

use super::stop::StopFilter;
use super::{Budget, Cost, GenerateError, GenerateOptions, StopReason, Summary};
use crate::model::KvCache;
use crate::sampling::Sampler;
use crate::telemetry::ledger::Traffic;
use crate::tokenizer::Detokenizer;
use std::time::{Duration, Instant};

/// One conversation's state (see the module docs).
pub struct Sequence {
    pub(crate) cache: KvCache,
    /// Tokens whose keys and values are in the cache, at positions `0..cached.len()`.
    pub(crate) cached: Vec<u32>,
    /// Tokens to run next: the prompt not yet prefilled, or the last sampled token.
    pub(crate) pending: Vec<u32>,
    pub(crate) sampler: Sampler,
    pub(crate) opts: GenerateOptions,
    pub(crate) stop: StopFilter,
    pub(crate) detok: Detokenizer,
    pub(crate) n_prompt: usize,
    /// Prompt tokens whose keys and values were already in the cache (a reused prefix).
    pub(crate) reused: usize,
    pub(crate) generated: Vec<u32>,
    pub(crate) text: String,
    pub(crate) finished: Option<StopReason>,
    // telemetry
    pub(crate) start: Option<Instant>,
    pub(crate) prefill_time: Duration,
    pub(crate) prefill_traffic: Traffic,
    pub(crate) ttft: Duration,
    pub(crate) decode_time: Duration,
    pub(crate) decode_steps: usize,
    pub(crate) decode_traffic: Traffic,
    /// What the tokens cost so far (the step's `price` of each event).
    pub(crate) spent: Cost,
    /// Tokens proposed by a [`super::Drafter`] to follow `pending`, verified by the next step.
    pub(crate) draft: Vec<u32>,
    /// The drafting's time and traffic not yet charged to a token (the next step's tokens
    /// share it).
    pub(crate) draft_cost: (Duration, Traffic),
    /// A draft model's cache for this sequence and the tokens in it.
    pub(crate) draft_slot: Option<super::draft::DraftSlot>,
    pub(crate) spec: super::SpecStats,
    /// How its drafts fared, by source, for the draft length.
    pub(crate) acceptance: super::draft::Acceptance,
}

impl Sequence {
    /// A sequence that will generate from `prompt` (token ids, BOS included if wanted) into
    /// `cache` (from [`crate::model::Model::new_cache`]).
    pub fn new(
        cache: KvCache,
        prompt: &[u32],
        sampler: Sampler,
        opts: GenerateOptions,
    ) -> Result<Self, GenerateError> {
        let mut s = Sequence {
            cache,
            cached: Vec::new(),
            pending: Vec::new(),
            stop: StopFilter::new(Vec::new()),
            sampler: Sampler::greedy(),
            opts: GenerateOptions::default(),
            detok: Detokenizer::default(),
            n_prompt: 0,
            reused: 0,
            generated: Vec::new(),
            text: String::new(),
            finished: None,
            start: None,
            prefill_time: Duration::ZERO,
            prefill_traffic: Traffic::default(),
            ttft: Duration::ZERO,
            decode_time: Duration::ZERO,
            decode_steps: 0,
            decode_traffic: Traffic::default(),
            spent: Cost::default(),
            draft: Vec::new(),
            draft_cost: (Duration::ZERO, Traffic::default()),
            draft_slot: None,
            spec: super::SpecStats::default(),
            acceptance: Default::default(),
        };
        s.restart(prompt, sampler, opts)?;
        Ok(s)
    }

    /// Starts a new generation from `prompt` in the same cache. The longest prefix of
    /// `prompt` whose keys and values the cache still holds (a system prompt, the earlier
    /// turns of a chat) is kept and not run again — at least the last prompt token is, for its
    /// logits. Returns how many prompt tokens were reused.
    pub fn restart(
        &mut self,
        prompt: &[u32],
        sampler: Sampler,
        opts: GenerateOptions,
    ) -> Result<usize, GenerateError> {
        super::check_prompt(prompt, self.cache.ctx)?;
        let keep = self
            .cache
            .reusable(self.common_prefix(prompt).min(prompt.len() - 1));
        self.cached.truncate(keep);
        self.pending = prompt[keep..].to_vec();
        self.stop = StopFilter::new(opts.stop.clone());
        self.sampler = sampler;
        self.opts = opts;
        self.detok = Detokenizer::default();
        self.n_prompt = prompt.len();
        self.reused = keep;
        self.generated.clear();
        self.text.clear();
        self.finished = None;
        self.start = None;
        self.prefill_time = Duration::ZERO;
        self.prefill_traffic = Traffic::default();
        self.ttft = Duration::ZERO;
        self.decode_time = Duration::ZERO;
        self.decode_steps = 0;
        self.decode_traffic = Traffic::default();
        self.spent = Cost::default();
        self.draft.clear();
        self.draft_cost = (Duration::ZERO, Traffic::default());
        self.spec = super::SpecStats::default();
        self.acceptance = Default::default();
        Ok(keep)
    }

    /// How many leading tokens of `prompt` the cache holds and can continue from (a
    /// sliding-window ring may have written over what an earlier prefix needs:
    /// [`KvCache::reusable`]).
    pub fn common_prefix(&self, prompt: &[u32]) -> usize {
        let shared = self
            .cached
            .iter()
            .zip(prompt)
            .take_while(|(a, b)| a == b)
            .count();
        self.cache.reusable(shared)
    }

    /// Ends the generation (a client went away, a budget ran out): the next step skips it.
    pub fn cancel(&mut self, why: StopReason) {
        if self.finished.is_none() {
            self.finished = Some(why);
        }
    }

    /// Why generation ended, or `None` while it goes on.
    pub fn finished(&self) -> Option<StopReason> {
        self.finished
    }

    /// Whether the prompt still has tokens to run.
    pub fn in_prefill(&self) -> bool {
        self.cached.len() < self.n_prompt
    }

    /// Prompt tokens whose keys and values came from the cache (see [`Sequence::restart`]).
    pub fn reused_tokens(&self) -> usize {
        self.reused
    }

    /// Generated ids so far.
    pub fn tokens(&self) -> &[u32] {
        &self.generated
    }

    /// Generated text so far (what the events released).
    pub fn text(&self) -> &str {
        &self.text
    }

    /// Positions of the cache in use.
    pub fn len(&self) -> usize {
        self.cached.len()
    }

    pub fn is_empty(&self) -> bool {
        self.cached.is_empty()
    }

    /// Positions the cache holds.
    pub fn ctx(&self) -> usize {
        self.cache.ctx
    }

    pub fn options(&self) -> &GenerateOptions {
        &self.opts
    }

    /// Bytes moved for this sequence so far: its share of each step's shared traffic (the
    /// weights, read once per step for every sequence in it) and its own (its KV cache).
    pub fn traffic(&self) -> Traffic {
        let mut t = self.prefill_traffic;
        t += self.decode_traffic;
        t
    }

    /// What the tokens cost so far, by the step's price.
    pub fn spent(&self) -> Cost {
        self.spent
    }

    /// Adds an event's cost; ends the generation when a budget is spent.
    pub(crate) fn charge(&mut self, c: Cost) {
        self.spent += c;
        let over = |spent: f64, max: Option<f64>| max.is_some_and(|m| spent >= m);
        if over(self.spent.joules, self.opts.max_energy_j) {
            self.cancel(StopReason::Budget(Budget::Energy));
        } else if over(self.spent.usd, self.opts.max_cost_usd) {
            self.cancel(StopReason::Budget(Budget::Cost));
        }
    }

    /// Gives the cache back (to [`crate::model::Model::release_cache`]).
    pub fn into_cache(self) -> KvCache {
        self.cache
    }

    /// Takes the draft model's cache out (for [`super::Drafter::release`]).
    pub fn take_draft_cache(&mut self) -> Option<KvCache> {
        self.draft_slot.take().map(|d| d.cache)
    }

    /// Takes the sampler out (its RNG state advanced), leaving a greedy one.
    pub fn take_sampler(&mut self) -> Sampler {
        std::mem::replace(&mut self.sampler, Sampler::greedy())
    }

    /// Speculative decoding's counters so far.
    pub fn spec(&self) -> &super::SpecStats {
        &self.spec
    }

    /// Whether the next step can verify a draft: decoding, not finished, nothing drafted yet.
    pub(crate) fn wants_draft(&self) -> bool {
        self.finished.is_none()
            && !self.in_prefill()
            && self.pending.len() == 1
            && self.draft.is_empty()
    }

    /// The text so far as ids: the cached tokens and the one still pending.
    pub(crate) fn context(&self) -> impl Iterator<Item = &u32> {
        self.cached.iter().chain(&self.pending)
    }

    /// Totals of the generation so far.
    pub fn summary(&self) -> Summary {
        Summary {
            n_prompt: self.n_prompt,
            n_generated: self.generated.len(),
            tokens: self.generated.clone(),
            text: self.text.clone(),
            prefill_time: self.prefill_time,
            ttft: self.ttft,
            decode_time: self.decode_time,
            decode_steps: self.decode_steps,
            stop: self.finished.unwrap_or(StopReason::Length),
            spec: self.spec,
        }
    }
}

//! Generation: prefill the prompt, then decode token by token — sample, stream text, stop on
//! end-of-generation, a stop string, the token limit or a full context — emitting one
//! [`TokenEvent`] per token so callers (the CLI, an embedding app, the server) can show
//! progress and cost. A [`Sequence`] holds one generation's state; [`step`] advances several
//! at once in one forward pass (continuous batching); [`generate`] runs one to the end.
//! With a [`Drafter`] (a small draft model, or n-gram lookup in the text so far), a decoding
//! sequence's step verifies several proposed tokens in one forward pass (speculative decoding).

pub mod draft;
mod sequence;
mod step;
mod stop;

pub use draft::{DraftOptions, Drafter, SpecStats};
pub use sequence::Sequence;
pub use step::{step, StepLimits, StepReport};

use crate::model::{Model, ModelError};
use crate::sampling::Sampler;
use crate::telemetry::ledger::Traffic;
use crate::tokenizer::{Tokenizer, TokenizerError};
use std::time::Duration;

#[derive(Debug, thiserror::Error)]
pub enum GenerateError {
    #[error(transparent)]
    Model(#[from] ModelError),
    #[error(transparent)]
    Tokenizer(#[from] TokenizerError),
    #[error("the prompt is empty (no tokens)")]
    EmptyPrompt,
    #[error(
        "the prompt has {prompt} tokens but the context holds {ctx} (use a larger --ctx-size)"
    )]
    PromptTooLong { prompt: usize, ctx: usize },
}

/// What to generate.
#[derive(Clone, Debug)]
pub struct GenerateOptions {
    /// Most tokens to generate.
    pub max_tokens: usize,
    /// Generation stops when the text contains one of these (which is not emitted).
    pub stop: Vec<String>,
    /// Keep going through end-of-generation tokens (benchmarks, oracle comparisons).
    pub ignore_eog: bool,
    /// Report each generated token's log-probability and this many top alternatives
    /// ([`TokenEvent::logprob`]); costs a read of the logits per token on a GPU.
    pub logprobs: Option<usize>,
    /// Stop once the tokens (prompt and generated) cost this many joules.
    pub max_energy_j: Option<f64>,
    /// Stop once the tokens cost this many US dollars.
    pub max_cost_usd: Option<f64>,
}

/// What some tokens cost in energy and money (see [`step`]'s `price`).
#[derive(Clone, Copy, Debug, Default, PartialEq, serde::Serialize)]
pub struct Cost {
    pub joules: f64,
    pub usd: f64,
}

impl std::ops::AddAssign for Cost {
    fn add_assign(&mut self, o: Cost) {
        self.joules += o.joules;
        self.usd += o.usd;
    }
}

/// Which per-request budget ended a generation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Budget {
    /// `max_energy_j`
    Energy,
    /// `max_cost_usd`
    Cost,
}

impl Default for GenerateOptions {
    fn default() -> Self {
        GenerateOptions {
            max_tokens: 128,
            stop: Vec::new(),
            ignore_eog: false,
            logprobs: None,
            max_energy_j: None,
            max_cost_usd: None,
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Phase {
    Prefill,
    Decode,
}

/// One token's record: what it cost and the text it released.
///
/// Costs follow the work: a prompt token gets an even share of the prefill batch; a generated
/// token gets the forward pass that produced its logits (none for the first one, whose logits
/// came from the prefill) plus its sampling. The durations of all events add up to the
/// generation's wall time.
#[derive(Clone, Debug)]
pub struct TokenEvent<'a> {
    pub phase: Phase,
    /// Position in the sequence.
    pub pos: usize,
    pub token: u32,
    /// Text that became final with this token (may be empty; prefill events have none).
    pub text: &'a str,
    /// Time since generation started, at the end of this token's work.
    pub at: Duration,
    /// Time attributed to this token.
    pub duration: Duration,
    /// Bytes moved and FLOPs performed for this token (from the op ledger).
    pub traffic: Traffic,
    /// True for the last event of a run that only releases held-back text (no token, no cost).
    pub flush: bool,
    /// The token's log-probability and the most likely alternatives, when asked for
    /// ([`GenerateOptions::logprobs`]; generated tokens only).
    pub logprob: Option<TokenLogprob>,
}

/// A generated token's log-probability under the model (log-softmax of its logits, before
/// any sampling transform) and the `top` most likely tokens with theirs, largest first.
#[derive(Clone, Debug, PartialEq)]
pub struct TokenLogprob {
    pub logprob: f32,
    pub top: Vec<(u32, f32)>,
}

impl TokenLogprob {
    /// From one row of logits.
    pub fn of(logits: &[f32], token: u32, top: usize) -> Self {
        let m = logits.iter().fold(f32::NEG_INFINITY, |a, &b| a.max(b));
        let lse = m + logits
            .iter()
            .map(|&l| ((l - m) as f64).exp())
            .sum::<f64>()
            .ln() as f32;
        let lp = |t: u32| {
            logits
                .get(t as usize)
                .map_or(f32::NEG_INFINITY, |l| l - lse)
        };
        let top = crate::sampling::top_k(logits, top)
            .into_iter()
            .map(|(t, _)| (t, lp(t)))
            .collect();
        TokenLogprob {
            logprob: lp(token),
            top,
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StopReason {
    /// `max_tokens` reached.
    Length,
    /// The model produced an end-of-generation token.
    EndOfGeneration,
    /// A stop string appeared.
    StopString,
    /// The KV cache is full.
    ContextFull,
    /// The event callback asked to stop.
    Cancelled,
    /// A per-request budget was spent.
    Budget(Budget),
}

/// Totals of one generation.
#[derive(Clone, Debug)]
pub struct Summary {
    pub n_prompt: usize,
    pub n_generated: usize,
    /// Generated ids (including an end-of-generation id if one ended the run).
    pub tokens: Vec<u32>,
    pub text: String,
    pub prefill_time: Duration,
    /// Time to first token: prefill plus the first sampling.
    pub ttft: Duration,
    /// Time of the decode steps: each forward pass (every generated token after the first
    /// needs one) and the sampling of its token. On a GPU the two are one submit: the forward
    /// pass is only recorded, and the sampler's read back waits for it.
    pub decode_time: Duration,
    pub decode_steps: usize,
    pub stop: StopReason,
    /// Speculative decoding's counters and the drafting's cost (all zero without a drafter).
    pub spec: SpecStats,
}

impl Summary {
    pub fn prefill_tok_s(&self) -> f64 {
        self.n_prompt as f64 / self.prefill_time.as_secs_f64().max(1e-9)
    }
    pub fn decode_tok_s(&self) -> f64 {
        self.decode_steps as f64 / self.decode_time.as_secs_f64().max(1e-9)
    }
}

/// Refuses a prompt a sequence with `ctx` positions cannot run: empty, or leaving no
/// position for a generated token.
pub fn check_prompt(prompt: &[u32], ctx: usize) -> Result<(), GenerateError> {
    if prompt.is_empty() {
        return Err(GenerateError::EmptyPrompt);
    }
    if prompt.len() >= ctx {
        return Err(GenerateError::PromptTooLong {
            prompt: prompt.len(),
            ctx,
        });
    }
    Ok(())
}

/// Generates from `prompt` (token ids, BOS included if wanted) as one sequence in a cache of
/// the model's full context, calling `on_event` for every prompt and generated token;
/// returning `false` from it stops generation. The sampler's state advances as it is used.
pub fn generate(
    model: &mut Model,
    tokenizer: &Tokenizer,
    prompt: &[u32],
    sampler: &mut Sampler,
    opts: &GenerateOptions,
    on_event: &mut dyn FnMut(&TokenEvent) -> bool,
) -> Result<Summary, GenerateError> {
    // the check Sequence::new makes, before the cache and the sampler are handed over
    check_prompt(prompt, model.ctx())?;
    let cache = model.new_cache(0)?;
    let s = std::mem::replace(sampler, Sampler::greedy());
    let mut seq = Sequence::new(cache, prompt, s, opts.clone())?;
    let limits = StepLimits {
        max_tokens: model.batch(),
    };
    let result = (|| {
        while seq.finished().is_none() {
            let free = |_: &TokenEvent| Cost::default();
            let r = step(
                model,
                tokenizer,
                &mut [&mut seq],
                limits,
                &free,
                &mut |_, ev| on_event(ev),
            )?;
            if r.tokens == 0 {
                break;
            }
        }
        Ok(seq.summary())
    })();
    *sampler = std::mem::replace(&mut seq.sampler, Sampler::greedy());
    model.release_cache(seq.into_cache());
    result
}

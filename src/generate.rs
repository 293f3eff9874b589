//! The generation loop: prefill the prompt, then decode token by token — sample, stream text,
//! stop on end-of-generation, a stop string, the token limit or a full context — emitting one
//! [`TokenEvent`] per token so callers (the CLI, an embedding app) can show progress and cost.

use crate::model::{Logits, Model, ModelError};
use crate::sampling::Sampler;
use crate::telemetry::ledger::Traffic;
use crate::tokenizer::{Tokenizer, TokenizerError};
use std::time::{Duration, Instant};

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
}

impl Default for GenerateOptions {
    fn default() -> Self {
        GenerateOptions {
            max_tokens: 128,
            stop: Vec::new(),
            ignore_eog: false,
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
}

impl Summary {
    pub fn prefill_tok_s(&self) -> f64 {
        self.n_prompt as f64 / self.prefill_time.as_secs_f64().max(1e-9)
    }
    pub fn decode_tok_s(&self) -> f64 {
        self.decode_steps as f64 / self.decode_time.as_secs_f64().max(1e-9)
    }
}

/// Holds back text that could be the start of a stop string.
struct StopFilter<'a> {
    stops: &'a [String],
    text: String,
    emitted: usize,
}

impl StopFilter<'_> {
    /// Adds decoded text; returns (text safe to emit now, whether a stop string was hit).
    fn push(&mut self, chunk: &str) -> (String, bool) {
        let search_from = self.emitted;
        self.text.push_str(chunk);
        let hit = self
            .stops
            .iter()
            .filter(|s| !s.is_empty())
            .filter_map(|s| {
                self.text[search_from..]
                    .find(s.as_str())
                    .map(|i| search_from + i)
            })
            .min();
        if let Some(end) = hit {
            let out = self.text[self.emitted..end].to_string();
            self.text.truncate(end);
            self.emitted = end;
            return (out, true);
        }
        // keep back the longest suffix that is a prefix of a stop string
        let mut safe = self.text.len();
        for (i, _) in self.text[self.emitted..].char_indices() {
            let at = self.emitted + i;
            let tail = &self.text[at..];
            if self
                .stops
                .iter()
                .any(|s| s.len() > tail.len() && s.starts_with(tail))
            {
                safe = at;
                break;
            }
        }
        let out = self.text[self.emitted..safe].to_string();
        self.emitted = safe;
        (out, false)
    }

    fn finish(&mut self) -> String {
        let out = self.text[self.emitted..].to_string();
        self.emitted = self.text.len();
        out
    }
}

/// Generates from `prompt` (token ids, BOS included if wanted), calling `on_event` for every
/// prompt and generated token; returning `false` from it stops generation.
pub fn generate(
    model: &mut Model,
    tokenizer: &Tokenizer,
    prompt: &[u32],
    sampler: &mut Sampler,
    opts: &GenerateOptions,
    on_event: &mut dyn FnMut(&TokenEvent) -> bool,
) -> Result<Summary, GenerateError> {
    if prompt.is_empty() {
        return Err(GenerateError::EmptyPrompt);
    }
    if prompt.len() >= model.ctx() {
        return Err(GenerateError::PromptTooLong {
            prompt: prompt.len(),
            ctx: model.ctx(),
        });
    }
    let start = Instant::now();
    let vocab = model.config.n_vocab;
    let mut logits_host = vec![0f32; vocab];
    let mut history: Vec<u32> = prompt.to_vec();

    let ledger0 = model.ops().ledger().total();
    let logits = model.forward(prompt, 0, Logits::Last)?;
    model.ops().sync().map_err(ModelError::from)?;
    let prefill_time = start.elapsed();
    let prefill_traffic = model.ops().ledger().total() - ledger0;
    let per = prefill_time / prompt.len() as u32;
    let per_traffic = prefill_traffic.per(prompt.len() as u64);
    let mut cancelled = false;
    for (i, &t) in prompt.iter().enumerate() {
        let ev = TokenEvent {
            phase: Phase::Prefill,
            pos: i,
            token: t,
            text: "",
            at: per * (i as u32 + 1),
            duration: per,
            traffic: per_traffic,
            flush: false,
        };
        cancelled |= !on_event(&ev);
    }

    let mut stream = tokenizer.stream();
    let mut filter = StopFilter {
        stops: &opts.stop,
        text: String::new(),
        emitted: 0,
    };
    let mut tokens = Vec::new();
    let mut text = String::new();
    let mut decode_time = Duration::ZERO;
    let mut decode_steps = 0;
    let mut ttft = Duration::ZERO;
    let mut pos = prompt.len();
    let mut logits = logits;
    // the forward pass whose logits the next token is sampled from (none for the first)
    let mut step_time = Duration::ZERO;
    let mut step_traffic = Traffic::default();
    let mut stop = StopReason::Length;
    if cancelled {
        stop = StopReason::Cancelled;
    }
    while !cancelled && tokens.len() < opts.max_tokens {
        let t0 = Instant::now();
        let ledger_before_sample = model.ops().ledger().total();
        let token = if sampler.is_greedy() && sampler.params().repeat_penalty == 1.0 {
            model
                .ops()
                .argmax(logits, 0, vocab)
                .map_err(ModelError::from)?
        } else if let Some(k) = sampler.top_k_only() {
            // top-k on the device: k candidates come back instead of the vocabulary
            let top = model
                .ops()
                .top_k(logits, 0, vocab, k)
                .map_err(ModelError::from)?;
            sampler.sample_top_k(&top)
        } else {
            model
                .ops()
                .read(logits, 0, &mut logits_host)
                .map_err(ModelError::from)?;
            sampler.sample(&logits_host, &history)
        };
        let sample_time = t0.elapsed();
        if !tokens.is_empty() {
            // a decode step: the forward pass below in the last iteration, and this sampling
            decode_time += step_time + sample_time;
        }
        let mut traffic = step_traffic;
        traffic += model.ops().ledger().total() - ledger_before_sample;
        if tokens.is_empty() {
            ttft = start.elapsed();
        }
        tokens.push(token);
        history.push(token);
        let eog = tokenizer.is_eog(token) && !opts.ignore_eog;
        let (chunk, hit) = if eog {
            (String::new(), false)
        } else {
            filter.push(&stream.push(token)?)
        };
        text.push_str(&chunk);
        let ev = TokenEvent {
            phase: Phase::Decode,
            pos,
            token,
            text: &chunk,
            at: start.elapsed(),
            duration: step_time + sample_time,
            traffic,
            flush: false,
        };
        if !on_event(&ev) {
            stop = StopReason::Cancelled;
            break;
        }
        if eog {
            stop = StopReason::EndOfGeneration;
            break;
        }
        if hit {
            stop = StopReason::StopString;
            break;
        }
        if tokens.len() >= opts.max_tokens {
            break;
        }
        if pos + 1 > model.ctx() {
            stop = StopReason::ContextFull;
            break;
        }
        let t1 = Instant::now();
        let ledger_before = model.ops().ledger().total();
        // no sync: the sampling above, next iteration, waits for this pass (one submit and one
        // host wait per token on a GPU)
        logits = model.forward(&[token], pos, Logits::Last)?;
        step_time = t1.elapsed();
        step_traffic = model.ops().ledger().total() - ledger_before;
        decode_steps += 1;
        pos += 1;
    }
    if !matches!(stop, StopReason::StopString | StopReason::EndOfGeneration) {
        let rest = stream.finish()?;
        let (mut tail, _) = filter.push(&rest);
        tail.push_str(&filter.finish());
        if !tail.is_empty() {
            text.push_str(&tail);
            let ev = TokenEvent {
                phase: Phase::Decode,
                pos,
                token: *tokens.last().unwrap_or(&0),
                text: &tail,
                at: start.elapsed(),
                duration: Duration::ZERO,
                traffic: Traffic::default(),
                flush: true,
            };
            on_event(&ev);
        }
    }
    Ok(Summary {
        n_prompt: prompt.len(),
        n_generated: tokens.len(),
        tokens,
        text,
        prefill_time,
        ttft,
        decode_time,
        decode_steps,
        stop,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stop_filter_holds_back_partial_matches() {
        let stops = vec!["END".to_string()];
        let mut f = StopFilter {
            stops: &stops,
            text: String::new(),
            emitted: 0,
        };
        assert_eq!(f.push("hello E"), ("hello ".into(), false));
        assert_eq!(f.push("N"), ("".into(), false));
        assert_eq!(f.push("X more"), ("ENX more".into(), false));
        assert_eq!(f.push(" and EN"), (" and ".into(), false));
        assert_eq!(f.push("D tail"), ("".into(), true));
        assert_eq!(f.text, "hello ENX more and ");
        let mut g = StopFilter {
            stops: &stops,
            text: String::new(),
            emitted: 0,
        };
        assert_eq!(g.push("x ENDy"), ("x ".into(), true));
        let none: Vec<String> = vec![];
        let mut h = StopFilter {
            stops: &none,
            text: String::new(),
            emitted: 0,
        };
        assert_eq!(h.push("abc"), ("abc".into(), false));
        assert_eq!(h.finish(), "");
    }
}

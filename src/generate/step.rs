//! One step of continuous batching: the pending tokens of several [`Sequence`]s — a decode
//! token each for those generating, prompt chunks for those prefilling — go through the model
//! in one forward pass (the weights are read once for all of them); then each sequence that
//! asked for logits samples its next token.
//!
//! Cost follows the work: a step's shared traffic and forward time are split among its
//! sequences by their share of its tokens; what a sequence's own ops moved (its RoPE, KV-cache
//! writes and attention, tagged in the ledger) and its sampling are its own.

use super::{Cost, GenerateError, Phase, Sequence, StopReason, TokenEvent, TokenLogprob};
use crate::model::{Batch, Model, ModelError};
use crate::telemetry::ledger::Traffic;
use crate::tokenizer::Tokenizer;
use std::time::{Duration, Instant};

/// What one step did.
#[derive(Clone, Debug, Default)]
pub struct StepReport {
    /// Tokens run through the model (0: nothing was pending).
    pub tokens: usize,
    /// Sequences that had tokens in the step.
    pub sequences: usize,
    /// Prompt tokens among them.
    pub prefill_tokens: usize,
    /// Wall time of the step (forward pass and sampling).
    pub time: Duration,
}

/// Limits of one step.
#[derive(Clone, Copy, Debug)]
pub struct StepLimits {
    /// Most tokens in the step (prompt chunks are cut to fit; decode tokens go first).
    pub max_tokens: usize,
}

/// Runs one step over `seqs` (finished ones are skipped); `on_event(i, event)` gets every
/// prompt and generated token of `seqs[i]`, and returning `false` from it cancels that
/// sequence. `price` says what an event's work cost; it is charged to the sequence, which
/// stops when one of its budgets is spent.
pub fn step(
    model: &mut Model,
    tokenizer: &Tokenizer,
    seqs: &mut [&mut Sequence],
    limits: StepLimits,
    price: &dyn Fn(&TokenEvent) -> Cost,
    on_event: &mut dyn FnMut(usize, &TokenEvent) -> bool,
) -> Result<StepReport, GenerateError> {
    let max_tokens = limits.max_tokens.min(model.batch()).max(1);
    let max_logits = model.logit_rows();
    // who runs what: decode tokens first, then prompt chunks in the room left
    let mut take = vec![0usize; seqs.len()];
    let (mut n_tokens, mut n_logits) = (0, 0);
    for decode_pass in [true, false] {
        for (i, s) in seqs.iter().enumerate() {
            if s.finished.is_some() || s.pending.is_empty() || s.in_prefill() == decode_pass {
                continue;
            }
            let room = max_tokens - n_tokens;
            let n = s.pending.len().min(room);
            let wants_logits = n == s.pending.len();
            if n == 0 || (wants_logits && n_logits == max_logits) {
                continue;
            }
            take[i] = n;
            n_tokens += n;
            n_logits += wants_logits as usize;
        }
    }
    if n_tokens == 0 {
        return Ok(StepReport::default());
    }

    // the batch: each sequence's chunk at its next positions
    let t0 = Instant::now();
    let mut batch = Batch::new();
    // member k: seqs[members[k]], its cache at index k; its row of logits, if it wants one
    let mut members = Vec::new();
    let mut rows: Vec<Option<usize>> = Vec::new();
    let mut n_rows = 0;
    for (i, s) in seqs.iter_mut().enumerate() {
        if take[i] == 0 {
            continue;
        }
        if s.start.is_none() {
            s.start = Some(t0);
        }
        let wants_logits = take[i] == s.pending.len();
        batch.push_run(
            &s.pending[..take[i]],
            s.cached.len(),
            members.len(),
            wants_logits,
        );
        members.push(i);
        rows.push(wants_logits.then_some(n_rows));
        n_rows += wants_logits as usize;
    }
    let caches: Vec<_> = members.iter().map(|&i| &seqs[i].cache).collect();
    let ledger0 = model.ops().ledger().total();
    model.ops().take_sequence_traffic();
    model.forward_batch(&batch, &caches)?;
    let prefill_tokens: usize = members
        .iter()
        .filter(|&&i| seqs[i].in_prefill())
        .map(|&i| take[i])
        .sum();
    if prefill_tokens > 0 {
        // prompt timing needs the work done (a GPU only records it); decode-only steps wait
        // in the sampler's read back instead, one host wait per step
        model.ops().sync().map_err(ModelError::from)?;
    }
    let forward_time = t0.elapsed();
    let own = model.ops().take_sequence_traffic();
    let mut shared = model.ops().ledger().total() - ledger0;
    for t in &own {
        shared = shared - *t;
    }

    let vocab = model.config.n_vocab;
    // greedy tokens of the whole batch at once (on a GPU: one read back for all of them)
    let mut greedy: Vec<Option<(u32, Duration, Traffic)>> = vec![None; members.len()];
    {
        let (mut offs, mut who) = (Vec::new(), Vec::new());
        for (k, &i) in members.iter().enumerate() {
            let s = &seqs[i];
            let stops_first = s.in_prefill() && s.opts.max_tokens == 0;
            if let Some(row) = rows[k] {
                if s.sampler.argmax_only() && s.finished.is_none() && !stops_first {
                    offs.push(logits_off(row, vocab));
                    who.push(k);
                }
            }
        }
        if !offs.is_empty() {
            let t = Instant::now();
            let l0 = model.ops().ledger().total();
            let logits = model.logits();
            let tokens = model
                .ops()
                .argmax_rows(logits, &offs, vocab)
                .map_err(ModelError::from)?;
            let each = t.elapsed() / offs.len() as u32;
            let traffic = (model.ops().ledger().total() - l0).per(offs.len() as u64);
            for (k, tok) in who.into_iter().zip(tokens) {
                greedy[k] = Some((tok, each, traffic));
            }
        }
    }
    for (k, &i) in members.iter().enumerate() {
        let s = &mut *seqs[i];
        let n = take[i];
        let share = n as f64 / n_tokens as f64;
        let mut traffic = scale(shared, share);
        traffic += own.get(k).copied().unwrap_or_default();
        let time = forward_time.mul_f64(share);
        let start = s.start.unwrap_or(t0);
        let chunk: Vec<u32> = s.pending.drain(..n).collect();
        let pos0 = s.cached.len();
        s.cached.extend_from_slice(&chunk);
        let row = rows[k].unwrap_or(0);
        let wants_logits = rows[k].is_some();

        if pos0 < s.n_prompt {
            // a prompt chunk: its tokens share the chunk's cost evenly
            s.prefill_traffic += traffic;
            let per = time / n as u32;
            let per_traffic = traffic.per(n as u64);
            let done = start.elapsed();
            for (j, &t) in chunk.iter().enumerate() {
                let ev = TokenEvent {
                    phase: Phase::Prefill,
                    pos: pos0 + j,
                    token: t,
                    text: "",
                    at: done.saturating_sub(per * (n - 1 - j) as u32),
                    duration: per,
                    traffic: per_traffic,
                    flush: false,
                    logprob: None,
                };
                s.charge(price(&ev));
                if !on_event(i, &ev) {
                    s.cancel(StopReason::Cancelled);
                }
            }
            if !s.in_prefill() {
                s.prefill_time = done;
            }
            if s.finished.is_some() {
                continue;
            }
            if wants_logits && s.opts.max_tokens == 0 {
                s.finished = Some(StopReason::Length);
            } else if wants_logits {
                let at = logits_off(row, vocab);
                let pre = greedy[k];
                sample(model, tokenizer, s, i, at, pre, None, price, on_event)?;
            }
        } else {
            // a decode step: this forward pass produced the logits of the next token
            let at = logits_off(row, vocab);
            let forward = Some((time, traffic));
            let pre = greedy[k];
            sample(model, tokenizer, s, i, at, pre, forward, price, on_event)?;
        }
    }
    Ok(StepReport {
        tokens: n_tokens,
        sequences: members.len(),
        prefill_tokens,
        time: t0.elapsed(),
    })
}

fn logits_off(row: usize, vocab: usize) -> usize {
    row * vocab
}

/// `t` times `f` (a sequence's share of a step's shared traffic).
fn scale(t: Traffic, f: f64) -> Traffic {
    let s = |v: u64| (v as f64 * f).round() as u64;
    Traffic {
        weight_bytes: s(t.weight_bytes),
        kv_read_bytes: s(t.kv_read_bytes),
        kv_write_bytes: s(t.kv_write_bytes),
        act_read_bytes: s(t.act_read_bytes),
        act_write_bytes: s(t.act_write_bytes),
        flops: s(t.flops),
    }
}

/// Samples `s`'s next token from the logits row at `off` — or takes `pre`, its greedy token
/// found with the batch's, and that search's share — and emits its event; `forward` is the
/// decode forward pass's share (time, traffic) that produced those logits (none for the first
/// token, whose logits came with the prompt).
#[allow(clippy::too_many_arguments)]
fn sample(
    model: &mut Model,
    tokenizer: &Tokenizer,
    s: &mut Sequence,
    i: usize,
    off: usize,
    pre: Option<(u32, Duration, Traffic)>,
    forward: Option<(Duration, Traffic)>,
    price: &dyn Fn(&TokenEvent) -> Cost,
    on_event: &mut dyn FnMut(usize, &TokenEvent) -> bool,
) -> Result<(), GenerateError> {
    let vocab = model.config.n_vocab;
    let logits = model.logits();
    let t0 = Instant::now();
    let ledger0 = model.ops().ledger().total();
    let ops = model.ops();
    let mut host = Vec::new();
    let token = if let Some((t, _, _)) = pre {
        t
    } else if s.sampler.argmax_only() {
        ops.argmax(logits, off, vocab).map_err(ModelError::from)?
    } else if let Some(k) = s.sampler.top_k_only() {
        // top-k on the device: k candidates come back instead of the vocabulary
        let top = ops.top_k(logits, off, vocab, k).map_err(ModelError::from)?;
        s.sampler.sample_top_k(&top)
    } else {
        host.resize(vocab, 0.0);
        ops.read(logits, off, &mut host).map_err(ModelError::from)?;
        s.sampler.sample(&host, &s.cached)
    };
    let logprob = match s.opts.logprobs {
        Some(top) => {
            if host.is_empty() {
                host.resize(vocab, 0.0);
                ops.read(logits, off, &mut host).map_err(ModelError::from)?;
            }
            Some(TokenLogprob::of(&host, token, top))
        }
        None => None,
    };
    let mut sample_time = t0.elapsed();
    let mut traffic = model.ops().ledger().total() - ledger0;
    if let Some((_, t, tr)) = pre {
        sample_time += t;
        traffic += tr;
    }
    let start = s.start.unwrap_or(t0);
    let mut duration = sample_time;
    match forward {
        Some((time, t)) => {
            duration += time;
            traffic += t;
            s.decode_time += duration;
            s.decode_steps += 1;
        }
        None => s.ttft = start.elapsed(),
    }
    s.decode_traffic += traffic;
    let pos = s.cached.len();
    s.generated.push(token);
    let eog = tokenizer.is_eog(token) && !s.opts.ignore_eog;
    let (chunk, hit) = if eog {
        (String::new(), false)
    } else {
        let piece = s.detok.push(tokenizer, token)?;
        s.stop.push(&piece)
    };
    s.text.push_str(&chunk);
    let ev = TokenEvent {
        phase: Phase::Decode,
        pos,
        token,
        text: &chunk,
        at: start.elapsed(),
        duration,
        traffic,
        flush: false,
        logprob,
    };
    s.charge(price(&ev));
    let stop = if !on_event(i, &ev) {
        Some(StopReason::Cancelled)
    } else if let Some(why) = s.finished {
        Some(why) // a budget
    } else if eog {
        Some(StopReason::EndOfGeneration)
    } else if hit {
        Some(StopReason::StopString)
    } else if s.generated.len() >= s.opts.max_tokens {
        Some(StopReason::Length)
    } else if pos + 1 > s.cache.ctx {
        Some(StopReason::ContextFull)
    } else {
        None
    };
    match stop {
        Some(why) => {
            s.finished = Some(why);
            if !matches!(why, StopReason::StopString | StopReason::EndOfGeneration) {
                flush(tokenizer, s, i, on_event)?;
            }
        }
        None => s.pending.push(token),
    }
    Ok(())
}

/// Releases text still held back by the detokenizer and the stop filter, as a last event
/// with no token and no cost.
fn flush(
    tokenizer: &Tokenizer,
    s: &mut Sequence,
    i: usize,
    on_event: &mut dyn FnMut(usize, &TokenEvent) -> bool,
) -> Result<(), GenerateError> {
    let rest = s.detok.finish(tokenizer)?;
    let (mut tail, _) = s.stop.push(&rest);
    tail.push_str(&s.stop.finish());
    if tail.is_empty() {
        return Ok(());
    }
    s.text.push_str(&tail);
    let ev = TokenEvent {
        phase: Phase::Decode,
        pos: s.cached.len(),
        token: *s.generated.last().unwrap_or(&0),
        text: &tail,
        at: s.start.map_or(Duration::ZERO, |t| t.elapsed()),
        duration: Duration::ZERO,
        traffic: Traffic::default(),
        flush: true,
        logprob: None,
    };
    on_event(i, &ev);
    Ok(())
}

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
    // who runs what: decode tokens (with their drafts) first, then prompt chunks in the room
    // left; `drafts[i]`: how many of seqs[i]'s drafted tokens are verified in this step
    let mut take = vec![0usize; seqs.len()];
    let mut drafts = vec![0usize; seqs.len()];
    let (mut n_tokens, mut n_logits) = (0, 0);
    for decode_pass in [true, false] {
        for (i, s) in seqs.iter().enumerate() {
            if s.finished.is_some() || s.pending.is_empty() || s.in_prefill() == decode_pass {
                continue;
            }
            let room = max_tokens - n_tokens;
            if decode_pass {
                // the pending token and as many drafted ones as fit, each with its logits
                let logit_room = max_logits - n_logits;
                let n = s.pending.len();
                if room < n || logit_room < n {
                    continue;
                }
                let ctx_room = s.cache.ctx.saturating_sub(s.cached.len() + n);
                drafts[i] = s
                    .draft
                    .len()
                    .min(room - n)
                    .min(logit_room - n)
                    .min(ctx_room);
                take[i] = n + drafts[i];
                n_tokens += take[i];
                n_logits += take[i];
                continue;
            }
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
        let pos0 = s.cached.len();
        let seq = members.len();
        if s.in_prefill() {
            let wants_logits = take[i] == s.pending.len();
            batch.push_run(&s.pending[..take[i]], pos0, seq, wants_logits);
            rows.push(wants_logits.then_some(n_rows));
            n_rows += wants_logits as usize;
        } else {
            // a decode token and its draft: every row's logits (row j checks draft token j)
            let run = s.pending.iter().chain(&s.draft[..drafts[i]]);
            for (j, &t) in run.enumerate() {
                batch.push(t, pos0 + j, seq, true);
            }
            rows.push(Some(n_rows));
            n_rows += take[i];
        }
        members.push(i);
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
    // greedy tokens of every wanted row of the batch at once (on a GPU: one read back for all)
    let mut greedy: Vec<Vec<Chosen>> = vec![Vec::new(); members.len()];
    {
        let (mut offs, mut who) = (Vec::new(), Vec::new());
        for (k, &i) in members.iter().enumerate() {
            let s = &seqs[i];
            let stops_first = s.in_prefill() && s.opts.max_tokens == 0;
            let n_rows = if s.in_prefill() { 1 } else { take[i] };
            if let Some(row) = rows[k] {
                if s.sampler.argmax_only() && s.finished.is_none() && !stops_first {
                    for j in 0..n_rows {
                        offs.push(logits_off(row + j, vocab));
                        who.push(k);
                    }
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
            let time = t.elapsed() / offs.len() as u32;
            let traffic = (model.ops().ledger().total() - l0).per(offs.len() as u64);
            for (k, token) in who.into_iter().zip(tokens) {
                greedy[k].push(Chosen {
                    token,
                    logprob: None,
                    time,
                    traffic,
                });
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
        let pos0 = s.cached.len();
        let row = rows[k].unwrap_or(0);
        let wants_logits = rows[k].is_some();

        if pos0 < s.n_prompt {
            // a prompt chunk: its tokens share the chunk's cost evenly
            let chunk: Vec<u32> = s.pending.drain(..n).collect();
            s.cached.extend_from_slice(&chunk);
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
                let pre = greedy[k].first().cloned();
                let c = choose(model, s, logits_off(row, vocab), pre)?;
                s.ttft = start.elapsed();
                let cost = (c.time, c.traffic);
                let stop = emit(
                    tokenizer,
                    s,
                    i,
                    &c,
                    cost,
                    Default::default(),
                    price,
                    on_event,
                )?;
                if stop.is_none() {
                    s.pending.push(c.token);
                }
            }
        } else {
            verify(
                model,
                tokenizer,
                s,
                i,
                row,
                n,
                (time, traffic),
                &greedy[k],
                price,
                on_event,
            )?;
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

/// A token picked from one row of logits, with what picking it took.
#[derive(Clone, Debug)]
struct Chosen {
    token: u32,
    logprob: Option<TokenLogprob>,
    time: Duration,
    traffic: Traffic,
}

/// A decode step's outcome for `s`: its `n` rows of logits from `row` on are the pending
/// token's and its draft's (`n - 1` tokens). Row `j`'s token is picked by the sampler as
/// without a draft; while it equals draft token `j` the draft goes on (that token's keys and
/// values are already in the cache); the first that differs, or the row after the last draft
/// token, ends the step and becomes the next pending token. Greedy, this gives exactly the
/// tokens decoding one at a time gives; sampling, every token is still drawn from the
/// target's distribution given the tokens before it (a deterministic draft's accept rule:
/// accept draft token `d` with probability p(d), else draw from p without `d`).
///
/// `forward` is the sequence's share of the forward pass; it and the drafting's cost are
/// split evenly among the tokens emitted.
#[allow(clippy::too_many_arguments)]
fn verify(
    model: &mut Model,
    tokenizer: &Tokenizer,
    s: &mut Sequence,
    i: usize,
    row: usize,
    n: usize,
    forward: (Duration, Traffic),
    greedy: &[Chosen],
    price: &dyn Fn(&TokenEvent) -> Cost,
    on_event: &mut dyn FnMut(usize, &TokenEvent) -> bool,
) -> Result<(), GenerateError> {
    let vocab = model.config.n_vocab;
    let draft: Vec<u32> = s.draft.drain(..).take(n - 1).collect();
    s.draft.clear();
    let token = s.pending.remove(0);
    s.cached.push(token);
    let mut chosen = Vec::with_capacity(n);
    for j in 0..n {
        let c = choose(model, s, logits_off(row + j, vocab), greedy.get(j).cloned())?;
        let accepted = draft.get(j) == Some(&c.token);
        chosen.push(c);
        if !accepted {
            break;
        }
        // its keys and values were written by this forward pass
        s.cached.push(draft[j]);
    }
    let st = &mut s.spec;
    st.target_forwards += 1;
    if !draft.is_empty() {
        st.rounds += 1;
        st.drafted += draft.len();
        st.accepted += chosen.len() - 1;
        st.full += (chosen.len() == n) as usize;
    }
    // the forward pass and the drafting, split among the tokens
    let (draft_time, draft_traffic) = std::mem::take(&mut s.draft_cost);
    let mut total = forward;
    total.0 += draft_time;
    total.1 += draft_traffic;
    let m = chosen.len();
    let each = (total.0 / m as u32, total.1.per(m as u64));
    for (j, c) in chosen.iter().enumerate() {
        let mut traffic = each.1;
        traffic += c.traffic;
        let cost = (each.0 + c.time, traffic);
        // what the tokens not emitted would have carried, if this one ends the generation
        let rest = (
            each.0 * (m - 1 - j) as u32,
            scale(each.1, (m - 1 - j) as f64),
        );
        s.decode_steps += 1;
        if emit(tokenizer, s, i, c, cost, rest, price, on_event)?.is_some() {
            return Ok(());
        }
    }
    if let Some(last) = chosen.last() {
        s.pending.push(last.token);
    }
    Ok(())
}

/// Picks `s`'s next token from the logits row at `off` — or takes `pre`, its greedy token
/// found with the batch's — with its log-probability when asked for.
fn choose(
    model: &mut Model,
    s: &mut Sequence,
    off: usize,
    pre: Option<Chosen>,
) -> Result<Chosen, GenerateError> {
    let vocab = model.config.n_vocab;
    let logits = model.logits();
    let t0 = Instant::now();
    let ledger0 = model.ops().ledger().total();
    let ops = model.ops();
    let mut host = Vec::new();
    let token = if let Some(c) = &pre {
        c.token
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
    let mut time = t0.elapsed();
    let mut traffic = model.ops().ledger().total() - ledger0;
    if let Some(c) = pre {
        time += c.time;
        traffic += c.traffic;
    }
    Ok(Chosen {
        token,
        logprob,
        time,
        traffic,
    })
}

/// Emits generated token `c` of `s` at the next position with `cost` (time, traffic) — plus
/// `rest` if the token ends the generation — and returns why generation stopped, if it did.
/// The caller makes it pending when it did not.
#[allow(clippy::too_many_arguments)]
fn emit(
    tokenizer: &Tokenizer,
    s: &mut Sequence,
    i: usize,
    c: &Chosen,
    cost: (Duration, Traffic),
    rest: (Duration, Traffic),
    price: &dyn Fn(&TokenEvent) -> Cost,
    on_event: &mut dyn FnMut(usize, &TokenEvent) -> bool,
) -> Result<Option<StopReason>, GenerateError> {
    let token = c.token;
    let start = s.start.unwrap_or_else(Instant::now);
    let pos = s.n_prompt + s.generated.len();
    s.generated.push(token);
    let eog = tokenizer.is_eog(token) && !s.opts.ignore_eog;
    let (chunk, hit) = if eog {
        (String::new(), false)
    } else {
        let piece = s.detok.push(tokenizer, token)?;
        s.stop.push(&piece)
    };
    s.text.push_str(&chunk);
    let ends = eog || hit || s.generated.len() >= s.opts.max_tokens || pos + 1 > s.cache.ctx;
    let (mut duration, mut traffic) = cost;
    if ends {
        duration += rest.0;
        traffic += rest.1;
    }
    if !s.in_prefill() && s.generated.len() > 1 {
        s.decode_time += duration;
    }
    s.decode_traffic += traffic;
    let ev = TokenEvent {
        phase: Phase::Decode,
        pos,
        token,
        text: &chunk,
        at: start.elapsed(),
        duration,
        traffic,
        flush: false,
        logprob: c.logprob.clone(),
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
    if let Some(why) = stop {
        s.finished = Some(why);
        if !matches!(why, StopReason::StopString | StopReason::EndOfGeneration) {
            flush(tokenizer, s, i, on_event)?;
        }
    }
    Ok(stop)
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

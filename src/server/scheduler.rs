//! The scheduler: one thread owns the [`Engine`] and `--parallel` slots, and runs continuous
//! batching. Each loop it takes the requests that arrived, gives waiting ones a free slot —
//! the one whose cached prompt shares the longest prefix with theirs, so a system prompt or
//! the earlier turns of a chat are not prefilled again — and runs one [`Engine::step`] over
//! every busy slot: a decode token for each generating request, prompt chunks for new ones
//! in the room left (`--batch-size` tokens per step), so a long prompt never freezes the
//! streams. Tokens go to each request's channel as they come; a request whose client went
//! away (its channel closed) is cancelled at the next step and its slot freed.

use super::metrics::Metrics;
use crate::engine::Engine;
use crate::generate::{
    Budget, GenerateOptions, Phase, Sequence, StopReason, TokenEvent, TokenLogprob,
};
use crate::sampling::{Sampler, SamplingParams};
use serde::Serialize;
use std::collections::VecDeque;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use std::time::Instant;
use tokio::sync::mpsc::UnboundedSender;

/// One request for the scheduler.
pub struct Job {
    pub prompt: Vec<u32>,
    pub sampling: SamplingParams,
    pub gen: GenerateOptions,
    pub tx: UnboundedSender<Update>,
    pub received: Instant,
}

/// What a request's handler hears.
#[derive(Debug)]
pub enum Update {
    /// A generated token and the text it released (may be empty).
    Token {
        token: u32,
        text: String,
        logprob: Option<TokenLogprob>,
    },
    /// Text released at the end without a token of its own.
    Text(String),
    Done(Box<Finish>),
    Failed(String),
}

/// How a request ended.
#[derive(Debug, Clone, Serialize)]
pub struct Finish {
    /// `stop` (end of generation or a stop string) or `length` (max_tokens, the context, a
    /// budget).
    pub reason: &'static str,
    /// The budget that ended it: `max_energy_j` or `max_cost_usd`.
    pub budget: Option<&'static str>,
    pub usage: Usage,
}

/// `usage` of a response: OpenAI's token counts, and what the tokens cost.
#[derive(Debug, Clone, Serialize)]
pub struct Usage {
    pub prompt_tokens: usize,
    pub completion_tokens: usize,
    pub total_tokens: usize,
    pub prompt_tokens_details: PromptDetails,
    pub cost: CostUsage,
    /// Speculative decoding's counters and rates (`serve --draft` / `--lookup` only); the
    /// cost above includes the drafting.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub speculative: Option<serde_json::Value>,
}

#[derive(Debug, Clone, Serialize)]
pub struct PromptDetails {
    /// Prompt tokens reused from the prefix cache (not prefilled again).
    pub cached_tokens: usize,
}

/// What a request's tokens cost: the same quantities `tokenfab run` reports.
#[derive(Debug, Clone, Serialize)]
pub struct CostUsage {
    pub prefill_seconds: f64,
    pub decode_seconds: f64,
    pub ttft_seconds: f64,
    /// Bytes moved (weights shared with the other requests of each step, split by tokens;
    /// this request's own KV cache; activations).
    pub bytes: u64,
    pub weight_bytes: u64,
    pub kv_bytes: u64,
    pub joules: f64,
    pub energy_source: String,
    pub usd: f64,
    /// The electricity price row the dollars use.
    pub electricity: &'static str,
    pub prefix_cache_hit: bool,
}

/// State the handlers and the scheduler share.
pub struct Shared {
    pub metrics: Mutex<Metrics>,
    /// Requests sent to the scheduler and not yet in a slot.
    pub waiting: AtomicUsize,
    pub max_queue: usize,
}

impl Shared {
    pub fn metrics(&self) -> std::sync::MutexGuard<'_, Metrics> {
        // a panicked holder leaves plain counters behind: keep using them
        self.metrics.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// A slot: a sequence (kept after its request, for the prefix cache) and the request it
/// serves now.
#[derive(Default)]
struct Slot {
    seq: Option<Sequence>,
    run: Option<Running>,
}

/// A request in a slot.
struct Running {
    tx: UnboundedSender<Update>,
    received: Instant,
    last_token: Option<Instant>,
    reused: usize,
}

/// Runs the scheduler until every sender of `rx` is gone.
pub fn run(mut engine: Engine, rx: mpsc::Receiver<Job>, parallel: usize, shared: Arc<Shared>) {
    let mut slots: Vec<Slot> = (0..parallel).map(|_| Slot::default()).collect();
    let mut queue: VecDeque<Job> = VecDeque::new();
    let energy_source = engine.energy_source().to_string();
    let spec_kind = engine.drafter().map(|d| d.kind());
    // every slot's KV cache allocated now, not when a request arrives: a cache is tens of MB
    // whose pages the allocator zeroes (~40 ms each on a 2-vCPU VM, which eight requests
    // arriving together would otherwise wait for in their time to first token)
    let caches: Vec<_> = (0..parallel)
        .map_while(|_| engine.model().new_cache(0).ok())
        .collect();
    for c in caches {
        engine.model().release_cache(c);
    }
    {
        let mut m = shared.metrics();
        m.slots = parallel;
        m.kv_total = parallel * engine.ctx();
    }
    loop {
        let busy = slots.iter().any(|s| s.run.is_some());
        if !busy && queue.is_empty() {
            match rx.recv() {
                Ok(j) => queue.push_back(j),
                Err(_) => return,
            }
        }
        while let Ok(j) = rx.try_recv() {
            queue.push_back(j);
        }
        assign(&mut engine, &mut slots, &mut queue, &shared);

        // one step over the busy slots
        let mut seqs: Vec<&mut Sequence> = Vec::new();
        let mut runs: Vec<&mut Running> = Vec::new();
        for s in slots.iter_mut() {
            if let (Some(seq), Some(run)) = (s.seq.as_mut(), s.run.as_mut()) {
                seqs.push(seq);
                runs.push(run);
            }
        }
        if seqs.is_empty() {
            continue;
        }
        let result = engine.step(&mut seqs, &mut |i, ev| on_event(runs[i], ev, &shared));
        drop(seqs);
        match result {
            Ok(r) => {
                let mut m = shared.metrics();
                m.steps += 1;
                m.step_tokens += r.tokens as u64;
                m.fault = None;
            }
            Err(e) => {
                // a device fault ends the requests in flight, not the server
                shared.metrics().fault = Some(e.to_string());
                for s in slots.iter_mut() {
                    if let (Some(seq), Some(run)) = (s.seq.as_mut(), s.run.take()) {
                        seq.cancel(StopReason::Cancelled);
                        let _ = run.tx.send(Update::Failed(e.to_string()));
                    }
                }
                continue;
            }
        }
        finish(&mut slots, &shared, &energy_source, spec_kind);
        let mut m = shared.metrics();
        m.busy_slots = slots.iter().filter(|s| s.run.is_some()).count();
        m.kv_used = slots
            .iter()
            .filter_map(|s| s.seq.as_ref())
            .map(|s| s.len())
            .sum();
        m.queue_len = queue.len();
    }
}

/// Gives waiting requests free slots, longest cached prefix first.
fn assign(engine: &mut Engine, slots: &mut [Slot], queue: &mut VecDeque<Job>, shared: &Shared) {
    while let Some(job) = queue.front() {
        if job.tx.is_closed() {
            // the client left while it waited
            queue.pop_front();
            shared.waiting.fetch_sub(1, Ordering::Relaxed);
            shared.metrics().cancelled += 1;
            continue;
        }
        let free: Vec<usize> = (0..slots.len())
            .filter(|&i| slots[i].run.is_none())
            .collect();
        let Some(&best) = free.iter().max_by_key(|&&i| {
            let reuse = slots[i]
                .seq
                .as_ref()
                .map_or(0, |s| s.common_prefix(&job.prompt));
            // longest prefix; among none, an empty slot before one holding another prompt
            (reuse, slots[i].seq.is_none())
        }) else {
            return;
        };
        let Some(job) = queue.pop_front() else {
            return;
        };
        shared.waiting.fetch_sub(1, Ordering::Relaxed);
        let sampler = Sampler::new(job.sampling);
        let slot = &mut slots[best];
        let started = match slot.seq.as_mut() {
            Some(seq) => seq
                .restart(&job.prompt, sampler, job.gen)
                .map_err(|e| e.to_string()),
            None => engine
                .new_sequence(&job.prompt, sampler, job.gen)
                .map(|seq| {
                    slot.seq = Some(seq);
                    0
                })
                .map_err(|e| e.to_string()),
        };
        match started {
            Ok(reused) => {
                {
                    let mut m = shared.metrics();
                    m.prefix_lookups += 1;
                    if reused > 0 {
                        m.prefix_hits += 1;
                        m.reused_tokens += reused as u64;
                    }
                }
                slot.run = Some(Running {
                    tx: job.tx,
                    received: job.received,
                    last_token: None,
                    reused,
                });
            }
            Err(e) => {
                let _ = job.tx.send(Update::Failed(e));
            }
        }
    }
}

/// A step's event for one request: tokens to its channel, latency to the metrics. `false`
/// (the client went away) cancels the request.
fn on_event(run: &mut Running, ev: &TokenEvent, shared: &Shared) -> bool {
    if ev.phase == Phase::Prefill {
        return !run.tx.is_closed();
    }
    let now = Instant::now();
    if ev.flush {
        return run.tx.send(Update::Text(ev.text.to_string())).is_ok();
    }
    {
        let mut m = shared.metrics();
        match run.last_token {
            None => m.ttft.observe((now - run.received).as_secs_f64()),
            Some(t) => m.itl.observe((now - t).as_secs_f64()),
        }
    }
    run.last_token = Some(now);
    run.tx
        .send(Update::Token {
            token: ev.token,
            text: ev.text.to_string(),
            logprob: ev.logprob.clone(),
        })
        .is_ok()
}

/// Reports finished requests and frees their slots (the sequences stay, for reuse).
fn finish(slots: &mut [Slot], shared: &Shared, energy_source: &str, spec: Option<&str>) {
    for s in slots.iter_mut() {
        let (Some(seq), Some(_)) = (s.seq.as_ref(), s.run.as_ref()) else {
            continue;
        };
        let Some(stop) = seq.finished() else {
            continue;
        };
        let Some(run) = s.run.take() else {
            continue;
        };
        let sum = seq.summary();
        let traffic = seq.traffic();
        let spent = seq.spent();
        let (reason, budget) = match stop {
            StopReason::EndOfGeneration | StopReason::StopString => ("stop", None),
            StopReason::Length | StopReason::ContextFull | StopReason::Cancelled => {
                ("length", None)
            }
            StopReason::Budget(Budget::Energy) => ("length", Some("max_energy_j")),
            StopReason::Budget(Budget::Cost) => ("length", Some("max_cost_usd")),
        };
        let usage = Usage {
            prompt_tokens: sum.n_prompt,
            completion_tokens: sum.n_generated,
            total_tokens: sum.n_prompt + sum.n_generated,
            prompt_tokens_details: PromptDetails {
                cached_tokens: run.reused,
            },
            cost: CostUsage {
                prefill_seconds: sum.prefill_time.as_secs_f64(),
                decode_seconds: sum.decode_time.as_secs_f64(),
                ttft_seconds: sum.ttft.as_secs_f64(),
                bytes: traffic.bytes(),
                weight_bytes: traffic.weight_bytes,
                kv_bytes: traffic.kv_read_bytes + traffic.kv_write_bytes,
                joules: spent.joules,
                energy_source: energy_source.to_string(),
                usd: spent.usd,
                electricity: crate::engine::DEFAULT_ELECTRICITY,
                prefix_cache_hit: run.reused > 0,
            },
            speculative: spec.map(|kind| sum.spec.json(kind)),
        };
        {
            let mut m = shared.metrics();
            m.prompt_tokens += sum.n_prompt as u64;
            m.generated_tokens += sum.n_generated as u64;
            m.joules += spent.joules;
            m.usd += spent.usd;
            if stop == StopReason::Cancelled {
                m.cancelled += 1;
            }
            if budget.is_some() {
                m.budget_stops += 1;
            }
        }
        let _ = run.tx.send(Update::Done(Box::new(Finish {
            reason,
            budget,
            usage,
        })));
    }
}

//! [`Engine`]: the library facade over one loaded model — what an embedder (the CLI, the
//! server, an app) needs, in one place. It owns what every conversation shares: the GGUF file,
//! the weights on a backend, the tokenizer and its chat template, the energy estimate and the
//! electricity price that turn a token's work into joules and dollars. A
//! [`Sequence`] owns what one conversation owns (its KV cache, position, sampler, stop filter,
//! detokenizer, limits and telemetry); [`Engine::step`] advances several in one forward pass.
//!
//! Loading builds the tokenizer on a second thread while the weights are mapped and uploaded.
//! Chat prompts are rendered with the model's template and get a BOS only if the template
//! did not write one.
//!
//! Load, generate with a callback that sees every token's cost, read the totals:
//!
//! ```
//! use tokenfab::engine::{Cost, Engine, EngineOptions};
//! use tokenfab::generate::{GenerateOptions, Phase};
//! use tokenfab::sampling::Sampler;
//! # let path = concat!(env!("CARGO_MANIFEST_DIR"), "/models/gemma-3-270m-q4_k_m.gguf");
//!
//! let mut engine = Engine::load(path.as_ref(), &EngineOptions::default())?;
//! let prompt = engine.encode("The capital of France is", true)?;
//! let opts = GenerateOptions { max_tokens: 8, ..Default::default() };
//! let pricer = engine.pricer(); // the engine itself is busy inside the callback
//! let mut spent = Cost::default();
//! let summary = engine.generate(&prompt, &mut Sampler::greedy(), &opts, &mut |ev| {
//!     let cost = pricer.cost(ev); // joules and dollars of this token's work
//!     spent += cost;
//!     if ev.phase == Phase::Decode {
//!         print!("{}", ev.text);
//!         let (ms, mb) = (ev.duration.as_secs_f64() * 1e3, ev.traffic.bytes() as f64 / 1e6);
//!         eprintln!("  {ms:.2} ms, {mb:.1} MB, {:.4} J, ${:.1e}", cost.joules, cost.usd);
//!     }
//!     true // false stops generation
//! })?;
//! assert_eq!(summary.n_generated, 8);
//! println!("\n{:.1} tok/s, {:.3} J ({})", summary.decode_tok_s(), spent.joules, engine.energy_source());
//! # Ok::<(), tokenfab::engine::EngineError>(())
//! ```
//!
//! Several conversations decoded together, as the server does: one [`Sequence`] each, one
//! [`Engine::step`] for all of them per forward pass (the weights are read once per step):
//!
//! ```
//! use tokenfab::engine::{Engine, EngineOptions};
//! use tokenfab::generate::GenerateOptions;
//! use tokenfab::model::LoadOptions;
//! use tokenfab::sampling::Sampler;
//! # let path = concat!(env!("CARGO_MANIFEST_DIR"), "/models/gemma-3-270m-q4_k_m.gguf");
//!
//! // room for two rows of logits per step: one per sequence decoding
//! let load = LoadOptions { logit_rows: 2, n_seq: 2, ctx: 256, ..Default::default() };
//! let mut engine = Engine::load(path.as_ref(), &EngineOptions { load, ..Default::default() })?;
//! let opts = GenerateOptions { max_tokens: 6, ..Default::default() };
//! let mut seqs = Vec::new();
//! for text in ["Once upon a time", "def fibonacci(n):"] {
//!     let prompt = engine.encode(text, true)?;
//!     seqs.push(engine.new_sequence(&prompt, Sampler::greedy(), opts.clone())?);
//! }
//! while seqs.iter().any(|s| s.finished().is_none()) {
//!     let mut batch: Vec<_> = seqs.iter_mut().collect();
//!     // `i` says whose token an event is; returning false cancels that sequence
//!     engine.step(&mut batch, &mut |_i, _ev| true)?;
//! }
//! for s in seqs {
//!     println!("{:?}: {} tokens, {:.4} J", s.text(), s.tokens().len(), s.spent().joules);
//!     engine.release(s); // the KV cache is kept for the next sequence
//! }
//! # Ok::<(), tokenfab::engine::EngineError>(())
//! ```

use crate::backend::{BackendError, BackendSpec};
pub use crate::generate::Cost;
use crate::generate::{
    self, DraftOptions, Drafter, GenerateError, GenerateOptions, Sequence, StepLimits, StepReport,
    Summary, TokenEvent,
};
use crate::gguf::{GgufError, GgufFile};
use crate::model::{Config, LoadOptions, Model, ModelError};
use crate::sampling::Sampler;
use crate::telemetry::energy::estimate::EnergyModel;
use crate::telemetry::energy::select::{self, EnergyOptions, SelectError};
use crate::tokenizer::chat::{self, Message};
use crate::tokenizer::{Tokenizer, TokenizerError};
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// Why an engine could not be made or used (the message says it all: the file's error is part
/// of it, not a separate `source`, so `{:#}` does not repeat it). The kinds say whose fault it
/// is: the caller's input ([`EngineError::Input`], a [`GenerateError`] about the prompt), the model file, or
/// the device.
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    #[error("cannot load model {path}: {cause}")]
    Open { path: String, cause: Box<GgufError> },
    #[error("cannot load model {path}: {cause}")]
    Load {
        path: String,
        cause: Box<ModelError>,
    },
    #[error("cannot build the tokenizer of {path}: {cause}")]
    Tokenizer {
        path: String,
        cause: Box<TokenizerError>,
    },
    #[error(transparent)]
    Backend(#[from] BackendError),
    #[error(transparent)]
    Energy(#[from] SelectError),
    #[error(transparent)]
    Generate(#[from] Box<GenerateError>),
    #[error("{0}")]
    Input(String),
}

impl From<ModelError> for EngineError {
    fn from(e: ModelError) -> Self {
        EngineError::Generate(Box::new(GenerateError::Model(e)))
    }
}

impl From<GenerateError> for EngineError {
    fn from(e: GenerateError) -> Self {
        EngineError::Generate(Box::new(e))
    }
}

impl From<TokenizerError> for EngineError {
    fn from(e: TokenizerError) -> Self {
        EngineError::Generate(Box::new(GenerateError::Tokenizer(e)))
    }
}

/// Everything fixed when a model is loaded.
#[derive(Clone, Debug)]
pub struct EngineOptions {
    pub backend: BackendSpec,
    pub load: LoadOptions,
    pub energy: EnergyOptions,
    /// CPU threads the work runs on (0 = all cores), for the energy estimate.
    pub threads: usize,
    /// Electricity price per kWh for the dollars of a token (default: the price table's
    /// `us-residential` row).
    pub usd_per_kwh: f64,
    /// Most tokens one [`Engine::step`] runs (prompt chunks are cut to fit).
    pub step_tokens: usize,
    /// Speculative decoding: where drafts come from and how long they are (`None`: off).
    pub draft: Option<DraftSpec>,
}

/// Where speculative decoding's drafts come from.
#[derive(Clone, Debug, PartialEq)]
pub enum DraftFrom {
    /// A draft model file sharing the target's vocabulary (`--draft FILE`), loaded on the
    /// same backend.
    Model(PathBuf),
    /// Prompt lookup with n-grams of up to this many tokens (`--lookup N`).
    Lookup(usize),
}

/// Speculative decoding's settings (see [`generate::draft`]).
#[derive(Clone, Debug, PartialEq)]
pub struct DraftSpec {
    pub from: DraftFrom,
    pub opts: DraftOptions,
}

/// The price table's default electricity row, for [`EngineOptions::usd_per_kwh`].
pub const DEFAULT_ELECTRICITY: &str = "us-residential";

impl Default for EngineOptions {
    fn default() -> Self {
        let usd_per_kwh = crate::cost::prices::PriceTable::builtin()
            .electricity(DEFAULT_ELECTRICITY)
            .map_or(0.0, |e| e.price_per_kwh);
        EngineOptions {
            backend: BackendSpec::default(),
            load: LoadOptions::default(),
            energy: EnergyOptions::default(),
            threads: 0,
            usd_per_kwh,
            step_tokens: 512,
            draft: None,
        }
    }
}

/// One loaded model and what its conversations share (see the module docs).
pub struct Engine {
    model: Model,
    tokenizer: Arc<Tokenizer>,
    path: PathBuf,
    pricer: Pricer,
    limits: StepLimits,
    threads: usize,
    drafter: Option<Drafter>,
}

impl Engine {
    /// Loads the model at `path`: tokenizer and weights concurrently (the tokenizer build is
    /// the slow part; the weights are only mapped on the CPU).
    pub fn load(path: &Path, opts: &EngineOptions) -> Result<Engine, EngineError> {
        let (shown, file) = open_gguf(path)?;
        let backend = opts.backend.open()?;
        let mut load = opts.load.clone();
        if let Some(d) = &opts.draft {
            d.opts.validate().map_err(EngineError::Input)?;
            // room to verify a full draft for every sequence
            let rows = load.n_seq.max(1) * (d.opts.max + 1);
            load.logit_rows = load.logit_rows.max(rows).min(load.batch.max(1));
        }
        let (tk, model) = std::thread::scope(|s| {
            let f2 = Arc::clone(&file);
            let tk = s.spawn(move || Tokenizer::from_metadata(f2.metadata()));
            let model = Model::load(Arc::clone(&file), backend, &load);
            (tk.join(), model)
        });
        let tk = tk
            .map_err(|_| EngineError::Input("the tokenizer thread panicked".into()))?
            .map_err(|e| EngineError::Tokenizer {
                path: shown.clone(),
                cause: Box::new(e),
            })?;
        let model = model.map_err(|e| EngineError::Load {
            path: shown,
            cause: Box::new(e),
        })?;
        let mut engine = Engine::new(model, tk, opts)?;
        if let Some(d) = &opts.draft {
            let drafter = match &d.from {
                DraftFrom::Lookup(n) => Drafter::lookup(*n, d.opts).map_err(EngineError::Input)?,
                DraftFrom::Model(p) => {
                    let draft = load_draft(p, opts, engine.ctx())?;
                    Drafter::model(draft, engine.model.file(), d.opts)
                        .map_err(EngineError::Input)?
                }
            };
            engine.drafter = Some(drafter);
        }
        Ok(engine)
    }

    /// An engine over a model and tokenizer loaded by the caller.
    pub fn new(
        mut model: Model,
        tokenizer: Tokenizer,
        opts: &EngineOptions,
    ) -> Result<Engine, EngineError> {
        if opts.backend.times_ops_by_sync() {
            model.ops().time_ops_by_sync(true);
        }
        let threads = match opts.threads {
            0 => std::thread::available_parallelism().map_or(1, |n| n.get()),
            t => t,
        };
        let gpu = model.ops().backend().energy_gpu();
        let energy = select::energy_model(&opts.energy, threads, gpu)?;
        let path = model.file().path().to_path_buf();
        Ok(Engine {
            model,
            tokenizer: Arc::new(tokenizer),
            path,
            pricer: Pricer {
                energy,
                usd_per_j: opts.usd_per_kwh / 3.6e6,
            },
            limits: StepLimits {
                max_tokens: opts.step_tokens.max(1),
            },
            threads,
            drafter: None,
        })
    }

    /// Drafts for speculative decoding from now on (`None`: off). Steps verify at most
    /// [`Model::logit_rows`] tokens in all, so load with room for `max + 1` rows per
    /// sequence ([`Engine::load`] with [`EngineOptions::draft`] does).
    pub fn set_drafter(&mut self, drafter: Option<Drafter>) {
        self.drafter = drafter;
    }

    /// The drafter, when speculative decoding is on.
    pub fn drafter(&mut self) -> Option<&mut Drafter> {
        self.drafter.as_mut()
    }

    /// Takes the drafter out (speculative decoding off until [`Engine::set_drafter`]).
    pub fn take_drafter(&mut self) -> Option<Drafter> {
        self.drafter.take()
    }

    /// The tokenizer and the model, for work that needs them apart (scoring, benchmarks).
    pub fn into_parts(self) -> (Arc<Tokenizer>, Model) {
        (self.tokenizer, self.model)
    }

    /// CPU threads the work runs on (resolved: never 0).
    pub fn threads(&self) -> usize {
        self.threads
    }

    /// The device's peak memory read bandwidth (GB/s, and where the figure comes from) for
    /// MBU: a GPU adapter's or the CPU's, as cached by `tokenfab probe` or `bench`; never
    /// measured here (that takes seconds).
    pub fn peak_bandwidth(&mut self) -> Option<(f64, String)> {
        use crate::telemetry::probe;
        let backend = self.model.ops().backend_mut();
        match backend.adapter_name() {
            Some(_) => probe::gpu_peak(backend, probe::Measure::CachedOnly),
            None => probe::cpu_peak(self.threads, false),
        }
    }

    /// The tokenizer, shared: other threads (a server's request handlers) tokenize with it
    /// while the engine decodes.
    pub fn tokenizer(&self) -> &Arc<Tokenizer> {
        &self.tokenizer
    }

    pub fn model(&mut self) -> &mut Model {
        &mut self.model
    }

    pub fn config(&self) -> &Config {
        &self.model.config
    }

    /// The model file's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The model's name: `general.name` from its metadata, else the file name.
    pub fn name(&self) -> String {
        self.model
            .file()
            .metadata()
            .get_str("general.name")
            .ok()
            .map(str::to_string)
            .unwrap_or_else(|| {
                self.path
                    .file_stem()
                    .map_or("model".into(), |s| s.to_string_lossy().into_owned())
            })
    }

    /// The backend's name, e.g. `cpu (avx2, 2 threads)`.
    pub fn backend_name(&self) -> String {
        self.model.ops_ref().name()
    }

    /// Longest context a sequence may have.
    pub fn ctx(&self) -> usize {
        self.model.ctx()
    }

    /// Token ids of `text`, with BOS first when `add_bos` and the model uses one.
    pub fn encode(&self, text: &str, add_bos: bool) -> Result<Vec<u32>, EngineError> {
        Ok(self.tokenizer.encode(text, add_bos)?)
    }

    /// The prompt for `messages` through the model's chat template, the assistant's turn
    /// opened; BOS added when `add_bos` unless the template already wrote it.
    /// A template that fails (or exceeds its limits: see [`chat`]) is an error naming the file.
    pub fn chat_prompt(
        &self,
        messages: &[Message],
        add_bos: bool,
    ) -> Result<Vec<u32>, EngineError> {
        chat_prompt(&self.tokenizer, messages, add_bos).map_err(|e| match e {
            EngineError::Generate(g) => match *g {
                GenerateError::Tokenizer(TokenizerError::Template(m)) => {
                    EngineError::from(GenerateError::Tokenizer(TokenizerError::Template(format!(
                        "{}: {m}",
                        self.path.display()
                    ))))
                }
                g => EngineError::Generate(Box::new(g)),
            },
            e => e,
        })
    }

    /// A new sequence for `prompt`, in a cache of the engine's full context.
    pub fn new_sequence(
        &mut self,
        prompt: &[u32],
        sampler: Sampler,
        opts: GenerateOptions,
    ) -> Result<Sequence, EngineError> {
        // checked before a cache is taken
        generate::check_prompt(prompt, self.model.ctx())?;
        let cache = self.model.new_cache(0)?;
        Ok(Sequence::new(cache, prompt, sampler, opts)?)
    }

    /// Gives a finished sequence's cache back for the next [`Engine::new_sequence`] (and
    /// its draft model's cache to the draft model).
    pub fn release(&mut self, mut seq: Sequence) {
        if let Some(d) = &mut self.drafter {
            d.release(&mut seq);
        }
        self.model.release_cache(seq.into_cache());
    }

    /// One step of continuous batching over `seqs` (see [`generate::step`]); with a drafter,
    /// each decoding sequence first gets a draft, which the step verifies.
    pub fn step(
        &mut self,
        seqs: &mut [&mut Sequence],
        on_event: &mut dyn FnMut(usize, &TokenEvent) -> bool,
    ) -> Result<StepReport, EngineError> {
        if let Some(d) = &mut self.drafter {
            for s in seqs.iter_mut() {
                d.propose(s)?;
            }
        }
        let pricer = &self.pricer;
        let price = |ev: &TokenEvent| pricer.cost(ev);
        let report = generate::step(
            &mut self.model,
            &self.tokenizer,
            seqs,
            self.limits,
            &price,
            on_event,
        )?;
        if let Some(d) = &mut self.drafter {
            if report.prefill_tokens == 0 {
                d.observe_step(report.tokens, report.time.as_secs_f64());
            }
        }
        Ok(report)
    }

    /// Generates from `prompt` to the end as one sequence, calling `on_event` for every
    /// prompt and generated token; returning `false` from it stops generation. The sampler's
    /// state advances as it is used. Budgets in `opts` are charged at the engine's price.
    pub fn generate(
        &mut self,
        prompt: &[u32],
        sampler: &mut Sampler,
        opts: &GenerateOptions,
        on_event: &mut dyn FnMut(&TokenEvent) -> bool,
    ) -> Result<Summary, EngineError> {
        let s = std::mem::replace(sampler, Sampler::greedy());
        let mut seq = self.new_sequence(prompt, s, opts.clone())?;
        let result = (|| {
            while seq.finished().is_none() {
                let r = self.step(&mut [&mut seq], &mut |_, ev| on_event(ev))?;
                if r.tokens == 0 {
                    break;
                }
            }
            Ok(seq.summary())
        })();
        *sampler = seq.take_sampler();
        self.release(seq);
        result
    }

    /// What a token's work cost in energy and money (see [`Pricer::cost`]).
    pub fn cost(&self, ev: &TokenEvent) -> Cost {
        self.pricer.cost(ev)
    }

    /// The engine's pricing, to use where the engine is busy (inside a `generate` callback)
    /// or on another thread.
    pub fn pricer(&self) -> Pricer {
        self.pricer.clone()
    }

    /// The label of [`Engine::cost`]'s joules (`estimated:model`).
    pub fn energy_source(&self) -> &'static str {
        self.pricer.source()
    }
}

/// Maps a model file (with a read-ahead hint); its path as shown in errors.
fn open_gguf(path: &Path) -> Result<(String, Arc<GgufFile>), EngineError> {
    let shown = path.display().to_string();
    let file = GgufFile::open(path).map_err(|e| EngineError::Open {
        path: shown.clone(),
        cause: Box::new(e),
    })?;
    let file = Arc::new(file);
    file.prefetch();
    Ok((shown, file))
}

/// Loads a draft model on the target's backend kind, for at most the target's context.
fn load_draft(path: &Path, opts: &EngineOptions, ctx: usize) -> Result<Model, EngineError> {
    let (shown, file) = open_gguf(path)?;
    let load = LoadOptions {
        ctx,
        logit_rows: 1,
        ..opts.load.clone()
    };
    let mut model =
        Model::load(file, opts.backend.open()?, &load).map_err(|e| EngineError::Load {
            path: shown,
            cause: Box::new(e),
        })?;
    if opts.backend.times_ops_by_sync() {
        model.ops().time_ops_by_sync(true);
    }
    Ok(model)
}

/// Turns a token's work into joules and dollars: the energy estimate of the device the work
/// ran on (time, bytes and FLOPs through the coefficient table's row) and the electricity
/// price.
#[derive(Clone, Debug)]
pub struct Pricer {
    energy: EnergyModel,
    usd_per_j: f64,
}

impl Pricer {
    /// The label of the joules: an estimate (`estimated:model`).
    pub fn source(&self) -> &'static str {
        crate::telemetry::energy::SourceKind::Estimate.label()
    }

    pub fn cost(&self, ev: &TokenEvent) -> Cost {
        let e = self.energy.estimate(
            ev.duration.as_secs_f64(),
            ev.traffic.bytes(),
            ev.traffic.flops,
        );
        let joules = e.total_j();
        Cost {
            joules,
            usd: joules * self.usd_per_j,
        }
    }
}

/// The prompt for `messages` through `tokenizer`'s chat template, the assistant's turn opened;
/// BOS added when `add_bos` unless the template already wrote it (no double BOS).
pub fn chat_prompt(
    tokenizer: &Tokenizer,
    messages: &[Message],
    add_bos: bool,
) -> Result<Vec<u32>, EngineError> {
    let rendered = chat::apply(tokenizer, messages, true)?;
    let has_bos = tokenizer
        .bos()
        .and_then(|b| tokenizer.piece(b))
        .is_some_and(|b| rendered.starts_with(&b));
    Ok(tokenizer.encode(&rendered, add_bos && !has_bos)?)
}

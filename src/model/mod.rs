//! Models: configuration from metadata ([`config`]), one file per architecture with its
//! forward pass written once against the op-level backend API ([`gemma3`], [`qwen2`]),
//! batches of tokens from several sequences ([`batch`]), and the state a forward pass runs
//! in — scratch buffers allocated once at load and one KV cache per sequence ([`state`]), so
//! decoding allocates nothing per token.

pub mod batch;
pub mod config;
pub mod describe;
pub mod gemma3;
pub mod qwen2;
pub mod rope;
pub mod state;
pub mod validate;

pub use batch::Batch;
pub use config::{Arch, Config, LayerKind, RopeKind};
pub use state::{KvCache, Scratch};

use crate::backend::{Backend, BackendError, Buf, OpKind, Ops, Weight};
use crate::gguf::{GgufError, GgufFile, MetadataError};
use batch::Plan;
use std::sync::Arc;

/// Why a model could not be loaded or run.
#[derive(Debug, thiserror::Error)]
pub enum ModelError {
    #[error(transparent)]
    Gguf(#[from] GgufError),
    #[error("{file}: {source}")]
    Metadata {
        file: String,
        #[source]
        source: MetadataError,
    },
    #[error(transparent)]
    Backend(#[from] BackendError),
    #[error("{0}")]
    Unsupported(String),
    #[error("{file}: tensor `{tensor}` has shape {found:?}, expected {expected:?}")]
    Shape {
        file: String,
        tensor: String,
        expected: Vec<u64>,
        found: Vec<u64>,
    },
    #[error("context is full: {needed} positions needed, the context holds {ctx} (use a larger --ctx-size)")]
    ContextFull { needed: usize, ctx: usize },
    #[error("the KV cache no longer holds the window before position {pos0} (positions up to {written} were written over it): start the sequence again from position 0")]
    KvOverwritten { pos0: usize, written: usize },
    #[error("invalid option: {0}")]
    Options(String),
    #[error("invalid batch: {0}")]
    Batch(String),
    /// NaN or infinity in the hidden state or the logits: a corrupted weight block (the
    /// dequantized weights are finite in a sound file) or an overflow.
    #[error("{file}: {what}; a corrupted weight block or an overflow (`tokenfab info --validate {file}` names corrupted blocks)")]
    NonFinite { file: String, what: BackendError },
}

impl ModelError {
    pub(crate) fn metadata(f: &GgufFile, source: MetadataError) -> Self {
        ModelError::Metadata {
            file: f.path().display().to_string(),
            source,
        }
    }
}

/// Options fixed at load time.
#[derive(Clone, Debug)]
pub struct LoadOptions {
    /// Context length (KV-cache positions); 0 = min(4096, training context).
    pub ctx: usize,
    /// Most tokens one forward call processes (prompts are split into batches of this size).
    pub batch: usize,
    /// Most rows of logits one forward call can return (1 for one sequence's generation; one
    /// per sequence decoding in a batch).
    pub logit_rows: usize,
    /// Sequences whose KV caches of `ctx` positions must fit the device with the weights
    /// (checked at load; the caches themselves come from [`Model::new_cache`]).
    pub n_seq: usize,
    /// Every token computed by the same kernels whatever the batch, so a token's logits never
    /// depend on how many tokens, or which sequences, share its forward call (a server's
    /// answers then do not depend on its load; prefix reuse, rewinds and speculative
    /// verification give exactly what a fresh computation would). Off, the CPU backend runs
    /// batches of 16+ tokens through its tiled GEMM: prefill 2–2.5× faster, with rounding that
    /// differs from the one-token kernels' in the last bits.
    pub batch_invariant: bool,
    /// Sliding-window layers keep a ring of window + batch positions instead of the whole
    /// context (Gemma 3: 5 of every 6 layers), on backends that can ([`crate::backend::Backend::kv_ring`]).
    /// Results are the same either way; off, only to compare.
    pub window_ring: bool,
    /// Keep an interleaved copy of the matrices that have an eight-row decode kernel (the
    /// CPU's Q4_K on AVX2 and up, as llama.cpp's default repack): decode faster where one
    /// core's kernel, not memory, sets the pace; logits that differ in the last bits from the
    /// zero-copy kernels' (every product with a copy, a batch's too, goes through the copy's
    /// kernel, so batch invariance holds; prefill's tiled GEMM unpacks the copy, with the same
    /// values as the file's). The originals' pages leave the resident set as they are copied,
    /// so memory grows by the copy's 2.8 % over the originals; the load takes longer (the copy
    /// is made then). Off by default.
    pub repack: bool,
}

impl Default for LoadOptions {
    fn default() -> Self {
        LoadOptions {
            ctx: 0,
            batch: 512,
            logit_rows: 1,
            n_seq: 1,
            batch_invariant: true,
            window_ring: true,
            repack: false,
        }
    }
}

/// Which rows of logits a forward call computes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Logits {
    /// Only the last token's (generation).
    Last,
    /// Every token's (scoring; at most `logit_rows` tokens per call).
    All,
}

/// Reads weights of one file into a backend, checking shapes.
pub(crate) struct Loader<'a> {
    pub file: &'a Arc<GgufFile>,
    pub ops: &'a mut Ops,
}

/// Whether nothing but embedding lookups read tensor `t`: the token table of a model with an
/// output matrix of its own. A backend's copies for matrix products (the CPU's interleaved
/// `repack`) would be wasted on it: 128 MB for the 1.5B's Q4_K table, so it goes through
/// `Backend::upload_lookup`.
fn lookup_only(file: &GgufFile, t: &crate::gguf::TensorInfo) -> bool {
    t.name == "token_embd.weight" && file.tensor_info("output.weight").is_some()
}

impl Loader<'_> {
    /// Tensor `name` with GGML dims `dims` (`[cols, rows]`, `[len]` for vectors).
    pub fn get(&mut self, name: &str, dims: &[usize]) -> Result<Weight, ModelError> {
        let file = self.file;
        let info = checked(file, name, dims)?;
        let backend = self.ops.backend_mut();
        if dims.len() > 1 && !backend.supports(OpKind::MatMul, info.dtype) {
            return Err(BackendError::unsupported_type(backend.name(), info).into());
        }
        Ok(match lookup_only(file, info) {
            true => backend.upload_lookup(self.file, info)?,
            false => backend.upload(self.file, info)?,
        })
    }

    /// Rows `rows` of matrix `name` (of shape `dims`) as a weight of its own, read in place: a
    /// part of a fused weight (Phi-3's `attn_qkv`, its `ffn_up` = gate‖up).
    pub fn get_rows(
        &mut self,
        name: &str,
        dims: &[usize],
        rows: std::ops::Range<usize>,
    ) -> Result<Weight, ModelError> {
        let info = checked(self.file, name, dims)?;
        let view = info
            .row_view(rows.start as u64..rows.end as u64)
            .ok_or_else(|| {
                ModelError::Unsupported(format!(
                    "{}: {name}: rows {rows:?} are not a part of it",
                    self.file.path().display()
                ))
            })?;
        let backend = self.ops.backend_mut();
        if !backend.supports(OpKind::MatMul, view.dtype) {
            return Err(BackendError::unsupported_type(backend.name(), &view).into());
        }
        Ok(backend.upload(self.file, &view)?)
    }

    /// The values of vector `name` of `len` elements on the host (not uploaded), if the file
    /// has it; each must be finite and positive (`what` says what it is, for the error).
    pub fn host_positive(
        &mut self,
        name: &str,
        len: usize,
        what: &str,
    ) -> Result<Option<Vec<f32>>, ModelError> {
        if self.file.tensor_info(name).is_none() {
            return Ok(None);
        }
        let info = checked(self.file, name, &[len])?;
        let mut v = vec![0f32; len];
        if !crate::quant::dequantize(info.dtype, self.file.tensor_data(info), &mut v) {
            return Err(ModelError::Unsupported(format!(
                "{}: {name} has type {}, which cannot be read as numbers",
                self.file.path().display(),
                info.dtype
            )));
        }
        if let Some(bad) = v.iter().find(|x| !(x.is_finite() && **x > 0.0)) {
            return Err(ModelError::Unsupported(format!(
                "{}: {name} ({what}) holds {bad}; every value must be finite and positive",
                self.file.path().display()
            )));
        }
        Ok(Some(v))
    }

    /// Like [`Self::get`], but `None` when the tensor is absent.
    pub fn opt(&mut self, name: &str, dims: &[usize]) -> Result<Option<Weight>, ModelError> {
        if self.file.tensor_info(name).is_none() {
            return Ok(None);
        }
        self.get(name, dims).map(Some)
    }
}

/// The info of tensor `name`, whose shape must be `dims`.
fn checked<'f>(
    file: &'f GgufFile,
    name: &str,
    dims: &[usize],
) -> Result<&'f crate::gguf::TensorInfo, ModelError> {
    let info = file.require_tensor(name)?;
    let want: Vec<u64> = dims.iter().map(|&d| d as u64).collect();
    let found: Vec<u64> = {
        // GGUF may store trailing unit dims; compare without them
        let mut d = info.dims.clone();
        while d.len() > want.len() && d.last() == Some(&1) {
            d.pop();
        }
        d
    };
    if found != want {
        return Err(ModelError::Shape {
            file: file.path().display().to_string(),
            tensor: name.into(),
            expected: want,
            found: info.dims.clone(),
        });
    }
    Ok(info)
}

/// The weights of one architecture.
enum Net {
    Gemma3(gemma3::Gemma3),
    Qwen2(qwen2::Qwen2),
}

/// What a forward pass runs with, borrowed from the [`Model`] for one call.
struct Pass<'a> {
    net: &'a Net,
    c: &'a Config,
    ops: &'a mut Ops,
    s: &'a Scratch,
}

impl Pass<'_> {
    fn forward(&mut self, kvs: &[&KvCache], tokens: &[u32], plan: &Plan) -> Result<(), ModelError> {
        let (c, s) = (self.c, self.s);
        match self.net {
            Net::Gemma3(m) => m.forward(c, self.ops, s, kvs, tokens, plan),
            Net::Qwen2(m) => m.forward(c, self.ops, s, kvs, tokens, plan),
        }
    }

    fn head(&mut self, rows: &[usize]) -> Result<(), ModelError> {
        let (c, s) = (self.c, self.s);
        match self.net {
            Net::Gemma3(m) => m.head(c, self.ops, s, rows),
            Net::Qwen2(m) => m.head(c, self.ops, s, rows),
        }
    }
}

/// A loaded model: configuration, weights on a backend and the scratch buffers a forward pass
/// runs in — what every sequence shares. Each sequence brings its own [`KvCache`]
/// ([`Model::new_cache`]); one forward pass can run several ([`Model::forward_batch`]).
pub struct Model {
    pub config: Config,
    file: Arc<GgufFile>,
    ops: Ops,
    net: Net,
    scratch: Scratch,
    /// Longest context a cache may hold (the RoPE tables' length).
    ctx: usize,
    batch: usize,
    logit_rows: usize,
    /// [`LoadOptions::window_ring`].
    window_ring: bool,
    /// Caches given back ([`Model::release_cache`]), reused before new ones are allocated.
    spare: Vec<KvCache>,
}

impl Model {
    /// Loads the model in `file` onto `backend`.
    pub fn load(
        file: Arc<GgufFile>,
        backend: Box<dyn Backend>,
        opts: &LoadOptions,
    ) -> Result<Self, ModelError> {
        let config = Config::from_gguf(&file)?;
        let ctx = if opts.ctx == 0 {
            config.ctx_train.min(4096)
        } else {
            opts.ctx
        };
        if opts.batch == 0 || opts.logit_rows == 0 || opts.logit_rows > opts.batch {
            return Err(ModelError::Options(format!(
                "batch ({}) and logit rows ({}) must be >= 1, logit rows <= batch",
                opts.batch, opts.logit_rows
            )));
        }
        // a forward pass never holds more tokens than the caches of `n_seq` sequences can
        // take: size the activations for that (a 64-token context needs 64 rows, not 512)
        let batch = opts.batch.min(ctx * opts.n_seq.max(1));
        let logit_rows = opts.logit_rows.min(batch);
        let mut ops = Ops::new(backend);
        ops.backend_mut().set_batch_invariant(opts.batch_invariant);
        // weights + the KV caches of `n_seq` sequences must fit the device: say so before
        // copying anything
        ops.backend_mut().set_repack(opts.repack);
        // (with the copies a backend makes at upload: the CPU's interleaved ones)
        let weights: u64 = file
            .tensors()
            .iter()
            .map(|t| match lookup_only(&file, t) {
                true => t.n_bytes,
                false => t.n_bytes + ops.backend().upload_extra_bytes(t),
            })
            .sum();
        // (a sliding-window layer's ring counts its rows only)
        let ring = opts.window_ring && ops.kv_ring();
        let kv_bytes = (opts.n_seq.max(1)
            * KvCache::elements_for(&config, ctx, batch, ring)
            * ops.backend_mut().kv_elem_bytes()) as u64;
        let scratch_bytes = Scratch::bytes(&config, batch, logit_rows);
        ops.backend_mut()
            .reserve(weights, kv_bytes + scratch_bytes)?;
        let mut loader = Loader {
            file: &file,
            ops: &mut ops,
        };
        let net = match config.arch {
            Arch::Gemma3 | Arch::Gemma2 => {
                Net::Gemma3(gemma3::Gemma3::load(&config, &mut loader, ctx)?)
            }
            Arch::Qwen2 | Arch::Qwen3 | Arch::Llama | Arch::Phi3 => {
                Net::Qwen2(qwen2::Qwen2::load(&config, &mut loader, ctx)?)
            }
        };
        let scratch = Scratch::new(&mut ops, &config, batch, logit_rows)?;
        Ok(Model {
            config,
            file,
            ops,
            net,
            scratch,
            ctx,
            batch,
            logit_rows,
            window_ring: opts.window_ring,
            spare: Vec::new(),
        })
    }

    pub fn file(&self) -> &Arc<GgufFile> {
        &self.file
    }

    pub fn ops(&mut self) -> &mut Ops {
        &mut self.ops
    }

    pub fn ops_ref(&self) -> &Ops {
        &self.ops
    }

    /// Longest context a sequence's cache may hold (the default size of [`Model::new_cache`]).
    pub fn ctx(&self) -> usize {
        self.ctx
    }

    /// Most tokens one forward pass runs ([`Model::forward_batch`]).
    pub fn batch(&self) -> usize {
        self.batch
    }

    /// The buffer the last forward pass wrote its logits to (`[rows, n_vocab]`).
    pub fn logits(&self) -> Buf {
        self.scratch.logits
    }

    /// Most rows of logits one forward pass returns.
    pub fn logit_rows(&self) -> usize {
        self.logit_rows
    }

    /// A KV cache for one sequence of up to `ctx` positions (0 = [`Model::ctx`]): one given
    /// back earlier with [`Model::release_cache`] if one is large enough, else allocated on
    /// the model's backend. Its contents are stale: a sequence writes every position before it
    /// reads it.
    pub fn new_cache(&mut self, ctx: usize) -> Result<KvCache, ModelError> {
        let ctx = if ctx == 0 { self.ctx } else { ctx };
        if ctx > self.ctx {
            return Err(ModelError::Options(format!(
                "a cache of {ctx} positions: the model was loaded for at most {}",
                self.ctx
            )));
        }
        // the smallest spare that holds `ctx` positions
        let fit = (0..self.spare.len())
            .filter(|&i| self.spare[i].capacity() >= ctx)
            .min_by_key(|&i| self.spare[i].capacity());
        if let Some(i) = fit {
            let mut c = self.spare.swap_remove(i);
            c.reset(ctx);
            return Ok(c);
        }
        KvCache::new(
            &mut self.ops,
            &self.config,
            ctx,
            self.batch,
            self.window_ring,
        )
    }

    /// Gives a sequence's cache back for reuse by [`Model::new_cache`] (backends keep their
    /// buffers for the model's lifetime, so caches are recycled rather than freed).
    pub fn release_cache(&mut self, cache: KvCache) {
        self.spare.push(cache);
    }

    /// Runs one batch (at most [`Model::batch`] tokens, at most [`Model::logit_rows`] rows of
    /// logits wanted) through the model; token `i` of sequence `s` uses `caches[s]`, whose rows
    /// at the tokens' positions are filled. Returns the logits buffer, `[n_logits, n_vocab]`:
    /// one row per wanted token, in batch order.
    pub fn forward_batch(&mut self, batch: &Batch, caches: &[&KvCache]) -> Result<Buf, ModelError> {
        let plan = batch.plan(caches.len())?;
        if batch.len() > self.batch {
            return Err(ModelError::Batch(format!(
                "{} tokens in one batch, the model was loaded for {}",
                batch.len(),
                self.batch
            )));
        }
        if plan.logit_rows.len() > self.logit_rows {
            return Err(ModelError::Batch(format!(
                "{} rows of logits wanted, the model was loaded for {}",
                plan.logit_rows.len(),
                self.logit_rows
            )));
        }
        for seg in &plan.segments {
            check_fits(caches[seg.seq], seg.pos0, seg.n)?;
        }
        let tokens = batch.tokens();
        self.run(&mut |p| p.forward(caches, tokens, &plan))?;
        Ok(self.scratch.logits)
    }

    /// Runs `tokens` of one sequence (at positions `pos0..`) through the model, filling
    /// `cache`. Returns the logits buffer: `[1, n_vocab]` for [`Logits::Last`],
    /// `[tokens, n_vocab]` for [`Logits::All`]. Prompts longer than the batch size are
    /// processed in batches.
    pub fn forward(
        &mut self,
        cache: &KvCache,
        tokens: &[u32],
        pos0: usize,
        logits: Logits,
    ) -> Result<Buf, ModelError> {
        if tokens.is_empty() {
            return Err(ModelError::Options("forward: no tokens".into()));
        }
        check_fits(cache, pos0, tokens.len())?;
        if logits == Logits::All && tokens.len() > self.logit_rows {
            return Err(ModelError::Options(format!(
                "{} tokens of logits requested, the model was loaded for {}",
                tokens.len(),
                self.logit_rows
            )));
        }
        let n_chunks = tokens.len().div_ceil(self.batch);
        let batch_size = self.batch;
        let mut batch = Batch::new();
        self.run(&mut |p| {
            for (i, chunk) in tokens.chunks(batch_size).enumerate() {
                let last = i + 1 == n_chunks;
                batch.clear();
                for (j, &t) in chunk.iter().enumerate() {
                    let want = match logits {
                        Logits::Last => last && j + 1 == chunk.len(),
                        Logits::All => last,
                    };
                    batch.push(t, pos0 + i * batch_size + j, 0, want);
                }
                let plan = batch.plan(1)?;
                p.forward(&[cache], batch.tokens(), &plan)?;
            }
            Ok(())
        })?;
        Ok(self.scratch.logits)
    }

    /// Runs `f` with the model's pass state on the backend's executor (for the CPU: inside its
    /// thread pool, so the calling thread takes part in every parallel op).
    fn run(
        &mut self,
        f: &mut (dyn FnMut(&mut Pass) -> Result<(), ModelError> + Send),
    ) -> Result<(), ModelError> {
        let exec = self.ops.executor();
        let mut pass = Pass {
            net: &self.net,
            c: &self.config,
            ops: &mut self.ops,
            s: &self.scratch,
        };
        let mut result = Ok(());
        exec.install(&mut || result = f(&mut pass));
        result.map_err(|e| match e {
            ModelError::Backend(what @ BackendError::NonFinite { .. }) => ModelError::NonFinite {
                file: self.file.path().display().to_string(),
                what,
            },
            e => e,
        })
    }

    /// Runs `tokens` of one sequence (at most one batch) at positions `pos0..`, filling
    /// `cache`, and hands the logits of the rows in `rows` (indices into `tokens`) to
    /// `each(first_row, n, logits[n * vocab])`, `logit_rows` rows at a time, so a 262k
    /// vocabulary never needs a `[batch, vocab]` buffer. `each` runs on the backend's executor
    /// (for the CPU: inside its thread pool, so it may use rayon). For scoring (perplexity, KL
    /// divergence).
    pub fn score(
        &mut self,
        cache: &KvCache,
        tokens: &[u32],
        pos0: usize,
        rows: std::ops::Range<usize>,
        each: &mut (dyn FnMut(usize, usize, &[f32]) + Send),
    ) -> Result<(), ModelError> {
        if tokens.is_empty() || tokens.len() > self.batch || rows.end > tokens.len() {
            return Err(ModelError::Options(format!(
                "score: {} tokens (batch {}), rows {rows:?}",
                tokens.len(),
                self.batch
            )));
        }
        check_fits(cache, pos0, tokens.len())?;
        let vocab = self.config.n_vocab;
        let logit_rows = self.logit_rows;
        let logits = self.scratch.logits;
        let mut host = vec![0f32; logit_rows * vocab];
        let mut batch = Batch::new();
        batch.push_run(tokens, pos0, 0, false);
        let plan = batch.plan(1)?;
        self.run(&mut |p| {
            p.forward(&[cache], tokens, &plan)?;
            let mut first = rows.start;
            while first < rows.end {
                let n = logit_rows.min(rows.end - first);
                let wanted: Vec<usize> = (first..first + n).collect();
                p.head(&wanted)?;
                p.ops.read(logits, 0, &mut host[..n * vocab])?;
                each(first, n, &host[..n * vocab]);
                first += n;
            }
            Ok(())
        })
    }

    /// Bytes of weights one decoded token reads (see [`weight_bytes_per_token`]).
    pub fn weight_bytes_per_token(&self) -> u64 {
        weight_bytes_per_token(&self.file)
    }

    /// Bytes of KV cache one position of context occupies (f16 K and V in every layer).
    pub fn kv_bytes_per_token(&self) -> u64 {
        kv_bytes_per_token(&self.config)
    }
}

/// Refuses positions past the end of a sequence's cache, or further back than its rings
/// still hold ([`KvCache::reusable`]).
fn check_fits(cache: &KvCache, pos0: usize, n: usize) -> Result<(), ModelError> {
    cache.admit(pos0, n)
}

/// Bytes of weights one decoded token reads: every matrix once (the tied or separate output
/// matrix whole), one row of the embedding table, the norm vectors.
pub fn weight_bytes_per_token(f: &GgufFile) -> u64 {
    let tied = f.tensor_info("output.weight").is_none();
    f.tensors()
        .iter()
        .map(|t| {
            if t.name == "token_embd.weight" {
                let row = t.dtype.row_bytes(t.row_len()).unwrap_or(0);
                if tied {
                    row + t.n_bytes
                } else {
                    row
                }
            } else {
                t.n_bytes
            }
        })
        .sum()
}

/// Bytes of f16 K and V cache per position of context.
pub fn kv_bytes_per_token(c: &Config) -> u64 {
    (c.n_layer * 2 * c.kv_dim() * 2) as u64
}

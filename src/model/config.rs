//! Hyper-parameters of a model, read only from GGUF metadata (`{arch}.*` keys) and tensor
//! shapes, with errors that name the key or tensor at fault.

use super::rope::Scaling;
use super::ModelError;
use crate::gguf::GgufFile;

/// The architectures tokenfab can run.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Arch {
    Gemma3,
    Qwen2,
    /// Llama 2/3 shapes (the Qwen2 decoder without QKV biases, RoPE on adjacent pairs).
    Llama,
    /// Qwen3: the Qwen2 decoder without QKV biases, with an RMS norm per head on Q and K.
    Qwen3,
    /// Gemma 2: Gemma 3 without per-head Q/K norms, with soft-capped attention scores and
    /// logits, and sliding-window layers alternating with global ones.
    Gemma2,
    /// Phi-3 / Phi-3.5 / Phi-4-mini: the Llama decoder with fused Q‖K‖V and gate‖up weights,
    /// NEOX pairs, and LongRoPE (short/long per-pair factors, a magnitude factor).
    Phi3,
}

impl Arch {
    pub fn from_name(name: &str) -> Option<Self> {
        match name {
            "gemma3" => Some(Arch::Gemma3),
            "qwen2" => Some(Arch::Qwen2),
            "llama" => Some(Arch::Llama),
            "qwen3" => Some(Arch::Qwen3),
            "gemma2" => Some(Arch::Gemma2),
            "phi3" => Some(Arch::Phi3),
            _ => None,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Arch::Gemma3 => "gemma3",
            Arch::Qwen2 => "qwen2",
            Arch::Llama => "llama",
            Arch::Qwen3 => "qwen3",
            Arch::Gemma2 => "gemma2",
            Arch::Phi3 => "phi3",
        }
    }
}

/// Which RoPE table a layer rotates with.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RopeKind {
    /// The file's base and scaling (`rope.freq_base`, `rope.scaling.*`).
    Global,
    /// The sliding-window layers' own base (`rope_base_swa`, unscaled).
    Local,
}

/// What kind of attention a layer has: every per-layer decision a forward pass makes comes
/// from here, not from a pattern in the model's code.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LayerKind {
    /// Sliding window: a query at position p sees keys at positions > p - window.
    pub window: Option<usize>,
    pub rope: RopeKind,
}

/// Everything the forward pass needs to know about a model's shape.
#[derive(Clone, Debug, PartialEq)]
pub struct Config {
    pub arch: Arch,
    pub name: String,
    pub n_layer: usize,
    pub n_embd: usize,
    pub n_ff: usize,
    pub n_head: usize,
    pub n_head_kv: usize,
    pub head_dim: usize,
    /// Dimensions of each head RoPE turns (`rope.dimension_count`; `head_dim` unless partial
    /// rotary: Phi-4-mini turns 96 of 128).
    pub n_rot: usize,
    pub n_vocab: usize,
    pub ctx_train: usize,
    pub eps: f32,
    /// RoPE base of full-attention layers.
    pub rope_base: f32,
    /// RoPE scaling of full-attention layers (`{arch}.rope.scaling.*`).
    pub rope_scaling: Scaling,
    /// Multiplier of RoPE's cos and sin outside YaRN (`rope.scaling.attn_factor`; 1 if absent).
    pub rope_attn_factor: f32,
    /// The context the model was trained on before RoPE scaling
    /// (`rope.scaling.original_context_length`, else `context_length`): Phi-3 uses its long
    /// LongRoPE factors for contexts beyond it.
    pub ctx_orig: usize,
    /// RoPE base of [`RopeKind::Local`] layers (Gemma 3: 10000).
    pub rope_base_swa: f32,
    /// Each layer's attention, `n_layer` of them.
    pub layers: Vec<LayerKind>,
    /// Multiplier of q·k.
    pub attn_scale: f32,
    /// Attention scores become `cap·tanh(score/cap)` before the softmax (Gemma 2).
    pub attn_softcap: Option<f32>,
    /// Logits become `cap·tanh(logit/cap)` (Gemma 2).
    pub final_softcap: Option<f32>,
}

impl Config {
    pub fn from_gguf(f: &GgufFile) -> Result<Self, ModelError> {
        let md = f.metadata();
        let merr = |e| ModelError::metadata(f, e);
        let arch_name = md.get_str("general.architecture").map_err(merr)?;
        let arch = Arch::from_name(arch_name).ok_or_else(|| {
            ModelError::Unsupported(format!(
                "{}: architecture {arch_name:?} is not supported (supported: gemma3, gemma2, qwen2, qwen3, llama, phi3)",
                f.path().display()
            ))
        })?;
        let key = |k: &str| format!("{arch_name}.{k}");
        let get = |k: &str, min: usize| md.get_usize_min(&key(k), min).map_err(merr);
        let n_embd = get("embedding_length", 1)?;
        let n_head = get("attention.head_count", 1)?;
        let n_head_kv = match md.opt_u64(&key("attention.head_count_kv")).map_err(merr)? {
            Some(_) => get("attention.head_count_kv", 1)?,
            None => n_head,
        };
        let head_dim = match md.opt_u64(&key("attention.key_length")).map_err(merr)? {
            Some(_) => get("attention.key_length", 2)?,
            None => n_embd / n_head,
        };
        if let Some(vl) = md.opt_u64(&key("attention.value_length")).map_err(merr)? {
            if vl as usize != head_dim {
                return Err(ModelError::Unsupported(format!(
                    "{}: value_length {vl} != key_length {head_dim}",
                    f.path().display()
                )));
            }
        }
        if n_head % n_head_kv != 0 {
            return Err(ModelError::Unsupported(format!(
                "{}: {n_head} heads are not a multiple of {n_head_kv} KV heads",
                f.path().display()
            )));
        }
        let embd = f
            .require_tensor("token_embd.weight")
            .map_err(ModelError::Gguf)?;
        let n_vocab = embd.n_rows() as usize;
        let eps = md
            .get_f32(&key("attention.layer_norm_rms_epsilon"))
            .map_err(merr)?;
        let rope_base = md
            .opt_f32(&key("rope.freq_base"))
            .map_err(merr)?
            .unwrap_or(10_000.0);
        let ctx_train = get("context_length", 1)?;
        let unsupported =
            |e: String| ModelError::Unsupported(format!("{}: {e}", f.path().display()));
        let rope_scaling = Scaling::from_metadata(md, arch_name, ctx_train).map_err(unsupported)?;
        let rope_attn_factor =
            Scaling::plain_attn_factor(md, arch_name, &rope_scaling).map_err(unsupported)?;
        let ctx_orig = match md
            .opt_u64(&key("rope.scaling.original_context_length"))
            .map_err(merr)?
        {
            Some(_) => get("rope.scaling.original_context_length", 1)?,
            None => ctx_train,
        };
        // RoPE over part of each head (partial rotary: Phi-4-mini turns 96 of 128)
        let n_rot = match md.opt_u64(&key("rope.dimension_count")).map_err(merr)? {
            Some(_) => get("rope.dimension_count", 2)?,
            None => head_dim,
        };
        if n_rot > head_dim || !n_rot.is_multiple_of(2) {
            return Err(ModelError::Unsupported(format!(
                "{}: RoPE over {n_rot} of each head's {head_dim} dimensions (it must be an even number, at most {head_dim})",
                f.path().display()
            )));
        }
        let n_layer = get("block_count", 1)?;
        // every layer has tensors: a larger count is a corrupt file (and must not size the
        // per-layer description below)
        if n_layer > f.tensors().len() {
            return Err(ModelError::Unsupported(format!(
                "{}: {} is {n_layer}, but the file has only {} tensors",
                f.path().display(),
                key("block_count"),
                f.tensors().len()
            )));
        }
        let head_scale = 1.0 / (head_dim as f32).sqrt();
        let opt_f32 = |k: &str| md.opt_f32(&key(k)).map_err(merr);
        let window = match md.opt_u64(&key("attention.sliding_window")).map_err(merr)? {
            Some(_) => Some(get("attention.sliding_window", 1)?),
            None => None,
        };
        let global = LayerKind {
            window: None,
            rope: RopeKind::Global,
        };
        // windowed layers in a repeating group of `every`, the group's last one global
        let pattern = |w: usize, every: usize, rope: RopeKind| -> Vec<LayerKind> {
            (0..n_layer)
                .map(|il| match il % every < every - 1 {
                    true => LayerKind {
                        window: Some(w),
                        rope,
                    },
                    false => global,
                })
                .collect()
        };
        let (layers, rope_base_swa, attn_scale, attn_softcap, final_softcap) = match arch {
            // llama.cpp: 5 sliding-window layers then one global, local RoPE base 10000,
            // queries scaled by 1/sqrt(head_dim).
            Arch::Gemma3 => {
                let w = get("attention.sliding_window", 1)?;
                (
                    pattern(w, 6, RopeKind::Local),
                    10_000.0,
                    head_scale,
                    None,
                    None,
                )
            }
            // llama.cpp: even layers windowed (4096 unless the file says), one RoPE base,
            // queries scaled by 1/sqrt(head_dim) — 1/sqrt(n_embd/n_head) for the 27B (46
            // layers) — and both soft caps from the file when present
            Arch::Gemma2 => {
                let scale = match n_layer {
                    46 => 1.0 / ((n_embd / n_head) as f32).sqrt(),
                    _ => head_scale,
                };
                (
                    pattern(window.unwrap_or(4096), 2, RopeKind::Global),
                    rope_base,
                    scale,
                    opt_f32("attn_logit_softcapping")?.filter(|c| *c > 0.0),
                    opt_f32("final_logit_softcapping")?.filter(|c| *c > 0.0),
                )
            }
            // Mistral-style files (arch llama) may declare one window for every layer; llama.cpp
            // ignores it for this arch (the same results up to the window's length)
            Arch::Llama => {
                let kind = LayerKind {
                    window,
                    rope: RopeKind::Global,
                };
                (vec![kind; n_layer], rope_base, head_scale, None, None)
            }
            // llama.cpp turns Phi-3's sliding window off (its files declare it inconsistently)
            Arch::Qwen2 | Arch::Qwen3 | Arch::Phi3 => {
                (vec![global; n_layer], rope_base, head_scale, None, None)
            }
        };
        Ok(Config {
            arch,
            name: md
                .opt_str("general.name")
                .map_err(merr)?
                .unwrap_or(arch_name)
                .to_string(),
            n_layer,
            n_embd,
            n_ff: get("feed_forward_length", 1)?,
            n_head,
            n_head_kv,
            head_dim,
            n_rot,
            n_vocab,
            ctx_train,
            eps,
            rope_base,
            rope_scaling,
            rope_attn_factor,
            ctx_orig,
            rope_base_swa,
            layers,
            attn_scale,
            attn_softcap,
            final_softcap,
        })
    }

    /// Layer `il`'s attention window (`None`: the whole context).
    pub fn window(&self, il: usize) -> Option<usize> {
        self.layers.get(il).and_then(|l| l.window)
    }

    pub fn q_dim(&self) -> usize {
        self.n_head * self.head_dim
    }

    pub fn kv_dim(&self) -> usize {
        self.n_head_kv * self.head_dim
    }
}

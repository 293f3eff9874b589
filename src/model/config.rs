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
}

impl Arch {
    pub fn from_name(name: &str) -> Option<Self> {
        match name {
            "gemma3" => Some(Arch::Gemma3),
            "qwen2" => Some(Arch::Qwen2),
            "llama" => Some(Arch::Llama),
            "qwen3" => Some(Arch::Qwen3),
            _ => None,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Arch::Gemma3 => "gemma3",
            Arch::Qwen2 => "qwen2",
            Arch::Llama => "llama",
            Arch::Qwen3 => "qwen3",
        }
    }
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
    pub n_vocab: usize,
    pub ctx_train: usize,
    pub eps: f32,
    /// RoPE base of full-attention layers.
    pub rope_base: f32,
    /// RoPE scaling of full-attention layers (`{arch}.rope.scaling.*`).
    pub rope_scaling: Scaling,
    /// RoPE base of sliding-window layers (Gemma 3: 10000).
    pub rope_base_swa: f32,
    /// Sliding-window size, for architectures that interleave windowed layers.
    pub sliding_window: Option<usize>,
    /// Every `swa_pattern`-th layer (the last of each group) uses full attention; 0 = none.
    pub swa_pattern: usize,
    /// Multiplier of q·k.
    pub attn_scale: f32,
}

impl Config {
    pub fn from_gguf(f: &GgufFile) -> Result<Self, ModelError> {
        let md = f.metadata();
        let merr = |e| ModelError::metadata(f, e);
        let arch_name = md.get_str("general.architecture").map_err(merr)?;
        let arch = Arch::from_name(arch_name).ok_or_else(|| {
            ModelError::Unsupported(format!(
                "{}: architecture {arch_name:?} is not supported (supported: gemma3, qwen2, qwen3, llama)",
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
        let rope_scaling = Scaling::from_metadata(md, arch_name, ctx_train)
            .map_err(|e| ModelError::Unsupported(format!("{}: {e}", f.path().display())))?;
        let (sliding_window, swa_pattern, rope_base_swa, attn_scale) = match arch {
            // llama.cpp: 5 sliding-window layers then one global, local RoPE base 10000,
            // queries scaled by 1/sqrt(head_dim).
            Arch::Gemma3 => (
                Some(get("attention.sliding_window", 1)?),
                6,
                10_000.0,
                1.0 / (head_dim as f32).sqrt(),
            ),
            Arch::Qwen2 | Arch::Qwen3 | Arch::Llama => {
                (None, 0, rope_base, 1.0 / (head_dim as f32).sqrt())
            }
        };
        Ok(Config {
            arch,
            name: md
                .opt_str("general.name")
                .map_err(merr)?
                .unwrap_or(arch_name)
                .to_string(),
            n_layer: get("block_count", 1)?,
            n_embd,
            n_ff: get("feed_forward_length", 1)?,
            n_head,
            n_head_kv,
            head_dim,
            n_vocab,
            ctx_train,
            eps,
            rope_base,
            rope_scaling,
            rope_base_swa,
            sliding_window,
            swa_pattern,
            attn_scale,
        })
    }

    /// Whether layer `il` attends through the sliding window.
    pub fn is_swa_layer(&self, il: usize) -> bool {
        self.swa_pattern > 0 && il % self.swa_pattern < self.swa_pattern - 1
    }

    pub fn q_dim(&self) -> usize {
        self.n_head * self.head_dim
    }

    pub fn kv_dim(&self) -> usize {
        self.n_head_kv * self.head_dim
    }
}

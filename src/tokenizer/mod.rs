//! Tokenizers built from GGUF metadata, on the `tokenizers` crate.
//!
//! [`Tokenizer::from_metadata`] reads `tokenizer.ggml.*` and builds a `tokenizers::Tokenizer`
//! for the family the file names: `llama` (SentencePiece-style BPE with scores and byte
//! fallback, [`spm`]) or `gpt2` (byte-level BPE with merges and a pre-tokenizer regex chosen by
//! `tokenizer.ggml.pre`, [`bpe`]). The wrapper adds what llama.cpp layers on top: BOS/EOS as
//! the metadata says, special tokens recognised in text, end-of-generation ids. Streaming
//! detokenization lives in [`stream`], chat templates in [`chat`].

pub mod bpe;
pub mod chat;
pub mod spm;
pub mod spm_model;
pub mod stream;

use crate::gguf::{Metadata, MetadataError};
pub use stream::{Detokenizer, TextStream};

/// Why a tokenizer could not be built or used.
#[derive(Debug, thiserror::Error)]
pub enum TokenizerError {
    #[error(transparent)]
    Metadata(#[from] MetadataError),
    #[error("unsupported tokenizer: {0}")]
    Unsupported(String),
    #[error("invalid tokenizer metadata: {0}")]
    Invalid(String),
    #[error("tokenizer: {0}")]
    Library(String),
    #[error("chat template: {0}")]
    Template(String),
}

impl TokenizerError {
    fn lib(e: impl std::fmt::Display) -> Self {
        TokenizerError::Library(e.to_string())
    }
}

/// GGUF token types (`tokenizer.ggml.token_type`).
pub mod token_type {
    pub const NORMAL: i64 = 1;
    pub const UNKNOWN: i64 = 2;
    pub const CONTROL: i64 = 3;
    pub const USER_DEFINED: i64 = 4;
    pub const UNUSED: i64 = 5;
    pub const BYTE: i64 = 6;
}

/// Which family the vocabulary belongs to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Family {
    /// `tokenizer.ggml.model = "llama"`: SentencePiece BPE with scores.
    Spm,
    /// `tokenizer.ggml.model = "gpt2"`: byte-level BPE with merges.
    Bpe,
}

/// The vocabulary as read from metadata, shared by both builders.
pub(crate) struct Vocab<'a> {
    pub tokens: Vec<&'a str>,
    pub types: Vec<i64>,
}

impl<'a> Vocab<'a> {
    pub(crate) fn read(md: &'a Metadata) -> Result<Self, TokenizerError> {
        let tokens = md.get_str_array("tokenizer.ggml.tokens")?;
        let types = match md.get("tokenizer.ggml.token_type") {
            Some(_) => md.get_i64_array("tokenizer.ggml.token_type")?,
            None => vec![token_type::NORMAL; tokens.len()],
        };
        if types.len() != tokens.len() {
            return Err(TokenizerError::Invalid(format!(
                "tokenizer.ggml.token_type has {} entries for {} tokens",
                types.len(),
                tokens.len()
            )));
        }
        if tokens.is_empty() {
            return Err(TokenizerError::Invalid("empty vocabulary".into()));
        }
        Ok(Vocab { tokens, types })
    }

    /// Control and user-defined tokens, which are matched in text before the model runs.
    /// Control tokens are "special" (skipped when decoding for display); user-defined ones
    /// (Gemma's whitespace runs and HTML tags) are ordinary text.
    fn added_tokens(&self) -> Vec<tokenizers::AddedToken> {
        self.tokens
            .iter()
            .zip(&self.types)
            .filter(|(_, &t)| t == token_type::CONTROL || t == token_type::USER_DEFINED)
            .map(|(s, &t)| {
                tokenizers::AddedToken::from(s.to_string(), t == token_type::CONTROL)
                    .normalized(false)
            })
            .collect()
    }
}

/// The `tokenizers` pipeline of one family.
enum Pipeline {
    Spm(Box<spm::SpmPipeline>),
    Bpe(Box<tokenizers::Tokenizer>),
}

/// A tokenizer for one model: the `tokenizers` pipeline plus llama.cpp's conventions.
pub struct Tokenizer {
    inner: Pipeline,
    family: Family,
    bos: Option<u32>,
    eos: Option<u32>,
    add_bos: bool,
    add_eos: bool,
    eog: Vec<u32>,
    chat_template: Option<String>,
    /// The chat template is tokenfab's copy of the architecture's, not the file's.
    builtin_template: bool,
    vocab_size: usize,
}

impl std::fmt::Debug for Tokenizer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tokenizer")
            .field("family", &self.family)
            .field("vocab_size", &self.vocab_size)
            .field("bos", &self.bos)
            .field("eos", &self.eos)
            .finish()
    }
}

/// Texts of tokens that end generation in chat models (as llama.cpp's vocab loader treats them).
const EOG_TEXTS: [&str; 7] = [
    "<end_of_turn>",
    "<|im_end|>",
    "<|endoftext|>",
    "<|eot_id|>",
    "<|end|>",
    "<|eom_id|>",
    "<eos>",
];

impl Tokenizer {
    /// Builds the tokenizer described by a GGUF file's metadata.
    pub fn from_metadata(md: &Metadata) -> Result<Self, TokenizerError> {
        let model = md.get_str("tokenizer.ggml.model")?;
        let vocab = Vocab::read(md)?;
        let (family, inner) = match model {
            "llama" => (
                Family::Spm,
                Pipeline::Spm(Box::new(spm::build(md, &vocab)?)),
            ),
            "gpt2" => (
                Family::Bpe,
                Pipeline::Bpe(Box::new(bpe::build(md, &vocab)?)),
            ),
            other => {
                return Err(TokenizerError::Unsupported(format!(
                    "tokenizer.ggml.model = {other:?} (supported: \"llama\", \"gpt2\")"
                )))
            }
        };
        let n = vocab.tokens.len();
        let id = |key: &str| -> Result<Option<u32>, TokenizerError> {
            match md.opt_u64(key)? {
                None => Ok(None),
                Some(v) if (v as usize) < n => Ok(Some(v as u32)),
                Some(v) => Err(TokenizerError::Invalid(format!(
                    "{key} = {v} is outside the vocabulary of {n} tokens"
                ))),
            }
        };
        let bos = id("tokenizer.ggml.bos_token_id")?;
        let eos = id("tokenizer.ggml.eos_token_id")?;
        let eot = id("tokenizer.ggml.eot_token_id")?;
        let default_add_bos = family == Family::Spm;
        let add_bos = md
            .opt_bool("tokenizer.ggml.add_bos_token")?
            .unwrap_or(default_add_bos)
            && bos.is_some();
        let add_eos = md
            .opt_bool("tokenizer.ggml.add_eos_token")?
            .unwrap_or(false)
            && eos.is_some();
        let mut eog: Vec<u32> = eos.into_iter().chain(eot).collect();
        for (i, (t, ty)) in vocab.tokens.iter().zip(&vocab.types).enumerate() {
            if *ty == token_type::CONTROL && EOG_TEXTS.contains(t) && !eog.contains(&(i as u32)) {
                eog.push(i as u32);
            }
        }
        // a file without a template gets its architecture's published one where it is known
        // (Gemma GGUFs are often converted without it), as llama.cpp does
        let arch = md.opt_str("general.architecture")?.unwrap_or("");
        let stored = md.opt_str("tokenizer.chat_template")?.map(str::to_string);
        let builtin_template = stored.is_none() && chat::builtin_template(arch).is_some();
        let chat_template = stored.or_else(|| chat::builtin_template(arch).map(str::to_string));
        Ok(Tokenizer {
            inner,
            family,
            bos,
            eos,
            add_bos,
            add_eos,
            eog,
            chat_template,
            builtin_template,
            vocab_size: n,
        })
    }

    /// Token ids for `text`. Special tokens written in the text (e.g. `<start_of_turn>`) are
    /// recognised. With `add_special`, BOS/EOS are added as the model's metadata says.
    pub fn encode(&self, text: &str, add_special: bool) -> Result<Vec<u32>, TokenizerError> {
        let enc = match &self.inner {
            Pipeline::Spm(t) => t.encode_fast(text, false),
            Pipeline::Bpe(t) => t.encode_fast(text, false),
        }
        .map_err(TokenizerError::lib)?;
        let mut ids = Vec::with_capacity(enc.len() + 2);
        if add_special && self.add_bos {
            ids.extend(self.bos);
        }
        ids.extend_from_slice(enc.get_ids());
        if add_special && self.add_eos {
            ids.extend(self.eos);
        }
        Ok(ids)
    }

    /// Text for `ids`; control tokens (BOS, `<end_of_turn>` …) are left out.
    pub fn decode(&self, ids: &[u32]) -> Result<String, TokenizerError> {
        match &self.inner {
            Pipeline::Spm(t) => t.decode(ids, true),
            Pipeline::Bpe(t) => t.decode(ids, true),
        }
        .map_err(TokenizerError::lib)
    }

    /// The vocabulary entry of a token (`▁the`, `<0x0A>`, `Ġworld` …).
    pub fn piece(&self, id: u32) -> Option<String> {
        match &self.inner {
            Pipeline::Spm(t) => t.id_to_token(id),
            Pipeline::Bpe(t) => t.id_to_token(id),
        }
    }

    /// A streaming detokenizer that never emits a partial UTF-8 character.
    pub fn stream(&self) -> TextStream<'_> {
        TextStream::new(self)
    }

    pub fn family(&self) -> Family {
        self.family
    }

    pub fn vocab_size(&self) -> usize {
        self.vocab_size
    }

    pub fn bos(&self) -> Option<u32> {
        self.bos
    }

    pub fn eos(&self) -> Option<u32> {
        self.eos
    }

    /// Whether BOS is prepended to prompts.
    pub fn adds_bos(&self) -> bool {
        self.add_bos
    }

    /// Whether `id` ends generation (EOS, end-of-turn and similar).
    pub fn is_eog(&self, id: u32) -> bool {
        self.eog.contains(&id)
    }

    /// Whether [`Tokenizer::chat_template`] is built in (the file has none).
    pub fn chat_template_is_builtin(&self) -> bool {
        self.builtin_template
    }

    /// The model's chat template (`tokenizer.chat_template`), or the architecture's published
    /// one when the file has none (see [`chat::builtin_template`]).
    pub fn chat_template(&self) -> Option<&str> {
        self.chat_template.as_deref()
    }
}

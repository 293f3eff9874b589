//! Byte-level BPE vocabularies (`tokenizer.ggml.model = "gpt2"`, e.g. Qwen2) as a `tokenizers`
//! pipeline: NFC, a split regex chosen by `tokenizer.ggml.pre` (the regexes are llama.cpp's,
//! `src/llama-vocab.cpp`), byte-level mapping, BPE over the stored merges.

use super::{TokenizerError, Vocab};
use crate::gguf::Metadata;
use tokenizers::decoders::byte_level::ByteLevel as ByteLevelDecoder;
use tokenizers::models::bpe::BPE;
use tokenizers::normalizers::unicode::NFC;
use tokenizers::pre_tokenizers::byte_level::ByteLevel;
use tokenizers::pre_tokenizers::sequence::Sequence;
use tokenizers::pre_tokenizers::split::{Split, SplitPattern};
use tokenizers::{DecoderWrapper, NormalizerWrapper, PreTokenizerWrapper, SplitDelimiterBehavior};

const QWEN2: &str = r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";
const LLAMA3: &str = r"(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";
const GPT2: &str = r"'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+";

/// The pre-tokenizer regex for a `tokenizer.ggml.pre` value.
pub fn pre_regex(pre: &str) -> Option<&'static str> {
    Some(match pre {
        "qwen2" | "deepseek-r1-qwen" => QWEN2,
        "llama3" | "llama-bpe" | "llama-v3" | "smaug-bpe" | "falcon3" => LLAMA3,
        "gpt2" | "gpt-2" => GPT2,
        _ => return None,
    })
}

pub(super) fn build(md: &Metadata, vocab: &Vocab) -> Result<tokenizers::Tokenizer, TokenizerError> {
    let pre = md.opt_str("tokenizer.ggml.pre")?.unwrap_or("gpt2");
    let regex = pre_regex(pre).ok_or_else(|| {
        TokenizerError::Unsupported(format!(
            "tokenizer.ggml.pre = {pre:?} (supported: qwen2, llama3/llama-bpe, gpt2)"
        ))
    })?;
    let merges: Vec<(String, String)> = md
        .get_str_array("tokenizer.ggml.merges")?
        .into_iter()
        .enumerate()
        .map(|(i, m)| {
            m.split_once(' ')
                .map(|(a, b)| (a.to_string(), b.to_string()))
                .ok_or_else(|| {
                    TokenizerError::Invalid(format!(
                        "tokenizer.ggml.merges[{i}] = {m:?} has no space"
                    ))
                })
        })
        .collect::<Result<_, _>>()?;
    let bpe_vocab: tokenizers::models::bpe::Vocab = vocab
        .tokens
        .iter()
        .enumerate()
        .map(|(i, t)| (t.to_string(), i as u32))
        .collect();
    let model = BPE::builder()
        .vocab_and_merges(bpe_vocab, merges)
        .build()
        .map_err(TokenizerError::lib)?;
    let mut tk = tokenizers::Tokenizer::new(model);
    tk.with_normalizer(Some(NormalizerWrapper::NFC(NFC)));
    let split = Split::new(
        SplitPattern::Regex(regex.to_string()),
        SplitDelimiterBehavior::Isolated,
        false,
    )
    .map_err(TokenizerError::lib)?;
    tk.with_pre_tokenizer(Some(PreTokenizerWrapper::Sequence(Sequence::new(vec![
        PreTokenizerWrapper::Split(split),
        PreTokenizerWrapper::ByteLevel(ByteLevel::new(false, false, false)),
    ]))));
    tk.with_decoder(Some(DecoderWrapper::ByteLevel(ByteLevelDecoder::default())));
    let added = vocab.added_tokens();
    tk.add_tokens(&added);
    Ok(tk)
}

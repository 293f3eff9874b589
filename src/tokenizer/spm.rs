//! SentencePiece-style vocabularies (`tokenizer.ggml.model = "llama"`, e.g. Gemma 3) as a
//! `tokenizers` BPE model.
//!
//! GGUF stores tokens with scores but no merges. SentencePiece BPE merges the adjacent pair
//! whose *merged* piece has the highest score, so the merge list is derived: every split of
//! every normal token into two in-vocabulary pieces is a merge, ranked by the merged token's
//! score (highest first, ties by the pieces' ids). ../shared/reference/TOKENIZERS.md records
//! that this reproduces llama.cpp's ids; the oracle tests check it.

use super::{token_type, TokenizerError, Vocab};
use crate::gguf::Metadata;
use rayon::prelude::*;
use tokenizers::decoders::byte_fallback::ByteFallback;
use tokenizers::decoders::fuse::Fuse;
use tokenizers::decoders::sequence::Sequence as DecoderSequence;
use tokenizers::models::bpe::BPE;
use tokenizers::normalizers::replace::Replace;
use tokenizers::{DecoderWrapper, NormalizerWrapper};

pub(super) fn build(md: &Metadata, vocab: &Vocab) -> Result<tokenizers::Tokenizer, TokenizerError> {
    let scores = md.get_f32_array("tokenizer.ggml.scores")?;
    if scores.len() != vocab.tokens.len() {
        return Err(TokenizerError::Invalid(format!(
            "tokenizer.ggml.scores has {} entries for {} tokens",
            scores.len(),
            vocab.tokens.len()
        )));
    }
    if md.opt_bool("tokenizer.ggml.add_space_prefix")? == Some(true) {
        return Err(TokenizerError::Unsupported(
            "SentencePiece vocabularies with add_space_prefix = true".into(),
        ));
    }
    let bpe_vocab: tokenizers::models::bpe::Vocab = vocab
        .tokens
        .iter()
        .enumerate()
        .map(|(i, t)| (t.to_string(), i as u32))
        .collect();
    let merges = derive_merges(vocab, &scores, &bpe_vocab);
    let unk = md
        .opt_u64("tokenizer.ggml.unknown_token_id")?
        .and_then(|i| vocab.tokens.get(i as usize))
        .map(|s| s.to_string());
    let mut builder = BPE::builder()
        .vocab_and_merges(bpe_vocab, merges)
        .byte_fallback(true)
        .fuse_unk(true);
    if let Some(unk) = unk {
        builder = builder.unk_token(unk);
    }
    let model = builder.build().map_err(TokenizerError::lib)?;
    let mut tk = tokenizers::Tokenizer::new(model);
    tk.with_normalizer(Some(NormalizerWrapper::Replace(
        Replace::new(" ", "▁").map_err(TokenizerError::lib)?,
    )));
    tk.with_decoder(Some(DecoderWrapper::Sequence(DecoderSequence::new(vec![
        DecoderWrapper::Replace(Replace::new("▁", " ").map_err(TokenizerError::lib)?),
        DecoderWrapper::ByteFallback(ByteFallback::default()),
        DecoderWrapper::Fuse(Fuse::default()),
    ]))));
    let added = vocab.added_tokens();
    tk.add_tokens(&added);
    Ok(tk)
}

/// All (left, right) pairs whose concatenation is a normal token, best merged score first.
fn derive_merges(
    vocab: &Vocab,
    scores: &[f32],
    index: &tokenizers::models::bpe::Vocab,
) -> Vec<(String, String)> {
    let mut merges: Vec<(f32, u32, u32)> = vocab
        .tokens
        .par_iter()
        .enumerate()
        .filter(|(i, t)| vocab.types[*i] == token_type::NORMAL && t.chars().nth(1).is_some())
        .flat_map_iter(|(i, t)| {
            t.char_indices().skip(1).filter_map(move |(at, _)| {
                let (l, r) = t.split_at(at);
                Some((scores[i], *index.get(l)?, *index.get(r)?))
            })
        })
        .collect();
    merges.par_sort_unstable_by(|a, b| b.0.total_cmp(&a.0).then(a.1.cmp(&b.1)).then(a.2.cmp(&b.2)));
    merges
        .into_iter()
        .map(|(_, l, r)| {
            (
                vocab.tokens[l as usize].to_string(),
                vocab.tokens[r as usize].to_string(),
            )
        })
        .collect()
}

//! SentencePiece-style vocabularies (`tokenizer.ggml.model = "llama"`, e.g. Gemma 3) as
//! `tokenizers` pipelines.
//!
//! [`build`] (the one tokenfab uses) puts llama.cpp's score-driven merge algorithm
//! ([`super::spm_model::SpmModel`]) inside a `tokenizers` pipeline. [`build_derived_bpe`] is the
//! route ../shared/reference/TOKENIZERS.md describes — a `tokenizers` BPE over merges derived
//! from the scores (every split of every normal piece into two pieces, ranked by the merged
//! piece's score) — kept as an independent cross-check: it takes ~0.7 s to build for Gemma's
//! vocabulary, too slow for the 0.5 s load-to-first-token budget, and the tests assert both
//! give the same ids.

use super::spm_model::SpmModel;
use super::{token_type, TokenizerError, Vocab};
use crate::gguf::Metadata;
use rayon::prelude::*;
use tokenizers::decoders::byte_fallback::ByteFallback;
use tokenizers::decoders::fuse::Fuse;
use tokenizers::decoders::sequence::Sequence as DecoderSequence;
use tokenizers::models::bpe::BPE;
use tokenizers::normalizers::replace::Replace;
use tokenizers::{DecoderWrapper, NormalizerWrapper, PostProcessorWrapper, PreTokenizerWrapper};

/// The SentencePiece pipeline with llama.cpp's merge algorithm.
pub type SpmPipeline = tokenizers::TokenizerImpl<
    SpmModel,
    NormalizerWrapper,
    PreTokenizerWrapper,
    PostProcessorWrapper,
    DecoderWrapper,
>;

fn scores(md: &Metadata, vocab: &Vocab) -> Result<Vec<f32>, TokenizerError> {
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
    Ok(scores)
}

fn normalizer() -> Result<NormalizerWrapper, TokenizerError> {
    Ok(NormalizerWrapper::Replace(
        Replace::new(" ", "▁").map_err(TokenizerError::lib)?,
    ))
}

fn decoder() -> Result<DecoderWrapper, TokenizerError> {
    Ok(DecoderWrapper::Sequence(DecoderSequence::new(vec![
        DecoderWrapper::Replace(Replace::new("▁", " ").map_err(TokenizerError::lib)?),
        DecoderWrapper::ByteFallback(ByteFallback::default()),
        DecoderWrapper::Fuse(Fuse::default()),
    ])))
}

fn unk_id(md: &Metadata, vocab: &Vocab) -> Result<Option<u32>, TokenizerError> {
    Ok(md
        .opt_u64("tokenizer.ggml.unknown_token_id")?
        .filter(|&i| (i as usize) < vocab.tokens.len())
        .map(|i| i as u32))
}

/// The pipeline tokenfab uses: llama.cpp's merge algorithm over the pieces and scores.
pub(super) fn build(md: &Metadata, vocab: &Vocab) -> Result<SpmPipeline, TokenizerError> {
    let scores = scores(md, vocab)?;
    let pieces = vocab.tokens.iter().copied().collect();
    let model = SpmModel::new(pieces, scores, unk_id(md, vocab)?);
    let mut tk = SpmPipeline::new(model);
    tk.with_normalizer(Some(normalizer()?));
    tk.with_decoder(Some(decoder()?));
    tk.add_tokens(&vocab.added_tokens());
    Ok(tk)
}

/// The `tokenizers` BPE over derived merges (see the module docs); slow to build, kept as a
/// cross-check of [`build`].
pub fn build_derived_bpe(md: &Metadata) -> Result<tokenizers::Tokenizer, TokenizerError> {
    let vocab = Vocab::read(md)?;
    let vocab = &vocab;
    let scores = scores(md, vocab)?;
    let bpe_vocab: tokenizers::models::bpe::Vocab = vocab
        .tokens
        .iter()
        .enumerate()
        .map(|(i, t)| (t.to_string(), i as u32))
        .collect();
    let merges = derive_merges(vocab, &scores, &bpe_vocab);
    let unk = unk_id(md, vocab)?.map(|i| vocab.tokens[i as usize].to_string());
    let mut builder = BPE::builder()
        .vocab_and_merges(bpe_vocab, merges)
        .byte_fallback(true)
        .fuse_unk(true);
    if let Some(unk) = unk {
        builder = builder.unk_token(unk);
    }
    let model = builder.build().map_err(TokenizerError::lib)?;
    let mut tk = tokenizers::Tokenizer::new(model);
    tk.with_normalizer(Some(normalizer()?));
    tk.with_decoder(Some(decoder()?));
    tk.add_tokens(&vocab.added_tokens());
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

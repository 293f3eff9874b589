//! Streaming detokenization: turns generated ids into text chunks as they arrive, without ever
//! emitting half of a UTF-8 character.
//!
//! A character may be spread over several byte-fallback tokens (`<0xF0><0x9F><0xA4><0x96>`
//! for 🤖) or byte-level tokens. Ids are held back while their decoded text ends in an
//! incomplete sequence (U+FFFD); a UTF-8 character is at most four bytes, so after four held
//! tokens the text is released as it is (the bytes really were invalid).

/// Holds back tokens until they decode to complete characters; the tokenizer is passed to
/// each call, so a sequence can own one without borrowing its engine's tokenizer.
#[derive(Clone, Debug, Default)]
pub struct Detokenizer {
    pending: Vec<u32>,
}

const MAX_PENDING: usize = 4;

impl Detokenizer {
    /// Adds one token; returns the text that is now complete (possibly empty).
    pub fn push(
        &mut self,
        tokenizer: &super::Tokenizer,
        id: u32,
    ) -> Result<String, super::TokenizerError> {
        self.pending.push(id);
        let text = tokenizer.decode(&self.pending)?;
        if text.ends_with('\u{FFFD}') && self.pending.len() < MAX_PENDING {
            return Ok(String::new());
        }
        self.pending.clear();
        Ok(text)
    }

    /// Releases whatever is still held back (at the end of generation).
    pub fn finish(
        &mut self,
        tokenizer: &super::Tokenizer,
    ) -> Result<String, super::TokenizerError> {
        if self.pending.is_empty() {
            return Ok(String::new());
        }
        let text = tokenizer.decode(&self.pending)?;
        self.pending.clear();
        Ok(text)
    }
}

/// A [`Detokenizer`] bound to its tokenizer.
pub struct TextStream<'a> {
    tokenizer: &'a super::Tokenizer,
    inner: Detokenizer,
}

impl<'a> TextStream<'a> {
    pub(crate) fn new(tokenizer: &'a super::Tokenizer) -> Self {
        TextStream {
            tokenizer,
            inner: Detokenizer::default(),
        }
    }

    /// Adds one token; returns the text that is now complete (possibly empty).
    pub fn push(&mut self, id: u32) -> Result<String, super::TokenizerError> {
        self.inner.push(self.tokenizer, id)
    }

    /// Releases whatever is still held back (at the end of generation).
    pub fn finish(&mut self) -> Result<String, super::TokenizerError> {
        self.inner.finish(self.tokenizer)
    }
}

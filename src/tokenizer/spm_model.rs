//! llama.cpp's SentencePiece merge algorithm as a `tokenizers` [`Model`].
//!
//! GGUF "llama" vocabularies carry pieces and scores but no merge list. llama.cpp tokenizes
//! them by repeatedly merging the adjacent pair whose concatenation is the highest-scoring
//! piece (ties: leftmost first), falling back to `<0xNN>` byte pieces for characters outside
//! the vocabulary (`llm_tokenizer_spm` in `src/llama-vocab.cpp`). This model does exactly
//! that, so it needs only a piece → id map at load (~60 ms for Gemma's 262k pieces) instead of
//! the ~513k derived merges a `tokenizers` BPE needs (~0.7 s to build). The rest of the
//! pipeline — special-token splitting, normalizer, decoders, streaming — is the `tokenizers`
//! crate's. `tests/tokenizer_oracle.rs` checks it against llama.cpp's ids and against the
//! derived-merges BPE on a whole document.

use crate::gguf::StringArray;
use hashbrown::hash_table::{Entry, HashTable};
use std::cmp::Ordering;
use std::collections::{BinaryHeap, HashMap};
use std::path::{Path, PathBuf};
use tokenizers::{AddedToken, Model, Result, Token, Trainer};

/// A SentencePiece vocabulary with scores, tokenized the way llama.cpp does.
pub struct SpmModel {
    pieces: Pieces,
    scores: Vec<f32>,
    /// `<0xNN>` piece ids for byte fallback.
    bytes: [Option<u32>; 256],
    unk: Option<u32>,
}

impl SpmModel {
    pub fn new(pieces: StringArray, scores: Vec<f32>, unk: Option<u32>) -> Self {
        let pieces = Pieces::new(pieces);
        let mut bytes = [None; 256];
        for (b, slot) in bytes.iter_mut().enumerate() {
            *slot = pieces.id(&format!("<0x{b:02X}>"));
        }
        SpmModel {
            pieces,
            scores,
            bytes,
            unk,
        }
    }
}

/// The pieces in one buffer and a table of ids (4 bytes a slot) that finds a piece's first id
/// — the first occurrence wins, as in llama.cpp's `token_to_id` map. As a `Vec<String>` plus
/// an `AHashMap<String, u32>`, Gemma 3's 262k pieces took ~35 MB of heap; this takes ~7 MB.
struct Pieces {
    text: StringArray,
    ids: HashTable<u32>,
    hasher: ahash::RandomState,
}

impl Pieces {
    fn new(text: StringArray) -> Self {
        let hasher = ahash::RandomState::new();
        let mut ids = HashTable::with_capacity(text.len());
        let piece = |id: u32| text.get(id as usize).unwrap_or_default();
        for (i, p) in text.iter().enumerate() {
            let hash = hasher.hash_one(p);
            if let Entry::Vacant(slot) =
                ids.entry(hash, |&id| piece(id) == p, |&id| hasher.hash_one(piece(id)))
            {
                slot.insert(i as u32);
            }
        }
        Pieces { text, ids, hasher }
    }

    fn id(&self, s: &str) -> Option<u32> {
        let hash = self.hasher.hash_one(s);
        self.ids
            .find(hash, |&id| self.text.get(id as usize) == Some(s))
            .copied()
    }

    fn piece(&self, id: u32) -> Option<&str> {
        self.text.get(id as usize)
    }

    fn len(&self) -> usize {
        self.text.len()
    }
}

struct Symbol {
    start: usize,
    len: usize,
    prev: isize,
    next: isize,
}

/// A candidate merge of symbols `left` and `right` (adjacent when pushed).
struct Bigram {
    score: f32,
    left: usize,
    right: usize,
    size: usize,
}

impl PartialEq for Bigram {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}
impl Eq for Bigram {}
impl PartialOrd for Bigram {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Bigram {
    /// Max-heap order: higher score first, then the leftmost pair.
    fn cmp(&self, other: &Self) -> Ordering {
        self.score
            .total_cmp(&other.score)
            .then_with(|| other.left.cmp(&self.left))
    }
}

impl SpmModel {
    fn try_add(
        &self,
        text: &str,
        syms: &[Symbol],
        left: isize,
        right: isize,
        q: &mut BinaryHeap<Bigram>,
    ) {
        if left < 0 || right < 0 {
            return;
        }
        let (l, r) = (&syms[left as usize], &syms[right as usize]);
        let piece = &text[l.start..r.start + r.len];
        if let Some(id) = self.pieces.id(piece) {
            q.push(Bigram {
                score: self.scores[id as usize],
                left: left as usize,
                right: right as usize,
                size: piece.len(),
            });
        }
    }
}

impl Model for SpmModel {
    type Trainer = SpmTrainer;

    fn tokenize(&self, text: &str) -> Result<Vec<Token>> {
        let mut syms: Vec<Symbol> = Vec::with_capacity(text.len());
        for (i, (start, c)) in text.char_indices().enumerate() {
            syms.push(Symbol {
                start,
                len: c.len_utf8(),
                prev: i as isize - 1,
                next: i as isize + 1,
            });
        }
        if let Some(last) = syms.last_mut() {
            last.next = -1;
        }
        let mut q = BinaryHeap::with_capacity(syms.len());
        for i in 1..syms.len() {
            self.try_add(text, &syms, i as isize - 1, i as isize, &mut q);
        }
        while let Some(b) = q.pop() {
            let (l, r) = (&syms[b.left], &syms[b.right]);
            // skip pairs whose symbols were merged into something else since
            if l.len == 0 || r.len == 0 || l.len + r.len != b.size {
                continue;
            }
            let (r_len, r_next) = (r.len, r.next);
            syms[b.left].len += r_len;
            syms[b.left].next = r_next;
            syms[b.right].len = 0;
            if r_next >= 0 {
                syms[r_next as usize].prev = b.left as isize;
            }
            let prev = syms[b.left].prev;
            self.try_add(text, &syms, prev, b.left as isize, &mut q);
            self.try_add(text, &syms, b.left as isize, r_next, &mut q);
        }
        let mut out = Vec::with_capacity(syms.len());
        let mut i: isize = if syms.is_empty() { -1 } else { 0 };
        while i >= 0 {
            let s = &syms[i as usize];
            let piece = &text[s.start..s.start + s.len];
            if let Some(id) = self.pieces.id(piece) {
                out.push(Token::new(
                    id,
                    piece.to_string(),
                    (s.start, s.start + s.len),
                ));
            } else {
                // a character outside the vocabulary: one byte piece per UTF-8 byte
                for (k, &byte) in piece.as_bytes().iter().enumerate() {
                    let id = self.bytes[byte as usize].or(self.unk).ok_or_else(|| {
                        format!("no byte piece <0x{byte:02X}> and no unknown token")
                    })?;
                    let at = s.start + k;
                    out.push(Token::new(
                        id,
                        self.pieces.piece(id).unwrap_or_default().to_string(),
                        (at, at + 1),
                    ));
                }
            }
            i = s.next;
        }
        Ok(out)
    }

    fn token_to_id(&self, token: &str) -> Option<u32> {
        self.pieces.id(token)
    }

    fn id_to_token(&self, id: u32) -> Option<String> {
        self.pieces.piece(id).map(str::to_string)
    }

    fn get_vocab(&self) -> HashMap<String, u32> {
        let p = &self.pieces;
        p.ids
            .iter()
            .filter_map(|&id| Some((p.piece(id)?.to_string(), id)))
            .collect()
    }

    fn get_vocab_size(&self) -> usize {
        self.pieces.len()
    }

    fn save(&self, _folder: &Path, _prefix: Option<&str>) -> Result<Vec<PathBuf>> {
        Err(
            "saving a GGUF SentencePiece model is not supported; the GGUF file is the source"
                .into(),
        )
    }

    fn get_trainer(&self) -> SpmTrainer {
        SpmTrainer
    }
}

/// `tokenizers` requires a trainer type; GGUF vocabularies are never trained here.
pub struct SpmTrainer;

impl Trainer for SpmTrainer {
    type Model = SpmModel;

    fn should_show_progress(&self) -> bool {
        false
    }

    fn train(&self, _model: &mut SpmModel) -> Result<Vec<AddedToken>> {
        Err("training is not supported for GGUF SentencePiece vocabularies".into())
    }

    fn feed<I, S, F>(&mut self, _iterator: I, _process: F) -> Result<()>
    where
        I: Iterator<Item = S> + Send,
        S: AsRef<str> + Send,
        F: Fn(&str) -> Result<Vec<String>> + Sync,
    {
        Err("training is not supported for GGUF SentencePiece vocabularies".into())
    }
}

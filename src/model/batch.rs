//! A batch in llama.cpp's sense: tokens, each with its position, the sequence it belongs to
//! and whether its logits are wanted — so one forward pass can prefill one sequence's prompt
//! chunk while it decodes the next token of several others, reading the weights once for all.
//!
//! The forward pass works on [`Segment`]s: the runs of one sequence's tokens at consecutive
//! positions, each a contiguous block of rows. Matmuls, norms and the feed-forward run over all
//! rows at once; RoPE, the KV-cache writes and attention run per segment, against that
//! sequence's own cache. [`Batch::plan`] checks the batch and finds its segments.

use super::ModelError;

/// Tokens to run through the model together (see the module docs).
#[derive(Clone, Debug, Default)]
pub struct Batch {
    tokens: Vec<u32>,
    pos: Vec<usize>,
    seq: Vec<usize>,
    logits: Vec<bool>,
}

/// One sequence's run of tokens in a batch: rows `row0..row0 + n`, positions `pos0..pos0 + n`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Segment {
    /// Index of the sequence's KV cache in the caches passed with the batch.
    pub seq: usize,
    pub row0: usize,
    pub n: usize,
    pub pos0: usize,
}

/// A checked batch: its segments and the rows whose logits are wanted, in batch order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Plan {
    pub segments: Vec<Segment>,
    pub logit_rows: Vec<usize>,
}

impl Batch {
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds one token of sequence `seq` at position `pos`; `logits`: compute its logits.
    pub fn push(&mut self, token: u32, pos: usize, seq: usize, logits: bool) {
        self.tokens.push(token);
        self.pos.push(pos);
        self.seq.push(seq);
        self.logits.push(logits);
    }

    /// Adds `tokens` of sequence `seq` at positions `pos0..`, with the last one's logits when
    /// `last_logits` (a prompt chunk, or one decode token).
    pub fn push_run(&mut self, tokens: &[u32], pos0: usize, seq: usize, last_logits: bool) {
        for (i, &t) in tokens.iter().enumerate() {
            let last = i + 1 == tokens.len();
            self.push(t, pos0 + i, seq, last && last_logits);
        }
    }

    pub fn clear(&mut self) {
        self.tokens.clear();
        self.pos.clear();
        self.seq.clear();
        self.logits.clear();
    }

    pub fn len(&self) -> usize {
        self.tokens.len()
    }

    pub fn is_empty(&self) -> bool {
        self.tokens.is_empty()
    }

    pub fn tokens(&self) -> &[u32] {
        &self.tokens
    }

    /// Rows whose logits are wanted.
    pub fn n_logits(&self) -> usize {
        self.logits.iter().filter(|&&l| l).count()
    }

    /// Checks the batch and splits it into segments: each sequence's tokens must be one
    /// contiguous run at consecutive positions, and `seq` must index one of `n_seqs` caches.
    pub fn plan(&self, n_seqs: usize) -> Result<Plan, ModelError> {
        let bad = |m: String| Err(ModelError::Batch(m));
        if self.tokens.is_empty() {
            return bad("the batch has no tokens".into());
        }
        let mut segments: Vec<Segment> = Vec::new();
        for i in 0..self.tokens.len() {
            let (seq, pos) = (self.seq[i], self.pos[i]);
            if seq >= n_seqs {
                return bad(format!(
                    "token {i} belongs to sequence {seq}, the batch came with {n_seqs} caches"
                ));
            }
            match segments.last_mut() {
                Some(s) if s.seq == seq => {
                    if pos != s.pos0 + s.n {
                        return bad(format!(
                            "sequence {seq}: token {i} is at position {pos}, expected {}",
                            s.pos0 + s.n
                        ));
                    }
                    s.n += 1;
                }
                _ => {
                    if segments.iter().any(|s| s.seq == seq) {
                        return bad(format!(
                            "sequence {seq}'s tokens are not contiguous in the batch"
                        ));
                    }
                    segments.push(Segment {
                        seq,
                        row0: i,
                        n: 1,
                        pos0: pos,
                    });
                }
            }
        }
        let logit_rows = (0..self.tokens.len()).filter(|&i| self.logits[i]).collect();
        Ok(Plan {
            segments,
            logit_rows,
        })
    }
}

/// Runs of consecutive rows in `rows` (sorted), as (first, count): one copy each when the
/// wanted rows are gathered for the output head.
pub fn runs(rows: &[usize]) -> Vec<(usize, usize)> {
    let mut out: Vec<(usize, usize)> = Vec::new();
    for &r in rows {
        match out.last_mut() {
            Some((first, n)) if *first + *n == r => *n += 1,
            _ => out.push((r, 1)),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plan_finds_segments_and_logit_rows() {
        let mut b = Batch::new();
        b.push_run(&[1, 2, 3], 0, 1, true); // a prompt chunk of sequence 1
        b.push_run(&[7], 40, 0, true); // a decode step of sequence 0
        b.push_run(&[8, 9], 5, 2, false); // a prompt chunk without logits
        let p = b.plan(3).unwrap();
        assert_eq!(
            p.segments,
            vec![
                Segment {
                    seq: 1,
                    row0: 0,
                    n: 3,
                    pos0: 0
                },
                Segment {
                    seq: 0,
                    row0: 3,
                    n: 1,
                    pos0: 40
                },
                Segment {
                    seq: 2,
                    row0: 4,
                    n: 2,
                    pos0: 5
                },
            ]
        );
        assert_eq!(p.logit_rows, vec![2, 3]);
        assert_eq!(b.n_logits(), 2);
        assert_eq!(runs(&[2, 3, 5, 6, 7, 9]), vec![(2, 2), (5, 3), (9, 1)]);
    }

    #[test]
    fn plan_refuses_what_the_forward_pass_cannot_run() {
        let err = |b: &Batch, n| b.plan(n).unwrap_err().to_string();
        assert!(err(&Batch::new(), 1).contains("no tokens"));
        let mut b = Batch::new();
        b.push(1, 0, 2, true);
        assert!(err(&b, 2).contains("sequence 2"));
        let mut b = Batch::new();
        b.push(1, 0, 0, false);
        b.push(1, 2, 0, true);
        assert!(err(&b, 1).contains("expected 1"));
        let mut b = Batch::new();
        b.push(1, 0, 0, false);
        b.push(1, 0, 1, false);
        b.push(1, 1, 0, true);
        assert!(err(&b, 2).contains("not contiguous"));
    }
}

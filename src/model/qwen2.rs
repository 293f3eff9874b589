//! Qwen2 and Llama: the forward pass, top to bottom.
//!
//! The two are one decoder: Qwen2 has Q/K/V biases and rotates NEOX pairs, Llama has no
//! biases and rotates adjacent pairs. Llama 3's `rope_freqs` frequency factors are refused.
//!
//! Per layer: RMS-normed input → Q, K, V projections (+ biases) → RoPE →
//! grouped-query attention → output projection → residual; then the SiLU-gated feed-forward
//! → residual. A separate output matrix unless the file ties it to the embeddings.

use super::batch::{runs, Plan};
use super::{Arch, Config, KvCache, Loader, ModelError, Scratch};
use crate::backend::{AttnParams, Glu, Ops, PreNorm, Rope, RopeLayout, Weight};

struct Layer {
    attn_norm: Weight,  // (n_embd)
    wq: Weight,         // (n_head * head_dim, n_embd)
    bq: Option<Weight>, // (n_head * head_dim), Qwen2 only
    wk: Weight,         // (n_head_kv * head_dim, n_embd)
    bk: Option<Weight>, // (n_head_kv * head_dim)
    wv: Weight,         // (n_head_kv * head_dim, n_embd)
    bv: Option<Weight>, // (n_head_kv * head_dim)
    wo: Weight,         // (n_embd, n_head * head_dim)
    ffn_norm: Weight,   // (n_embd)
    ffn_gate: Weight,   // (n_ff, n_embd)
    ffn_up: Weight,     // (n_ff, n_embd)
    ffn_down: Weight,   // (n_embd, n_ff)
}

pub struct Qwen2 {
    token_embd: Weight, // (n_vocab, n_embd)
    layers: Vec<Layer>,
    output_norm: Weight, // (n_embd)
    output: Weight,      // (n_vocab, n_embd)
    rope: Rope,
}

impl Qwen2 {
    pub(super) fn load(c: &Config, l: &mut Loader, ctx: usize) -> Result<Self, ModelError> {
        let (d, ff) = (c.n_embd, c.n_ff);
        let token_embd = l.get("token_embd.weight", &[d, c.n_vocab])?;
        if l.opt("rope_freqs.weight", &[c.head_dim / 2])?.is_some() {
            return Err(ModelError::Unsupported(
                "Llama 3 RoPE frequency factors (rope_freqs.weight) are not supported yet".into(),
            ));
        }
        let qwen = c.arch == Arch::Qwen2;
        let mut layers = Vec::with_capacity(c.n_layer);
        for i in 0..c.n_layer {
            let mut b = |name: &str, dims: &[usize]| match qwen {
                true => l.get(&format!("blk.{i}.{name}"), dims).map(Some),
                false => Ok(None),
            };
            let (bq, bk, bv) = (
                b("attn_q.bias", &[c.q_dim()])?,
                b("attn_k.bias", &[c.kv_dim()])?,
                b("attn_v.bias", &[c.kv_dim()])?,
            );
            let mut w = |name: &str, dims: &[usize]| l.get(&format!("blk.{i}.{name}"), dims);
            layers.push(Layer {
                attn_norm: w("attn_norm.weight", &[d])?,
                wq: w("attn_q.weight", &[d, c.q_dim()])?,
                bq,
                bk,
                bv,
                wk: w("attn_k.weight", &[d, c.kv_dim()])?,
                wv: w("attn_v.weight", &[d, c.kv_dim()])?,
                wo: w("attn_output.weight", &[c.q_dim(), d])?,
                ffn_norm: w("ffn_norm.weight", &[d])?,
                ffn_gate: w("ffn_gate.weight", &[d, ff])?,
                ffn_up: w("ffn_up.weight", &[d, ff])?,
                ffn_down: w("ffn_down.weight", &[ff, d])?,
            });
        }
        let output_norm = l.get("output_norm.weight", &[d])?;
        let output = l
            .opt("output.weight", &[d, c.n_vocab])?
            .unwrap_or(token_embd);
        let rope = l.ops.rope_table(
            if qwen {
                RopeLayout::Neox
            } else {
                RopeLayout::Norm
            },
            c.head_dim,
            c.rope_base,
            c.rope_freq_scale,
            ctx,
        )?;
        Ok(Qwen2 {
            token_embd,
            layers,
            output_norm,
            output,
            rope,
        })
    }

    /// Runs a batch's `tokens` (segments in `plan`, each against its sequence's cache in
    /// `kvs`); computes the logits of the rows `plan.logit_rows`.
    pub(super) fn forward(
        &self,
        c: &Config,
        ops: &mut Ops,
        s: &Scratch,
        kvs: &[&KvCache],
        tokens: &[u32],
        plan: &Plan,
    ) -> Result<(), ModelError> {
        let (n, eps) = (tokens.len(), c.eps);
        ops.embed(&self.token_embd, tokens, s.x)?;

        for (il, l) in self.layers.iter().enumerate() {
            ops.tag_layer(Some(il));
            // attention
            let norm = PreNorm {
                weight: &l.attn_norm,
                eps,
                out: s.xb,
            };
            ops.matmul_qkv(Some(norm), [&l.wq, &l.wk, &l.wv], s.x, [s.q, s.k, s.v], n)?;
            for (b, out) in [(&l.bq, s.q), (&l.bk, s.k), (&l.bv, s.v)] {
                if let Some(b) = b {
                    ops.add_bias(out, b, n)?;
                }
            }
            // each sequence's tokens against its own cache
            for seg in &plan.segments {
                let kv = kvs[seg.seq];
                ops.tag_sequence(Some(seg.seq));
                ops.rope_store_kv(s.q, s.k, s.v, &self.rope, &kv.at(c, il, seg))?;
                let p = AttnParams {
                    row0: seg.row0,
                    n_tokens: seg.n,
                    pos0: seg.pos0,
                    n_head: c.n_head,
                    n_head_kv: c.n_head_kv,
                    head_dim: c.head_dim,
                    window: None,
                    scale: c.attn_scale,
                };
                ops.attention(s.q, kv.k[il], kv.v[il], s.att, &p)?;
            }
            ops.tag_sequence(None);
            ops.matmul_add(&l.wo, s.att, s.xb, s.x, n)?;

            // feed-forward: down(silu(gate(x)) * up(x))
            let norm = PreNorm {
                weight: &l.ffn_norm,
                eps,
                out: s.xb,
            };
            let (gate, up) = (&l.ffn_gate, &l.ffn_up);
            ops.matmul_glu(Glu::Silu, Some(norm), gate, up, s.x, s.hb2, s.hb, n)?;
            ops.matmul_add(&l.ffn_down, s.hb, s.xb, s.x, n)?;
        }

        ops.tag_layer(None);

        // logits of the wanted rows only
        if !plan.logit_rows.is_empty() {
            self.head(c, ops, s, &plan.logit_rows)?;
        }
        Ok(())
    }

    /// Logits of `rows` (sorted) of the last forward pass's hidden states, in that order.
    pub(super) fn head(
        &self,
        c: &Config,
        ops: &mut Ops,
        s: &Scratch,
        rows: &[usize],
    ) -> Result<(), ModelError> {
        let d = c.n_embd;
        let mut at = 0;
        for (first, k) in runs(rows) {
            ops.copy(s.x, first * d, s.out, at * d, k * d)?;
            at += k;
        }
        ops.rms_norm(s.out, &self.output_norm, s.out, rows.len(), c.eps)?;
        ops.matmul(&self.output, s.out, s.logits, rows.len())?;
        ops.check_finite(s.logits, rows.len(), c.n_vocab, || "the logits".into())?;
        Ok(())
    }
}

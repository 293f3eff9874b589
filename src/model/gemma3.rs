//! Gemma 3 and Gemma 2: the forward pass, top to bottom.
//!
//! Per layer: RMS-normed input → Q, K, V projections → per-head RMS norms of Q and K (Gemma 3)
//! → RoPE (the table each layer's [`LayerKind`](super::LayerKind) names: Gemma 3's
//! sliding-window layers use base 10000, its every sixth, global layer the file's base) →
//! attention (each layer's window from `Config::layers`; Gemma 2 soft-caps the scores) →
//! output projection → post-attention norm → residual; then the GELU-gated feed-forward
//! between `ffn_norm` and `post_ffw_norm` → residual. Embeddings are scaled by √n_embd; the
//! output projection is tied to the embedding table unless the file has `output.weight`;
//! Gemma 2 soft-caps the logits. (Norm weights in GGUF already include Gemma's `1 +`.)

use super::batch::{runs, Plan};
use super::rope::RopeSpec;
use super::{Arch, Config, KvCache, Loader, ModelError, RopeKind, Scratch};
use crate::backend::{AttnParams, Glu, Ops, PreNorm, Rope, RopeLayout, Weight};

struct Layer {
    attn_norm: Weight,                 // (n_embd)
    wq: Weight,                        // (n_head * head_dim, n_embd)
    wk: Weight,                        // (n_head_kv * head_dim, n_embd)
    wv: Weight,                        // (n_head_kv * head_dim, n_embd)
    qk_norm: Option<(Weight, Weight)>, // (head_dim) each, Gemma 3 only
    wo: Weight,                        // (n_embd, n_head * head_dim)
    post_attn_norm: Weight,            // (n_embd)
    ffn_norm: Weight,                  // (n_embd)
    ffn_gate: Weight,                  // (n_ff, n_embd)
    ffn_up: Weight,                    // (n_ff, n_embd)
    ffn_down: Weight,                  // (n_embd, n_ff)
    post_ffw_norm: Weight,             // (n_embd)
}

pub struct Gemma3 {
    token_embd: Weight, // (n_vocab, n_embd)
    layers: Vec<Layer>,
    output_norm: Weight, // (n_embd)
    output: Weight,      // (n_vocab, n_embd), tied to token_embd by default
    rope_local: Rope,
    rope_global: Rope,
}

impl Gemma3 {
    pub(super) fn load(c: &Config, l: &mut Loader, ctx: usize) -> Result<Self, ModelError> {
        let (d, hd, ff) = (c.n_embd, c.head_dim, c.n_ff);
        let token_embd = l.get("token_embd.weight", &[d, c.n_vocab])?;
        let mut layers = Vec::with_capacity(c.n_layer);
        for i in 0..c.n_layer {
            let mut w = |name: &str, dims: &[usize]| l.get(&format!("blk.{i}.{name}.weight"), dims);
            layers.push(Layer {
                attn_norm: w("attn_norm", &[d])?,
                wq: w("attn_q", &[d, c.q_dim()])?,
                wk: w("attn_k", &[d, c.kv_dim()])?,
                wv: w("attn_v", &[d, c.kv_dim()])?,
                qk_norm: match c.arch {
                    Arch::Gemma2 => None,
                    _ => Some((w("attn_q_norm", &[hd])?, w("attn_k_norm", &[hd])?)),
                },
                wo: w("attn_output", &[c.q_dim(), d])?,
                post_attn_norm: w("post_attention_norm", &[d])?,
                ffn_norm: w("ffn_norm", &[d])?,
                ffn_gate: w("ffn_gate", &[d, ff])?,
                ffn_up: w("ffn_up", &[d, ff])?,
                ffn_down: w("ffn_down", &[ff, d])?,
                post_ffw_norm: w("post_ffw_norm", &[d])?,
            });
        }
        let output_norm = l.get("output_norm.weight", &[d])?;
        let output = l
            .opt("output.weight", &[d, c.n_vocab])?
            .unwrap_or(token_embd);
        let rope_local = l.ops.rope_table(
            RopeLayout::Neox,
            hd,
            hd,
            RopeSpec::new(hd, c.rope_base_swa).table(ctx),
        )?;
        let rope_global = l.ops.rope_table(
            RopeLayout::Neox,
            hd,
            hd,
            c.rope_scaling.spec(hd, c.rope_base).table(ctx),
        )?;
        Ok(Gemma3 {
            token_embd,
            layers,
            output_norm,
            output,
            rope_local,
            rope_global,
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
        let n = tokens.len();
        let (d, eps) = (c.n_embd, c.eps);
        ops.embed(&self.token_embd, tokens, s.x)?;
        ops.scale(s.x, (d as f32).sqrt(), n * d)?;

        for (il, l) in self.layers.iter().enumerate() {
            ops.tag_layer(Some(il));
            let kind = c.layers[il];
            let rope = match kind.rope {
                RopeKind::Local => &self.rope_local,
                RopeKind::Global => &self.rope_global,
            };

            // attention
            let norm = PreNorm {
                weight: &l.attn_norm,
                eps,
                out: s.xb,
            };
            ops.matmul_qkv(Some(norm), [&l.wq, &l.wk, &l.wv], s.x, [s.q, s.k, s.v], n)?;
            if let Some((q_norm, k_norm)) = &l.qk_norm {
                ops.rms_norm(s.q, q_norm, s.q, n * c.n_head, eps)?;
                ops.rms_norm(s.k, k_norm, s.k, n * c.n_head_kv, eps)?;
            }
            // each sequence's tokens against its own cache
            for seg in &plan.segments {
                let kv = kvs[seg.seq];
                ops.tag_sequence(Some(seg.seq));
                ops.rope_store_kv(s.q, s.k, s.v, rope, &kv.at(c, il, seg))?;
                let p = AttnParams {
                    row0: seg.row0,
                    n_tokens: seg.n,
                    pos0: seg.pos0,
                    n_head: c.n_head,
                    n_head_kv: c.n_head_kv,
                    head_dim: c.head_dim,
                    window: kind.window,
                    scale: c.attn_scale,
                    softcap: c.attn_softcap,
                };
                ops.attention(s.q, kv.k[il], kv.v[il], s.att, &p)?;
            }
            ops.tag_sequence(None);
            ops.matmul(&l.wo, s.att, s.xb, n)?;
            ops.rms_norm(s.xb, &l.post_attn_norm, s.xb, n, eps)?;
            ops.add(s.x, s.xb, s.x, n * d)?;

            // feed-forward: down(gelu(gate(x)) * up(x))
            let norm = PreNorm {
                weight: &l.ffn_norm,
                eps,
                out: s.xb,
            };
            let (gate, up) = (&l.ffn_gate, &l.ffn_up);
            ops.matmul_glu(Glu::Gelu, Some(norm), gate, up, s.x, s.hb2, s.hb, n)?;
            ops.matmul(&l.ffn_down, s.hb, s.xb, n)?;
            ops.rms_norm(s.xb, &l.post_ffw_norm, s.xb, n, eps)?;
            ops.add(s.x, s.xb, s.x, n * d)?;
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
        if let Some(cap) = c.final_softcap {
            ops.softcap(s.logits, cap, rows.len() * c.n_vocab)?;
        }
        ops.check_finite(s.logits, rows.len(), c.n_vocab, || "the logits".into())?;
        Ok(())
    }
}

//! Qwen2, Qwen3, Llama and Phi-3: the forward pass, top to bottom.
//!
//! The four are one decoder: Qwen2 has Q/K/V biases and rotates NEOX pairs; Qwen3 has no
//! biases, an RMS norm over each head of Q and K, and NEOX pairs; Llama has neither and
//! rotates adjacent pairs, with Llama 3's per-pair frequency divisors (`rope_freqs.weight`)
//! when the file has them; Phi-3 stores Q‖K‖V and gate‖up each as one matrix — read here as
//! row ranges of it, in place — and rotates NEOX pairs with LongRoPE's divisors (the short
//! ones up to the original context, the long ones beyond) and magnitude factor.
//!
//! Per layer: RMS-normed input → Q, K, V projections (+ biases) (→ per-head Q/K norms) →
//! RoPE → grouped-query attention (windowed where `Config::layers` says: Mistral-style Llama
//! files) → output projection → residual; then the SiLU-gated
//! feed-forward → residual. A separate output matrix unless the file ties it to the embeddings.

use super::batch::{runs, Plan};
use super::{Arch, Config, KvCache, Loader, ModelError, Scratch};
use crate::backend::{AttnParams, Glu, Ops, PreNorm, Rope, RopeLayout, Weight};

struct Layer {
    attn_norm: Weight,      // (n_embd)
    wq: Weight,             // (n_head * head_dim, n_embd)
    bq: Option<Weight>,     // (n_head * head_dim), Qwen2 only
    wk: Weight,             // (n_head_kv * head_dim, n_embd)
    bk: Option<Weight>,     // (n_head_kv * head_dim)
    wv: Weight,             // (n_head_kv * head_dim, n_embd)
    bv: Option<Weight>,     // (n_head_kv * head_dim)
    q_norm: Option<Weight>, // (head_dim), Qwen3 only
    k_norm: Option<Weight>, // (head_dim)
    wo: Weight,             // (n_embd, n_head * head_dim)
    ffn_norm: Weight,       // (n_embd)
    ffn_gate: Weight,       // (n_ff, n_embd)
    ffn_up: Weight,         // (n_ff, n_embd)
    ffn_down: Weight,       // (n_embd, n_ff)
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
        let (qwen2, qwen3) = (c.arch == Arch::Qwen2, c.arch == Arch::Qwen3);
        let mut layers = Vec::with_capacity(c.n_layer);
        for i in 0..c.n_layer {
            let mut only = |yes: bool, name: &str, dims: &[usize]| match yes {
                true => l.get(&format!("blk.{i}.{name}"), dims).map(Some),
                false => Ok(None),
            };
            let (bq, bk, bv) = (
                only(qwen2, "attn_q.bias", &[c.q_dim()])?,
                only(qwen2, "attn_k.bias", &[c.kv_dim()])?,
                only(qwen2, "attn_v.bias", &[c.kv_dim()])?,
            );
            let q_norm = only(qwen3, "attn_q_norm.weight", &[c.head_dim])?;
            let k_norm = only(qwen3, "attn_k_norm.weight", &[c.head_dim])?;
            let name = |n: &str| format!("blk.{i}.{n}.weight");
            let (q, kv) = (c.q_dim(), c.kv_dim());
            // Q, K, V: three matrices, or rows of Phi-3's fused one
            let [wq, wk, wv] = match l.file.tensor_info(&name("attn_qkv")) {
                Some(_) => {
                    let qkv = [d, q + 2 * kv];
                    [0..q, q..q + kv, q + kv..q + 2 * kv]
                        .map(|r| l.get_rows(&name("attn_qkv"), &qkv, r))
                }
                None => [("attn_q", q), ("attn_k", kv), ("attn_v", kv)]
                    .map(|(n, rows)| l.get(&name(n), &[d, rows])),
            };
            // gate and up: two matrices, or Phi-3's gate‖up in `ffn_up`
            let (ffn_gate, ffn_up) = match c.arch {
                Arch::Phi3 => (
                    l.get_rows(&name("ffn_up"), &[d, 2 * ff], 0..ff)?,
                    l.get_rows(&name("ffn_up"), &[d, 2 * ff], ff..2 * ff)?,
                ),
                _ => (
                    l.get(&name("ffn_gate"), &[d, ff])?,
                    l.get(&name("ffn_up"), &[d, ff])?,
                ),
            };
            let mut w = |n: &str, dims: &[usize]| l.get(&name(n), dims);
            layers.push(Layer {
                attn_norm: w("attn_norm", &[d])?,
                wq: wq?,
                bq,
                bk,
                bv,
                q_norm,
                k_norm,
                wk: wk?,
                wv: wv?,
                wo: w("attn_output", &[q, d])?,
                ffn_norm: w("ffn_norm", &[d])?,
                ffn_gate,
                ffn_up,
                ffn_down: w("ffn_down", &[ff, d])?,
            });
        }
        let output_norm = l.get("output_norm.weight", &[d])?;
        let output = l
            .opt("output.weight", &[d, c.n_vocab])?
            .unwrap_or(token_embd);
        let mut spec = c.rope_scaling.spec(c.head_dim, c.rope_base);
        spec.n_rot = c.n_rot;
        spec.attn_factor = c.rope_attn_factor;
        // LongRoPE (llama.cpp's `get_rope_factors`): the long divisors for a context past the
        // original one, else the short
        let divisors = match ctx > c.ctx_orig {
            _ if l.file.tensor_info("rope_freqs.weight").is_some() => "rope_freqs.weight",
            true => "rope_factors_long.weight",
            false => "rope_factors_short.weight",
        };
        spec.factors = l.host_positive(divisors, c.n_rot / 2, "RoPE divisors")?;
        let layout = match c.arch {
            Arch::Llama => RopeLayout::Norm,
            _ => RopeLayout::Neox,
        };
        let rope = l
            .ops
            .rope_table(layout, c.head_dim, c.n_rot, spec.table(ctx))?;
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
            if let (Some(qn), Some(kn)) = (&l.q_norm, &l.k_norm) {
                ops.rms_norm(s.q, qn, s.q, n * c.n_head, eps)?;
                ops.rms_norm(s.k, kn, s.k, n * c.n_head_kv, eps)?;
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
                    window: c.window(il),
                    scale: c.attn_scale,
                    softcap: c.attn_softcap,
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

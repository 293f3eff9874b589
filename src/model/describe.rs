//! `tokenfab info`'s report: what a GGUF file holds (architecture, shape, attention, tokenizer,
//! tensors by type, optionally every metadata key) and what running it reads per token. Pure
//! text from a parsed file, so the CLI prints it and the fuzz target runs it on hostile files;
//! `validate` (decoding every block) stays separate.

use super::rope::Scaling;
use super::{kv_bytes_per_token, weight_bytes_per_token, Config};
use crate::gguf::{GgmlType, GgufFile};
use std::collections::BTreeMap;
use std::fmt::Write as _;

fn mb(bytes: u64) -> String {
    format!("{:.1} MB", bytes as f64 / 1e6)
}

/// The report for `f`, opened from `label` (a path as the user wrote it). `metadata`: also
/// list every metadata key.
pub fn describe(label: &str, f: &GgufFile, metadata: bool) -> String {
    let mut s = String::new();
    // writing into a String cannot fail
    let _ = write_report(&mut s, label, f, metadata);
    s
}

fn write_report(s: &mut String, label: &str, f: &GgufFile, metadata: bool) -> std::fmt::Result {
    let md = f.metadata();
    writeln!(
        s,
        "file          {label} ({}, GGUF v{}, {} tensors, {} metadata keys, alignment {})",
        mb(f.file_size()),
        f.version(),
        f.tensors().len(),
        md.len(),
        f.alignment()
    )?;
    match Config::from_gguf(f) {
        Ok(c) => {
            writeln!(s, "architecture  {} ({})", c.arch.name(), c.name)?;
            writeln!(
                s,
                "shape         {} layers, embedding {}, feed-forward {}, heads {} (KV {}), head dim {}, vocab {}",
                c.n_layer, c.n_embd, c.n_ff, c.n_head, c.n_head_kv, c.head_dim, c.n_vocab
            )?;
            let scaling = match &c.rope_scaling {
                Scaling::None => String::new(),
                Scaling::Linear { freq_scale } => {
                    format!(" (linear scaling x{})", 1.0 / freq_scale)
                }
                Scaling::Yarn { freq_scale, yarn } => format!(
                    " (YaRN x{} from {} positions)",
                    1.0 / freq_scale,
                    yarn.n_ctx_orig
                ),
            };
            let divisors = match (
                f.tensor_info("rope_freqs.weight"),
                f.tensor_info("rope_factors_long.weight"),
            ) {
                (Some(_), _) => ", per-pair divisors (rope_freqs)".to_string(),
                (None, Some(_)) => format!(
                    ", LongRoPE (short divisors up to {} positions, long beyond; magnitude x{})",
                    c.ctx_orig, c.rope_attn_factor
                ),
                (None, None) if c.rope_attn_factor != 1.0 => {
                    format!(", magnitude x{}", c.rope_attn_factor)
                }
                (None, None) => String::new(),
            };
            let partial = match c.n_rot < c.head_dim {
                true => format!(" over {} of {} dimensions", c.n_rot, c.head_dim),
                false => String::new(),
            };
            let mut att = format!(
                "context {} (trained), RoPE base {}{partial}{scaling}{divisors}, RMS eps {}",
                c.ctx_train, c.rope_base, c.eps
            );
            let windowed: Vec<usize> = c.layers.iter().filter_map(|l| l.window).collect();
            if let Some(w) = windowed.first() {
                write!(
                    att,
                    ", sliding window {w} on {} of {} layers",
                    windowed.len(),
                    c.n_layer
                )?;
                if c.layers
                    .iter()
                    .any(|l| l.rope == crate::model::RopeKind::Local)
                {
                    write!(att, " (RoPE base {})", c.rope_base_swa)?;
                }
            }
            if let Some(cap) = c.attn_softcap {
                write!(att, ", scores soft-capped at {cap}")?;
            }
            if let Some(cap) = c.final_softcap {
                write!(att, ", logits soft-capped at {cap}")?;
            }
            writeln!(s, "attention     {att}")?;
            writeln!(
                s,
                "per token     {} of weights read per decoded token; KV cache {:.1} KiB per token of context (f16)",
                mb(weight_bytes_per_token(f)),
                kv_bytes_per_token(&c) as f64 / 1024.0
            )?;
        }
        Err(e) => writeln!(s, "architecture  not runnable by tokenfab: {e}")?,
    }
    if let Ok(model) = md.get_str("tokenizer.ggml.model") {
        let n = md
            .get_array("tokenizer.ggml.tokens")
            .map(|a| a.len())
            .unwrap_or(0);
        let bos = md.opt_u64("tokenizer.ggml.bos_token_id").ok().flatten();
        let add_bos = md.opt_bool("tokenizer.ggml.add_bos_token").ok().flatten();
        writeln!(
            s,
            "tokenizer     {model} (pre: {}), {n} tokens, BOS {} ({}), EOS {}, chat template: {}",
            md.opt_str("tokenizer.ggml.pre")
                .ok()
                .flatten()
                .unwrap_or("-"),
            bos.map_or("-".into(), |b| b.to_string()),
            if add_bos.unwrap_or(model == "llama") {
                "added"
            } else {
                "not added"
            },
            md.opt_u64("tokenizer.ggml.eos_token_id")
                .ok()
                .flatten()
                .map_or("-".into(), |b| b.to_string()),
            if md.get("tokenizer.chat_template").is_some() {
                "yes"
            } else {
                "no"
            }
        )?;
    }
    let mut by_type: BTreeMap<GgmlType, (usize, u64, u64)> = BTreeMap::new();
    for t in f.tensors() {
        let e = by_type.entry(t.dtype).or_default();
        e.0 += 1;
        e.1 = e.1.saturating_add(t.n_bytes);
        e.2 = e.2.saturating_add(t.n_elements());
    }
    writeln!(s, "tensors       by type:")?;
    for (t, (n, bytes, elems)) in &by_type {
        writeln!(
            s,
            "  {:<6} {:>4} tensors  {:>10}  {:>12} weights  {:.2} bits/weight",
            t.name(),
            n,
            mb(*bytes),
            elems,
            t.bits_per_weight()
        )?;
    }
    let unsupported: Vec<&str> = by_type
        .keys()
        .filter(|t| !crate::quant::CPU_TYPES.contains(t))
        .map(|t| t.name())
        .collect();
    if !unsupported.is_empty() {
        let names: Vec<&str> = crate::quant::CPU_TYPES.iter().map(|t| t.name()).collect();
        writeln!(
            s,
            "unsupported   tensor type(s) {}: tokenfab cannot compute with them (it can: {})",
            unsupported.join(", "),
            names.join(", ")
        )?;
    }
    if metadata {
        writeln!(s, "metadata:")?;
        for (k, v) in md.iter() {
            writeln!(s, "  {k} = {v}")?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gguf::{GgufWriter, Value};

    /// What `tokenfab info` says about a file it cannot run: the architecture, the RoPE
    /// scaling and the tensor types, each by name.
    #[test]
    fn names_what_is_unsupported() {
        let file = |arch: &str, rope: Option<&str>, t: GgmlType| {
            let mut w = GgufWriter::new();
            w.set("general.architecture", Value::String(arch.into()));
            for (k, v) in [
                ("context_length", 64u32),
                ("embedding_length", 256),
                ("block_count", 1),
                ("feed_forward_length", 256),
                ("attention.head_count", 2),
            ] {
                w.set(&format!("{arch}.{k}"), Value::U32(v));
            }
            w.set(
                &format!("{arch}.attention.layer_norm_rms_epsilon"),
                Value::F32(1e-6),
            );
            if let Some(r) = rope {
                w.set(
                    &format!("{arch}.rope.scaling.type"),
                    Value::String(r.into()),
                );
            }
            let bytes = t.row_bytes(256).unwrap() as usize * 4;
            w.add_tensor("token_embd.weight", t, &[256, 4], vec![0; bytes])
                .unwrap();
            GgufFile::from_bytes("<t>", w.to_bytes().unwrap()).unwrap()
        };
        let d = describe("f.gguf", &file("falcon", None, GgmlType::Q8_0), false);
        assert!(d.contains("architecture  not runnable by tokenfab:"), "{d}");
        assert!(
            d.contains("architecture \"falcon\" is not supported"),
            "{d}"
        );
        // a sound file of `arch` with one key changed
        let with = |arch: &str, key: &str, value: Value| {
            let mut w = GgufWriter::new();
            for (k, v) in file(arch, None, GgmlType::Q8_0).metadata().iter() {
                w.set(k, v.clone());
            }
            w.set(key, value);
            let bytes = GgmlType::Q8_0.row_bytes(256).unwrap() as usize * 4;
            w.add_tensor(
                "token_embd.weight",
                GgmlType::Q8_0,
                &[256, 4],
                vec![0; bytes],
            )
            .unwrap();
            GgufFile::from_bytes("<t>", w.to_bytes().unwrap()).unwrap()
        };
        // partial rotary must turn an even number of dimensions, at most a head's
        let f = with("phi3", "phi3.rope.dimension_count", Value::U32(130));
        let d = describe("p.gguf", &f, false);
        assert!(
            d.contains("RoPE over 130 of each head's 128 dimensions (it must be an even number"),
            "{d}"
        );
        // a block count no file could hold is refused before anything is sized by it
        let f = with("llama", "llama.block_count", Value::U64(1 << 40));
        let d = describe("h.gguf", &f, false);
        assert!(
            d.contains("llama.block_count is 1099511627776, but the file has only 1 tensors"),
            "{d}"
        );
        let d = describe(
            "l.gguf",
            &file("llama", Some("longrope"), GgmlType::Q8_0),
            false,
        );
        assert!(
            d.contains("RoPE scaling type \"longrope\" is not supported"),
            "{d}"
        );
        let d = describe("iq.gguf", &file("llama", None, GgmlType::IQ2_XS), false);
        assert!(
            d.contains("unsupported   tensor type(s) iq2_xs: tokenfab cannot compute with them"),
            "{d}"
        );
        let d = describe("ok.gguf", &file("llama", None, GgmlType::Q8_0), false);
        assert!(
            !d.contains("unsupported") && d.contains("architecture  llama"),
            "{d}"
        );
    }
}

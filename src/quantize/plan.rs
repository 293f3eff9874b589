//! Which type each tensor gets: a port of llama.cpp's `llama_tensor_get_type`
//! (`src/llama-quant.cpp`, commit 0c1e57098) for the mixes tokenfab offers — the mix's default
//! type, its per-tensor rules (more bits for the output matrix, for `attn_v` and `ffn_down` in
//! chosen layers), user overrides, and the fallback for rows that are not a whole number of
//! 256-element blocks (Q4_K → Q5_0, Q5_K → Q5_1, Q6_K → Q8_0, Q2_K/Q3_K → Q4_0).
//! Only matrices named `*weight` are quantized; norms and vectors keep their type.

use super::mixes::Mix;
use crate::gguf::{GgmlType, TensorInfo};
use regex::Regex;

/// User choices on top of the mix.
#[derive(Clone, Debug, Default)]
pub struct PlanOptions {
    /// Every quantizable tensor gets the mix's default type (no per-tensor rules).
    pub pure: bool,
    pub output_type: Option<GgmlType>,
    pub token_embedding_type: Option<GgmlType>,
    /// `(regex, type)`: the first pattern matching a tensor name decides its type.
    pub tensor_types: Vec<(Regex, GgmlType)>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Category {
    TokenEmbd,
    Output,
    AttnQ,
    AttnK,
    AttnV,
    AttnQkv,
    AttnOutput,
    FfnGate,
    FfnUp,
    FfnDown,
    Other,
}

fn category(name: &str) -> Category {
    use Category::*;
    if name == "token_embd.weight" {
        TokenEmbd
    } else if name == "output.weight" {
        Output
    } else if name.ends_with("attn_q.weight") {
        AttnQ
    } else if name.ends_with("attn_k.weight") {
        AttnK
    } else if name.ends_with("attn_v.weight") {
        AttnV
    } else if name.ends_with("attn_qkv.weight") {
        AttnQkv
    } else if name.ends_with("attn_output.weight") {
        AttnOutput
    } else if name.ends_with("ffn_gate.weight") {
        FfnGate
    } else if name.ends_with("ffn_up.weight") {
        FfnUp
    } else if name.ends_with("ffn_down.weight") {
        FfnDown
    } else {
        Other
    }
}

/// llama.cpp's `tensor_allows_quantization` for the tensors tokenfab's models have.
pub fn allows_quantization(t: &TensorInfo) -> bool {
    t.dims.len() >= 2 && t.name.ends_with("weight") && !t.name.contains("_norm.weight")
}

fn use_more_bits(i: usize, n: usize) -> bool {
    i < n / 8 || i >= 7 * n / 8 || (i as isize - (n / 8) as isize).rem_euclid(3) == 2
}

fn fallback(t: &TensorInfo, ty: GgmlType) -> GgmlType {
    fallback_for_cols(t.row_len(), ty)
}

/// llama.cpp's substitute for `ty` when rows of `cols` are not whole blocks of it.
pub fn fallback_for_cols(cols: u64, ty: GgmlType) -> GgmlType {
    if cols.is_multiple_of(ty.block_size() as u64) {
        return ty;
    }
    let f = match ty {
        GgmlType::Q2_K | GgmlType::Q3_K => GgmlType::Q4_0,
        GgmlType::Q4_K => GgmlType::Q5_0,
        GgmlType::Q5_K => GgmlType::Q5_1,
        GgmlType::Q6_K => GgmlType::Q8_0,
        other => other,
    };
    if cols.is_multiple_of(f.block_size() as u64) {
        f
    } else {
        GgmlType::F16
    }
}

/// llama.cpp's order of a model's tensors (its loader's `weight_name_comparer`): by layer
/// number, tensors outside the blocks first, then by name. Its per-layer rules count `attn_v`
/// and `ffn_down` tensors in this order, so a file stored in name order (`blk.10` before
/// `blk.2`, as older llama.cpp versions wrote them) gets the plan llama-quantize gives it.
fn llama_order(tensors: &[TensorInfo]) -> Vec<usize> {
    let layer = |name: &str| -> i64 {
        name.strip_prefix("blk.")
            .and_then(|rest| rest.split('.').next())
            .and_then(|n| n.parse().ok())
            .unwrap_or(-1)
    };
    let mut order: Vec<usize> = (0..tensors.len()).collect();
    order.sort_by(|&a, &b| {
        let (a, b) = (&tensors[a].name, &tensors[b].name);
        (layer(a), a).cmp(&(layer(b), b))
    });
    order
}

/// The type of every tensor of a model, in file order (decided in llama.cpp's order).
pub fn plan(
    tensors: &[TensorInfo],
    mix: Mix,
    opts: &PlanOptions,
    n_head: usize,
    n_head_kv: usize,
) -> Vec<GgmlType> {
    let tied = !tensors.iter().any(|t| t.name == "output.weight");
    let n_attn_v = tensors
        .iter()
        .filter(|t| category(&t.name) == Category::AttnV)
        .count();
    let n_ffn_down = tensors
        .iter()
        .filter(|t| category(&t.name) == Category::FfnDown)
        .count();
    let n_gqa = n_head / n_head_kv.max(1);
    let mut i_attn_v = 0;
    let mut i_ffn_down = 0;
    let mut type_of = |t: &TensorInfo| {
        if !allows_quantization(t) {
            return t.dtype;
        }
        let cat = category(&t.name);
        if let (Some(ty), Category::TokenEmbd) = (opts.token_embedding_type, cat) {
            return ty;
        }
        if let (Some(ty), Category::Output) = (opts.output_type, cat) {
            return ty;
        }
        let mut ty = mix.default_type();
        if !ty.is_quantized() {
            return ty;
        }
        let manual = opts
            .tensor_types
            .iter()
            .find(|(re, _)| re.is_match(&t.name));
        if let Some((_, m)) = manual {
            ty = *m;
        } else if !opts.pure {
            ty = rules(
                mix,
                ty,
                t,
                cat,
                tied,
                opts,
                n_gqa,
                (&mut i_attn_v, n_attn_v),
                (&mut i_ffn_down, n_ffn_down),
            );
        }
        fallback(t, ty)
    };
    let mut types = vec![GgmlType::F32; tensors.len()];
    for i in llama_order(tensors) {
        types[i] = type_of(&tensors[i]);
    }
    types
}

/// `llama_tensor_get_type_impl` for tokenfab's mixes.
#[allow(clippy::too_many_arguments)]
fn rules(
    mix: Mix,
    mut ty: GgmlType,
    t: &TensorInfo,
    cat: Category,
    tied: bool,
    opts: &PlanOptions,
    n_gqa: usize,
    attn_v: (&mut usize, usize),
    ffn_down: (&mut usize, usize),
) -> GgmlType {
    use GgmlType::*;
    if cat == Category::Output || (tied && cat == Category::TokenEmbd) {
        if let Some(o) = opts.output_type {
            return o;
        }
        if !t.row_len().is_multiple_of(ty.block_size() as u64) {
            return Q8_0;
        }
        return if ty != Q8_0 { Q6_K } else { ty };
    }
    match cat {
        Category::TokenEmbd => {}
        Category::AttnV => {
            let (i, n) = (*attn_v.0, attn_v.1);
            ty = match mix {
                Mix::Q2K => {
                    if n_gqa >= 4 {
                        Q4_K
                    } else {
                        Q3_K
                    }
                }
                Mix::Q3KM => {
                    if i < 2 {
                        Q5_K
                    } else {
                        Q4_K
                    }
                }
                Mix::Q4KM | Mix::Q5KM if use_more_bits(i, n) => Q6_K,
                Mix::Q4KS if i < 4 => Q5_K,
                _ => ty,
            };
            *attn_v.0 += 1;
        }
        Category::FfnDown => {
            // llama.cpp counts ffn_down tensors in its order (`llama_order`; dense models)
            let (i, n) = (*ffn_down.0, ffn_down.1);
            ty = match mix {
                Mix::Q2K => Q3_K,
                Mix::Q3KM => {
                    if i < n / 16 {
                        Q5_K
                    } else {
                        // llama.cpp: `arch != FALCON || use_more_bits` — always Q4_K here
                        Q4_K
                    }
                }
                Mix::Q4KM if use_more_bits(i, n) => Q6_K,
                Mix::Q5KM if use_more_bits(i, n) => Q6_K,
                Mix::Q4KS if i < n / 8 => Q5_K,
                _ => ty,
            };
            *ffn_down.0 += 1;
        }
        Category::AttnOutput => {
            ty = match mix {
                Mix::Q2K => Q3_K,
                Mix::Q3KM => Q4_K,
                _ => ty,
            };
        }
        Category::AttnQkv => {
            ty = match mix {
                Mix::Q3KM => Q4_K,
                Mix::Q4KM => Q5_K,
                Mix::Q5KM => Q6_K,
                _ => ty,
            };
        }
        _ => {}
    }
    ty
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn more_bits_pattern_matches_llama_cpp() {
        // n = 24: first 3 and last 3 layers, and every third from layer 5
        let layers: Vec<usize> = (0..24).filter(|&i| use_more_bits(i, 24)).collect();
        assert_eq!(layers, vec![0, 1, 2, 5, 8, 11, 14, 17, 20, 21, 22, 23]);
    }
}

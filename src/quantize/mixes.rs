//! The quantization mixes `tokenfab quantize --type` offers, named and numbered as llama.cpp's
//! `llama_ftype`, and each mix's default tensor type.

use crate::gguf::GgmlType;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Mix {
    F16,
    BF16,
    Q8_0,
    Q4_0,
    Q4_1,
    Q5_0,
    Q5_1,
    Q2K,
    Q3KM,
    Q4KS,
    Q4KM,
    Q5KM,
    Q6K,
}

impl Mix {
    pub const ALL: [Mix; 13] = [
        Mix::F16,
        Mix::BF16,
        Mix::Q8_0,
        Mix::Q4_0,
        Mix::Q4_1,
        Mix::Q5_0,
        Mix::Q5_1,
        Mix::Q2K,
        Mix::Q3KM,
        Mix::Q4KS,
        Mix::Q4KM,
        Mix::Q5KM,
        Mix::Q6K,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Mix::F16 => "f16",
            Mix::BF16 => "bf16",
            Mix::Q8_0 => "q8_0",
            Mix::Q4_0 => "q4_0",
            Mix::Q4_1 => "q4_1",
            Mix::Q5_0 => "q5_0",
            Mix::Q5_1 => "q5_1",
            Mix::Q2K => "q2_k",
            Mix::Q3KM => "q3_k_m",
            Mix::Q4KS => "q4_k_s",
            Mix::Q4KM => "q4_k_m",
            Mix::Q5KM => "q5_k_m",
            Mix::Q6K => "q6_k",
        }
    }

    pub fn parse(s: &str) -> Option<Mix> {
        Mix::ALL
            .iter()
            .copied()
            .find(|m| m.name().eq_ignore_ascii_case(s))
    }

    /// `general.file_type` (llama.cpp's `llama_ftype`).
    pub fn ftype(self) -> u32 {
        match self {
            Mix::F16 => 1,
            Mix::Q4_0 => 2,
            Mix::Q4_1 => 3,
            Mix::Q8_0 => 7,
            Mix::Q5_0 => 8,
            Mix::Q5_1 => 9,
            Mix::Q2K => 10,
            Mix::Q3KM => 12,
            Mix::Q4KS => 14,
            Mix::Q4KM => 15,
            Mix::Q5KM => 17,
            Mix::Q6K => 18,
            Mix::BF16 => 32,
        }
    }

    /// The type of quantizable tensors before the mix's per-tensor rules.
    pub fn default_type(self) -> GgmlType {
        match self {
            Mix::F16 => GgmlType::F16,
            Mix::BF16 => GgmlType::BF16,
            Mix::Q8_0 => GgmlType::Q8_0,
            Mix::Q4_0 => GgmlType::Q4_0,
            Mix::Q4_1 => GgmlType::Q4_1,
            Mix::Q5_0 => GgmlType::Q5_0,
            Mix::Q5_1 => GgmlType::Q5_1,
            Mix::Q2K => GgmlType::Q2_K,
            Mix::Q3KM => GgmlType::Q3_K,
            Mix::Q4KS | Mix::Q4KM => GgmlType::Q4_K,
            Mix::Q5KM => GgmlType::Q5_K,
            Mix::Q6K => GgmlType::Q6_K,
        }
    }
}

//! The memory-traffic ledger: bytes each op reads and writes, and the FLOPs it performs,
//! counted from op shapes where ops are dispatched (`crate::backend::Ops`), so every backend
//! and architecture gets it without extra code.
//!
//! Bytes are kept by kind — weights (exact GGUF block bytes), KV cache read/written,
//! activations read/written — and FLOPs apart; they are never added together. The model is
//! "each op streams its operands once": a weight matrix is counted once per matmul call (whole
//! matrix, however many tokens), the KV cache once per distinct position an attention call
//! touches, activations as f32. See `tests/ledger.rs` for the closed-form check.

use serde::{Deserialize, Serialize};
use std::ops::{AddAssign, Sub};

/// Bytes moved and FLOPs performed by some work.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Traffic {
    pub weight_bytes: u64,
    pub kv_read_bytes: u64,
    pub kv_write_bytes: u64,
    pub act_read_bytes: u64,
    pub act_write_bytes: u64,
    pub flops: u64,
}

impl Traffic {
    /// All bytes read (weights + KV + activations).
    pub fn read_bytes(&self) -> u64 {
        self.weight_bytes + self.kv_read_bytes + self.act_read_bytes
    }

    /// All bytes written (KV + activations).
    pub fn write_bytes(&self) -> u64 {
        self.kv_write_bytes + self.act_write_bytes
    }

    /// Bytes read and written.
    pub fn bytes(&self) -> u64 {
        self.read_bytes() + self.write_bytes()
    }

    /// This traffic divided evenly over `n` (e.g. a prefill batch over its tokens).
    pub fn per(&self, n: u64) -> Traffic {
        let n = n.max(1);
        Traffic {
            weight_bytes: self.weight_bytes / n,
            kv_read_bytes: self.kv_read_bytes / n,
            kv_write_bytes: self.kv_write_bytes / n,
            act_read_bytes: self.act_read_bytes / n,
            act_write_bytes: self.act_write_bytes / n,
            flops: self.flops / n,
        }
    }
}

impl AddAssign for Traffic {
    fn add_assign(&mut self, o: Traffic) {
        self.weight_bytes += o.weight_bytes;
        self.kv_read_bytes += o.kv_read_bytes;
        self.kv_write_bytes += o.kv_write_bytes;
        self.act_read_bytes += o.act_read_bytes;
        self.act_write_bytes += o.act_write_bytes;
        self.flops += o.flops;
    }
}

impl Sub for Traffic {
    type Output = Traffic;
    fn sub(self, o: Traffic) -> Traffic {
        Traffic {
            weight_bytes: self.weight_bytes - o.weight_bytes,
            kv_read_bytes: self.kv_read_bytes - o.kv_read_bytes,
            kv_write_bytes: self.kv_write_bytes - o.kv_write_bytes,
            act_read_bytes: self.act_read_bytes - o.act_read_bytes,
            act_write_bytes: self.act_write_bytes - o.act_write_bytes,
            flops: self.flops - o.flops,
        }
    }
}

/// Op kinds the ledger keeps totals for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OpName {
    Embed,
    MatMul,
    AddBias,
    RmsNorm,
    Rope,
    StoreKv,
    Attention,
    Glu,
    Add,
    Scale,
    Softcap,
    Copy,
    Read,
    Write,
    Argmax,
}

impl OpName {
    pub const ALL: [OpName; 15] = [
        OpName::Embed,
        OpName::MatMul,
        OpName::AddBias,
        OpName::RmsNorm,
        OpName::Rope,
        OpName::StoreKv,
        OpName::Attention,
        OpName::Glu,
        OpName::Add,
        OpName::Scale,
        OpName::Softcap,
        OpName::Copy,
        OpName::Read,
        OpName::Write,
        OpName::Argmax,
    ];

    pub fn name(self) -> &'static str {
        match self {
            OpName::Embed => "embed",
            OpName::MatMul => "matmul",
            OpName::AddBias => "add_bias",
            OpName::RmsNorm => "rms_norm",
            OpName::Rope => "rope",
            OpName::StoreKv => "store_kv",
            OpName::Attention => "attention",
            OpName::Glu => "glu",
            OpName::Add => "add",
            OpName::Scale => "scale",
            OpName::Softcap => "softcap",
            OpName::Copy => "copy",
            OpName::Read => "read",
            OpName::Write => "write",
            OpName::Argmax => "argmax",
        }
    }
}

/// Running totals: overall and per op kind (with call counts), and apart per sequence of a
/// batch for the ops that are one sequence's own (its RoPE, KV-cache writes and attention).
#[derive(Clone, Debug, Default)]
pub struct Ledger {
    total: Traffic,
    by_op: [(Traffic, u64); OpName::ALL.len()],
    tag: Option<usize>,
    by_tag: Vec<Traffic>,
}

impl Ledger {
    pub fn record(&mut self, op: OpName, t: Traffic) {
        self.total += t;
        let slot = &mut self.by_op[op as usize];
        slot.0 += t;
        slot.1 += 1;
        if let Some(i) = self.tag {
            if self.by_tag.len() <= i {
                self.by_tag.resize(i + 1, Traffic::default());
            }
            self.by_tag[i] += t;
        }
    }

    /// Records from now on are also one sequence's own (the index of its cache in a batch),
    /// or shared by the whole batch (`None`).
    pub fn set_tag(&mut self, tag: Option<usize>) {
        self.tag = tag;
    }

    /// What each sequence's own ops recorded since the last call (index = tag), then cleared:
    /// the rest of a step's traffic is shared by its sequences.
    pub fn take_tagged(&mut self) -> Vec<Traffic> {
        std::mem::take(&mut self.by_tag)
    }

    /// Everything recorded so far; subtract two snapshots for the cost of the work between.
    pub fn total(&self) -> Traffic {
        self.total
    }

    /// Totals and call counts per op kind (kinds with no calls are left out).
    pub fn by_op(&self) -> impl Iterator<Item = (OpName, Traffic, u64)> + '_ {
        OpName::ALL
            .iter()
            .map(|&op| (op, self.by_op[op as usize].0, self.by_op[op as usize].1))
            .filter(|(_, _, n)| *n > 0)
    }
}

/// FLOPs charged per element for a gated activation (the activation function plus the
/// multiply; a documented convention, not a measurement).
pub const GLU_FLOPS_PER_ELEMENT: u64 = 10;

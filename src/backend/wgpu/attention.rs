//! Dispatch of `shaders/attention.wgsl`: one workgroup per (head, query token), over linear or
//! ring caches (position `p` at row `p % rows`; `Ops` checked that a ring holds the batch's
//! keys).

use super::{kernels::Kernel, WgpuBackend};
use crate::backend::{AttnParams, BackendError, Buf, KvBuf, Result};

/// Largest head size the kernel's workgroup arrays hold (`MAX_HD`).
const MAX_HD: usize = 256;

impl WgpuBackend {
    pub(super) fn attention_impl(
        &mut self,
        q: Buf,
        k: KvBuf,
        v: KvBuf,
        out: Buf,
        p: &AttnParams,
    ) -> Result<()> {
        if p.head_dim > MAX_HD || p.n_head_kv == 0 || !p.n_head.is_multiple_of(p.n_head_kv) {
            return Err(BackendError::Invalid(format!(
                "attention: head_dim {} (max {MAX_HD}), {} heads over {} KV heads",
                p.head_dim, p.n_head, p.n_head_kv
            )));
        }
        let kv_row = p.n_head_kv * p.head_dim;
        let rows = k.len.min(v.len) / kv_row;
        let kv_fits = if k.ring || v.ring {
            rows > 0
        } else {
            p.pos0 + p.n_tokens <= rows
        };
        let q_needed = (p.row0 + p.n_tokens) * p.n_head * p.head_dim;
        if !kv_fits || q.len < q_needed || out.len < q_needed {
            return Err(BackendError::Invalid("attention: buffers too small".into()));
        }
        let params = [
            p.n_tokens as u32,
            p.pos0 as u32,
            p.n_head as u32,
            p.n_head_kv as u32,
            p.head_dim as u32,
            p.window.unwrap_or(0) as u32,
            p.scale.to_bits(),
            p.row0 as u32,
            p.softcap.unwrap_or(0.0).to_bits(),
            rows as u32,
        ];
        let groups = [p.n_head as u32, p.n_tokens as u32, 1];
        self.dispatch(
            Kernel::Attention,
            &[k.id, v.id, q.id, out.id],
            &params,
            groups,
        )
    }
}

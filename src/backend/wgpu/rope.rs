//! Dispatch of `shaders/rope.wgsl` and `shaders/rope_kv.wgsl` (RoPE fused with the KV-cache
//! writes), and their (cos, sin) table: computed once on the host by the CPU backend's
//! routine for every position up to the context size, then uploaded.

use super::{fold, kernels::Kernel, WgpuBackend};
use crate::backend::cpu::elementwise::rope_rows;
use crate::backend::{BackendError, Buf, Result, Rope, RopeKv, RopeLayout};

impl WgpuBackend {
    pub(super) fn rope_table_impl(
        &mut self,
        layout: RopeLayout,
        head_dim: usize,
        base: f32,
        freq_scale: f32,
        max_pos: usize,
    ) -> Result<Rope> {
        let mut cs = Vec::with_capacity(max_pos * head_dim);
        rope_rows(head_dim, base, freq_scale, 0, max_pos, &mut cs);
        let buf = self.buffer_init(cs.len() as u64 * 4, "rope table", bytemuck::cast_slice(&cs))?;
        self.ropes.push(buf);
        Ok(Rope {
            id: (self.ropes.len() - 1) as u32,
            layout,
            head_dim,
            base,
            freq_scale,
            max_pos,
        })
    }

    pub(super) fn rope_impl(
        &mut self,
        x: Buf,
        rope: &Rope,
        row0: usize,
        n: usize,
        heads: usize,
        pos0: usize,
    ) -> Result<()> {
        if pos0 + n > rope.max_pos {
            return Err(BackendError::Invalid(format!(
                "rope: position {} beyond the table's {}",
                pos0 + n,
                rope.max_pos
            )));
        }
        let table = self.ropes[rope.id as usize];
        let mode = match rope.layout {
            RopeLayout::Neox => 0,
            RopeLayout::Norm => 1,
        };
        let params = [
            n as u32,
            heads as u32,
            rope.head_dim as u32,
            pos0 as u32,
            mode,
            row0 as u32,
        ];
        let groups = fold((n * heads * rope.head_dim / 2).div_ceil(64));
        self.dispatch(Kernel::Rope, &[table, x.id], &params, groups)
    }

    pub(super) fn rope_store_kv_impl(
        &mut self,
        q: Buf,
        k: Buf,
        v: Buf,
        rope: &Rope,
        p: &RopeKv,
    ) -> Result<()> {
        let hd = rope.head_dim;
        let kv_row = p.n_head_kv * hd;
        if p.pos0 + p.n > rope.max_pos || (p.pos0 + p.n) * kv_row > p.k_cache.len.min(p.v_cache.len)
        {
            return Err(BackendError::Invalid(format!(
                "rope_store_kv: positions {}..{} beyond the table or the cache",
                p.pos0,
                p.pos0 + p.n
            )));
        }
        let table = self.ropes[rope.id as usize];
        let mode = match rope.layout {
            RopeLayout::Neox => 0,
            RopeLayout::Norm => 1,
        };
        let params = [
            p.n as u32,
            p.n_head as u32,
            p.n_head_kv as u32,
            hd as u32,
            p.pos0 as u32,
            mode,
            p.row0 as u32,
        ];
        let items = p.n * (p.n_head + 2 * p.n_head_kv) * hd / 2;
        self.dispatch(
            Kernel::RopeKv,
            &[table, q.id, k.id, v.id, p.k_cache.id, p.v_cache.id],
            &params,
            fold(items.div_ceil(64)),
        )
    }
}

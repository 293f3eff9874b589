//! Dispatch of `shaders/rope.wgsl` and `shaders/rope_kv.wgsl` (RoPE fused with the KV-cache
//! writes), and their (cos, sin) table: built on the host (`model::rope`), uploaded once.

use super::{fold, kernels::Kernel, WgpuBackend};
use crate::backend::{Buf, Result, Rope, RopeKv, RopeLayout};

impl WgpuBackend {
    pub(super) fn rope_table_impl(
        &mut self,
        layout: RopeLayout,
        head_dim: usize,
        n_rot: usize,
        table: Vec<f32>,
    ) -> Result<Rope> {
        let bytes = table.len() as u64 * 4;
        let buf = self.buffer_init(bytes, "rope table", bytemuck::cast_slice(&table))?;
        self.ropes.push(buf);
        Ok(Rope::new(
            self.ropes.len() - 1,
            layout,
            head_dim,
            n_rot,
            table.len(),
        ))
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
        // positions and sizes were checked by `Ops`
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
            rope.n_rot as u32,
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
        // positions, the table and the cache were checked by `Ops`
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
            rope.n_rot as u32,
            // the caches' rows: positions wrap around them in a ring (`kv_row`)
            (p.k_cache.len.min(p.v_cache.len) / (p.n_head_kv * hd)) as u32,
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

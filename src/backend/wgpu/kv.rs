//! Dispatch of `shaders/kv.wgsl`: f32 rows into the (f16 or f32) KV cache, position `p` at row
//! `p % rows` (a ring for a sliding-window cache; `crate::backend::kv_row`).

use super::{fold, kernels::Kernel, WgpuBackend};
use crate::backend::{BackendError, Buf, KvBuf, Result};

impl WgpuBackend {
    pub(super) fn store_kv_impl(
        &mut self,
        src: Buf,
        row0: usize,
        dst: KvBuf,
        n: usize,
        row: usize,
        pos0: usize,
    ) -> Result<()> {
        let rows = dst.len / row.max(1);
        let fits = if dst.ring {
            n <= rows
        } else {
            (pos0 + n) * row <= dst.len
        };
        if row == 0 || !fits || (row0 + n) * row > src.len {
            return Err(BackendError::Invalid("store_kv: out of bounds".into()));
        }
        let params = [
            (n * row) as u32,
            pos0 as u32,
            (row0 * row) as u32,
            row as u32,
            rows as u32,
        ];
        let groups = fold((n * row).div_ceil(64));
        self.dispatch(Kernel::StoreKv, &[src.id, dst.id], &params, groups)
    }
}

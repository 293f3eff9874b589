//! Dispatch of `shaders/kv.wgsl`: f32 rows into the (f16 or f32) KV cache.

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
        if (pos0 + n) * row > dst.len || (row0 + n) * row > src.len {
            return Err(BackendError::Invalid("store_kv: out of bounds".into()));
        }
        let params = [(n * row) as u32, (pos0 * row) as u32, (row0 * row) as u32];
        let groups = fold((n * row).div_ceil(64));
        self.dispatch(Kernel::StoreKv, &[src.id, dst.id], &params, groups)
    }
}

//! Dispatch of `shaders/argmax.wgsl`: the greedy token is found on the GPU and 4 bytes come
//! back.

use super::{kernels::Kernel, WgpuBackend};
use crate::backend::{BackendError, Buf, Result};

impl WgpuBackend {
    pub(super) fn argmax_impl(&mut self, src: Buf, off: usize, len: usize) -> Result<u32> {
        if len == 0 || off + len > src.len {
            return Err(BackendError::Invalid(
                "argmax: empty or out of bounds".into(),
            ));
        }
        let params = [len as u32, off as u32];
        self.dispatch(Kernel::Argmax, &[src.id, self.result], &params, [1, 1, 1])?;
        let b = self.read_bytes(self.result, 0, 4)?;
        Ok(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    }
}

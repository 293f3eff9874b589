//! Dispatch of `shaders/norm.wgsl`: one workgroup per row.

use super::{kernels::Kernel, WgpuBackend};
use crate::backend::{BackendError, Buf, Result, Weight};

impl WgpuBackend {
    pub(super) fn rms_norm_impl(
        &mut self,
        x: Buf,
        w: &Weight,
        out: Buf,
        rows: usize,
        eps: f32,
    ) -> Result<()> {
        let g = self.dense(w, "rms_norm")?;
        if x.len < rows * w.cols || out.len < rows * w.cols {
            return Err(BackendError::Invalid("rms_norm: buffers too small".into()));
        }
        if rows > 65535 {
            return Err(BackendError::Invalid(format!("rms_norm: {rows} rows")));
        }
        let params = [w.cols as u32, rows as u32, eps.to_bits()];
        self.dispatch(
            Kernel::RmsNorm,
            &[g, x.id, out.id],
            &params,
            [rows as u32, 1, 1],
        )
    }
}

//! Dispatch of `shaders/matmul.wgsl`: one dispatch per weight part, rows of the part on
//! (x, y), token tiles of 8 on z.

use super::{fold, kernels::Kernel, WgpuBackend};
use crate::backend::{BackendError, Buf, Result, Weight};

/// Tokens per workgroup (`NT` in the shader).
const NT: usize = 8;
/// Invocations per workgroup (`WG`).
const WG: usize = 64;

impl WgpuBackend {
    /// Rows a matmul workgroup covers (`rows_per_wg()` in the shader): one per subgroup,
    /// counted for the largest subgroup the driver may pick (extra workgroups exit at once);
    /// one per invocation without subgroups.
    fn rows_per_workgroup(&self) -> usize {
        if self.caps().subgroups {
            (WG / self.adapter().subgroup_sizes.1.max(1) as usize).max(1)
        } else {
            WG
        }
    }

    pub(super) fn matmul_impl(&mut self, w: &Weight, x: Buf, out: Buf, n: usize) -> Result<()> {
        let g = self.weight(w);
        if x.len < n * g.cols || out.len < n * w.rows {
            return Err(BackendError::Invalid(format!(
                "matmul: buffers too small for {n} x [{} x {}]",
                w.rows, g.cols
            )));
        }
        let kernel = Kernel::MatMul(g.dtype);
        let (cols, row_bytes) = (g.cols, g.row_bytes);
        let parts: Vec<(u32, usize, usize)> =
            g.parts.iter().map(|p| (p.buf, p.row0, p.rows)).collect();
        for (buf, row0, rows) in parts {
            let params = [
                rows as u32,
                cols as u32,
                n as u32,
                row0 as u32,
                w.rows as u32,
                row_bytes as u32,
            ];
            let mut groups = fold(rows.div_ceil(self.rows_per_workgroup()));
            groups[2] = n.div_ceil(NT) as u32;
            self.dispatch(kernel, &[buf, x.id, out.id], &params, groups)?;
        }
        Ok(())
    }
}

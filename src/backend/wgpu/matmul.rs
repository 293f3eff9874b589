//! Dispatch of the three matrix-product kernels, one dispatch per weight part:
//! `shaders/matvec.wgsl` for decode (one token) on Q4_K weights, `shaders/gemm.wgsl` (64 x 64
//! tiles) for more than [`MATVEC_MAX_TOKENS`] tokens, and `shaders/matmul.wgsl` for the rest
//! (small batches, decode on the other types): rows of the part on (x, y), token tiles of 8
//! on z.

use super::{fold, kernels::Kernel, WgpuBackend};
use crate::backend::{BackendError, Buf, Result, Weight};
use crate::gguf::GgmlType;

/// Tokens per workgroup of `matmul.wgsl` (`NT`); larger batches go to the tiled kernel.
pub const MATVEC_MAX_TOKENS: usize = 8;
/// Invocations per workgroup of `matmul.wgsl` (`WG`).
const WG: usize = 64;
/// Rows per workgroup of `matvec.wgsl` (`R`).
const MATVEC_ROWS: usize = 4;
/// Tile of `gemm.wgsl`: weight rows and tokens (`BM`, `BN`).
const GEMM_TILE: usize = 64;
/// Workgroups per dispatch axis (WebGPU's default limit).
const MAX_GROUPS: usize = 65535;

/// Which kernel computes `n` tokens against a weight of `dtype` with `cols` columns (`fast`:
/// see [`WgpuOptions::fast_matmul`](super::WgpuOptions::fast_matmul)).
pub fn kernel_for(dtype: GgmlType, cols: usize, n: usize, fast: bool) -> Kernel {
    if !fast {
        Kernel::MatMul(dtype)
    } else if n > MATVEC_MAX_TOKENS {
        Kernel::Gemm(dtype)
    } else if n == 1 && dtype == GgmlType::Q4_K && cols % 256 == 0 {
        Kernel::MatVec(dtype)
    } else {
        Kernel::MatMul(dtype)
    }
}

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
        let kernel = kernel_for(g.dtype, g.cols, n, self.fast_matmul);
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
            let groups = match kernel {
                Kernel::MatVec(_) => fold(rows.div_ceil(MATVEC_ROWS)),
                Kernel::Gemm(_) => {
                    let g = [rows.div_ceil(GEMM_TILE), n.div_ceil(GEMM_TILE)];
                    if g.iter().any(|&v| v > MAX_GROUPS) {
                        return Err(BackendError::Invalid(format!(
                            "matmul: {n} tokens x {rows} rows exceed the dispatch limit"
                        )));
                    }
                    [g[0] as u32, g[1] as u32, 1]
                }
                _ => {
                    let mut g = fold(rows.div_ceil(self.rows_per_workgroup()));
                    g[2] = n.div_ceil(MATVEC_MAX_TOKENS) as u32;
                    g
                }
            };
            self.dispatch(kernel, &[buf, x.id, out.id], &params, groups)?;
        }
        Ok(())
    }
}

//! Dispatch of the three matrix-product kernels, one dispatch per weight part:
//! `shaders/matvec.wgsl` for decode (one token) on Q4_K weights, with its fused epilogues
//! (residual add, gate/up GLU); `shaders/gemm.wgsl` (64 x 64 tiles) for more than
//! [`MATVEC_MAX_TOKENS`] tokens; and `shaders/matmul.wgsl` for the rest (small batches,
//! decode on the other types): rows of the part on (x, y), token tiles of 8 on z. Fused ops
//! the kernels cannot do (a batch, another type) run as their unfused ops.

use super::{fold, kernels::Epilogue, kernels::Kernel, WgpuBackend};
use crate::backend::{Backend, BackendError, Buf, Glu, Result, Weight};
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

/// Whether `matvec.wgsl` computes one token against a weight of `dtype` with `cols` columns.
fn matvec_fits(dtype: GgmlType, cols: usize) -> bool {
    dtype == GgmlType::Q4_K && cols % 256 == 0
}

/// Which kernel computes `n` tokens against a weight of `dtype` with `cols` columns (`fast`:
/// see [`WgpuOptions::fast_kernels`](super::WgpuOptions::fast_kernels)).
pub fn kernel_for(dtype: GgmlType, cols: usize, n: usize, fast: bool) -> Kernel {
    if !fast {
        Kernel::MatMul(dtype)
    } else if n > MATVEC_MAX_TOKENS {
        Kernel::Gemm(dtype)
    } else if n == 1 && matvec_fits(dtype, cols) {
        Kernel::MatVec(dtype, Epilogue::Store)
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
        let kernel = kernel_for(g.dtype, g.cols, n, self.fast_kernels);
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
            let (groups, bufs) = match kernel {
                Kernel::MatVec(..) => (
                    fold(rows.div_ceil(MATVEC_ROWS)),
                    vec![buf, buf, x.id, out.id],
                ),
                Kernel::Gemm(_) => {
                    let g = [rows.div_ceil(GEMM_TILE), n.div_ceil(GEMM_TILE)];
                    if g.iter().any(|&v| v > MAX_GROUPS) {
                        return Err(BackendError::Invalid(format!(
                            "matmul: {n} tokens x {rows} rows exceed the dispatch limit"
                        )));
                    }
                    ([g[0] as u32, g[1] as u32, 1], vec![buf, x.id, out.id])
                }
                _ => {
                    let mut g = fold(rows.div_ceil(self.rows_per_workgroup()));
                    g[2] = n.div_ceil(MATVEC_MAX_TOKENS) as u32;
                    (g, vec![buf, x.id, out.id])
                }
            };
            self.dispatch(kernel, &bufs, &params, groups)?;
        }
        Ok(())
    }

    /// One decode token through `matvec.wgsl` with epilogue `epi`: `w` (and `w2`, the up
    /// matrix of a GLU, split into the same parts) times `x` into `out`.
    fn matvec(
        &mut self,
        w: &Weight,
        w2: Option<&Weight>,
        x: Buf,
        out: Buf,
        epi: Epilogue,
    ) -> Result<()> {
        let g = self.weight(w);
        let g2 = w2.map(|w2| self.weight(w2)).unwrap_or(g);
        let parts: Vec<(u32, u32, usize, usize)> = g
            .parts
            .iter()
            .zip(&g2.parts)
            .map(|(p, p2)| (p.buf, p2.buf, p.row0, p.rows))
            .collect();
        let (cols, row_bytes, kernel) = (g.cols, g.row_bytes, Kernel::MatVec(g.dtype, epi));
        for (buf, buf2, row0, rows) in parts {
            let params = [
                rows as u32,
                cols as u32,
                1,
                row0 as u32,
                w.rows as u32,
                row_bytes as u32,
            ];
            self.dispatch(
                kernel,
                &[buf, buf2, x.id, out.id],
                &params,
                fold(rows.div_ceil(MATVEC_ROWS)),
            )?;
        }
        Ok(())
    }

    /// Whether a fused decode product can run on `w` for `n` tokens.
    fn fuses(&self, w: &Weight, n: usize) -> bool {
        let g = self.weight(w);
        self.fast_kernels && n == 1 && matvec_fits(g.dtype, g.cols)
    }

    pub(super) fn matmul_add_impl(
        &mut self,
        w: &Weight,
        x: Buf,
        tmp: Buf,
        acc: Buf,
        n: usize,
    ) -> Result<()> {
        if !self.fuses(w, n) {
            self.matmul_impl(w, x, tmp, n)?;
            return self.add(acc, tmp, acc, n * w.rows);
        }
        self.matvec(w, None, x, acc, Epilogue::Add)
    }

    #[allow(clippy::too_many_arguments)]
    pub(super) fn matmul_glu_impl(
        &mut self,
        kind: Glu,
        gate: &Weight,
        up: &Weight,
        x: Buf,
        tmp: Buf,
        out: Buf,
        n: usize,
    ) -> Result<()> {
        let same_parts = {
            let (a, b) = (self.weight(gate), self.weight(up));
            a.dtype == b.dtype
                && a.row_bytes == b.row_bytes
                && a.parts.len() == b.parts.len()
                && a.parts
                    .iter()
                    .zip(&b.parts)
                    .all(|(p, q)| (p.row0, p.rows) == (q.row0, q.rows))
        };
        if !(same_parts && self.fuses(gate, n)) {
            self.matmul_impl(gate, x, out, n)?;
            self.matmul_impl(up, x, tmp, n)?;
            return self.glu(kind, out, tmp, n * gate.rows);
        }
        let epi = match kind {
            Glu::Silu => Epilogue::SiluGlu,
            Glu::Gelu => Epilogue::GeluGlu,
        };
        self.matvec(gate, Some(up), x, out, epi)
    }
}

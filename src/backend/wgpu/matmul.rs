//! Dispatch of the three matrix-product kernels, one dispatch per weight part:
//! `shaders/matvec.wgsl` for decode (one token) on Q4_K weights, with its fused epilogues
//! (residual add, gate/up GLU); `shaders/gemm.wgsl` (64 x 64 tiles) for more than
//! [`MATVEC_MAX_TOKENS`] tokens; and `shaders/matmul.wgsl` for the rest (small batches,
//! decode on the other types): rows of the part on (x, y), token tiles of 8 on z. Fused ops
//! the kernels cannot do (a batch, another type) run as their unfused ops.

use super::{fold, kernels::Epilogue, kernels::GemmTile, kernels::Kernel, WgpuBackend};
use crate::backend::{unfused, BackendError, Buf, Glu, PreNorm, Result, Weight};
use crate::gguf::GgmlType;

/// Tokens per workgroup of `matmul.wgsl` (`NT`); larger batches go to the tiled kernel.
pub const MATVEC_MAX_TOKENS: usize = 8;
/// Invocations per workgroup of `matmul.wgsl` (`WG`).
const WG: usize = 64;
/// Rows per workgroup of `matvec.wgsl` (`R`).
const MATVEC_ROWS: usize = 4;
/// Storage buffers `matvec.wgsl` binds (params, three weights, the norm weight, the input,
/// three outputs).
const MATVEC_BUFFERS: u32 = 9;
/// Workgroup memory the 128 x 128 GEMM tile needs.
const GEMM128_BYTES: u32 = 32 << 10;
/// Workgroups per dispatch axis (WebGPU's default limit).
const MAX_GROUPS: usize = 65535;

/// Whether `matvec.wgsl` computes one token against a weight of `dtype` with `cols` columns.
fn matvec_fits(dtype: GgmlType, cols: usize) -> bool {
    dtype == GgmlType::Q4_K && cols.is_multiple_of(256)
}

impl WgpuBackend {
    /// Which kernel computes `n` tokens against a weight of `dtype` with `cols` columns:
    /// `matmul.wgsl` for everything without [`WgpuOptions::fast_kernels`]
    /// (super::WgpuOptions::fast_kernels); the GEMM from 9 tokens (software adapters: 64, see
    /// [`Tuning`](super::Tuning)), with 128-token tiles for more than 64 tokens where the
    /// adapter has 32 KiB of workgroup memory.
    pub fn kernel_for(&self, dtype: GgmlType, cols: usize, n: usize) -> Kernel {
        let gemm_from = if self.gpu_tuning {
            MATVEC_MAX_TOKENS + 1
        } else {
            64
        };
        if !self.fast_kernels {
            Kernel::MatMul(dtype)
        } else if n >= gemm_from {
            let big = n > 64 && self.gpu.limits.max_compute_workgroup_storage_size >= GEMM128_BYTES;
            Kernel::Gemm(dtype, if big { GemmTile::T128 } else { GemmTile::T64 })
        } else if n == 1 && matvec_fits(dtype, cols) {
            Kernel::MatVec(dtype, Epilogue::Store, false)
        } else {
            Kernel::MatMul(dtype)
        }
    }

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
        let kernel = self.kernel_for(g.dtype, g.cols, n);
        if let Kernel::MatVec(..) = kernel {
            return self.matvec(w, None, x, out, Epilogue::Store, None);
        }
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
                Kernel::Gemm(_, tile) => {
                    let g = [rows.div_ceil(tile.size()), n.div_ceil(tile.size())];
                    if g.iter().any(|&v| v > MAX_GROUPS) {
                        return Err(BackendError::Invalid(format!(
                            "matmul: {n} tokens x {rows} rows exceed the dispatch limit"
                        )));
                    }
                    ([g[0] as u32, g[1] as u32, 1], [buf, x.id, out.id])
                }
                _ => {
                    let mut g = fold(rows.div_ceil(self.rows_per_workgroup()));
                    g[2] = n.div_ceil(MATVEC_MAX_TOKENS) as u32;
                    (g, [buf, x.id, out.id])
                }
            };
            self.dispatch(kernel, &bufs, &params, groups)?;
        }
        Ok(())
    }

    /// One decode token through `matvec.wgsl` with epilogue `epi`: `w` (and `w2`, the up
    /// matrix of a GLU, split into the same parts) times `x` into `out`; `norm` (the norm
    /// weight's buffer and eps) RMS-normalizes `x` in the kernel first.
    fn matvec(
        &mut self,
        w: &Weight,
        w2: Option<&Weight>,
        x: Buf,
        out: Buf,
        epi: Epilogue,
        norm: Option<(u32, f32)>,
    ) -> Result<()> {
        let g = self.weight(w);
        let g2 = w2.map(|w2| self.weight(w2)).unwrap_or(g);
        let parts: Vec<(u32, u32, usize, usize)> = g
            .parts
            .iter()
            .zip(&g2.parts)
            .map(|(p, p2)| (p.buf, p2.buf, p.row0, p.rows))
            .collect();
        let (cols, row_bytes) = (g.cols, g.row_bytes);
        let kernel = Kernel::MatVec(g.dtype, epi, norm.is_some());
        let (gbuf, eps) = norm.unwrap_or((x.id, 0.0));
        for (buf, buf2, row0, rows) in parts {
            let params = [
                rows as u32,
                cols as u32,
                1,
                row0 as u32,
                w.rows as u32,
                row_bytes as u32,
                0,
                eps.to_bits(),
            ];
            self.dispatch(
                kernel,
                &[buf, buf2, buf, gbuf, x.id, out.id, self.dummy, self.dummy],
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

    /// The input of a fused product whose input is RMS-normed first: `x` and the norm for
    /// `matvec.wgsl` to apply (its weight's buffer, eps) when `fused`, tuned for a GPU, and
    /// the adapter can bind the norm weight too (9 storage buffers); else the norm runs
    /// first, into `norm.out`.
    fn pre_norm_input(
        &mut self,
        norm: Option<PreNorm>,
        x: Buf,
        n: usize,
        fused: bool,
    ) -> Result<(Buf, Option<(u32, f32)>)> {
        let Some(p) = norm else {
            return Ok((x, None));
        };
        let inline = fused
            && self.gpu_tuning
            && self.gpu.limits.max_storage_buffers_per_shader_stage >= MATVEC_BUFFERS
            && p.weight.cols % 4 == 0;
        if inline {
            return Ok((x, Some((self.dense(p.weight, "rms_norm")?, p.eps))));
        }
        self.rms_norm_impl(x, p.weight, p.out, n, p.eps)?;
        Ok((p.out, None))
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
            return unfused::matmul_add(self, w, x, tmp, acc, n);
        }
        self.matvec(w, None, x, acc, Epilogue::Add, None)
    }

    #[allow(clippy::too_many_arguments)]
    pub(super) fn matmul_glu_impl(
        &mut self,
        kind: Glu,
        norm: Option<PreNorm>,
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
        let fused = same_parts && self.fuses(gate, n);
        let (x, inline) = self.pre_norm_input(norm, x, n, fused)?;
        if !fused {
            return unfused::matmul_glu(self, kind, gate, up, x, tmp, out, n);
        }
        let epi = match kind {
            Glu::Silu => Epilogue::SiluGlu,
            Glu::Gelu => Epilogue::GeluGlu,
        };
        self.matvec(gate, Some(up), x, out, epi, inline)
    }

    /// The query, key and value projections of one decode token in one dispatch where all
    /// three are single-part Q4_K matrices of whole workgroups of rows; else three matmuls.
    pub(super) fn matmul_qkv_impl(
        &mut self,
        norm: Option<PreNorm>,
        w: [&Weight; 3],
        x: Buf,
        out: [Buf; 3],
        n: usize,
    ) -> Result<()> {
        let [wq, wk, wv] = w;
        let one_part = |b: &Self, w: &Weight| b.weight(w).parts.len() == 1;
        let fused = self.fuses(wq, n)
            && [wk, wv]
                .iter()
                .all(|w| (w.dtype, w.cols) == (wq.dtype, wq.cols) && w.rows == wk.rows)
            && [wq, wk, wv]
                .iter()
                .all(|w| one_part(self, w) && w.rows % MATVEC_ROWS == 0);
        let (x, inline) = self.pre_norm_input(norm, x, n, fused)?;
        if !fused {
            return unfused::matmul_qkv(self, w, x, out, n);
        }
        let bufs = [wq, wk, wv].map(|w| self.weight(w).parts[0].buf);
        let g = self.weight(wq);
        let (gbuf, eps) = inline.unwrap_or((x.id, 0.0));
        let params = [
            wq.rows as u32,
            g.cols as u32,
            1,
            0,
            wq.rows as u32,
            g.row_bytes as u32,
            wk.rows as u32,
            eps.to_bits(),
        ];
        let kernel = Kernel::MatVec(g.dtype, Epilogue::Qkv, inline.is_some());
        let rows = wq.rows + 2 * wk.rows;
        self.dispatch(
            kernel,
            &[
                bufs[0], bufs[1], bufs[2], gbuf, x.id, out[0].id, out[1].id, out[2].id,
            ],
            &params,
            fold(rows / MATVEC_ROWS),
        )
    }
}

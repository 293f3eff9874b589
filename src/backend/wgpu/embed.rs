//! Dispatch of `shaders/embed.wgsl`: token ids travel in the params window (up to
//! [`IDS_PER_DISPATCH`] per dispatch), one dispatch per weight part and id chunk.

use super::{kernels::Kernel, WgpuBackend};
use crate::backend::{BackendError, Buf, Result, Weight};

const IDS_PER_DISPATCH: usize = 1000;
const HEADER: usize = 8;

impl WgpuBackend {
    pub(super) fn embed_impl(&mut self, table: &Weight, ids: &[u32], out: Buf) -> Result<()> {
        if let Some(&bad) = ids.iter().find(|&&id| id as usize >= table.rows) {
            return Err(BackendError::Invalid(format!(
                "embed: token id {bad} outside the table's {} rows",
                table.rows
            )));
        }
        let g = self.weight(table);
        if out.len < ids.len() * g.cols {
            return Err(BackendError::Invalid(
                "embed: output buffer too small".into(),
            ));
        }
        let kernel = Kernel::Embed(g.dtype);
        let (cols, row_bytes) = (g.cols, g.row_bytes);
        let parts: Vec<(u32, usize, usize)> =
            g.parts.iter().map(|p| (p.buf, p.row0, p.rows)).collect();
        for (c, chunk) in ids.chunks(IDS_PER_DISPATCH).enumerate() {
            for &(buf, row0, rows) in &parts {
                if !chunk
                    .iter()
                    .any(|&id| (row0..row0 + rows).contains(&(id as usize)))
                {
                    continue;
                }
                let mut params = vec![0u32; HEADER];
                params[..6].copy_from_slice(&[
                    rows as u32,
                    cols as u32,
                    chunk.len() as u32,
                    row0 as u32,
                    row_bytes as u32,
                    (c * IDS_PER_DISPATCH * cols) as u32,
                ]);
                params.extend_from_slice(chunk);
                let groups = [(cols / 32).div_ceil(64) as u32, chunk.len() as u32, 1];
                self.dispatch(kernel, &[buf, out.id], &params, groups)?;
            }
        }
        Ok(())
    }
}

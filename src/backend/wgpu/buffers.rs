//! GPU buffers of the wgpu backend: creation (mapped at creation, out-of-memory as an error),
//! weights copied into row parts no larger than a storage binding, and freeing what was made
//! after a mark (the kernel micro-benchmark's weight copies).

use super::{round_up, GpuWeight, Part, WgpuBackend};
use crate::backend::{BackendError, Result, Weight};

impl WgpuBackend {
    /// A zeroed storage buffer; out-of-memory is an error, not a panic.
    pub(super) fn buffer(&mut self, bytes: u64, label: &str) -> Result<u32> {
        self.buffer_init(bytes, label, &[])
    }

    /// A storage buffer of `bytes` that starts with `data` (written while mapped at creation,
    /// so no staging copy), the rest zero.
    pub(super) fn buffer_init(&mut self, bytes: u64, label: &str, data: &[u8]) -> Result<u32> {
        let size = round_up(bytes.max(16), 16);
        if size > self.gpu.limits.max_buffer_size {
            return Err(BackendError::OutOfMemory {
                backend: format!(
                    "wgpu ({}): {label} exceeds the largest buffer ({} MiB)",
                    self.gpu.summary.name,
                    self.gpu.limits.max_buffer_size >> 20
                ),
                bytes: size,
            });
        }
        let scope = self
            .gpu
            .device
            .push_error_scope(wgpu::ErrorFilter::OutOfMemory);
        let buf = self.gpu.device.create_buffer(&wgpu::BufferDescriptor {
            label: Some(label),
            size,
            usage: wgpu::BufferUsages::STORAGE
                | wgpu::BufferUsages::COPY_SRC
                | wgpu::BufferUsages::COPY_DST,
            mapped_at_creation: true,
        });
        if let Some(e) = pollster::block_on(scope.pop()) {
            return Err(BackendError::OutOfMemory {
                backend: format!("wgpu ({}): {label}: {e}", self.gpu.summary.name),
                bytes: size,
            });
        }
        {
            let mut view = buf
                .slice(..)
                .get_mapped_range_mut()
                .map_err(|e| BackendError::Device(format!("wgpu: {e}")))?;
            if !data.is_empty() {
                view.slice(..data.len()).copy_from_slice(data);
            }
        }
        buf.unmap();
        self.store.push(buf);
        Ok((self.store.len() - 1) as u32)
    }

    /// Copies the GGUF blocks of a matrix (`bytes`, rows back to back) into parts of at most
    /// `max_part_bytes`, and registers it as `w` (whose id must be the next weight's).
    pub(super) fn upload_matrix(&mut self, name: &str, w: Weight, bytes: &[u8]) -> Result<Weight> {
        let rows = w.rows;
        let row_bytes = bytes.len() / rows.max(1);
        if w.id as usize != self.weights.len() || row_bytes * rows != bytes.len() {
            return Err(BackendError::Invalid(format!(
                "{name}: {} bytes are not {rows} whole rows",
                bytes.len()
            )));
        }
        let per_part = (self.max_part_bytes as usize / row_bytes.max(1)).max(1);
        let mut parts = Vec::new();
        let mut row0 = 0;
        while row0 < rows {
            let n = per_part.min(rows - row0);
            let src = &bytes[row0 * row_bytes..(row0 + n) * row_bytes];
            let label = format!("{name} rows {row0}..{}", row0 + n);
            let buf = self.buffer_init(src.len() as u64, &label, src)?;
            parts.push(Part { buf, row0, rows: n });
            row0 += n;
        }
        self.uploaded += bytes.len() as u64;
        self.weights.push(GpuWeight {
            dtype: w.dtype,
            cols: w.cols,
            row_bytes,
            parts,
        });
        Ok(w)
    }

    /// Frees every buffer made after the store held `store_len` buffers and every weight
    /// after the first `weights_len` (their bind groups too).
    pub(super) fn release_from(&mut self, store_len: usize, weights_len: usize) {
        let _ = self.flush();
        self.bind_groups.retain(|(_, ids), _| {
            ids.iter()
                .all(|&id| id == u32::MAX || (id as usize) < store_len)
        });
        for b in self.store.drain(store_len.min(self.store.len())..) {
            b.destroy();
        }
        self.weights.truncate(weights_len);
    }
}

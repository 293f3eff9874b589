//! Dispatch of `shaders/argmax.wgsl` and `shaders/topk.wgsl`: the greedy token is found on
//! the GPU and 4 bytes come back; a sampled token reads back each workgroup's top k (a few
//! KiB) and merges them on the host.

use super::{kernels::Kernel, WgpuBackend};
use crate::backend::{Backend, BackendError, Buf, Result};

/// Workgroups of argmax's first pass (each leaves a (value, index) pair in the result buffer).
pub(super) const ARGMAX_GROUPS: usize = 256;
/// Words of one row's argmax in a result buffer: the index, a pad, the partial pairs.
pub(super) const ARGMAX_WORDS: usize = 2 + 2 * ARGMAX_GROUPS;
/// Largest k computed on the GPU.
const MAX_K: usize = 128;
/// Elements per workgroup (`SLICE` in the shader).
const SLICE: usize = 4096;

/// The index `argmax.wgsl` reports for a row holding a NaN or an infinity.
const BAD: u32 = 0xffff_fffe;

/// A row's token, or the error its logits deserve.
fn token(word: u32, row: usize) -> Result<u32> {
    match word {
        BAD => Err(BackendError::NonFinite {
            place: "the logits".into(),
            row,
        }),
        t => Ok(t),
    }
}

impl WgpuBackend {
    pub(super) fn argmax_impl(&mut self, src: Buf, off: usize, len: usize) -> Result<u32> {
        if len == 0 || off + len > src.len {
            return Err(BackendError::Invalid(
                "argmax: empty or out of bounds".into(),
            ));
        }
        // partial maxima of up to ARGMAX_GROUPS workgroups (about 8 elements per invocation),
        // then one workgroup over them
        self.dispatch_argmax(src, off, len, self.result, 0)?;
        let b = self.read_bytes(self.result, 0, 4)?;
        token(u32::from_le_bytes([b[0], b[1], b[2], b[3]]), 0)
    }

    /// The two passes of one row's argmax into `out` at word `r0` (ARGMAX_WORDS words).
    fn dispatch_argmax(
        &mut self,
        src: Buf,
        off: usize,
        len: usize,
        out: u32,
        r0: usize,
    ) -> Result<()> {
        // partial maxima of up to ARGMAX_GROUPS workgroups (about 8 elements per invocation),
        // then one workgroup over them
        let groups = len.div_ceil(256 * 8).clamp(1, ARGMAX_GROUPS);
        let params = [len as u32, off as u32, groups as u32, r0 as u32];
        let bufs = [src.id, out];
        self.dispatch(Kernel::Argmax, &bufs, &params, [groups as u32, 1, 1])?;
        self.dispatch(Kernel::ArgmaxFinal, &bufs, &params, [1, 1, 1])
    }

    /// Argmaxes of several rows (at `offs`, `len` each): every row's passes recorded, then one
    /// read back — one submit and one host wait for a whole batch's greedy tokens.
    pub(super) fn argmax_rows_impl(
        &mut self,
        src: Buf,
        offs: &[usize],
        len: usize,
    ) -> Result<Vec<u32>> {
        if len == 0 || offs.iter().any(|&o| o + len > src.len) {
            return Err(BackendError::Invalid(
                "argmax: empty or out of bounds".into(),
            ));
        }
        let bytes = (offs.len() * ARGMAX_WORDS * 4) as u64;
        if self.argmax_out.is_none_or(|(_, n)| n < bytes) {
            let id = self.buffer(bytes, "argmax rows")?;
            self.argmax_out = Some((id, bytes));
        }
        let out = self.argmax_out.map_or(self.result, |(id, _)| id);
        for (i, &off) in offs.iter().enumerate() {
            self.dispatch_argmax(src, off, len, out, i * ARGMAX_WORDS)?;
        }
        let b = self.read_bytes(out, 0, bytes)?;
        let words: Vec<u32> = bytemuck::pod_collect_to_vec(&b);
        (0..offs.len())
            .map(|i| token(words[i * ARGMAX_WORDS], i))
            .collect()
    }

    pub(super) fn top_k_impl(
        &mut self,
        src: Buf,
        off: usize,
        len: usize,
        k: usize,
    ) -> Result<Vec<(u32, f32)>> {
        if len == 0 || off + len > src.len {
            return Err(BackendError::Invalid(
                "top_k: empty or out of bounds".into(),
            ));
        }
        let k = k.min(len);
        if k > MAX_K {
            // a wide top-k: the logits themselves are the cheaper read
            let mut v = vec![0f32; len];
            self.read(src, off, &mut v)?;
            return Ok(crate::sampling::top_k(&v, k));
        }
        let groups = len.div_ceil(SLICE);
        let bytes = (groups * k * 8) as u64;
        if self.topk_out.is_none_or(|(_, n)| n < bytes) {
            let id = self.buffer(bytes.max(64 * MAX_K as u64 * 8), "top-k candidates")?;
            self.topk_out = Some((id, bytes.max(64 * MAX_K as u64 * 8)));
        }
        let out = self.topk_out.map_or(self.result, |(id, _)| id);
        let params = [len as u32, off as u32, k as u32, SLICE as u32];
        self.dispatch(Kernel::TopK, &[src.id, out], &params, [groups as u32, 1, 1])?;
        let b = self.read_bytes(out, 0, bytes)?;
        let words: Vec<u32> = bytemuck::pod_collect_to_vec(&b);
        let mut cands: Vec<(u32, f32)> = words
            .chunks(2)
            .filter(|p| p[0] != u32::MAX)
            .map(|p| (p[0], f32::from_bits(p[1])))
            .collect();
        crate::sampling::sort_desc(&mut cands);
        cands.truncate(k);
        Ok(cands)
    }
}

//! Dispatch of `shaders/bandwidth.wgsl`: the adapter's peak read bandwidth, for MBU. Reads
//! one buffer as large as a binding allows (at most 1 GiB) several times in one submit and
//! takes the best of a few submits, timed on the host around submit and wait.

use super::{kernels::Kernel, WgpuBackend};
use crate::backend::{Backend, BackendError, Result};

const PASSES: usize = 8;
const TRIES: usize = 3;

impl WgpuBackend {
    /// Peak read bandwidth in GB/s (decimal).
    pub fn read_bandwidth(&mut self) -> Result<f64> {
        let bytes = self.max_part_bytes.min(1 << 30) & !15;
        let first = self.store.len();
        let src = self.buffer(bytes, "bandwidth probe")?;
        let words = (bytes / 16) as u32;
        let invocations: u32 = 256 * 4096;
        let params = [words, invocations, 0x9e37_79b9];
        let mut best = 0f64;
        for _ in 0..=TRIES {
            self.flush()?;
            self.sync()?;
            let t0 = std::time::Instant::now();
            for _ in 0..PASSES {
                self.dispatch(
                    Kernel::Bandwidth,
                    &[src, self.result],
                    &params,
                    [invocations / 256, 1, 1],
                )?;
            }
            self.sync()?;
            let gb_s = (bytes as usize * PASSES) as f64 / t0.elapsed().as_secs_f64() / 1e9;
            best = best.max(gb_s);
        }
        // free the probe buffer (it is the last one made)
        if self.store.len() != first + 1 {
            return Err(BackendError::Device(
                "bandwidth probe: buffer list changed".into(),
            ));
        }
        self.bind_groups.retain(|(_, ids), _| !ids.contains(&src));
        if let Some(b) = self.store.pop() {
            b.destroy();
        }
        Ok(best)
    }
}

//! Dispatch of `shaders/elementwise.wgsl` (GLU, add, scale, copy, bias).

use super::{fold, kernels::EwOp, kernels::Kernel, WgpuBackend};
use crate::backend::Result;

impl WgpuBackend {
    /// `[len, a_off, b_off, o_off]` in elements; `s` for scale, `cols` for bias.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn elementwise(
        &mut self,
        op: EwOp,
        a: u32,
        b: u32,
        o: u32,
        lens: [usize; 4],
        s: f32,
        cols: usize,
    ) -> Result<()> {
        let params = [
            lens[0] as u32,
            lens[1] as u32,
            lens[2] as u32,
            lens[3] as u32,
            s.to_bits(),
            cols as u32,
        ];
        let groups = fold(lens[0].div_ceil(64));
        self.dispatch(Kernel::Elementwise(op), &[a, b, o], &params, groups)
    }
}

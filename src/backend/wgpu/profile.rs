//! Per-kernel GPU time (`--profile`): every compute pass writes a begin and an end
//! timestamp (TIMESTAMP_QUERY); at each submit the queries are resolved, read back and
//! summed per kernel. Profiling waits for every submit, so it slows decoding down; the
//! per-kernel times are what the GPU spent, not wall time.

use super::kernels::{EwOp, Kernel};
use crate::backend::{BackendError, KernelTime, Result};
use crate::telemetry::ledger::OpName;
use std::collections::BTreeMap;

/// Passes per submit before the query set is full.
const MAX_PASSES: u32 = 2048;

pub struct Profiler {
    set: wgpu::QuerySet,
    resolve: wgpu::Buffer,
    read: wgpu::Buffer,
    pending: Vec<Kernel>,
    period_ns: f64,
    totals: BTreeMap<(String, OpName), (u64, f64)>,
}

/// The ledger's op kind for a kernel (joins GPU time with bytes moved).
pub fn op_of(k: Kernel) -> OpName {
    match k {
        Kernel::MatMul(_) | Kernel::MatVec(..) | Kernel::Gemm(..) => OpName::MatMul,
        Kernel::Embed(_) => OpName::Embed,
        Kernel::RmsNorm => OpName::RmsNorm,
        Kernel::Rope | Kernel::RopeKv => OpName::Rope,
        Kernel::StoreKv => OpName::StoreKv,
        Kernel::Attention => OpName::Attention,
        Kernel::Argmax | Kernel::ArgmaxFinal | Kernel::TopK | Kernel::Bandwidth => OpName::Argmax,
        Kernel::Elementwise(op) => match op {
            EwOp::GeluGlu | EwOp::SiluGlu => OpName::Glu,
            EwOp::Add => OpName::Add,
            EwOp::Scale => OpName::Scale,
            EwOp::Copy => OpName::Copy,
            EwOp::Bias => OpName::AddBias,
            EwOp::Softcap => OpName::Softcap,
        },
    }
}

impl Profiler {
    pub fn new(device: &wgpu::Device, queue: &wgpu::Queue) -> Self {
        let n = 2 * MAX_PASSES as u64;
        Profiler {
            set: device.create_query_set(&wgpu::QuerySetDescriptor {
                label: Some("kernel timestamps"),
                ty: wgpu::QueryType::Timestamp,
                count: 2 * MAX_PASSES,
            }),
            resolve: device.create_buffer(&wgpu::BufferDescriptor {
                label: Some("timestamp resolve"),
                size: n * 8,
                usage: wgpu::BufferUsages::QUERY_RESOLVE | wgpu::BufferUsages::COPY_SRC,
                mapped_at_creation: false,
            }),
            read: device.create_buffer(&wgpu::BufferDescriptor {
                label: Some("timestamp read"),
                size: n * 8,
                usage: wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
                mapped_at_creation: false,
            }),
            pending: Vec::new(),
            period_ns: queue.get_timestamp_period() as f64,
            totals: BTreeMap::new(),
        }
    }

    /// Whether the query set has no room for another pass.
    pub fn full(&self) -> bool {
        self.pending.len() as u32 >= MAX_PASSES
    }

    /// Timestamp writes for the next pass, which runs `k`.
    pub fn next(&mut self, k: Kernel) -> wgpu::ComputePassTimestampWrites<'_> {
        let i = self.pending.len() as u32;
        self.pending.push(k);
        wgpu::ComputePassTimestampWrites {
            query_set: &self.set,
            beginning_of_pass_write_index: Some(2 * i),
            end_of_pass_write_index: Some(2 * i + 1),
        }
    }

    /// Records the query resolution at the end of a submit.
    pub fn resolve(&self, enc: &mut wgpu::CommandEncoder) {
        let n = 2 * self.pending.len() as u32;
        if n > 0 {
            enc.resolve_query_set(&self.set, 0..n, &self.resolve, 0);
            enc.copy_buffer_to_buffer(&self.resolve, 0, &self.read, 0, n as u64 * 8);
        }
    }

    /// Reads the submit's timestamps back and adds them to the totals.
    pub fn collect(&mut self, device: &wgpu::Device) -> Result<()> {
        if self.pending.is_empty() {
            return Ok(());
        }
        let bytes = self.pending.len() as u64 * 16;
        let slice = self.read.slice(..bytes);
        slice.map_async(wgpu::MapMode::Read, |_| {});
        device
            .poll(wgpu::PollType::wait_indefinitely())
            .map_err(|e| BackendError::Device(format!("wgpu: {e}")))?;
        let ts: Vec<u64> = {
            let view = slice
                .get_mapped_range()
                .map_err(|e| BackendError::Device(format!("wgpu: {e}")))?;
            bytemuck::pod_collect_to_vec(&view)
        };
        self.read.unmap();
        for (i, k) in self.pending.drain(..).enumerate() {
            let ns = ts[2 * i + 1].saturating_sub(ts[2 * i]) as f64 * self.period_ns;
            let e = self.totals.entry((k.name(), op_of(k))).or_insert((0, 0.0));
            e.0 += 1;
            e.1 += ns;
        }
        Ok(())
    }

    /// The totals so far, largest time first; resets them.
    pub fn take(&mut self) -> Vec<KernelTime> {
        let mut v: Vec<KernelTime> = std::mem::take(&mut self.totals)
            .into_iter()
            .map(|((name, op), (calls, ns))| KernelTime {
                name,
                op,
                calls,
                ns,
            })
            .collect();
        v.sort_by(|a, b| b.ns.total_cmp(&a.ns));
        v
    }
}

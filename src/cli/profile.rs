//! `--profile`: per-kernel GPU time joined with the memory-traffic ledger, so each kernel
//! family gets an achieved bandwidth (bytes the ledger says its op moved ÷ GPU time).

use std::collections::BTreeMap;
use std::fmt::Write;
use tokenfab::backend::KernelTime;
use tokenfab::backend::Ops;
use tokenfab::telemetry::ledger::OpName;

/// The profile table (kernels by GPU time, then per-op achieved GB/s).
pub fn table(kernels: &[KernelTime], ops: &Ops) -> String {
    let ledger = ops.ledger();
    let total: f64 = kernels.iter().map(|k| k.ns).sum();
    let mut s = String::new();
    let _ = writeln!(
        s,
        "tokenfab: GPU profile ({}; {:.2} ms in all)",
        ops.profile_method(),
        total / 1e6
    );
    let _ = writeln!(
        s,
        "  {:<16} {:>8} {:>11} {:>10} {:>6}",
        "kernel", "calls", "total ms", "mean us", "%"
    );
    for k in kernels {
        let _ = writeln!(
            s,
            "  {:<16} {:>8} {:>11.3} {:>10.2} {:>6.1}",
            k.name,
            k.calls,
            k.ns / 1e6,
            k.ns / 1e3 / k.calls.max(1) as f64,
            100.0 * k.ns / total.max(1.0)
        );
    }
    let mut by_op: BTreeMap<OpName, f64> = BTreeMap::new();
    for k in kernels {
        *by_op.entry(k.op).or_default() += k.ns;
    }
    let _ = writeln!(
        s,
        "  {:<16} {:>11} {:>11} {:>10}",
        "op", "GPU ms", "ledger MB", "GB/s"
    );
    for (op, traffic, _) in ledger.by_op() {
        let Some(&ns) = by_op.get(&op) else { continue };
        let bytes = traffic.bytes() as f64;
        let _ = writeln!(
            s,
            "  {:<16} {:>11.3} {:>11.1} {:>10.1}",
            op.name(),
            ns / 1e6,
            bytes / 1e6,
            bytes / ns.max(1.0)
        );
    }
    s
}

//! Telemetry: what each token cost. The memory-traffic ledger ([`ledger`]) counts bytes and
//! FLOPs per op where ops are dispatched; [`stats`] has the percentiles and means reports use.

pub mod bench;
pub mod energy;
pub mod ledger;
pub mod probe;
pub mod recorder;
pub mod spec_bench;
pub mod stats;

//! Edge vs cloud cost per token: the price table ([`prices`]), the cost model ([`model`]), the
//! report built from a `tokenfab bench` JSON ([`report`]) and its plots ([`plot`]).

pub mod model;
pub mod plot;
pub mod prices;
pub mod report;

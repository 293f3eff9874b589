//! tokenfab: run quantized LLMs locally and account for what every token cost.
//!
//! Data flow: a GGUF file is memory-mapped ([`gguf`]); its metadata builds a tokenizer
//! ([`tokenizer`]) and a model configuration ([`model`]); tensor data is borrowed from the map
//! and handed to a compute [`backend`] through one op-level trait; the architecture's forward
//! pass ([`model`]) calls those ops; [`generate`] runs prefill and decode, sampling tokens with
//! [`sampling`], one [`generate::Sequence`] per conversation, several decoded together in one
//! forward pass. [`engine::Engine`] is the facade an embedder uses: load, prompt, generate,
//! and what each token cost. See ARCHITECTURE.md for the whole picture.

pub mod backend;
pub mod capi;
pub mod cost;
pub mod engine;
pub mod eval;
pub mod generate;
pub mod gguf;
pub mod loadgen;
pub mod model;
pub mod quant;
pub mod quantize;
pub mod sampling;
pub mod server;
pub mod synth;
pub mod telemetry;
pub mod tokenizer;

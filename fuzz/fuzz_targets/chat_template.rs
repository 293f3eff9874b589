//! A chat template from a stranger (GGUF templates are Jinja that runs on every request):
//! the input is `template \0 role \x01 content \x01 role \x01 content ...`, rendered with a
//! real tokenizer's BOS/EOS. Every outcome must be a string or a clean error, bounded in time
//! and memory by the renderer's fuel and output caps.
#![no_main]

#[path = "common.rs"]
mod common;

use libfuzzer_sys::fuzz_target;
use tokenfab::tokenizer::chat::{render, Message};

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let (source, rest) = text.split_once('\0').unwrap_or((&text, "user\u{1}hello"));
    let parts: Vec<&str> = rest.split('\u{1}').collect();
    let messages: Vec<Message> = parts
        .chunks(2)
        .map(|c| Message::new(c[0], c.get(1).copied().unwrap_or("")))
        .collect();
    let tk = &common::tokenizers()[(data.first().copied().unwrap_or(0) & 1) as usize];
    for gen in [false, true] {
        if let Ok(out) = render(source, tk, &messages, gen) {
            assert!(
                out.len() <= tokenfab::tokenizer::chat::output_cap(&messages),
                "the output cap holds"
            );
        }
    }
});

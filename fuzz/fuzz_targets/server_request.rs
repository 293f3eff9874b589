//! An HTTP request body from a client: the OpenAI-compatible request parser of both endpoints
//! (chat and completions), with the token-id prompt checked against a real vocabulary size.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tokenfab::server::api::{parse, Endpoint};

fuzz_target!(|data: &[u8]| {
    let ids = ["gemma-3-270m-q4_k_m".to_string(), "m".to_string()];
    for ep in [Endpoint::Chat, Endpoint::Completion] {
        match parse(ep, data, &ids, 262_144) {
            Ok(r) => {
                let _ = format!("{r:?}");
            }
            Err(e) => {
                let _ = e.body();
            }
        }
    }
});

// Shared by the targets (included with `#[path]`): the real models' tokenizers, loaded once.
// The models are the ones `scripts/fetch-models.sh` puts in models/ (override the folder with
// TOKENFAB_FUZZ_MODELS); `scripts/fuzz.sh` runs from the repository root.

use std::sync::OnceLock;
use tokenfab::gguf::GgufFile;
use tokenfab::tokenizer::Tokenizer;

fn load(file: &str) -> Tokenizer {
    let dir = std::env::var("TOKENFAB_FUZZ_MODELS").unwrap_or_else(|_| "models".into());
    let path = std::path::Path::new(&dir).join(file);
    let f = GgufFile::open(&path)
        .unwrap_or_else(|e| panic!("{}: {e} (run scripts/fetch-models.sh all)", path.display()));
    Tokenizer::from_metadata(f.metadata()).expect("a real model's tokenizer")
}

/// Gemma 3 (SentencePiece) and Qwen2.5 (byte-level BPE): both kinds of real vocabulary.
pub fn tokenizers() -> &'static [Tokenizer; 2] {
    static T: OnceLock<[Tokenizer; 2]> = OnceLock::new();
    T.get_or_init(|| {
        [
            load("gemma-3-270m-q4_k_m.gguf"),
            load("qwen2.5-coder-0.5b-instruct-q4_k_m.gguf"),
        ]
    })
}

//! A model file from a stranger: the GGUF reader on arbitrary bytes, then everything tokenfab
//! does with a file that opens — `tokenfab info`'s report, every tensor's bytes decoded,
//! `--validate`, the model configuration, the tokenizer built from the metadata and run.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tokenfab::gguf::GgufFile;

fuzz_target!(|data: &[u8]| {
    let Ok(f) = GgufFile::from_bytes("<fuzz>", data.to_vec()) else {
        return;
    };
    let _ = tokenfab::model::describe::describe("<fuzz>", &f, true);
    for t in f.tensors() {
        let bytes = f.tensor_data(t);
        assert_eq!(bytes.len() as u64, t.n_bytes);
    }
    let _ = tokenfab::model::validate::validate(&f);
    let _ = tokenfab::model::Config::from_gguf(&f);
    if let Ok(tk) = tokenfab::tokenizer::Tokenizer::from_metadata(f.metadata()) {
        let text = "Hello world! <start_of_turn>user\n 123 ünïcödé 🙂\t\r\n";
        if let Ok(ids) = tk.encode(text, true) {
            let _ = tk.decode(&ids);
        }
        let all: Vec<u32> = (0..tk.vocab_size().min(4096) as u32).collect();
        let _ = tk.decode(&all);
        let mut stream = tk.stream();
        for id in all {
            let _ = stream.push(id);
        }
        let m = [tokenfab::tokenizer::chat::Message::new("user", "hi")];
        let _ = tokenfab::tokenizer::chat::apply(&tk, &m, true);
    }
});

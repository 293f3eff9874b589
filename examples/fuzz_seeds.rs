//! Writes the seed corpora of the fuzz targets (`fuzz/corpus/<target>/`) from the real models
//! and the repository's own files: `scripts/fuzz.sh seeds` runs it. Seeds are small on purpose
//! (libFuzzer mutates whole inputs): real models appear as their tokenizer metadata cut to a
//! few hundred tokens, and as tiny synthetic models of each architecture carrying that
//! tokenizer, so the GGUF target starts from files that open, configure and tokenize.
//!
//! Usage: cargo run --release --example fuzz_seeds -- MODELS_DIR CORPUS_DIR

use anyhow::{Context, Result};
use std::path::Path;
use tokenfab::gguf::{Array, GgmlType, GgufFile, GgufWriter, Metadata, Value};
use tokenfab::synth::{preset, write_with_tokenizer};

/// The tokenizer keys of a real file with its vocabulary cut to the first `n` tokens (merges
/// kept only where both halves and the result survive; special ids outside the cut dropped).
fn small_tokenizer(md: &Metadata, n: usize) -> Result<GgufWriter> {
    let mut w = GgufWriter::new();
    let tokens = md.get_str_array("tokenizer.ggml.tokens")?;
    let have: std::collections::HashSet<&str> = tokens.into_iter().take(n).collect();
    for (k, v) in md.iter() {
        if !k.starts_with("tokenizer.") {
            continue;
        }
        let v = match v {
            Value::Array(Array::String(merges)) if k == "tokenizer.ggml.merges" => {
                let kept = merges
                    .iter()
                    .filter(|s| {
                        s.split_once(' ').is_some_and(|(a, b)| {
                            have.contains(a)
                                && have.contains(b)
                                && have.contains(&*format!("{a}{b}"))
                        })
                    })
                    .take(200)
                    .collect();
                Value::Array(Array::String(kept))
            }
            Value::Array(a) => Value::Array(a.truncated(n)),
            v if k.ends_with("_token_id") && v.as_u64().is_some_and(|i| i as usize >= n) => {
                continue
            }
            v => v.clone(),
        };
        w.set(k, v);
    }
    Ok(w)
}

fn save(dir: &Path, name: &str, bytes: &[u8]) -> Result<()> {
    std::fs::create_dir_all(dir)?;
    std::fs::write(dir.join(name), bytes).with_context(|| format!("{}", dir.display()))
}

/// Every value type and three tensors (the reader tests' fixture).
fn all_types() -> Result<Vec<u8>> {
    let mut w = GgufWriter::new();
    let vals = [
        ("t.u8", Value::U8(250)),
        ("t.i8", Value::I8(-5)),
        ("t.u16", Value::U16(65000)),
        ("t.i16", Value::I16(-30000)),
        ("t.u32", Value::U32(4_000_000_000)),
        ("t.i32", Value::I32(-2_000_000_000)),
        ("t.f32", Value::F32(1.5e-6)),
        ("t.bool", Value::Bool(true)),
        ("t.string", Value::String("héllo ▁wörld".into())),
        ("t.u64", Value::U64(u64::MAX - 1)),
        ("t.i64", Value::I64(i64::MIN + 1)),
        ("t.f64", Value::F64(-2.25)),
    ];
    for (k, v) in vals {
        w.set(k, v);
    }
    w.add_tensor(
        "a",
        GgmlType::F32,
        &[8, 4],
        (0..128).map(|i| i as u8).collect(),
    )?;
    w.add_tensor("b", GgmlType::Q8_0, &[64, 2], vec![7u8; 4 * 34])?;
    w.add_tensor("c", GgmlType::Q4_K, &[256], vec![3u8; 144])?;
    Ok(w.to_bytes()?)
}

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let (models, corpus) = match args.as_slice() {
        [_, m, c] => (Path::new(m), Path::new(c)),
        _ => anyhow::bail!("usage: fuzz_seeds MODELS_DIR CORPUS_DIR"),
    };
    let gemma = GgufFile::open(models.join("gemma-3-270m-q4_k_m.gguf"))?;
    let qwen = GgufFile::open(models.join("qwen2.5-coder-0.5b-instruct-q4_k_m.gguf"))?;

    // gguf: the fixture, each real tokenizer alone, tiny synthetic models carrying one
    let dir = corpus.join("gguf");
    let fixture = all_types()?;
    save(&dir, "all-types.gguf", &fixture)?;
    // the reader tests' failure modes (src/gguf/tests.rs), on the fixture: header fields
    // (magic, version, tensor and key counts), the first key's length, truncations
    let patched = |at: usize, bytes: &[u8]| {
        let mut b = fixture.clone();
        b[at..at + bytes.len()].copy_from_slice(bytes);
        b
    };
    for (name, b) in [
        ("bad-magic", patched(0, b"GGUX")),
        ("version-1", patched(4, &1u32.to_le_bytes())),
        ("tensors-max", patched(8, &u64::MAX.to_le_bytes())),
        ("keys-2e40", patched(16, &(1u64 << 40).to_le_bytes())),
        ("key-length-max", patched(24, &u64::MAX.to_le_bytes())),
        ("header-only", fixture[..24].to_vec()),
        ("half", fixture[..fixture.len() / 2].to_vec()),
    ] {
        save(&dir, &format!("malformed-{name}.gguf"), &b)?;
    }
    let tmp = tempfile::tempdir()?;
    for (tk_name, file, arches) in [
        (
            "gemma",
            &gemma,
            &["gemma3-270m", "llama-3.2-1b", "gemma-2-2b"][..],
        ),
        (
            "qwen",
            &qwen,
            &["qwen2.5-0.5b", "qwen3-0.6b", "phi-3.5-mini", "mistral-7b"][..],
        ),
    ] {
        let tk = small_tokenizer(file.metadata(), 300)?;
        let bytes = tk.to_bytes()?;
        save(&dir, &format!("tokenizer-{tk_name}.gguf"), &bytes)?;
        let tk_md = GgufFile::from_bytes("<seed>", bytes)?;
        tokenfab::tokenizer::Tokenizer::from_metadata(tk_md.metadata())
            .with_context(|| format!("the cut {tk_name} tokenizer must still build"))?;
        for name in arches {
            // rows of 64 (q8_0 blocks of 32); k-quant blocks are in the all-types fixture,
            // whole k-quant models (rows of 256) made inputs too big to mutate quickly
            let dtype = GgmlType::Q8_0;
            let mut p = *preset(name).context("preset")?;
            (
                p.n_embd,
                p.n_layer,
                p.n_head,
                p.n_head_kv,
                p.head_dim,
                p.n_ff,
            ) = (64, 1, 2, 1, 32, 64);
            // one matrix for embeddings and output: under the 64 KiB the gguf target mutates
            p.tied = true;
            let out = tmp.path().join("m.gguf");
            write_with_tokenizer(&p, dtype, &out, 1, Some(tk_md.metadata()), &mut |_, _| {})?;
            let b = std::fs::read(&out)?;
            tokenfab::model::Config::from_gguf(&GgufFile::from_bytes("<seed>", b.clone())?)
                .with_context(|| format!("seed {name} {dtype} must configure"))?;
            save(&dir, &format!("{name}-{dtype}-{tk_name}.gguf"), &b)?;
        }
    }

    // tokenize: prose, code, markup, odd bytes
    let dir = corpus.join("tokenize");
    for (i, t) in [
        "Once upon a time, there was a little fox.",
        "def fibonacci(n):\n    if n < 2:\n        return n\n\treturn fibonacci(n-1)+fibonacci(n-2)\n",
        "<start_of_turn>user\nhi<end_of_turn>\n<start_of_turn>model\n",
        "<|im_start|>system\nYou are helpful.<|im_end|>\n<|im_start|>user\n",
        "ünïcödé 日本語 🙂👍🏽 \u{200d} \r\n\r\n   trailing   ",
        "1234567890 3.14159 0x1F <0x0A> ▁▁",
    ]
    .iter()
    .enumerate()
    {
        save(&dir, &format!("text-{i}"), t.as_bytes())?;
    }
    save(
        &dir,
        "bytes",
        &[0xff, 0xfe, 0, 1, 2, 0x80, 0xc3, 0x28, 10, 0xf0, 0x9f],
    )?;

    // chat templates: the real ones and a few Jinja shapes, then messages
    let dir = corpus.join("chat_template");
    let msgs = "system\u{1}Be brief.\u{1}user\u{1}hi\u{1}assistant\u{1}hello\u{1}user\u{1}again";
    let qwen_t = qwen.metadata().get_str("tokenizer.chat_template")?;
    let gemma_t =
        tokenfab::tokenizer::chat::builtin_template("gemma3").context("gemma template")?;
    for (name, t) in [
        ("qwen", qwen_t),
        ("gemma", gemma_t),
        ("loop", "{% for m in messages %}{{ loop.index }}{{ m.role | upper }}: {{ m.content }}\n{% endfor %}"),
        ("macro", "{% macro f(n) %}{% if n > 0 %}{{ f(n - 1) }}{{ n }}{% endif %}{% endmacro %}{{ f(5) }}"),
        ("ns", "{% set ns = namespace(x=0) %}{% for i in range(10) %}{% set ns.x = ns.x + i %}{% endfor %}{{ ns.x }}{{ bos_token }}{{ eos_token }}"),
        ("raise", "{% if messages[0].role != 'user' %}{{ raise_exception('first must be user') }}{% endif %}"),
    ] {
        save(&dir, name, format!("{t}\0{msgs}").as_bytes())?;
    }

    // tables: 0 = prices, 1 = energy devices
    let dir = corpus.join("tables");
    let mut p = vec![0u8];
    p.extend_from_slice(include_bytes!("../src/cost/prices.toml"));
    save(&dir, "prices.toml", &p)?;
    let mut d = vec![1u8];
    d.extend_from_slice(include_bytes!("../src/telemetry/energy/devices.toml"));
    save(&dir, "devices.toml", &d)?;

    // bench json: an array and JSON lines
    let dir = corpus.join("bench_json");
    save(
        &dir,
        "bench.json",
        include_bytes!("../tests/data/cost/bench.json"),
    )?;
    save(
        &dir,
        "bench-epyc.json",
        include_bytes!("../docs/bench-gemma-270m-epyc-2t.json"),
    )?;
    save(
        &dir,
        "speculative.json",
        include_bytes!("../docs/speculative/tokenfab-lookup-adaptive.json"),
    )?;

    // server requests
    let dir = corpus.join("server_request");
    for (i, r) in [
        r#"{"model":"m","messages":[{"role":"user","content":"hi"}],"max_tokens":4}"#,
        r#"{"messages":[{"role":"system","content":"x"},{"role":"user","content":[{"type":"text","text":"hi"}]}],"stream":true,"stream_options":{"include_usage":true},"temperature":0.7,"top_p":0.9,"top_k":40,"min_p":0.05,"seed":1,"stop":["\n"],"logprobs":true,"top_logprobs":3}"#,
        r#"{"prompt":"Once upon a time","max_tokens":16,"echo":true,"logprobs":2,"presence_penalty":0.5,"frequency_penalty":0.5,"repeat_penalty":1.1}"#,
        r#"{"prompt":[1,2,3,4],"max_completion_tokens":8,"max_energy_j":5.0,"max_cost_usd":0.001,"n":1,"user":"u"}"#,
        r#"{"prompt":["a","b"],"response_format":{"type":"text"},"suffix":null}"#,
    ]
    .iter()
    .enumerate()
    {
        save(&dir, &format!("request-{i}.json"), r.as_bytes())?;
    }
    Ok(())
}

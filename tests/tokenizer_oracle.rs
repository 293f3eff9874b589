//! Tokenizers built from GGUF metadata reproduce llama.cpp's ids for every oracle string, on
//! both real models, and stream text back without splitting characters.

mod common;
use tokenfab::gguf::GgufFile;
use tokenfab::tokenizer::Tokenizer;

/// A chat_template fuzz input (template, NUL, role/content pairs split by \x01).
fn fuzz_input(name: &str) -> (String, Vec<tokenfab::tokenizer::chat::Message>) {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fuzz/regressions")
        .join(name);
    let text = String::from_utf8_lossy(&std::fs::read(path).unwrap()).into_owned();
    let (source, rest) = text.split_once('\0').unwrap_or((&text, "user\u{1}hello"));
    let parts: Vec<&str> = rest.split('\u{1}').collect();
    let msgs = parts
        .chunks(2)
        .map(|c| tokenfab::tokenizer::chat::Message::new(c[0], c.get(1).copied().unwrap_or("")))
        .collect();
    (source.to_string(), msgs)
}

fn load(key: &str) -> Tokenizer {
    let f = GgufFile::open(common::model_for(key)).unwrap();
    Tokenizer::from_metadata(f.metadata()).unwrap()
}

#[test]
fn ids_should_match_llama_cpp_for_every_oracle_string() {
    let oracle = common::oracle("tokenizer_public.json");
    let greedy = common::oracle("greedy_public.json");
    for (key, cases) in oracle.as_object().unwrap() {
        let tk = load(key);
        let mut n = 0;
        for case in cases.as_array().unwrap() {
            let text = case["text"].as_str().unwrap();
            assert_eq!(
                tk.encode(text, true).unwrap(),
                common::ids(&case["ids"]),
                "{key}: {text:?}"
            );
            n += 1;
        }
        // the greedy oracle's prompts are tokenized by llama.cpp too
        for case in greedy[key].as_array().unwrap() {
            let text = case["prompt"].as_str().unwrap();
            assert_eq!(
                tk.encode(text, true).unwrap(),
                common::ids(&case["prompt_ids"]),
                "{key}: {text:?}"
            );
            n += 1;
        }
        assert!(n >= 8, "{key}: only {n} oracle strings");
    }
}

#[test]
fn special_tokens_are_recognised_and_bos_follows_metadata() {
    let gemma = load("gemma");
    assert!(gemma.adds_bos());
    let ids = gemma
        .encode("<start_of_turn>user\nhi<end_of_turn>", true)
        .unwrap();
    assert_eq!(ids[0], 2, "BOS");
    assert_eq!(ids[1], 105, "<start_of_turn> is one token");
    assert!(ids.contains(&106), "<end_of_turn> is one token: {ids:?}");
    assert!(gemma.is_eog(1) && gemma.is_eog(106));
    let qwen = load("qwen");
    assert!(!qwen.adds_bos());
    let ids = qwen.encode("<|im_start|>user\nhi<|im_end|>", true).unwrap();
    assert_eq!(ids[0], 151644);
    assert_eq!(*ids.last().unwrap(), 151645);
    assert!(qwen.is_eog(151645) && qwen.is_eog(151643));
    // without special handling, no BOS
    assert_eq!(
        gemma.encode("Hello world", false).unwrap(),
        vec![9259, 1902]
    );
}

#[test]
fn streaming_never_splits_a_character() {
    for key in ["gemma", "qwen"] {
        let tk = load(key);
        let text = "naïve café 東京 🤖 — ok\n\tdone  ";
        let ids = tk.encode(text, false).unwrap();
        let mut stream = tk.stream();
        let mut out = String::new();
        for &id in &ids {
            let chunk = stream.push(id).unwrap();
            assert!(!chunk.contains('\u{FFFD}'), "{key}: broken chunk {chunk:?}");
            out.push_str(&chunk);
        }
        out.push_str(&stream.finish().unwrap());
        assert_eq!(out, text, "{key}");
        assert_eq!(tk.decode(&ids).unwrap(), text, "{key}");
    }
}

#[test]
fn qwen_chat_template_renders_with_minijinja() {
    use tokenfab::tokenizer::chat::{apply, Message};
    let qwen = load("qwen");
    let s = apply(
        &qwen,
        &[Message::new("user", "Write hello world in C")],
        true,
    )
    .unwrap();
    assert_eq!(
        s,
        "<|im_start|>system\nYou are Qwen, created by Alibaba Cloud. You are a helpful assistant.<|im_end|>\n<|im_start|>user\nWrite hello world in C<|im_end|>\n<|im_start|>assistant\n"
    );
    // Gemma 3 270M's GGUF has no template: Gemma's published one is built in
    let gemma = load("gemma");
    assert!(gemma.chat_template_is_builtin() && !qwen.chat_template_is_builtin());
    let s = apply(
        &gemma,
        &[
            Message::new("system", "Be brief."),
            Message::new("user", " Hi "),
            Message::new("assistant", "Hello."),
            Message::new("user", "Bye"),
        ],
        true,
    )
    .unwrap();
    assert_eq!(
        s,
        "<bos><start_of_turn>user\nBe brief.\n\nHi<end_of_turn>\n<start_of_turn>model\nHello.<end_of_turn>\n<start_of_turn>user\nBye<end_of_turn>\n<start_of_turn>model\n"
    );
    let e = apply(
        &gemma,
        &[Message::new("user", "a"), Message::new("user", "b")],
        true,
    )
    .unwrap_err()
    .to_string();
    assert!(e.contains("must alternate"), "{e}");
}

#[test]
fn spm_model_should_match_the_derived_merges_bpe() {
    // llama.cpp's merge algorithm (what tokenfab uses for "llama" vocabularies) and a
    // tokenizers BPE over merges derived from the scores (../shared/reference/TOKENIZERS.md)
    // must agree id for id on a whole document and on awkward strings.
    let f = GgufFile::open(common::model_for("gemma")).unwrap();
    let ours = Tokenizer::from_metadata(f.metadata()).unwrap();
    let bpe = tokenfab::tokenizer::spm::build_derived_bpe(f.metadata()).unwrap();
    let eval = common::eval_text();
    let mut texts: Vec<String> = eval.split("\n\n").map(str::to_string).collect();
    texts.push(eval.clone());
    for s in [
        "naïve café 東京 🤖 — ok",
        "   leading and  double  spaces\t\ttabs\n\n\nnewlines",
        "<start_of_turn>user\nhi<end_of_turn>\n<start_of_turn>model\n",
        "https://example.com/a?b=c&d=e#f 1234567890 3.14159",
        "Ünïcödé ümläuts, Ελληνικά, русский, العربية, हिन्दी, 😀😃😄",
        "\u{0}\u{1}\u{7f} control chars and a lone surrogate-free \u{FFFD}",
    ] {
        texts.push(s.to_string());
    }
    for t in &texts {
        let a = ours.encode(t, false).unwrap();
        let b = bpe
            .encode_fast(t.as_str(), false)
            .unwrap()
            .get_ids()
            .to_vec();
        assert_eq!(a, b, "{t:?}");
    }
    assert!(texts.len() > 50);
}

/// Found by `scripts/fuzz.sh run chat_template` (the fuzz target's input format: template,
/// NUL, then role/content pairs split by \x01): minijinja's error excerpt underflowed on this
/// template's error span and panicked — in builds with debug assertions (the fuzz build, a
/// plain `cargo test`), where minijinja keeps excerpts. The error must come back as an error.
#[test]
fn fuzz_regression_template_error_span_is_an_error_not_a_panic() {
    use tokenfab::tokenizer::chat::render;
    let qwen = load("qwen");
    let (source, msgs) = fuzz_input("chat_template-span.txt");
    let e = render(&source, &qwen, &msgs, true).unwrap_err().to_string();
    assert!(
        e.contains("cannot unpack") && e.contains("(in chat:1)"),
        "{e}"
    );
}

/// Found by `scripts/fuzz.sh run chat_template` as a timeout (over 10 s under the fuzzer):
/// recursive macros whose every call renders text. It must end, as an error or a result,
/// within the fuel budget's time.
#[test]
fn fuzz_regression_slow_recursive_macro_ends_quickly() {
    use tokenfab::tokenizer::chat::render;
    let qwen = load("qwen");
    for name in [
        "chat_template-slow-macro.txt",
        "chat_template-slow-macro-2.txt",
    ] {
        let (source, msgs) = fuzz_input(name);
        let t0 = std::time::Instant::now();
        let r = render(&source, &qwen, &msgs, true);
        let secs = t0.elapsed().as_secs_f64();
        eprintln!("{name}: {secs:.3} s: {:?}", r.as_ref().map(|s| s.len()));
        assert!(secs < 2.0, "{secs} s");
        // it rendered 6 MB under the old flat 16 MB cap and fuel of 1e6; now it runs out of
        // fuel (1e5) before it reaches the cap (1 MB past its messages)
        let e = r.unwrap_err().to_string();
        assert!(e.contains("ran out of fuel"), "{e}");
    }
}

/// Found by `scripts/fuzz.sh run chat_template` as a stack overflow (an abort: the server
/// would die): `{% set ns.x = ns %}{{ ns.x }}` — minijinja prints a namespace that contains
/// itself forever. Templates that could build one are refused; real ones still render.
#[test]
fn fuzz_regression_self_containing_namespace_is_refused() {
    use tokenfab::tokenizer::chat::{render, Message};
    let qwen = load("qwen");
    let (source, msgs) = fuzz_input("chat_template-self-namespace.txt");
    let e = render(&source, &qwen, &msgs, true).unwrap_err().to_string();
    assert!(e.contains("the namespace `ns` is used as a value"), "{e}");
    let msgs = [Message::new("user", "hi")];
    for bad in [
        "{% set ns = namespace() %}{% set ns.x = [ns] %}{{ ns.x }}",
        "{% set l = [namespace()] %}{% for n in l %}{% set n.x = l %}{% endfor %}{{ l }}",
        "{% set a = namespace() %}{% set b = a %}{% set a.x = b %}{{ a.x }}",
        "{% macro f(n) %}{% set n.x = n %}{% endmacro %}{% set ns = namespace() %}{{ f(ns) }}",
    ] {
        let e = render(bad, &qwen, &msgs, true).unwrap_err().to_string();
        assert!(e.contains("NAME.attribute"), "{bad}: {e}");
    }
    let ok = "{% set ns = namespace(x=0) %}{% for i in range(3) %}{% set ns.x = ns.x + i %}\
              {% endfor %}{{ ns.x }}";
    assert_eq!(render(ok, &qwen, &msgs, true).unwrap(), "3");
}

/// Found by `scripts/fuzz.sh run tokenize` (`fuzz/regressions/tokenize-nfc.bin`): Qwen's BPE
/// pipeline normalizes to NFC (as its tokenizer.json says, ../shared/reference/TOKENIZERS.md),
/// so combining marks out of canonical order (U+031A, class 232, before U+0B4D, class 9) come
/// back reordered, and invalid UTF-8 as U+FFFD. Gemma's SentencePiece keeps the text as is.
#[test]
fn fuzz_regression_bpe_round_trips_to_nfc() {
    let bytes = std::fs::read(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/regressions/tokenize-nfc.bin"),
    )
    .unwrap();
    let text = String::from_utf8_lossy(&bytes);
    assert_eq!(text, "\u{fffd}\u{fffd}\u{31a}\u{b4d}\u{fffd}");
    let qwen = load("qwen");
    let back = qwen.decode(&qwen.encode(&text, false).unwrap()).unwrap();
    assert_eq!(back, "\u{fffd}\u{fffd}\u{b4d}\u{31a}\u{fffd}");
    let gemma = load("gemma");
    let back = gemma.decode(&gemma.encode(&text, false).unwrap()).unwrap();
    assert_eq!(back.trim_start_matches(' '), text);
}

/// Chat templates are untrusted code: a runaway loop ends on the fuel budget, a huge output on
/// the output cap, both as errors and quickly; a long real conversation still renders.
#[test]
fn hostile_chat_templates_end_with_an_error_not_a_hang() {
    use tokenfab::tokenizer::chat::{apply, render, Message};
    let qwen = load("qwen");
    let msgs = [Message::new("user", "hi")];
    let t0 = std::time::Instant::now();
    let spin = "{% for i in range(100000) %}{% for j in range(100000) %}{% endfor %}{% endfor %}";
    let e = render(spin, &qwen, &msgs, true).unwrap_err().to_string();
    assert!(e.contains("fuel"), "{e}");
    let flood = "{% for i in range(100000) %}{{ 'x' * 1000000 }}{% endfor %}";
    let e = render(flood, &qwen, &msgs, true).unwrap_err().to_string();
    // 1 MB plus twice "user" + "hi"
    assert!(e.contains("exceeds 1048588 bytes"), "{e}");
    let deep = "{% macro f(n) %}{{ f(n + 1) }}{% endmacro %}{{ f(0) }}";
    let e = render(deep, &qwen, &msgs, true).unwrap_err().to_string();
    assert!(e.contains("recursion"), "{e}");
    assert!(t0.elapsed().as_secs() < 10, "{:?}", t0.elapsed());
    // no filesystem: an include has nothing to load from
    let e = render("{% include '/etc/passwd' %}", &qwen, &msgs, true)
        .unwrap_err()
        .to_string();
    assert!(e.contains("not found"), "{e}");
    // 2000 messages through Qwen's real template fit the budget
    let long: Vec<Message> = (0..2000)
        .map(|i| Message::new(if i % 2 == 0 { "user" } else { "assistant" }, "some words"))
        .collect();
    let s = apply(&qwen, &long, true).unwrap();
    assert_eq!(s.matches("<|im_start|>").count(), 2002);
    // through the engine, a failing template names the model file
    use tokenfab::engine::{Engine, EngineOptions};
    let opts = EngineOptions {
        backend: tokenfab::backend::BackendSpec::cpu(1),
        ..Default::default()
    };
    let engine = Engine::load(&common::model_for("gemma"), &opts).unwrap();
    let two_users = [Message::new("user", "a"), Message::new("user", "b")];
    let e = engine
        .chat_prompt(&two_users, true)
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("gemma-3-270m-q4_k_m.gguf: ") && e.contains("must alternate"),
        "{e}"
    );
}

/// Templates stitched at random from Jinja pieces (loops, conditionals, filters, macros,
/// recursion, big repetitions, unbalanced tags, pycompat methods): 5 000 of them render or fail
/// with an error, none panics or runs away (the whole run is time-bounded).
#[test]
fn random_chat_templates_render_or_fail_cleanly() {
    use rand::{Rng, SeedableRng};
    use tokenfab::tokenizer::chat::{render, Message};
    let qwen = load("qwen");
    let msgs = [
        Message::new("system", "Be brief."),
        Message::new("user", "Hi é🙂"),
        Message::new("assistant", "Hello."),
    ];
    let pieces = [
        "{% for m in messages %}",
        "{% endfor %}",
        "{{ m.content }}",
        "{{ m['role'] | upper }}",
        "{% if add_generation_prompt %}",
        "{% else %}",
        "{% endif %}",
        "{{ bos_token }}",
        "{% set x = (x or 0) + 1 %}",
        "{{ range(100000) | list | length }}",
        "{{ 'ab' * 100000 }}",
        "{{ raise_exception('no') }}",
        "{{ m.content.split(' ') | join('-') }}",
        "{{ messages | tojson }}",
        "{% macro f(n) %}{{ f(n + 1) }}{% endmacro %}",
        "{{ f(0) }}",
        "{% for i in range(1000) %}{% for j in range(1000) %}",
        "{% endfor %}{% endfor %}",
        "{{ messages[99].content }}",
        "{{ 1 / 0 }}",
        "{{ m.content.strip().startswith('H') }}",
        "{{ (messages | selectattr('role', 'equalto', 'user') | list)[0].content }}",
        "{%",
        "}}",
        "{{",
        "%}",
        "text\n",
        "{{ x.y.z }}",
        "{% include 'other' %}",
        "{{ loop.index }}",
    ];
    let mut rng = rand::rngs::StdRng::seed_from_u64(0xc4a7);
    let t0 = std::time::Instant::now();
    let (mut ok, mut failed) = (0, 0);
    for _ in 0..5000 {
        let n = rng.random_range(1..8);
        let src: String = (0..n)
            .map(|_| pieces[rng.random_range(0..pieces.len())])
            .collect();
        match render(&src, &qwen, &msgs, true) {
            Ok(out) => {
                assert!(out.len() <= tokenfab::tokenizer::chat::output_cap(&msgs));
                ok += 1;
            }
            Err(e) => {
                assert!(!e.to_string().is_empty());
                failed += 1;
            }
        }
    }
    eprintln!("{ok} rendered, {failed} failed in {:?}", t0.elapsed());
    assert!(ok > 100 && failed > 100, "{ok} rendered, {failed} failed");
    assert!(t0.elapsed().as_secs() < 60, "{:?}", t0.elapsed());
}

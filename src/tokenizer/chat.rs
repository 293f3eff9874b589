//! Chat templates: renders `tokenizer.chat_template` (a Jinja template stored in the GGUF)
//! with `minijinja`, the way Hugging Face's `apply_chat_template` does.
//!
//! A template comes from whoever made the model file, so it is run as untrusted code with
//! limits: minijinja has no filesystem or environment access (no loader is set, no such
//! functions are added), its own caps (recursion depth 500, `range` ≤ 100 000 items, a
//! repeated string ≤ 100 MB), and here a fuel budget ([`FUEL_BASE`] + [`FUEL_PER_MESSAGE`]
//! per message: a loop that runs away ends with an error, not a hang) and an output cap
//! ([`output_cap`]: what the messages bring, twice, plus 1 MB), and templates that could store
//! a namespace inside a namespace are refused before they run (`check_namespaces`). A template
//! that fails or exceeds a limit is an error.

use super::{Tokenizer, TokenizerError};
use serde::Serialize;

/// One message of a conversation.
#[derive(Clone, Debug, Serialize)]
pub struct Message {
    pub role: String,
    pub content: String,
}

impl Message {
    pub fn new(role: &str, content: &str) -> Self {
        Message {
            role: role.to_string(),
            content: content.to_string(),
        }
    }
}

/// Gemma's published chat template (Gemma 2 and 3 instruction-tuned models), for Gemma files
/// converted without `tokenizer.chat_template`: turns `<start_of_turn>user|model` …
/// `<end_of_turn>`, a system message folded into the first user turn.
pub const GEMMA_TEMPLATE: &str = "{{ bos_token }}\
{%- if messages[0]['role'] == 'system' -%}\
{%- set first_user_prefix = messages[0]['content'] + '\n\n' -%}\
{%- set loop_messages = messages[1:] -%}\
{%- else -%}\
{%- set first_user_prefix = '' -%}\
{%- set loop_messages = messages -%}\
{%- endif -%}\
{%- for message in loop_messages -%}\
{%- if (message['role'] == 'user') != (loop.index0 % 2 == 0) -%}\
{{- raise_exception('Conversation roles must alternate user/assistant/user/assistant/...') -}}\
{%- endif -%}\
{%- if message['role'] == 'assistant' -%}{%- set role = 'model' -%}\
{%- else -%}{%- set role = message['role'] -%}{%- endif -%}\
{{- '<start_of_turn>' + role + '\n' + (first_user_prefix if loop.first else '') -}}\
{{- message['content'] | trim -}}\
{{- '<end_of_turn>\n' -}}\
{%- endfor -%}\
{%- if add_generation_prompt -%}{{- '<start_of_turn>model\n' -}}{%- endif -%}";

/// The published template of an architecture (`general.architecture`), for files that lack
/// one: Gemma's; none for the others (their files carry theirs).
pub fn builtin_template(arch: &str) -> Option<&'static str> {
    arch.starts_with("gemma").then_some(GEMMA_TEMPLATE)
}

/// Renders the model's chat template for `messages`, ending with the assistant's turn opened
/// when `add_generation_prompt` is set.
pub fn apply(
    tokenizer: &Tokenizer,
    messages: &[Message],
    add_generation_prompt: bool,
) -> Result<String, TokenizerError> {
    let source = tokenizer.chat_template().ok_or_else(|| {
        TokenizerError::Template(
            "this model has no chat template (tokenizer.chat_template is not in its metadata)"
                .into(),
        )
    })?;
    render(source, tokenizer, messages, add_generation_prompt)
}

/// Fuel (minijinja instructions) every rendering may spend, plus [`FUEL_PER_MESSAGE`] per
/// message: the real templates spend a few hundred per message. 100 000 (it was 1 000 000)
/// since fuzzing found recursive macros that spent all of it, 0.03 s in a release build but
/// 3 s under the fuzzer's sanitizer: a hostile template runs on every request.
pub const FUEL_BASE: u64 = 100_000;
pub const FUEL_PER_MESSAGE: u64 = 10_000;
/// What a template may add to its messages: 1 MB (a real template adds a few dozen bytes per
/// message; 128k tokens of context are ~0.5 MB of text).
pub const OUTPUT_BASE: usize = 1 << 20;

/// Most bytes a rendered prompt of `messages` may have: [`OUTPUT_BASE`] plus twice the bytes
/// of their roles and contents. Fuzzing found recursive macros that rendered 6 MB from four
/// short messages: quick here (0.03 s), but over 10 s under the fuzzer's sanitizer, with the
/// old flat 16 MB cap.
pub fn output_cap(messages: &[Message]) -> usize {
    let text: usize = messages
        .iter()
        .map(|m| m.role.len() + m.content.len())
        .sum();
    OUTPUT_BASE.saturating_add(text.saturating_mul(2))
}

/// A writer that refuses to grow past `cap` bytes (and remembers that it did).
struct Capped {
    out: Vec<u8>,
    cap: usize,
    over: bool,
}

impl std::io::Write for Capped {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        if self.out.len() + b.len() > self.cap {
            self.over = true;
            return Err(std::io::Error::other("output cap"));
        }
        self.out.extend_from_slice(b);
        Ok(b.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// An error's message and its causes, on one line. Not minijinja's `{:#}` form: its source
/// excerpt (minijinja 2.24 `debug.rs`) subtracts span columns unchecked, and a template whose
/// error span ends before it starts (found by fuzzing: `fuzz/regressions/chat_template-span.txt`)
/// made that an overflow panic in builds with debug assertions.
fn template_error(e: &minijinja::Error) -> String {
    let mut msg = e.to_string();
    let mut src = std::error::Error::source(e);
    while let Some(s) = src {
        msg.push_str(": ");
        msg.push_str(&s.to_string());
        src = s.source();
    }
    msg
}

/// Refuses templates that could store a namespace inside a namespace. minijinja's namespaces
/// are its only mutable values, and one that contains itself (`{% set ns.x = ns %}`, found by
/// fuzzing) makes minijinja recurse until the stack overflows when it is printed, compared or
/// serialized — an abort, not an error. The rule is textual and conservative: every
/// `namespace(...)` call must be the whole value of a `set NAME = ...`, and each such NAME may
/// only appear followed by `.` (reading or setting an attribute). Real templates use namespaces
/// exactly that way (`ns.found = true`, `ns.last_query_index`).
fn check_namespaces(source: &str) -> Result<(), TokenizerError> {
    use std::sync::OnceLock;
    static DECL: OnceLock<regex::Regex> = OnceLock::new();
    static CALL: OnceLock<regex::Regex> = OnceLock::new();
    let decl = DECL.get_or_init(|| {
        regex::Regex::new(r"set\s+([A-Za-z_][A-Za-z0-9_]*)\s*=\s*namespace\s*\(")
            .expect("a valid regex")
    });
    let call = CALL.get_or_init(|| regex::Regex::new(r"\bnamespace\s*\(").expect("a valid regex"));
    let refuse = |what: String| {
        Err(TokenizerError::Template(format!(
            "{what}: tokenfab only runs templates that use a namespace as NAME.attribute \
             (a namespace stored into itself makes the template engine recurse without end)"
        )))
    };
    let decls: Vec<(usize, &str)> = decl
        .captures_iter(source)
        .filter_map(|c| c.get(1).map(|m| (m.start(), m.as_str())))
        .collect();
    if call.find_iter(source).count() != decls.len() {
        return refuse(
            "`namespace(...)` used other than as `{% set NAME = namespace(...) %}`".into(),
        );
    }
    // every whole-word occurrence of a namespace's name (no regex compiled per request)
    let word = |c: char| c.is_alphanumeric() || c == '_';
    for &(_, name) in &decls {
        for (at, _) in source.match_indices(name) {
            let end = at + name.len();
            let whole = !source[..at].chars().next_back().is_some_and(word)
                && !source[end..].chars().next().is_some_and(word);
            if !whole {
                continue;
            }
            let declared_here = decls.iter().any(|&(d, n)| d == at && n == name);
            let attribute = source[end..].trim_start().starts_with('.');
            if !declared_here && !attribute {
                return refuse(format!("the namespace `{name}` is used as a value"));
            }
        }
    }
    Ok(())
}

/// Renders a template `source` (exposed for tests).
pub fn render(
    source: &str,
    tokenizer: &Tokenizer,
    messages: &[Message],
    add_generation_prompt: bool,
) -> Result<String, TokenizerError> {
    let mut env = minijinja::Environment::new();
    let fuel = FUEL_BASE.saturating_add(FUEL_PER_MESSAGE.saturating_mul(messages.len() as u64));
    env.set_fuel(Some(fuel));
    // minijinja keeps source excerpts for errors in builds with debug assertions only; off
    // everywhere, so every build renders (and fails) the same way (see `template_error`)
    env.set_debug(false);
    env.set_unknown_method_callback(minijinja_contrib::pycompat::unknown_method_callback);
    env.add_function(
        "raise_exception",
        |msg: String| -> Result<String, minijinja::Error> {
            Err(minijinja::Error::new(
                minijinja::ErrorKind::InvalidOperation,
                msg,
            ))
        },
    );
    let terr = |e: minijinja::Error| TokenizerError::Template(template_error(&e));
    check_namespaces(source)?;
    env.add_template("chat", source).map_err(terr)?;
    let piece = |id: Option<u32>| id.and_then(|i| tokenizer.piece(i)).unwrap_or_default();
    let ctx = minijinja::context! {
        messages => messages,
        add_generation_prompt => add_generation_prompt,
        bos_token => piece(tokenizer.bos()),
        eos_token => piece(tokenizer.eos()),
        tools => minijinja::Value::UNDEFINED,
    };
    let mut out = Capped {
        out: Vec::new(),
        cap: output_cap(messages),
        over: false,
    };
    let r = env
        .get_template("chat")
        .and_then(|t| t.render_captured_to(ctx, &mut out).map(drop));
    if out.over {
        return Err(TokenizerError::Template(format!(
            "the rendered prompt exceeds {} bytes (1 MB more than twice its messages)",
            out.cap
        )));
    }
    r.map_err(terr)?;
    String::from_utf8(out.out)
        .map_err(|e| TokenizerError::Template(format!("the rendered prompt is not UTF-8: {e}")))
}

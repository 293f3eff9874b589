//! Chat templates: renders `tokenizer.chat_template` (a Jinja template stored in the GGUF)
//! with `minijinja`, the way Hugging Face's `apply_chat_template` does.

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

/// Renders a template `source` (exposed for tests).
pub fn render(
    source: &str,
    tokenizer: &Tokenizer,
    messages: &[Message],
    add_generation_prompt: bool,
) -> Result<String, TokenizerError> {
    let mut env = minijinja::Environment::new();
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
    let terr = |e: minijinja::Error| TokenizerError::Template(format!("{e:#}"));
    env.add_template("chat", source).map_err(terr)?;
    let piece = |id: Option<u32>| id.and_then(|i| tokenizer.piece(i)).unwrap_or_default();
    let ctx = minijinja::context! {
        messages => messages,
        add_generation_prompt => add_generation_prompt,
        bos_token => piece(tokenizer.bos()),
        eos_token => piece(tokenizer.eos()),
        tools => minijinja::Value::UNDEFINED,
    };
    env.get_template("chat")
        .and_then(|t| t.render(ctx))
        .map_err(terr)
}

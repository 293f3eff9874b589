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

//! Engine handles: open and close a model, what it is, and text ↔ tokens (plain and through
//! the chat template). Tokenizing uses the engine's shared tokenizer, not the engine's lock,
//! so it runs while another thread generates.

use super::handles::Registry;
use super::types::{read_in, tf_engine_info, tf_engine_options, tf_message, write_out};
use super::{copy_out, guard, slice_arg, str_arg, tf_status, Error, Result};
use super::{TF_ERR_ARGUMENT, TF_ERR_INTERNAL};
use crate::backend::{BackendKind, BackendSpec};
use crate::engine::{Engine, EngineOptions, Pricer};
use crate::model::LoadOptions;
use crate::tokenizer::chat::Message;
use crate::tokenizer::Tokenizer;
use std::ffi::{c_char, CString};
use std::path::Path;
use std::sync::{Arc, Mutex, MutexGuard};

/// An open model, as a C caller holds it.
pub struct tf_engine {
    _opaque: [u8; 0],
}

/// What an engine handle refers to: the engine (one step at a time) and what is used
/// without its lock.
pub(crate) struct EngineHandle {
    engine: Mutex<Engine>,
    pub(crate) tokenizer: Arc<Tokenizer>,
    pub(crate) pricer: Pricer,
    pub(crate) ctx: usize,
    name: CString,
    backend: CString,
    pub(crate) energy_source: CString,
}

impl EngineHandle {
    /// The engine, for one step.
    pub(crate) fn lock(&self) -> Result<MutexGuard<'_, Engine>> {
        self.engine.lock().map_err(|_| {
            Error::new(
                TF_ERR_INTERNAL,
                "the engine is unusable: an earlier call failed inside it (a bug in tokenfab)",
            )
        })
    }

    /// `ids` checked against the vocabulary.
    pub(crate) fn check_ids(&self, ids: &[u32], what: &str) -> Result<()> {
        let n = self.tokenizer.vocab_size();
        match ids.iter().position(|&t| t as usize >= n) {
            Some(i) => Err(Error::new(
                TF_ERR_ARGUMENT,
                format!(
                    "{what}[{i}] is {}, not a token id (the vocabulary has {n})",
                    ids[i]
                ),
            )),
            None => Ok(()),
        }
    }
}

pub(crate) static ENGINES: Registry<EngineHandle> = Registry::new("engine");

fn c_string(s: String) -> CString {
    CString::new(s.replace('\0', "\\0")).unwrap_or_default()
}

fn engine_options(o: &tf_engine_options) -> Result<EngineOptions> {
    // SAFETY: `backend` is NULL or a C string alive during the call (the options' contract).
    let kind = match o.backend.is_null() {
        true => BackendKind::Auto,
        false => unsafe { str_arg(o.backend, "tf_engine_options.backend") }?
            .parse::<BackendKind>()
            .map_err(|e| Error::new(TF_ERR_ARGUMENT, e.to_string()))?,
    };
    if o.batch == 0 {
        return Err(Error::new(
            TF_ERR_ARGUMENT,
            "tf_engine_options.batch must be at least 1",
        ));
    }
    if !o.usd_per_kwh.is_finite() {
        return Err(Error::new(
            TF_ERR_ARGUMENT,
            "tf_engine_options.usd_per_kwh is not a number",
        ));
    }
    let threads = o.threads as usize;
    let mut opts = EngineOptions {
        backend: BackendSpec {
            kind,
            threads,
            ..BackendSpec::default()
        },
        load: LoadOptions {
            ctx: o.ctx as usize,
            batch: o.batch as usize,
            logit_rows: 1,
            n_seq: o.max_sequences.max(1) as usize,
            // one sequence has no batch to depend on (and then answers as `tokenfab run`
            // does, token for token); several keep every token on the same kernels
            batch_invariant: o.max_sequences > 1,
            ..LoadOptions::default()
        },
        threads,
        step_tokens: o.batch as usize,
        ..EngineOptions::default()
    };
    if o.usd_per_kwh >= 0.0 {
        opts.usd_per_kwh = o.usd_per_kwh;
    }
    Ok(opts)
}

#[no_mangle]
/// Opens the GGUF model at `path` (UTF-8) with `opts` (NULL = the defaults) and stores its
/// handle in `*engine`. Loading takes a while (the tokenizer is built, the weights mapped or
/// uploaded). Errors: `TF_ERR_MODEL` for a missing, unreadable, malformed or unsupported
/// file, `TF_ERR_DEVICE` when the backend cannot start, `TF_ERR_ARGUMENT` for bad options.
///
/// # Safety
/// `path` must be NULL or a NUL-terminated string; `opts` NULL or a `tf_engine_options` of its
/// `struct_size`; `engine` NULL or writable.
pub unsafe extern "C" fn tf_engine_open(
    path: *const c_char,
    opts: *const tf_engine_options,
    engine: *mut *mut tf_engine,
) -> tf_status {
    guard(|| {
        super::non_null(engine, "engine (the out-parameter)")?;
        // SAFETY: the contract above.
        let path = unsafe { str_arg(path, "path") }?;
        // SAFETY: the contract above.
        let opts = engine_options(&unsafe { read_in(opts) }?)?;
        let e = Engine::load(Path::new(path), &opts)?;
        let handle = EngineHandle {
            tokenizer: Arc::clone(e.tokenizer()),
            pricer: e.pricer(),
            ctx: e.ctx(),
            name: c_string(e.name()),
            backend: c_string(e.backend_name()),
            energy_source: c_string(e.energy_source().to_string()),
            engine: Mutex::new(e),
        };
        // SAFETY: checked not NULL; writable by the contract.
        unsafe { *engine = ENGINES.insert(Arc::new(handle)) };
        Ok(())
    })
}

#[no_mangle]
/// Closes an engine handle. Its sequences stay usable until they are freed; the model's memory
/// is released when the engine and all its sequences are closed and no call is using them.
///
/// # Safety
/// Any pointer value may be passed: one that is not an open engine is `TF_ERR_HANDLE`.
pub unsafe extern "C" fn tf_engine_close(engine: *mut tf_engine) -> tf_status {
    guard(|| ENGINES.remove(engine).map(drop))
}

#[no_mangle]
/// What the engine is: context, vocabulary, special tokens, name, backend, energy source.
///
/// # Safety
/// `info` must be NULL or point to a `tf_engine_info` whose `struct_size` is set.
pub unsafe extern "C" fn tf_engine_info_get(
    engine: *const tf_engine,
    info: *mut tf_engine_info,
) -> tf_status {
    guard(|| {
        let h = ENGINES.get(engine)?;
        let t = &h.tokenizer;
        let v = tf_engine_info {
            ctx: h.ctx as u32,
            vocab_size: t.vocab_size() as u32,
            bos: t.bos().map_or(-1, i64::from),
            eos: t.eos().map_or(-1, i64::from),
            name: h.name.as_ptr(),
            backend: h.backend.as_ptr(),
            energy_source: h.energy_source.as_ptr(),
            ..tf_engine_info::default()
        };
        // SAFETY: the contract above.
        unsafe { write_out(info, &v, "info") }
    })
}

#[no_mangle]
/// Token ids of `text` (UTF-8), with the model's BOS first when `add_bos` is non-zero and the
/// model uses one. Writes at most `cap` ids to `ids` and the count to `*n_ids`;
/// `TF_ERR_BUFFER` (with `*n_ids` = the count needed) when they do not fit — call with
/// `cap` = 0 to ask.
///
/// # Safety
/// `text` must be a NUL-terminated string; `ids` writable for `cap` ids (or NULL with `cap` =
/// 0); `n_ids` writable.
pub unsafe extern "C" fn tf_tokenize(
    engine: *const tf_engine,
    text: *const c_char,
    add_bos: i32,
    ids: *mut u32,
    cap: usize,
    n_ids: *mut usize,
) -> tf_status {
    guard(|| {
        let h = ENGINES.get(engine)?;
        // SAFETY: the contract above.
        let text = unsafe { str_arg(text, "text") }?;
        let v = h
            .tokenizer
            .encode(text, add_bos != 0)
            .map_err(|e| Error::new(TF_ERR_ARGUMENT, e.to_string()))?;
        // SAFETY: the contract above.
        unsafe { copy_out(&v, ids, cap, n_ids, false) }
    })
}

#[no_mangle]
/// The text of `n` token ids (UTF-8; special tokens such as BOS are not shown). Writes it with a
/// terminating NUL into `buf` of `cap` bytes and its length (without the NUL) to `*len`;
/// `TF_ERR_BUFFER` when `cap` < `*len` + 1.
///
/// # Safety
/// `ids` must point to `n` ids (or be NULL with `n` = 0); `buf` writable for `cap` bytes (or
/// NULL with `cap` = 0); `len` writable.
pub unsafe extern "C" fn tf_detokenize(
    engine: *const tf_engine,
    ids: *const u32,
    n: usize,
    buf: *mut c_char,
    cap: usize,
    len: *mut usize,
) -> tf_status {
    guard(|| {
        let h = ENGINES.get(engine)?;
        // SAFETY: the contract above.
        let ids = unsafe { slice_arg(ids, n, "ids") }?;
        h.check_ids(ids, "ids")?;
        let text = h
            .tokenizer
            .decode(ids)
            .map_err(|e| Error::new(TF_ERR_ARGUMENT, e.to_string()))?;
        // SAFETY: the contract above.
        unsafe { copy_out(text.as_bytes(), buf.cast::<u8>(), cap, len, true) }
    })
}

/// # Safety
/// `messages` must point to `n` messages whose strings are NUL-terminated (or be NULL with
/// `n` = 0).
unsafe fn messages_arg(messages: *const tf_message, n: usize) -> Result<Vec<Message>> {
    // SAFETY: the contract above.
    let ms = unsafe { slice_arg(messages, n, "messages") }?;
    if ms.is_empty() {
        return Err(Error::new(TF_ERR_ARGUMENT, "no messages"));
    }
    ms.iter()
        .enumerate()
        .map(|(i, m)| {
            // SAFETY: the contract above.
            let role = unsafe { str_arg(m.role, &format!("messages[{i}].role")) }?;
            // SAFETY: the contract above.
            let content = unsafe { str_arg(m.content, &format!("messages[{i}].content")) }?;
            Ok(Message::new(role, content))
        })
        .collect()
}

#[no_mangle]
/// The text of `messages` through the model's chat template (from its GGUF metadata, or the
/// built-in one for its family), the assistant's turn opened — what `tf_chat_tokenize`
/// tokenizes. Output as `tf_detokenize`'s. `TF_ERR_ARGUMENT` when the model has no template or
/// the template fails.
///
/// # Safety
/// As `tf_chat_tokenize` for `messages`; as `tf_detokenize` for `buf`, `cap`, `len`.
pub unsafe extern "C" fn tf_chat_apply(
    engine: *const tf_engine,
    messages: *const tf_message,
    n: usize,
    buf: *mut c_char,
    cap: usize,
    len: *mut usize,
) -> tf_status {
    guard(|| {
        let h = ENGINES.get(engine)?;
        // SAFETY: the contract above.
        let ms = unsafe { messages_arg(messages, n) }?;
        let text = crate::tokenizer::chat::apply(&h.tokenizer, &ms, true)
            .map_err(|e| Error::new(TF_ERR_ARGUMENT, e.to_string()))?;
        // SAFETY: the contract above.
        unsafe { copy_out(text.as_bytes(), buf.cast::<u8>(), cap, len, true) }
    })
}

#[no_mangle]
/// The prompt for `messages` as token ids: the chat template's text, with BOS when `add_bos`
/// is non-zero unless the template wrote one. Output as `tf_tokenize`'s. Passing the whole
/// conversation each turn to the same sequence reuses what its cache already holds.
///
/// # Safety
/// `messages` must point to `n` `tf_message`s with NUL-terminated strings; `ids` writable for
/// `cap` ids (or NULL with `cap` = 0); `n_ids` writable.
pub unsafe extern "C" fn tf_chat_tokenize(
    engine: *const tf_engine,
    messages: *const tf_message,
    n: usize,
    add_bos: i32,
    ids: *mut u32,
    cap: usize,
    n_ids: *mut usize,
) -> tf_status {
    guard(|| {
        let h = ENGINES.get(engine)?;
        // SAFETY: the contract above.
        let ms = unsafe { messages_arg(messages, n) }?;
        let v = crate::engine::chat_prompt(&h.tokenizer, &ms, add_bos != 0)
            .map_err(|e| Error::new(TF_ERR_ARGUMENT, e.to_string()))?;
        // SAFETY: the contract above.
        unsafe { copy_out(&v, ids, cap, n_ids, false) }
    })
}

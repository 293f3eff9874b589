//! The C ABI (`include/tokenfab.h`, generated from this module by cbindgen): what an app in C,
//! C++, Swift, C#, Python or Electron needs to run a model and read what each token cost — a
//! thin client of [`crate::engine::Engine`], like the CLI and the server.
//!
//! It owns the boundary, nothing else: opaque handles ([`handles`]), versioned plain structs
//! ([`types`]), status codes with a thread-local message, and `catch_unwind` at every entry
//! point so that no panic crosses into C and no bad input aborts the process. Loading,
//! tokenizing, chat templates, generation and pricing are the engine's ([`engine`] and
//! [`sequence`] only translate).
//!
//! Handles are ids, not addresses: an engine or sequence lives in a registry behind an `Arc`,
//! so a closed (or never opened) handle is reported as [`TF_ERR_HANDLE`] rather than read
//! after it was freed, and a handle closed on one thread while another uses it stays alive
//! until that call returns.

#![allow(non_camel_case_types)]

pub mod engine;
mod handles;
pub mod sequence;
pub mod types;

use std::cell::RefCell;
use std::ffi::{c_char, CStr, CString};
use std::panic::{catch_unwind, AssertUnwindSafe};

/// A status code: `TF_OK` or one of the `TF_ERR_*` codes; `tf_last_error` says more.
pub type tf_status = i32;

/// Success.
pub const TF_OK: tf_status = 0;
/// A pointer argument that must not be NULL was NULL.
pub const TF_ERR_NULL: tf_status = 1;
/// A string argument was not valid UTF-8.
pub const TF_ERR_UTF8: tf_status = 2;
/// The handle is closed, was never opened, or is of the wrong kind.
pub const TF_ERR_HANDLE: tf_status = 3;
/// An options or output struct's `struct_size` is not one this library knows (set it with
/// the struct's `_init` function).
pub const TF_ERR_VERSION: tf_status = 4;
/// An argument is out of range: a bad option, an empty or too long prompt, a token id outside
/// the vocabulary, a message without a chat template.
pub const TF_ERR_ARGUMENT: tf_status = 5;
/// The model file is missing, unreadable, not a GGUF file, or of an unsupported kind.
pub const TF_ERR_MODEL: tf_status = 6;
/// An output buffer is too small; the length out-parameter says how much is needed.
pub const TF_ERR_BUFFER: tf_status = 7;
/// The sequence is being used by another call (on another thread, or from its own callback).
pub const TF_ERR_BUSY: tf_status = 8;
/// The backend failed: no such device, out of memory, a device fault.
pub const TF_ERR_DEVICE: tf_status = 9;
/// A bug in tokenfab, caught at the boundary (the message says where); the engine may be
/// unusable afterwards.
pub const TF_ERR_INTERNAL: tf_status = 10;

/// The version of this ABI; a library whose ABI version differs from the header's
/// `TF_ABI_VERSION` is not compatible.
pub const TF_ABI_VERSION: u32 = 1;

/// An error at the boundary: a status code and the message [`tf_last_error`] returns.
#[derive(Debug)]
pub(crate) struct Error {
    pub code: tf_status,
    pub message: String,
}

impl Error {
    pub fn new(code: tf_status, message: impl Into<String>) -> Self {
        Error {
            code,
            message: message.into(),
        }
    }
}

impl From<crate::engine::EngineError> for Error {
    fn from(e: crate::engine::EngineError) -> Self {
        use crate::backend::BackendError;
        use crate::engine::EngineError as E;
        use crate::generate::GenerateError as G;
        use crate::model::ModelError as M;
        let code = match &e {
            E::Load { cause, .. } if matches!(**cause, M::Backend(_)) => TF_ERR_DEVICE,
            E::Open { .. } | E::Load { .. } | E::Tokenizer { .. } => TF_ERR_MODEL,
            E::Backend(BackendError::Invalid(_)) => TF_ERR_ARGUMENT,
            E::Backend(_) => TF_ERR_DEVICE,
            E::Energy(_) | E::Input(_) => TF_ERR_ARGUMENT,
            E::Generate(g) => match g.as_ref() {
                G::EmptyPrompt | G::PromptTooLong { .. } | G::Tokenizer(_) => TF_ERR_ARGUMENT,
                G::Model(M::Options(_) | M::ContextFull { .. } | M::Batch(_)) => TF_ERR_ARGUMENT,
                G::Model(M::Backend(_)) => TF_ERR_DEVICE,
                G::Model(_) => TF_ERR_MODEL,
            },
        };
        Error::new(code, e.to_string())
    }
}

pub(crate) type Result<T> = std::result::Result<T, Error>;

thread_local! {
    static LAST_ERROR: RefCell<CString> = RefCell::new(CString::default());
}

fn set_last_error(message: &str) {
    // a NUL inside the message would end it early in C: show it instead
    let m = CString::new(message.replace('\0', "\\0")).unwrap_or_default();
    LAST_ERROR.with(|e| *e.borrow_mut() = m);
}

/// Runs an entry point: its error becomes a status code and this thread's last error; a panic
/// is caught here and becomes [`TF_ERR_INTERNAL`], never an unwind into C.
pub(crate) fn guard(f: impl FnOnce() -> Result<()>) -> tf_status {
    match catch_unwind(AssertUnwindSafe(f)) {
        Ok(Ok(())) => TF_OK,
        Ok(Err(e)) => {
            set_last_error(&e.message);
            e.code
        }
        Err(payload) => {
            let what = payload
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| payload.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "unknown panic".into());
            set_last_error(&format!("internal error (a bug in tokenfab): {what}"));
            TF_ERR_INTERNAL
        }
    }
}

/// A required pointer, or [`TF_ERR_NULL`] naming the argument.
pub(crate) fn non_null<T>(p: *const T, what: &str) -> Result<*const T> {
    if p.is_null() {
        Err(Error::new(TF_ERR_NULL, format!("{what} is NULL")))
    } else {
        Ok(p)
    }
}

/// A C string argument as UTF-8.
///
/// # Safety
/// `p`, when not NULL, must point to a NUL-terminated string that outlives the call.
pub(crate) unsafe fn str_arg<'a>(p: *const c_char, what: &str) -> Result<&'a str> {
    non_null(p, what)?;
    // SAFETY: not NULL (checked), NUL-terminated and alive by the caller's contract.
    let s = unsafe { CStr::from_ptr(p) };
    s.to_str()
        .map_err(|e| Error::new(TF_ERR_UTF8, format!("{what} is not valid UTF-8: {e}")))
}

/// A C array argument; `n == 0` allows NULL.
///
/// # Safety
/// `p`, when not NULL, must point to `n` initialized values that outlive the call.
pub(crate) unsafe fn slice_arg<'a, T>(p: *const T, n: usize, what: &str) -> Result<&'a [T]> {
    if n == 0 {
        return Ok(&[]);
    }
    non_null(p, what)?;
    if n.checked_mul(std::mem::size_of::<T>())
        .is_none_or(|b| b > isize::MAX as usize)
    {
        return Err(Error::new(
            TF_ERR_ARGUMENT,
            format!("{what}: {n} elements is not a possible array length"),
        ));
    }
    // SAFETY: not NULL, length bounded (checked), `n` initialized values by the contract.
    Ok(unsafe { std::slice::from_raw_parts(p, n) })
}

/// Copies `src` into the caller's buffer of `cap` elements and stores the length in
/// `*len_out`; [`TF_ERR_BUFFER`] (with `*len_out` set to what is needed) when it does not fit.
/// With `nul`, one more element (a terminating zero) must fit.
///
/// # Safety
/// `dst`, when not NULL, must be writable for `cap` elements; `len_out` must be writable.
pub(crate) unsafe fn copy_out<T: Copy + Default>(
    src: &[T],
    dst: *mut T,
    cap: usize,
    len_out: *mut usize,
    nul: bool,
) -> Result<()> {
    non_null(len_out, "the length out-parameter")?;
    // SAFETY: not NULL (checked), writable by the contract.
    unsafe { *len_out = src.len() };
    let need = src.len() + nul as usize;
    if cap < need {
        return Err(Error::new(
            TF_ERR_BUFFER,
            format!("the buffer holds {cap} elements; {need} are needed"),
        ));
    }
    non_null(dst, "the output buffer")?;
    // SAFETY: `dst` is not NULL and writable for `cap >= need` elements (checked above).
    unsafe {
        std::ptr::copy_nonoverlapping(src.as_ptr(), dst, src.len());
        if nul {
            *dst.add(src.len()) = T::default();
        }
    }
    Ok(())
}

/// The ABI version this library implements (`TF_ABI_VERSION` of its header).
#[no_mangle]
pub extern "C" fn tf_abi_version() -> u32 {
    TF_ABI_VERSION
}

/// tokenfab's version, e.g. "0.1.0" (a static string).
#[no_mangle]
pub extern "C" fn tf_version() -> *const c_char {
    static V: &CStr =
        match CStr::from_bytes_with_nul(concat!(env!("CARGO_PKG_VERSION"), "\0").as_bytes()) {
            Ok(v) => v,
            Err(_) => c"unknown",
        };
    V.as_ptr()
}

/// The message of the last call on this thread that failed ("" when none has). The string
/// belongs to the library and stays valid until the next failing call on this thread.
#[no_mangle]
pub extern "C" fn tf_last_error() -> *const c_char {
    LAST_ERROR.with(|e| e.borrow().as_ptr())
}

/// The name of a status code ("TF_OK", "TF_ERR_NULL", ...; "unknown" for others), static.
#[no_mangle]
pub extern "C" fn tf_status_name(status: tf_status) -> *const c_char {
    let s: &CStr = match status {
        TF_OK => c"TF_OK",
        TF_ERR_NULL => c"TF_ERR_NULL",
        TF_ERR_UTF8 => c"TF_ERR_UTF8",
        TF_ERR_HANDLE => c"TF_ERR_HANDLE",
        TF_ERR_VERSION => c"TF_ERR_VERSION",
        TF_ERR_ARGUMENT => c"TF_ERR_ARGUMENT",
        TF_ERR_MODEL => c"TF_ERR_MODEL",
        TF_ERR_BUFFER => c"TF_ERR_BUFFER",
        TF_ERR_BUSY => c"TF_ERR_BUSY",
        TF_ERR_DEVICE => c"TF_ERR_DEVICE",
        TF_ERR_INTERNAL => c"TF_ERR_INTERNAL",
        _ => c"unknown",
    };
    s.as_ptr()
}

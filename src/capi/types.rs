//! The plain structs of the C ABI and how they cross it. Every struct starts with
//! `struct_size`: the caller sets it (the `_init` functions do) to the `sizeof` its header
//! gives, and the library reads or writes only that many bytes — so fields can be appended in
//! a later version without breaking callers built against this one. No `bool` or enum fields
//! (a C caller could store a value Rust must never see in them): flags are `int32_t`.

use super::{non_null, Error, Result, TF_ERR_VERSION};
use std::ffi::{c_char, c_void};

/// Seed value that asks for a random seed (the default).
pub const TF_SEED_RANDOM: u64 = u64::MAX;

/// Phase of a token: part of the prompt.
pub const TF_PHASE_PREFILL: i32 = 0;
/// Phase of a token: generated.
pub const TF_PHASE_DECODE: i32 = 1;

/// Why generation ended: `max_tokens` reached.
pub const TF_STOP_LENGTH: i32 = 1;
/// Why generation ended: the model produced an end-of-generation token.
pub const TF_STOP_END_OF_GENERATION: i32 = 2;
/// Why generation ended: a stop string appeared (it is not part of the text).
pub const TF_STOP_STRING: i32 = 3;
/// Why generation ended: the context (KV cache) is full.
pub const TF_STOP_CONTEXT_FULL: i32 = 4;
/// Why generation ended: the callback returned non-zero, or `tf_sequence_cancel` was called.
pub const TF_STOP_CANCELLED: i32 = 5;
/// Why generation ended: `max_energy_j` was spent.
pub const TF_STOP_BUDGET_ENERGY: i32 = 6;
/// Why generation ended: `max_cost_usd` was spent.
pub const TF_STOP_BUDGET_COST: i32 = 7;

/// How an engine is opened. Initialize with `tf_engine_options_init`, then change fields.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct tf_engine_options {
    /// `sizeof(tf_engine_options)`, set by `tf_engine_options_init`.
    pub struct_size: u32,
    /// CPU threads (0 = all cores).
    pub threads: u32,
    /// "auto" (wgpu on a discrete GPU, else cpu), "cpu", "wgpu" or "cuda"; NULL = "auto".
    /// Read during `tf_engine_open` only.
    pub backend: *const c_char,
    /// KV-cache positions of each sequence; 0 = min(4096, the model's training context).
    pub ctx: u32,
    /// Most prompt tokens one forward pass runs (default 512).
    pub batch: u32,
    /// Sequences the caller will keep open at once: the memory check at load counts this many
    /// KV caches with the weights (default 1; more sequences still work).
    pub max_sequences: u32,
    /// Electricity price in USD per kWh for the dollars of each token; negative = the price
    /// table's default row (`us-residential`).
    pub usd_per_kwh: f64,
}

impl Default for tf_engine_options {
    fn default() -> Self {
        tf_engine_options {
            struct_size: std::mem::size_of::<Self>() as u32,
            threads: 0,
            backend: std::ptr::null(),
            ctx: 0,
            batch: 512,
            max_sequences: 1,
            usd_per_kwh: -1.0,
        }
    }
}

/// What to generate. Initialize with `tf_generate_options_init` (the defaults are
/// `tokenfab run`'s), then change fields.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct tf_generate_options {
    /// `sizeof(tf_generate_options)`, set by `tf_generate_options_init`.
    pub struct_size: u32,
    /// Most tokens to generate (default 128).
    pub max_tokens: u32,
    /// Sampling temperature; 0 = greedy (default 0.8).
    pub temperature: f32,
    /// Top-k (0 = off; default 40).
    pub top_k: u32,
    /// Top-p (1 = off; default 0.95).
    pub top_p: f32,
    /// Min-p (0 = off; default 0.05).
    pub min_p: f32,
    /// Penalty for repeating recent tokens (1 = off; default 1).
    pub repeat_penalty: f32,
    /// How many recent tokens the repeat penalty considers (default 64).
    pub repeat_last_n: u32,
    /// RNG seed; `TF_SEED_RANDOM` (the default) for a random one.
    pub seed: u64,
    /// Stop strings (UTF-8; `n_stop` of them, read during the call only): generation stops
    /// when the text contains one, which is not emitted.
    pub stop: *const *const c_char,
    pub n_stop: usize,
    /// Non-zero: keep going through end-of-generation tokens.
    pub ignore_eog: i32,
    /// Stop once the tokens (prompt and generated) cost this many joules; 0 = no budget.
    pub max_energy_j: f64,
    /// Stop once the tokens cost this many US dollars; 0 = no budget.
    pub max_cost_usd: f64,
}

impl Default for tf_generate_options {
    fn default() -> Self {
        tf_generate_options {
            struct_size: std::mem::size_of::<Self>() as u32,
            max_tokens: 128,
            temperature: 0.8,
            top_k: 40,
            top_p: 0.95,
            min_p: 0.05,
            repeat_penalty: 1.0,
            repeat_last_n: 64,
            seed: TF_SEED_RANDOM,
            stop: std::ptr::null(),
            n_stop: 0,
            ignore_eog: 0,
            max_energy_j: 0.0,
            max_cost_usd: 0.0,
        }
    }
}

/// One message of a chat, for the chat template.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct tf_message {
    /// "system", "user" or "assistant" (UTF-8).
    pub role: *const c_char,
    /// The message's text (UTF-8).
    pub content: *const c_char,
}

/// One token as it was processed: what it cost and the text it released — the numbers
/// `tokenfab run --trace` records. Passed to the callback; valid during the callback only.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct tf_token_event {
    pub struct_size: u32,
    /// `TF_PHASE_PREFILL` (a prompt token) or `TF_PHASE_DECODE` (a generated token).
    pub phase: i32,
    /// Position in the sequence.
    pub pos: u32,
    /// The token id.
    pub token: u32,
    /// Text that became final with this token (UTF-8, NUL-terminated, `text_len` bytes; may
    /// be empty: prompt tokens release none, and text is held back while a stop string or a
    /// multi-byte character may be forming).
    pub text: *const c_char,
    pub text_len: usize,
    /// Seconds since the generation started, at the end of this token's work.
    pub at_s: f64,
    /// Seconds attributed to this token (a prompt token: its share of the prefill pass).
    pub duration_s: f64,
    /// Bytes read and written for this token (weights, KV cache, activations; from the op
    /// ledger), and its floating-point operations.
    pub bytes_read: u64,
    pub bytes_written: u64,
    pub flops: u64,
    /// Energy attributed to this token, and what it cost at the engine's electricity price.
    pub joules: f64,
    pub usd: f64,
    /// Where the joules come from, e.g. "estimated:model" (static string).
    pub energy_source: *const c_char,
    /// Non-zero for a last event that only releases held-back text (no token, no cost).
    pub flush: i32,
}

/// Totals of one generation. Set `struct_size` (`tf_summary_init`) before passing it.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct tf_summary {
    pub struct_size: u32,
    /// `TF_STOP_*`: why generation ended.
    pub stop_reason: i32,
    /// Prompt tokens, those of them whose KV entries were reused from the sequence's earlier
    /// generations (not run again), and generated tokens.
    pub n_prompt: u32,
    pub n_reused: u32,
    pub n_generated: u32,
    /// Forward passes of the decode phase.
    pub decode_steps: u32,
    /// Prefill time, time to first token, decode time (seconds).
    pub prefill_s: f64,
    pub ttft_s: f64,
    pub decode_s: f64,
    /// Prompt tokens per second of prefill; generated tokens per second of decode.
    pub prefill_tok_s: f64,
    pub decode_tok_s: f64,
    /// Bytes read and written, FLOPs, joules and USD of the prompt tokens...
    pub prefill_bytes_read: u64,
    pub prefill_bytes_written: u64,
    pub prefill_flops: u64,
    pub prefill_joules: f64,
    pub prefill_usd: f64,
    /// ... and of the generated tokens.
    pub decode_bytes_read: u64,
    pub decode_bytes_written: u64,
    pub decode_flops: u64,
    pub decode_joules: f64,
    pub decode_usd: f64,
    /// Where the joules come from (static string).
    pub energy_source: *const c_char,
}

impl Default for tf_summary {
    fn default() -> Self {
        tf_summary {
            struct_size: std::mem::size_of::<Self>() as u32,
            stop_reason: 0,
            n_prompt: 0,
            n_reused: 0,
            n_generated: 0,
            decode_steps: 0,
            prefill_s: 0.0,
            ttft_s: 0.0,
            decode_s: 0.0,
            prefill_tok_s: 0.0,
            decode_tok_s: 0.0,
            prefill_bytes_read: 0,
            prefill_bytes_written: 0,
            prefill_flops: 0,
            prefill_joules: 0.0,
            prefill_usd: 0.0,
            decode_bytes_read: 0,
            decode_bytes_written: 0,
            decode_flops: 0,
            decode_joules: 0.0,
            decode_usd: 0.0,
            energy_source: std::ptr::null(),
        }
    }
}

/// What an open engine is. Set `struct_size` (`tf_engine_info_init`) before passing it. The
/// strings belong to the engine and stay valid until it is closed.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct tf_engine_info {
    pub struct_size: u32,
    /// KV-cache positions of each sequence.
    pub ctx: u32,
    /// Token ids are below this.
    pub vocab_size: u32,
    /// Beginning-of-sequence token id, -1 if the model has none.
    pub bos: i64,
    /// End-of-sequence token id, -1 if the model has none.
    pub eos: i64,
    /// The model's name (`general.name`, else the file name).
    pub name: *const c_char,
    /// The backend, e.g. "cpu (avx2, 2 threads)".
    pub backend: *const c_char,
    /// Where the joules of its tokens come from, e.g. "estimated:model".
    pub energy_source: *const c_char,
}

impl Default for tf_engine_info {
    fn default() -> Self {
        tf_engine_info {
            struct_size: std::mem::size_of::<Self>() as u32,
            ctx: 0,
            vocab_size: 0,
            bos: -1,
            eos: -1,
            name: std::ptr::null(),
            backend: std::ptr::null(),
            energy_source: std::ptr::null(),
        }
    }
}

/// The callback of `tf_sequence_generate`: called on the generating thread for every prompt
/// and generated token, in order, without any lock held (it may call other tokenfab
/// functions, `tf_sequence_cancel` included). Return 0 to go on, non-zero to stop. It must not
/// unwind (no C++ exception or longjmp out of it).
pub type tf_token_callback =
    Option<unsafe extern "C" fn(event: *const tf_token_event, user_data: *mut c_void) -> i32>;

/// A struct that crosses the boundary with its size first.
///
/// # Safety
/// Implementors are `#[repr(C)]`, start with a `u32` `struct_size`, and every bit pattern of
/// every field is a valid value (integers, floats, raw pointers).
pub(crate) unsafe trait Versioned: Copy + Default {
    /// Bytes of the first version of the struct (the smallest `struct_size` accepted).
    const MIN_SIZE: usize;
    const NAME: &'static str;
}

macro_rules! versioned {
    ($($t:ty),*) => {$(
        // SAFETY: each is #[repr(C)], starts with `struct_size: u32`, and holds only integers,
        // floats and raw pointers.
        unsafe impl Versioned for $t {
            const MIN_SIZE: usize = std::mem::size_of::<$t>();
            const NAME: &'static str = stringify!($t);
        }
    )*};
}
versioned!(
    tf_engine_options,
    tf_generate_options,
    tf_summary,
    tf_engine_info
);

fn checked_size<T: Versioned>(size: u32) -> Result<usize> {
    let size = size as usize;
    if size < T::MIN_SIZE || size > std::mem::size_of::<T>() {
        return Err(Error::new(
            TF_ERR_VERSION,
            format!(
                "{}.struct_size is {size}; this library reads {} bytes (set it with {}_init, \
                 or use a header that matches the library)",
                T::NAME,
                std::mem::size_of::<T>(),
                T::NAME
            ),
        ));
    }
    Ok(size)
}

/// The caller's struct at `p` (its own `struct_size` bytes; fields it lacks keep their
/// defaults); NULL means the defaults.
///
/// # Safety
/// `p`, when not NULL, must point to an aligned struct of at least `struct_size` readable
/// bytes.
pub(crate) unsafe fn read_in<T: Versioned>(p: *const T) -> Result<T> {
    let mut v = T::default();
    if p.is_null() {
        return Ok(v);
    }
    // SAFETY: not NULL, aligned, starts with a u32 (the caller's contract and `Versioned`).
    let size = checked_size::<T>(unsafe { *p.cast::<u32>() })?;
    // SAFETY: `size <= size_of::<T>()` bytes are readable at `p` and writable at `&mut v`;
    // every bit pattern is valid for T's fields (`Versioned`).
    unsafe {
        std::ptr::copy_nonoverlapping(p.cast::<u8>(), (&raw mut v).cast::<u8>(), size);
    }
    Ok(v)
}

/// Writes `v` into the caller's struct at `out`, as many bytes as its `struct_size` says.
///
/// # Safety
/// `out`, when not NULL, must point to an aligned struct of `struct_size` writable bytes.
pub(crate) unsafe fn write_out<T: Versioned>(out: *mut T, v: &T, what: &str) -> Result<()> {
    non_null(out, what)?;
    // SAFETY: not NULL, aligned, starts with a u32 (the caller's contract).
    let size = checked_size::<T>(unsafe { *out.cast::<u32>() })?;
    // SAFETY: `size` bytes are writable at `out` and readable from `v` (size <= size_of::<T>).
    unsafe {
        std::ptr::copy_nonoverlapping((v as *const T).cast::<u8>(), out.cast::<u8>(), size);
        // the caller's struct keeps its own size
        *out.cast::<u32>() = size as u32;
    }
    Ok(())
}

/// Fills `out` with the defaults.
///
/// # Safety
/// `out`, when not NULL, must point to a writable `T`.
pub(crate) unsafe fn init<T: Versioned>(out: *mut T) -> Result<()> {
    non_null(out, T::NAME)?;
    // SAFETY: not NULL, a writable T by the contract.
    unsafe { out.write(T::default()) };
    Ok(())
}

#[no_mangle]
/// Fills `opts` with the defaults (all cores, backend "auto", the model's context, batch 512).
///
/// # Safety
/// `opts` must be NULL or point to a writable `tf_engine_options`.
pub unsafe extern "C" fn tf_engine_options_init(opts: *mut tf_engine_options) -> super::tf_status {
    // SAFETY: forwarded contract.
    super::guard(|| unsafe { init(opts) })
}

#[no_mangle]
/// Fills `opts` with the defaults (`tokenfab run`'s sampling, 128 tokens, random seed).
///
/// # Safety
/// `opts` must be NULL or point to a writable `tf_generate_options`.
pub unsafe extern "C" fn tf_generate_options_init(
    opts: *mut tf_generate_options,
) -> super::tf_status {
    // SAFETY: forwarded contract.
    super::guard(|| unsafe { init(opts) })
}

#[no_mangle]
/// Zeroes `summary` and sets its `struct_size`.
///
/// # Safety
/// `summary` must be NULL or point to a writable `tf_summary`.
pub unsafe extern "C" fn tf_summary_init(summary: *mut tf_summary) -> super::tf_status {
    // SAFETY: forwarded contract.
    super::guard(|| unsafe { init(summary) })
}

#[no_mangle]
/// Zeroes `info` and sets its `struct_size`.
///
/// # Safety
/// `info` must be NULL or point to a writable `tf_engine_info`.
pub unsafe extern "C" fn tf_engine_info_init(info: *mut tf_engine_info) -> super::tf_status {
    // SAFETY: forwarded contract.
    super::guard(|| unsafe { init(info) })
}

// The layouts C sees on 64-bit targets; fields are only ever appended.
#[cfg(target_pointer_width = "64")]
const _: () = {
    assert!(std::mem::size_of::<tf_generate_options>() == 80);
    assert!(std::mem::size_of::<tf_engine_options>() == 40);
};

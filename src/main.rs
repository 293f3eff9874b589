//! The `tokenfab` command: parses arguments, runs the subcommand, maps errors to an exit code.
//! A closed stdout (e.g. `tokenfab run … | head`) is not an error.

mod cli;

use clap::Parser;

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// mimalloc commits its arenas eagerly and returns freed memory to the system only after a
/// delay: fast, but a small model's run holds ~55 MB it never uses (a 32-token Gemma 3 270M
/// run, `-c 64`: 342 MB resident, 288 MB with these two options; prefill within noise). A
/// user's own `MIMALLOC_*` setting of either option wins.
fn tune_allocator() {
    // mimalloc's `mi_option_e` (v2): arena_eager_commit = 4, purge_delay = 15
    const ARENA_EAGER_COMMIT: libmimalloc_sys::mi_option_t = 4;
    const PURGE_DELAY: libmimalloc_sys::mi_option_t = 15;
    for (option, env) in [
        (ARENA_EAGER_COMMIT, "MIMALLOC_ARENA_EAGER_COMMIT"),
        (PURGE_DELAY, "MIMALLOC_PURGE_DELAY"),
    ] {
        if std::env::var_os(env).is_none() {
            // SAFETY: `mi_option_set` stores one integer in mimalloc's option table (atomic);
            // both options are read whenever an arena is reserved or a purge is scheduled, so
            // changing them while the allocator runs is supported.
            unsafe { libmimalloc_sys::mi_option_set(option, 0) };
        }
    }
}

fn main() {
    tune_allocator();
    // Mesa's Vulkan drivers print "XDG_RUNTIME_DIR is invalid or not set" on every adapter
    // enumeration when it is unset (containers, CI); they only use it for a shader cache.
    // Set while the process is still single-threaded.
    if std::env::var_os("XDG_RUNTIME_DIR").is_none() {
        std::env::set_var("XDG_RUNTIME_DIR", std::env::temp_dir());
    }
    // llama-bench spells the prefill+generation flag `-pg`; clap's short flags are one letter
    let args = std::env::args_os().map(|a| if a == "-pg" { "--pg".into() } else { a });
    let cli = cli::Cli::parse_from(args);
    match cli::dispatch(cli) {
        Ok(()) => {}
        Err(e) => {
            if e.chain()
                .filter_map(|c| c.downcast_ref::<std::io::Error>())
                .any(|io| io.kind() == std::io::ErrorKind::BrokenPipe)
            {
                std::process::exit(0);
            }
            eprintln!("tokenfab: error: {e:#}");
            std::process::exit(1);
        }
    }
}

//! The `tokenfab` command: parses arguments, runs the subcommand, maps errors to an exit code.
//! A closed stdout (e.g. `tokenfab run … | head`) is not an error.

mod cli;

use clap::Parser;

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() {
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

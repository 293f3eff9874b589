//! Records the git commit tokenfab is built from (for `tokenfab bench` metadata); "unknown"
//! outside a git checkout. With the `cuda` feature, links the CUDA runtime statically (see
//! `link_cudart_statically`).
fn main() {
    let hash = std::process::Command::new("git")
        .args(["rev-parse", "--short=12", "HEAD"])
        .output()
        .ok()
        .filter(|o| o.status.success())
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .map(|s| s.trim().to_string())
        .unwrap_or_else(|| "unknown".into());
    println!("cargo:rustc-env=TOKENFAB_GIT={hash}");
    // rerun when the commit changes: HEAD and the refs where git keeps them (a worktree's
    // `.git` is a file pointing elsewhere). A path that does not exist would make cargo rerun
    // this script, and rebuild the crate, on every build (a source tarball, a worktree).
    let git_path = |arg: &str| {
        std::process::Command::new("git")
            .args(["rev-parse", arg])
            .output()
            .ok()
            .filter(|o| o.status.success())
            .and_then(|o| String::from_utf8(o.stdout).ok())
            .map(|s| std::path::PathBuf::from(s.trim()))
    };
    let mut watched = false;
    if let (Some(dir), Some(common)) = (git_path("--git-dir"), git_path("--git-common-dir")) {
        for p in [
            dir.join("HEAD"),
            common.join("refs"),
            common.join("packed-refs"),
        ] {
            if p.exists() {
                println!("cargo:rerun-if-changed={}", p.display());
                watched = true;
            }
        }
    }
    if !watched {
        println!("cargo:rerun-if-changed=build.rs");
    }
    if std::env::var_os("CARGO_FEATURE_CUDA").is_some() {
        link_cudart_statically();
    }
}

/// candle-kernels' statically built kernels call the CUDA runtime and ask for
/// `libcudart.so`; linked that way, the binary would not even start on a machine without
/// CUDA. The whole static runtime goes in first, so the linker (`--as-needed`) drops the
/// shared one; the runtime then finds the driver with `dlopen` like cudarc does, and
/// `--backend cuda` can say clearly when there is none.
fn link_cudart_statically() {
    println!("cargo:rerun-if-env-changed=CUDA_HOME");
    println!("cargo:rerun-if-env-changed=CUDA_PATH");
    let home = std::env::var("CUDA_HOME")
        .or_else(|_| std::env::var("CUDA_PATH"))
        .unwrap_or_else(|_| "/usr/local/cuda".into());
    for dir in ["lib64", "lib", "lib/x64"] {
        let p = std::path::Path::new(&home).join(dir);
        if p.join("libcudart_static.a").exists() {
            println!("cargo:rustc-link-search=native={}", p.display());
        }
    }
    println!("cargo:rustc-link-lib=static:+whole-archive=cudart_static");
}

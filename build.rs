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
    println!("cargo:rerun-if-changed=.git/HEAD");
    println!("cargo:rerun-if-changed=.git/refs");
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

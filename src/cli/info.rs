//! `tokenfab info`: what a GGUF file holds and what running it costs per token.

use anyhow::Result;
use clap::Args;
use std::fmt::Write as _;
use std::io::Write;
use std::path::PathBuf;
use tokenfab::model::describe::describe;

#[derive(Args, Debug)]
pub struct InfoArgs {
    /// GGUF file (default: the default model).
    pub path: Option<PathBuf>,
    /// Also list every metadata key.
    #[arg(long)]
    pub metadata: bool,
    /// Decode every block of every tensor and report non-finite values (corrupted scales);
    /// fails when there are any. Reads the whole file.
    #[arg(long)]
    pub validate: bool,
}

pub fn run(a: InfoArgs) -> Result<()> {
    let path = super::resolve_model(a.path.as_deref())?;
    let f = super::open_gguf(&path)?;
    let mut s = describe(&path.display().to_string(), &f, a.metadata);
    let bad = if a.validate {
        let t0 = std::time::Instant::now();
        let bad = tokenfab::model::validate::validate(&f);
        let secs = t0.elapsed().as_secs_f64();
        if bad.is_empty() {
            writeln!(
                s,
                "validate      every block of the {} tensors decodes to finite numbers ({secs:.1} s)",
                f.tensors().len()
            )?;
        }
        bad
    } else {
        Vec::new()
    };
    std::io::stdout().lock().write_all(s.as_bytes())?;
    if !bad.is_empty() {
        let list: Vec<String> = bad.iter().map(|b| format!("  {b}")).collect();
        anyhow::bail!(
            "{}: {} tensor(s) hold non-finite values (a corrupted file?):\n{}",
            path.display(),
            bad.len(),
            list.join("\n")
        );
    }
    Ok(())
}

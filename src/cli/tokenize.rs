//! `tokenfab tokenize`: token ids of a text, as one JSON array on stdout.

use anyhow::Result;
use clap::Args;
use std::io::Write;
use std::path::PathBuf;
use tokenfab::tokenizer::Tokenizer;

#[derive(Args, Debug)]
pub struct TokenizeArgs {
    /// GGUF model whose tokenizer to use (default: the default model).
    #[arg(short = 'm', long = "model")]
    pub model: Option<PathBuf>,
    /// Also show each token's piece: an array of [id, "piece"] pairs.
    #[arg(long)]
    pub pieces: bool,
    /// Do not add BOS even if the model's metadata asks for it.
    #[arg(long)]
    pub no_bos: bool,
    /// The text to tokenize.
    pub text: String,
}

pub fn run(a: TokenizeArgs) -> Result<()> {
    let path = super::resolve_model(a.model.as_deref())?;
    let file = super::open_gguf(&path)?;
    let tk = Tokenizer::from_metadata(file.metadata())?;
    let ids = tk.encode(&a.text, !a.no_bos)?;
    let json = if a.pieces {
        let pairs: Vec<(u32, String)> = ids
            .iter()
            .map(|&i| (i, tk.piece(i).unwrap_or_default()))
            .collect();
        serde_json::to_string(&pairs)?
    } else {
        serde_json::to_string(&ids)?
    };
    let mut out = std::io::stdout().lock();
    writeln!(out, "{json}")?;
    Ok(())
}

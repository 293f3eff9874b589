//! The speculative-decoding flags shared by `run`, `bench` and `serve` (llama.cpp's names:
//! `--draft`/`-md`, `--draft-max`, `--draft-min`, `--draft-p-min`; `--lookup N` for prompt
//! lookup), turned into the library's [`DraftSpec`]; the drafting itself is
//! `tokenfab::generate::draft`.

use anyhow::{bail, Result};
use clap::Args;
use std::path::PathBuf;
use tokenfab::engine::{DraftFrom, DraftSpec};
use tokenfab::generate::{DraftOptions, SpecStats};

#[derive(Args, Debug, Clone, Default)]
pub struct DraftArgs {
    /// Speculative decoding with this draft model (it must share the model's vocabulary).
    #[arg(
        long = "draft",
        visible_alias = "model-draft",
        short_alias = 'D',
        conflicts_with = "lookup"
    )]
    pub draft: Option<PathBuf>,
    /// Speculative decoding by prompt lookup: draft what followed the latest earlier
    /// occurrence of the text's last N tokens (N down to 1), no draft model.
    #[arg(long = "lookup", value_name = "N")]
    pub lookup: Option<usize>,
    /// Most tokens drafted per step.
    #[arg(long = "draft-max", default_value_t = DraftOptions::default().max)]
    pub draft_max: usize,
    /// Drafts shorter than this are not verified.
    #[arg(long = "draft-min", default_value_t = 0)]
    pub draft_min: usize,
    /// The draft model stops at a token it gives less than this probability (0 = never).
    #[arg(long = "draft-p-min", default_value_t = 0.0)]
    pub draft_p_min: f32,
    /// Always draft --draft-max tokens (llama.cpp's way) instead of the length the measured
    /// verification cost and acceptance say pays best.
    #[arg(long = "draft-fixed")]
    pub draft_fixed: bool,
}

impl DraftArgs {
    /// The flags as library options (`None` without `--draft` or `--lookup`).
    pub fn spec(&self) -> Result<Option<DraftSpec>> {
        let opts = DraftOptions {
            max: self.draft_max,
            min: self.draft_min,
            p_min: self.draft_p_min,
            adaptive: !self.draft_fixed,
        };
        opts.validate().map_err(anyhow::Error::msg)?;
        let from = match (&self.draft, self.lookup) {
            (Some(p), None) => {
                if !p.exists() {
                    bail!("draft model {} does not exist", p.display());
                }
                DraftFrom::Model(p.clone())
            }
            (None, Some(0)) => bail!("--lookup needs an n-gram size of at least 1"),
            (None, Some(n)) => DraftFrom::Lookup(n),
            (None, None) => return Ok(None),
            (Some(_), Some(_)) => bail!("give either --draft or --lookup, not both"),
        };
        Ok(Some(DraftSpec { from, opts }))
    }
}

/// One line on what speculation did: acceptance, tokens per target pass, drafting time.
pub fn summary_line(kind: &str, s: &SpecStats) -> String {
    let pct = s
        .acceptance()
        .map_or("-".into(), |a| format!("{:.0} %", a * 100.0));
    format!(
        "speculative ({kind}): {} of {} drafted tokens accepted ({pct}) in {} verifications, mean accepted {:.2}, {:.2} tokens per target pass ({} passes), {} draft passes, drafting {:.3} s",
        s.accepted,
        s.drafted,
        s.rounds,
        s.mean_accepted().unwrap_or(0.0),
        s.tokens_per_forward().unwrap_or(0.0),
        s.target_forwards,
        s.draft_forwards,
        s.draft_s,
    )
}

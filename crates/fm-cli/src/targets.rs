//! `fm targets`: the distributions fm knows, and what a run file's target and source resolve to.

use anyhow::Result;
use std::path::PathBuf;

#[derive(clap::Args, Debug)]
pub struct TargetsArgs {
    /// A run file: also show what its target and source resolve to (name, dimension, density).
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
}

pub fn targets(args: TargetsArgs) -> Result<()> {
    fm_run::targets(args.config.as_deref())?.iter().for_each(|line| println!("{line}"));
    Ok(())
}

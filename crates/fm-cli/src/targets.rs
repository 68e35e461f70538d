//! `fm targets`: the distributions fm knows, and what a run file's target and source resolve to.

use crate::config::RunConfig;
use anyhow::{Context, Result};
use fm_dist::{parse_target, Target};
use std::path::PathBuf;

#[derive(clap::Args, Debug)]
pub struct TargetsArgs {
    /// A run file: also show what its target and source resolve to (name, dimension, density).
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
}

pub fn targets(args: TargetsArgs) -> Result<()> {
    for (name, what) in fm_dist::list_targets() {
        // The class labels of --condition labels (files and specs say theirs when read).
        let classes = match parse_target(name).map(|t| t.classes()) {
            Ok(0) => "no classes".to_string(),
            Ok(k) => format!("{k} classes"),
            Err(_) => String::new(),
        };
        println!("{name:<14} {classes:<11} {what}");
    }
    if let Some(path) = &args.config {
        let run = RunConfig::read(path)?;
        println!("\n{}:", path.display());
        for (role, spec) in [("target", &run.target), ("source", &run.source)] {
            let dist = parse_target(spec).with_context(|| format!("{}: {role}", path.display()))?;
            println!("  {role}  {spec:<14} {}", describe(dist.as_ref()));
        }
    }
    Ok(())
}

/// "N(0, I2), 2-D, with a density" or "moons, 2-D, no density (samples only)".
fn describe(t: &dyn Target) -> String {
    let density = if t.has_density() { "with a density" } else { "no density (samples only)" };
    let classes = match t.classes() {
        0 => String::new(),
        k => format!(", {k} classes"),
    };
    format!("{}, {}-D, {density}{classes}", t.name(), t.dim())
}

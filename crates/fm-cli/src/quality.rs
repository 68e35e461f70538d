//! The evaluation settings `fm run` and `fm eval` share.

use crate::config::override_given;
use clap::ArgMatches;
use fm_run::EvalConfig;

#[derive(clap::Args, Debug)]
pub struct EvalFlags {
    /// Points per set for the W2 figure (at most the number of samples).
    #[arg(long, default_value_t = EvalConfig::default().w2_points)]
    pub w2_points: usize,
    /// Independent draws the W2 figure is averaged over.
    #[arg(long, default_value_t = EvalConfig::default().w2_draws)]
    pub w2_draws: usize,
    /// Fresh target samples of the KL(target ‖ model) estimate from the exact likelihood (0: skip).
    #[arg(long, default_value_t = EvalConfig::default().kl_points)]
    pub kl_points: usize,
}

impl EvalFlags {
    pub fn apply(&self, m: &ArgMatches, cfg: &mut EvalConfig) {
        override_given!(m, self, w2_points => cfg.w2_points, w2_draws => cfg.w2_draws, kl_points => cfg.kl_points);
    }
}

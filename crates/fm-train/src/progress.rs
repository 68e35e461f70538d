//! A terminal progress bar for [`crate::train`].

use crate::Progress;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

/// Renders training progress as a bar with step, running loss, steps/s and ETA.
/// Draws to stderr; draws nothing when stderr is not a terminal or when hidden.
pub struct ProgressBarReporter {
    bar: ProgressBar,
}

impl ProgressBarReporter {
    pub fn new(total_steps: usize, hidden: bool) -> Self {
        let bar = ProgressBar::with_draw_target(Some(total_steps as u64), if hidden { ProgressDrawTarget::hidden() } else { ProgressDrawTarget::stderr() });
        bar.set_style(
            ProgressStyle::with_template("training {bar:30.cyan/blue} {pos}/{len} steps  loss {msg}  {per_sec}  ETA {eta}")
                .expect("valid template")
                .progress_chars("=> "),
        );
        Self { bar }
    }

    /// Takes one progress report.
    pub fn update(&self, p: &Progress) {
        self.bar.set_position(p.step as u64);
        self.bar.set_message(format!("{:.4}", p.loss));
    }

    pub fn finish(&self) {
        self.bar.finish_and_clear();
    }
}

//! Training progress for [`crate::train`]: a bar on a terminal, plain lines otherwise.

use crate::Progress;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use std::cell::Cell;
use std::io::IsTerminal;

/// Plain log lines per run when stderr is not a terminal (a CI log, a file).
const LOG_LINES: usize = 10;

/// Renders training progress as a bar with step, running loss, steps/s and ETA on stderr;
/// when stderr is not a terminal, as a plain line at every tenth of the run instead.
/// Shows nothing when hidden.
pub struct ProgressBarReporter {
    bar: ProgressBar,
    /// `Some(last tenth logged)` when logging plain lines.
    plain: Option<Cell<usize>>,
    total_steps: usize,
    /// The loss floor shown beside the loss (see [`crate::exact::training_floor`]).
    floor: Option<f64>,
}

impl ProgressBarReporter {
    /// A reporter for a run of `total_steps` steps; `hidden` shows nothing at all.
    pub fn new(total_steps: usize, hidden: bool) -> Self {
        let terminal = std::io::stderr().is_terminal();
        let target = if hidden || !terminal { ProgressDrawTarget::hidden() } else { ProgressDrawTarget::stderr() };
        let bar = ProgressBar::with_draw_target(Some(total_steps as u64), target);
        bar.set_style(
            ProgressStyle::with_template("training {bar:30.cyan/blue} {pos}/{len} steps  loss {msg}  {per_sec}  ETA {eta}")
                .expect("valid template")
                .progress_chars("=> "),
        );
        let plain = (!hidden && !terminal).then(|| Cell::new(0));
        Self { bar, plain, total_steps, floor: None }
    }

    /// Shows `floor` beside every loss: `loss 3.0312 (floor 2.9790)`.
    pub fn with_floor(mut self, floor: Option<f64>) -> Self {
        self.floor = floor;
        self
    }

    /// Takes one progress report.
    pub fn update(&self, p: &Progress) {
        self.bar.set_position(p.step as u64);
        self.bar.set_message(loss_text(p.loss, self.floor));
        if let Some(logged) = &self.plain {
            let tenth = p.step * LOG_LINES / self.total_steps.max(1);
            if tenth > logged.get() {
                logged.set(tenth);
                eprintln!("{}", plain_line(p, self.floor));
            }
        }
    }

    /// Clears the bar from the terminal (plain lines already written stay).
    pub fn finish(&self) {
        self.bar.finish_and_clear();
    }
}

/// `1.2345`, or `1.2345 (floor 1.1000)` with a floor.
pub fn loss_text(loss: f64, floor: Option<f64>) -> String {
    match floor {
        Some(f) => format!("{loss:.4} (floor {f:.4})"),
        None => format!("{loss:.4}"),
    }
}

/// `step 2000/10000  loss 1.2345 (floor 1.1000)  lr 1.00e-4  1180 steps/s  ETA 7 s`.
fn plain_line(p: &Progress, floor: Option<f64>) -> String {
    let rate = p.step as f64 / p.elapsed_s.max(1e-9);
    let eta = (p.total_steps - p.step.min(p.total_steps)) as f64 / rate.max(1e-9);
    format!("step {}/{}  loss {}  lr {:.2e}  {rate:.0} steps/s  ETA {eta:.0} s", p.step, p.total_steps, loss_text(p.loss, floor), p.lr)
}

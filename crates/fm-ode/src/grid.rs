//! The times a solve passes through.

use crate::{Error, Result};

/// Strictly monotone times `t_0, …, t_N` to step through (increasing: forwards; decreasing: backwards).
///
/// Fixed-step methods step from each time to the next; the adaptive [`crate::Method::Dopri5`] (or any adaptive solve) integrates
/// from the first to the last time with its own steps and uses the inner times only as output
/// times (for [`crate::SolveOptions::keep_trajectory`]).
#[derive(Debug, Clone, PartialEq)]
pub struct TimeGrid(Vec<f64>);

impl TimeGrid {
    /// The most steps [`TimeGrid::uniform`] makes: a grid holds every time, so a step count read
    /// from a file or a flag must not size an allocation unchecked (a million fixed steps is far
    /// beyond any useful accuracy; adaptive methods have their own `max_steps`).
    pub const MAX_UNIFORM_STEPS: usize = 1_000_000;

    /// `steps` equal steps from `t0` to `t1` (1 to [`TimeGrid::MAX_UNIFORM_STEPS`]).
    ///
    /// # Errors
    /// [`Error::Invalid`] for 0 or too many steps, or end points [`TimeGrid::new`] rejects.
    pub fn uniform(t0: f64, t1: f64, steps: usize) -> Result<Self> {
        if steps == 0 {
            return Err(Error::Invalid("the number of integration steps must be at least 1".into()));
        }
        if steps > Self::MAX_UNIFORM_STEPS {
            return Err(Error::Invalid(format!("{steps} integration steps is more than the {} a time grid may have", Self::MAX_UNIFORM_STEPS)));
        }
        Self::new((0..=steps).map(|i| t0 + (t1 - t0) * i as f64 / steps as f64).collect())
    }

    /// Any grid of at least two finite, strictly monotone times.
    ///
    /// # Errors
    /// [`Error::Invalid`] for fewer than two times, a non-finite time, or times that are not
    /// strictly monotone.
    pub fn new(times: Vec<f64>) -> Result<Self> {
        if times.len() < 2 {
            return Err(Error::Invalid("a time grid needs at least two times".into()));
        }
        if let Some(t) = times.iter().find(|t| !t.is_finite()) {
            return Err(Error::Invalid(format!("time grid holds a non-finite time {t}")));
        }
        let up = times[1] > times[0];
        if let Some(w) = times.windows(2).find(|w| if up { w[1] <= w[0] } else { w[1] >= w[0] }) {
            return Err(Error::Invalid(format!("time grid is not strictly monotone at {} → {}", w[0], w[1])));
        }
        Ok(Self(times))
    }

    /// The times, in the order they are passed through.
    pub fn times(&self) -> &[f64] {
        &self.0
    }
    /// The number of intervals (the steps a fixed-step method takes).
    pub fn steps(&self) -> usize {
        self.0.len() - 1
    }
    /// The time the solve starts from.
    pub fn start(&self) -> f64 {
        self.0[0]
    }
    /// The time the solve ends at.
    pub fn end(&self) -> f64 {
        self.0[self.0.len() - 1]
    }
}

//! The named methods: a plain enum that parses from text (CLI flags, run files) and maps each
//! name to its Butcher tableau (`tableaux.rs`). A method the crate does not name needs no
//! variant: it is a [`ButcherTableau`] given to [`crate::solve_with`].

use crate::tableau::ButcherTableau;
use crate::{rk, Error, Result, Stepping, VectorField};
use std::sync::OnceLock;
use tch::Tensor;

/// A named explicit Runge–Kutta method: fixed-step ones step through every grid interval, the
/// adaptive one chooses its own steps between the grid's end points.
///
/// Each is a [`ButcherTableau`] ([`Method::tableau`]) run by the one generic stepper. The
/// settings of the adaptive method live in [`crate::AdaptiveOptions`], not in the variant,
/// so every method is a plain name that parses from text (`"dopri5".parse()`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Method {
    /// Forward Euler (order 1, 1 evaluation per step): the seed experiment's sampler.
    #[default]
    Euler,
    /// Explicit midpoint (order 2, 2 evaluations per step).
    Midpoint,
    /// Heun's method, the trapezoidal RK2 (order 2, 2 evaluations per step).
    Heun,
    /// Classic fourth-order Runge–Kutta (order 4, 4 evaluations per step).
    Rk4,
    /// Dormand–Prince 5(4), adaptive (6 evaluations per attempted step thanks to FSAL): steps
    /// are sized to meet [`crate::AdaptiveOptions`]' tolerances, which usually costs far fewer
    /// evaluations than a fixed grid fine enough for the same error.
    Dopri5,
}

impl Method {
    /// Every method, in the order error messages list them.
    pub const ALL: [Method; 5] = [Method::Euler, Method::Midpoint, Method::Heun, Method::Rk4, Method::Dopri5];
    /// The fixed-step methods (one step per grid interval).
    pub const FIXED_STEP: [Method; 4] = [Method::Euler, Method::Midpoint, Method::Heun, Method::Rk4];

    /// The name [`std::str::FromStr`] parses and [`std::fmt::Display`] prints.
    pub fn name(self) -> &'static str {
        match self {
            Method::Euler => "euler",
            Method::Midpoint => "midpoint",
            Method::Heun => "heun",
            Method::Rk4 => "rk4",
            Method::Dopri5 => "dopri5",
        }
    }

    /// The method's Butcher tableau ([`ButcherTableau::euler`], … [`ButcherTableau::dopri5`]),
    /// built once per process.
    pub fn tableau(self) -> &'static ButcherTableau {
        static TABLEAUX: OnceLock<[ButcherTableau; 5]> = OnceLock::new();
        let all = TABLEAUX.get_or_init(|| Method::ALL.map(Method::build));
        &all[Method::ALL.iter().position(|m| *m == self).expect("every method is in Method::ALL")]
    }

    fn build(self) -> ButcherTableau {
        match self {
            Method::Euler => ButcherTableau::euler(),
            Method::Midpoint => ButcherTableau::midpoint(),
            Method::Heun => ButcherTableau::heun(),
            Method::Rk4 => ButcherTableau::rk4(),
            Method::Dopri5 => ButcherTableau::dopri5(),
        }
    }

    /// How [`crate::solve`] steps with this method: [`Stepping::Adaptive`] for the method with
    /// an error estimate (Dopri5), [`Stepping::Fixed`] for the others.
    pub fn stepping(self) -> Stepping {
        if self.is_adaptive() {
            Stepping::Adaptive
        } else {
            Stepping::Fixed
        }
    }

    /// Order of accuracy: the global error shrinks as `dt^order`.
    pub fn order(self) -> u32 {
        self.tableau().order
    }

    /// Whether [`crate::solve`] chooses the steps itself (between the grid's end points): the
    /// tableau has an error estimate.
    pub fn is_adaptive(self) -> bool {
        self.tableau().error.is_some()
    }

    /// Field evaluations per [`Method::step`] (for Dopri5: its fifth-order step taken on its own,
    /// without error control).
    pub fn evals_per_step(self) -> usize {
        self.tableau().evals_per_step()
    }

    /// One step of size `dt` (negative to go backwards) from `(x, t)`; adds the evaluations to `nfe`.
    ///
    /// For an adaptive method this is one step of its propagated (highest-order) solution, with
    /// no error control: [`crate::solve`] is the way to use it adaptively.
    ///
    /// # Errors
    /// The field's errors, and libtorch's ([`Error::Torch`]: shapes, kinds, devices).
    pub fn step(self, f: &dyn VectorField, x: &Tensor, t: f64, dt: f64, nfe: &mut usize) -> Result<Tensor> {
        rk::step(self.tableau(), f, x, t, dt, nfe)
    }
}

impl std::fmt::Display for Method {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

impl std::str::FromStr for Method {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        let key = s.trim().to_ascii_lowercase();
        Method::ALL.into_iter().find(|m| m.name() == key || (key == "rk2" && *m == Method::Heun)).ok_or_else(|| {
            let names: Vec<_> = Method::ALL.iter().map(|m| m.name()).collect();
            Error::Invalid(format!("unknown integration method '{s}' (valid: {})", names.join(", ")))
        })
    }
}

//! Reflow (Liu et al. 2022, "Flow Straight and Fast: Learning to Generate and Transfer Data
//! with Rectified Flow", arXiv:2209.03003): a trained flow (the teacher) couples each source
//! point with its image, and a new flow trained on those fixed pairs with the straight path has
//! straighter paths than its teacher (2-rectified flow; again: 3-RF). The same pairs train the
//! one-step distillation ([`crate::objective::Distill`]).
//!
//! The pairs are drawn once ([`draw_pairs`]) and kept, in memory or in a `.npy` file of rows
//! `[x0 | x1]` ([`Pairs::to_array`], [`Pairs::from_array`]): a teacher solve per training step
//! would multiply the cost of each step by the solver's evaluations (about 25–100), while a
//! file of `N` pairs costs one solve of `N` points and is reused by every student (2-RF, its
//! distillation, another seed).

use crate::{array_to_tensor, tensor_to_array, Error, HasDevice, Result, SampleConfig};
use fm_dist::Target;
use fm_ode::VectorField;
use ndarray::{s, Array2, ArrayView2};
use rand::{rngs::StdRng, Rng, SeedableRng};

/// Coupled pairs `(x0_i, x1_i)`: source points and their images under a teacher.
#[derive(Debug, Clone, PartialEq)]
pub struct Pairs {
    x0: Array2<f64>,
    x1: Array2<f64>,
}

impl Pairs {
    /// Pairs from their two halves, `[N, d]` each.
    ///
    /// # Errors
    /// [`Error::Data`] for halves of different shapes, no rows, no columns, or a value that is
    /// NaN or infinite (naming the first row holding one).
    pub fn new(x0: Array2<f64>, x1: Array2<f64>) -> Result<Self> {
        if x0.dim() != x1.dim() || x0.nrows() == 0 || x0.ncols() == 0 {
            return Err(Error::Data(format!("pairs need two non-empty halves of one shape, got {:?} and {:?}", x0.dim(), x1.dim())));
        }
        for (half, x) in [("x0", &x0), ("x1", &x1)] {
            if let Some(row) = x.outer_iter().position(|r| r.iter().any(|v| !v.is_finite())) {
                return Err(Error::Data(format!("pair {row} holds a NaN or infinite value (in {half}); reflow pairs must be finite")));
            }
        }
        Ok(Self { x0, x1 })
    }

    /// Pairs from rows `[x0 | x1]` of width `2d` (the layout of a pairs file).
    ///
    /// # Errors
    /// [`Error::Data`] for an odd width, or as [`Pairs::new`].
    pub fn from_array(rows: ArrayView2<f64>) -> Result<Self> {
        let w = rows.ncols();
        if w % 2 == 1 || w == 0 {
            return Err(Error::Data(format!("a pairs file holds rows [x0 | x1] of an even width 2·D, got {w} column(s)")));
        }
        Self::new(rows.slice(s![.., ..w / 2]).to_owned(), rows.slice(s![.., w / 2..]).to_owned())
    }

    /// Rows `[x0 | x1]`, `[N, 2d]`.
    pub fn to_array(&self) -> Array2<f64> {
        // Both halves are `[N, d]` (the constructor checks it): placed side by side, nothing can fail.
        let (n, d) = self.x0.dim();
        let mut rows = Array2::zeros((n, 2 * d));
        rows.slice_mut(s![.., ..d]).assign(&self.x0);
        rows.slice_mut(s![.., d..]).assign(&self.x1);
        rows
    }

    /// The number of pairs `N`.
    pub fn len(&self) -> usize {
        self.x0.nrows()
    }

    /// Never true: pairs hold at least one row.
    pub fn is_empty(&self) -> bool {
        self.x0.nrows() == 0
    }

    /// The dimension `d` of the points.
    pub fn dim(&self) -> usize {
        self.x0.ncols()
    }

    /// The source points `[N, d]`.
    pub fn x0(&self) -> ArrayView2<'_, f64> {
        self.x0.view()
    }

    /// Their images `[N, d]`.
    pub fn x1(&self) -> ArrayView2<'_, f64> {
        self.x1.view()
    }

    /// Fills `x0` and `x1` (row-major `[n, d]` each) with `n` pairs drawn uniformly with
    /// replacement.
    pub(crate) fn draw(&self, x0: &mut [f32], x1: &mut [f32], rng: &mut dyn rand::RngCore) {
        let d = self.dim();
        for (dst0, dst1) in x0.chunks_exact_mut(d).zip(x1.chunks_exact_mut(d)) {
            let i = rng.random_range(0..self.len());
            for c in 0..d {
                dst0[c] = self.x0[[i, c]] as f32;
                dst1[c] = self.x1[[i, c]] as f32;
            }
        }
    }
}

/// `cfg.n_samples` source points (drawn with `cfg.seed`) and their images under `teacher`, by
/// `cfg`'s integrator: the training pairs of reflow and distillation.
///
/// # Errors
/// As [`crate::sample`]; [`Error::Data`] when an image is not finite.
pub fn draw_pairs(teacher: &(impl VectorField + HasDevice + ?Sized), source: &dyn Target, cfg: &SampleConfig) -> Result<Pairs> {
    cfg.validate()?;
    if cfg.sde.is_some() {
        return Err(crate::Error::Config("pairs are the ODE's coupling of source and image (reflow straightens it): sample them without --sde".into()));
    }
    let x0 = source.sample(cfg.n_samples, &mut StdRng::seed_from_u64(cfg.seed));
    let x1 = crate::sample::sample_from(teacher, array_to_tensor(x0.view(), teacher.device())?, cfg)?;
    Pairs::new(x0, tensor_to_array(&x1)?)
}

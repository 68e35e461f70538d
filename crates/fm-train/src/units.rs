//! A model trained in standard units, used in the data's units.
//!
//! A target read from a file is standardised before training (see [`fm_dist::affine`]): the
//! network learns the flow from the source to `z = (x − shift) / scale`. Everything a user sees
//! is carried back at the boundary, in `f64`: samples and paths by `x = shift + scale ⊙ z`,
//! log-densities by `log q_x(x) = log q_z(z) − Σ ln scale`, velocities by `v_x = scale ⊙ v_z`.
//! The ODE itself runs in standard units, where `f32` has its full precision (data around 10⁶
//! would lose theirs).

use crate::eval::{model_log_prob, LikelihoodConfig};
use crate::{array_to_tensor, tensor_to_array, Generator, HasDevice, Jumps, ProbabilityPath, Result, SampleConfig};
use fm_dist::affine::Affine;
use fm_dist::Target;
use fm_ode::VectorField;
use ndarray::{Array1, Array2, Array3, ArrayView2};

/// A field and its source in standard units, with the map to data units (`None`: the model
/// was trained in the data's units, and every method is the plain one).
pub struct DataUnits<'a, F: ?Sized> {
    /// The learnt velocity field (standard units).
    pub field: &'a F,
    /// Its source distribution (standard units).
    pub source: &'a dyn Target,
    /// `x = shift + scale ⊙ z`.
    pub map: Option<&'a Affine>,
    /// The probability path the field was trained on: what a stochastic sampler's diffusion
    /// and score depend on ([`crate::sde`]).
    pub path: ProbabilityPath,
}

impl<F: VectorField + HasDevice + ?Sized> DataUnits<'_, F> {
    /// [`crate::sample`], in data units.
    ///
    /// # Errors
    /// As [`crate::sample`].
    pub fn sample(&self, cfg: &SampleConfig) -> Result<Array2<f64>> {
        let z = crate::sample_on_path(self.field, self.path, self.source, cfg)?;
        Ok(self.to_data(z))
    }

    /// [`crate::sample_paths`], in data units.
    ///
    /// # Errors
    /// As [`crate::sample_paths`].
    pub fn sample_paths(&self, cfg: &SampleConfig, n: usize) -> Result<(Vec<f64>, Array3<f64>)> {
        let (times, mut paths) = crate::sample_paths_on_path(self.field, self.path, self.source, cfg, n)?;
        if let Some(map) = self.map {
            for mut state in paths.outer_iter_mut() {
                let x = map.apply(state.view());
                state.assign(&x);
            }
        }
        Ok((times, paths))
    }

    /// [`model_log_prob`] of points `x` given in data units, in nats of the data's units.
    ///
    /// # Errors
    /// As [`model_log_prob`].
    pub fn log_prob(&self, x: ArrayView2<f64>, cfg: &LikelihoodConfig) -> Result<Array1<f64>> {
        match self.map {
            None => model_log_prob(self.field, self.source, x, cfg),
            Some(map) => Ok(model_log_prob(self.field, self.source, map.inverse().apply(x).view(), cfg)? - map.log_det()),
        }
    }

    /// The velocity at points `x` (data units) and time `t`, in data units per unit time.
    ///
    /// # Errors
    /// A field or torch failure.
    pub fn velocity(&self, x: ArrayView2<f64>, t: f64) -> Result<Array2<f64>> {
        let z = self.map.map_or_else(|| x.to_owned(), |m| m.inverse().apply(x));
        let v = velocity_array(self.field, z.view(), t)?;
        Ok(match self.map {
            None => v,
            Some(m) => m.scale_rows(v.view()),
        })
    }

    /// Samples `z` (standard units) in data units.
    fn to_data(&self, z: Array2<f64>) -> Array2<f64> {
        match self.map {
            None => z,
            Some(map) => map.apply(z.view()),
        }
    }
}

impl<M: fm_model::VelocityModel + ?Sized> DataUnits<'_, M> {
    /// Samples as a model trained for `generator` is sampled: [`DataUnits::sample`] for a flow
    /// and a one-step map (one Euler step), `cfg.steps` jumps of the average velocity for
    /// MeanFlow ([`crate::Jumps`]), in data units.
    ///
    /// # Errors
    /// [`crate::Generator::check`]'s refusals, then as [`crate::sample`].
    pub fn generate(&self, generator: Generator, cfg: &SampleConfig) -> Result<Array2<f64>> {
        generator.check(cfg)?;
        match generator {
            Generator::AverageVelocity => {
                let jumps = Jumps { model: self.field, h: 1.0 / cfg.steps as f64 };
                DataUnits { field: &jumps, source: self.source, map: self.map, path: self.path }.sample(cfg)
            }
            _ => self.sample(cfg),
        }
    }

    /// Samples of a conditional flow under class `label` and/or condition vector `values`, with
    /// classifier-free guidance scale `scale` ([`crate::Guided`]), in data units.
    ///
    /// # Errors
    /// [`crate::Guided::new`]'s refusals (an unconditional model, a class out of range, a
    /// scale that is not finite), then as [`crate::sample`].
    pub fn generate_given(&self, label: Option<usize>, values: Option<&[f64]>, scale: f64, cfg: &SampleConfig) -> Result<Array2<f64>> {
        let guided = crate::Guided::new(self.field, label, values, scale)?;
        DataUnits { field: &guided, source: self.source, map: self.map, path: self.path }.sample(cfg)
    }

    /// Samples of several classes, `counts` holding `(class, n)`: each class's `n` samples by
    /// [`DataUnits::generate_given`] with the source drawn from seed `cfg.seed + class`, the rows
    /// shuffled (a permutation seeded by `cfg.seed`); and each row's class.
    ///
    /// # Errors
    /// As [`DataUnits::generate_given`].
    pub fn generate_classes(&self, counts: &[(usize, usize)], scale: f64, cfg: &SampleConfig) -> Result<(Array2<f64>, Vec<usize>)> {
        let mut parts = Vec::new();
        for &(class, n) in counts.iter().filter(|c| c.1 > 0) {
            parts.push(self.generate_given(
                Some(class),
                None,
                scale,
                &SampleConfig { n_samples: n, seed: cfg.seed.wrapping_add(class as u64), ..cfg.clone() },
            )?);
        }
        let labels: Vec<usize> = counts.iter().flat_map(|&(c, n)| std::iter::repeat_n(c, n)).collect();
        let views: Vec<_> = parts.iter().map(|p| p.view()).collect();
        let x = ndarray::concatenate(ndarray::Axis(0), &views).map_err(|e| crate::Error::Internal(format!("sample shapes: {e}")))?;
        // Rows in a random order (from cfg.seed): any window of them is a sample of the mixture,
        // as the quality figures, which judge windows of consecutive rows, assume.
        let mut order: Vec<usize> = (0..labels.len()).collect();
        rand::seq::SliceRandom::shuffle(&mut order[..], &mut <rand::rngs::StdRng as rand::SeedableRng>::seed_from_u64(cfg.seed));
        Ok((x.select(ndarray::Axis(0), &order), order.iter().map(|&i| labels[i]).collect()))
    }

    /// [`DataUnits::generate_classes`]'s paths (`[times, Σ n, dim]`), and each path's class.
    ///
    /// # Errors
    /// As [`DataUnits::generate_paths_given`].
    pub fn generate_paths_classes(&self, counts: &[(usize, usize)], scale: f64, cfg: &SampleConfig) -> Result<(Vec<f64>, Array3<f64>, Vec<usize>)> {
        let (mut times, mut parts) = (Vec::new(), Vec::new());
        for &(class, n) in counts.iter().filter(|c| c.1 > 0) {
            let (t, paths) =
                self.generate_paths_given(Some(class), None, scale, &SampleConfig { seed: cfg.seed.wrapping_add(class as u64), ..cfg.clone() }, n)?;
            times = t;
            parts.push(paths);
        }
        let labels = counts.iter().flat_map(|&(c, n)| std::iter::repeat_n(c, n)).collect();
        let views: Vec<_> = parts.iter().map(|p| p.view()).collect();
        let paths = ndarray::concatenate(ndarray::Axis(1), &views).map_err(|e| crate::Error::Internal(format!("path shapes: {e}")))?;
        Ok((times, paths, labels))
    }

    /// [`DataUnits::generate_given`]'s paths.
    ///
    /// # Errors
    /// As [`DataUnits::generate_given`] and [`crate::sample_paths`].
    pub fn generate_paths_given(
        &self,
        label: Option<usize>,
        values: Option<&[f64]>,
        scale: f64,
        cfg: &SampleConfig,
        n: usize,
    ) -> Result<(Vec<f64>, Array3<f64>)> {
        let guided = crate::Guided::new(self.field, label, values, scale)?;
        DataUnits { field: &guided, source: self.source, map: self.map, path: self.path }.sample_paths(cfg, n)
    }

    /// [`DataUnits::generate`]'s paths: the states after each step (each jump, for MeanFlow).
    ///
    /// # Errors
    /// As [`DataUnits::generate`] and [`crate::sample_paths`].
    pub fn generate_paths(&self, generator: Generator, cfg: &SampleConfig, n: usize) -> Result<(Vec<f64>, Array3<f64>)> {
        generator.check(cfg)?;
        match generator {
            Generator::AverageVelocity => {
                let jumps = Jumps { model: self.field, h: 1.0 / cfg.steps as f64 };
                DataUnits { field: &jumps, source: self.source, map: self.map, path: self.path }.sample_paths(cfg, n)
            }
            _ => self.sample_paths(cfg, n),
        }
    }
}

/// A field's velocity at the rows of `x` and time `t`, as an array (no gradient kept).
///
/// # Errors
/// A field or torch failure.
pub fn velocity_array(field: &(impl VectorField + HasDevice + ?Sized), x: ArrayView2<f64>, t: f64) -> Result<Array2<f64>> {
    let _guard = tch::no_grad_guard();
    tensor_to_array(&field.velocity(&array_to_tensor(x, field.device())?, t)?)
}

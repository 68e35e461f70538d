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

    /// [`crate::sample_with_log_q`], in data units: the points `x = shift + scale ⊙ z` and
    /// `log q(x) = log q(z) − log |det|`.
    ///
    /// # Errors
    /// As [`crate::sample_with_log_q`].
    pub fn sample_with_log_q(&self, cfg: &SampleConfig) -> Result<(Array2<f64>, Array1<f64>)> {
        let (z, log_q) = crate::sample_with_log_q(self.field, self.source, cfg)?;
        Ok(match self.map {
            None => (z, log_q),
            Some(map) => (map.apply(z.view()), log_q - map.log_det()),
        })
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

/// What to generate from a model: one request for every kind of model and condition. The
/// model-to-field adapters stack as the request asks: the condition and guidance
/// ([`crate::Guided`]), then the model's way of generating (its flow, one step, or
/// [`crate::Jumps`] of an average velocity), then the sampler (`sample`: an integrator or the
/// SDE), then the units map.
#[derive(Debug, Clone)]
pub struct Request<'a> {
    /// How the model generates (from its objective, [`crate::Objective::generator`]).
    pub generator: Generator,
    /// What the samples are conditioned on.
    pub condition: Condition<'a>,
    /// Classifier-free guidance scale `w` (`v_∅ + w (v_c − v_∅)`; 1: the plain conditional field).
    pub guidance: f64,
    /// How many points, the steps, the integrator or SDE, the seed.
    pub sample: &'a SampleConfig,
    /// Also each sample's exact log-density under the model, `log q`, from the same forward
    /// solve ([`crate::sample_with_log_q`]): flows only.
    pub log_q: bool,
}

/// The condition of a [`Request`].
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Condition<'a> {
    /// None: a conditional model samples its "no condition" entry.
    None,
    /// One class.
    Class(usize),
    /// One condition vector.
    Values(&'a [f64]),
    /// Several classes, `(class, n)` each: class `c`'s source drawn with seed `seed + c`, the rows
    /// shuffled by a permutation seeded by `seed` (any window of them samples the mixture).
    Classes(&'a [(usize, usize)]),
}

impl<'a> Request<'a> {
    /// Unconditional samples of a model that generates as `generator`, by `sample`.
    pub fn new(generator: Generator, sample: &'a SampleConfig) -> Self {
        Self { generator, condition: Condition::None, guidance: 1.0, sample, log_q: false }
    }

    /// The same request, with each sample's `log q`.
    pub fn with_log_q(self) -> Self {
        Self { log_q: true, ..self }
    }

    /// The same request under `condition`.
    pub fn given(self, condition: Condition<'a>) -> Self {
        Self { condition, ..self }
    }

    /// The same request with guidance scale `w`.
    pub fn guided(self, w: f64) -> Self {
        Self { guidance: w, ..self }
    }
}

/// What [`DataUnits::per_class`] joins: the part's own extra (the paths' times), the rows, the labels.
type PerClass<T, A> = (Option<T>, ndarray::Array<f64, A>, Option<Vec<usize>>);

/// Generated paths: the times, the states `[times, n, dim]` (data units), each path's class for
/// a request of several classes.
#[derive(Debug, Clone)]
pub struct GeneratedPaths {
    /// The grid's times.
    pub times: Vec<f64>,
    /// `[times, n, dim]`.
    pub paths: Array3<f64>,
    /// Each path's class, for [`Condition::Classes`].
    pub labels: Option<Vec<usize>>,
}

/// Generated points (data units) and, for [`Condition::Classes`], each row's class.
#[derive(Debug, Clone)]
pub struct Generated {
    /// `[n, d]`.
    pub points: Array2<f64>,
    /// Each row's class, for a request of several classes.
    pub labels: Option<Vec<usize>>,
    /// Each row's `log q` in nats of the data's units, for a request [`Request::with_log_q`]
    /// (under its condition and guidance: the density of the field that generated it).
    pub log_q: Option<Array1<f64>>,
}

impl<M: fm_model::VelocityModel + ?Sized> DataUnits<'_, M> {
    /// Samples as `request` asks, in data units.
    ///
    /// # Errors
    /// [`crate::Generator::check`]'s refusals; [`crate::Guided::new`]'s (an unconditional model
    /// given a condition, a class out of range, a scale that is not finite); then as
    /// [`crate::sample`].
    pub fn generate(&self, request: &Request<'_>) -> Result<Generated> {
        let (_, points, labels) = self.per_class(request, |one| self.generate_one(one).map(|x| ((), x)), ndarray::Axis(0))?;
        // With log q, each row carries it as a last column through the classes' shuffle.
        if request.log_q {
            let d = points.ncols() - 1;
            return Ok(Generated { log_q: Some(points.column(d).to_owned()), points: points.slice(ndarray::s![.., ..d]).to_owned(), labels });
        }
        Ok(Generated { points, labels, log_q: None })
    }

    /// The paths of `request`'s samples (`request.sample.n_samples` ignored: `n` paths, or `n`
    /// per class): the states after each step (each jump, for MeanFlow), `[times, n, dim]`, and
    /// each path's class for a request of several classes.
    ///
    /// # Errors
    /// As [`DataUnits::generate`] and [`crate::sample_paths`].
    pub fn generate_paths(&self, request: &Request<'_>, n: usize) -> Result<GeneratedPaths> {
        // Per class, its count of paths (as its samples' count); else `n`.
        let by_class = matches!(request.condition, Condition::Classes(_));
        let one = |r: &Request<'_>| self.paths_one(r, if by_class { r.sample.n_samples } else { n });
        let (times, paths, labels) = self.per_class(request, one, ndarray::Axis(1))?;
        Ok(GeneratedPaths { times: times.unwrap_or_default(), paths, labels })
    }

    /// Runs `one` per class of a [`Condition::Classes`] request (its counts as `n_samples`, the
    /// source seeded by `seed + class`) and joins the results along `axis` in a seeded random
    /// order of the rows; for any other condition, `one` on the request itself.
    fn per_class<T, A: ndarray::RemoveAxis>(
        &self,
        request: &Request<'_>,
        one: impl Fn(&Request<'_>) -> Result<(T, ndarray::Array<f64, A>)>,
        axis: ndarray::Axis,
    ) -> Result<PerClass<T, A>> {
        let Condition::Classes(counts) = request.condition else {
            let (extra, x) = one(request)?;
            return Ok((Some(extra), x, None));
        };
        let (mut extra, mut parts) = (None, Vec::new());
        for &(class, n) in counts.iter().filter(|c| c.1 > 0) {
            let cfg = SampleConfig { n_samples: n, seed: request.sample.seed.wrapping_add(class as u64), ..request.sample.clone() };
            let (e, x) = one(&Request { condition: Condition::Class(class), sample: &cfg, ..request.clone() })?;
            extra = Some(e);
            parts.push(x);
        }
        let labels: Vec<usize> = counts.iter().flat_map(|&(c, n)| std::iter::repeat_n(c, n)).collect();
        let views: Vec<_> = parts.iter().map(|p| p.view()).collect();
        let x = ndarray::concatenate(axis, &views).map_err(|e| crate::Error::Internal(format!("sample shapes: {e}")))?;
        if axis.index() != 0 {
            // Paths keep the classes in order (they are drawn, not judged in windows).
            return Ok((extra, x, Some(labels)));
        }
        // Rows in a random order (from the seed): any window of them is a sample of the mixture,
        // as the quality figures, which judge windows of consecutive rows, assume.
        let mut order: Vec<usize> = (0..labels.len()).collect();
        rand::seq::SliceRandom::shuffle(&mut order[..], &mut <rand::rngs::StdRng as rand::SeedableRng>::seed_from_u64(request.sample.seed));
        Ok((extra, x.select(axis, &order), Some(order.iter().map(|&i| labels[i]).collect())))
    }

    /// One condition's samples: the adapters stacked, then [`DataUnits::sample`].
    fn generate_one(&self, request: &Request<'_>) -> Result<Array2<f64>> {
        request.generator.check(request.sample)?;
        if request.log_q && !request.generator.is_flow() {
            return Err(crate::Error::Config(format!("log q needs a flow: a {} model's samples have no likelihood here", request.generator.name())));
        }
        self.conditioned(request, |field| {
            self.with_generator(field, request.generator, request.sample, |units, cfg| match request.log_q {
                false => units.sample(cfg),
                true => {
                    let (x, log_q) = units.sample_with_log_q(cfg)?;
                    Ok(ndarray::concatenate![ndarray::Axis(1), x, log_q.insert_axis(ndarray::Axis(1))])
                }
            })
        })
    }

    /// One condition's paths.
    fn paths_one(&self, request: &Request<'_>, n: usize) -> Result<(Vec<f64>, Array3<f64>)> {
        request.generator.check(request.sample)?;
        self.conditioned(request, |field| self.with_generator(field, request.generator, request.sample, |units, cfg| units.sample_paths(cfg, n)))
    }

    /// Calls `then` with the model under the request's condition and guidance: the model itself
    /// unconditioned (its own field, its "no condition" entry when conditional), else
    /// [`crate::Guided`]. A conditional average-velocity model takes its "no condition" entry
    /// through [`crate::Guided`] as well: its jumps feed the network whole rows of inputs.
    fn conditioned<T>(&self, request: &Request<'_>, then: impl FnOnce(&dyn fm_model::VelocityModel) -> Result<T>) -> Result<T> {
        let conditional = self.field.condition_shape().is_conditional();
        let (label, values) = match request.condition {
            Condition::None if request.guidance == 1.0 && !(conditional && request.generator == Generator::AverageVelocity) => {
                return then(&AsDyn(self.field));
            }
            Condition::None => (None, None),
            Condition::Class(c) => (Some(c), None),
            Condition::Values(v) => (None, Some(v)),
            Condition::Classes(_) => return Err(crate::Error::Internal("classes are split before a field is built".into())),
        };
        then(&crate::Guided::new(self.field, label, values, request.guidance)?)
    }

    /// `then` on the field that generates as `generator` does: `field` itself, or its jumps.
    fn with_generator<T>(
        &self,
        field: &dyn fm_model::VelocityModel,
        generator: Generator,
        cfg: &SampleConfig,
        then: impl FnOnce(&DataUnits<'_, dyn Field + '_>, &SampleConfig) -> Result<T>,
    ) -> Result<T> {
        let with = |f: &dyn Field| then(&DataUnits { field: f, source: self.source, map: self.map, path: self.path }, cfg);
        match generator {
            Generator::AverageVelocity => with(&Jumps { model: field, h: 1.0 / cfg.steps as f64 }),
            _ => with(&AsDyn(field)),
        }
    }
}

/// What sampling takes of a field, as one trait object.
trait Field: VectorField + HasDevice {}

impl<T: VectorField + HasDevice + ?Sized> Field for T {}

/// A field's velocity at the rows of `x` and time `t`, as an array (no gradient kept).
///
/// # Errors
/// A field or torch failure.
pub fn velocity_array(field: &(impl VectorField + HasDevice + ?Sized), x: ArrayView2<f64>, t: f64) -> Result<Array2<f64>> {
    let _guard = tch::no_grad_guard();
    tensor_to_array(&field.velocity(&array_to_tensor(x, field.device())?, t)?)
}

/// A model of any size (a `dyn` one too) as a sized one, so that it can stand as a
/// `dyn VelocityModel` beside the adapters: every method is the model's own, bit for bit.
pub(crate) struct AsDyn<'a, M: ?Sized>(pub(crate) &'a M);

impl<M: fm_model::VelocityModel + ?Sized> VectorField for AsDyn<'_, M> {
    fn velocity(&self, x: &tch::Tensor, t: f64) -> fm_ode::Result<tch::Tensor> {
        self.0.velocity(x, t)
    }
    fn velocity_and_divergence(&self, x: &tch::Tensor, t: f64) -> fm_ode::Result<Option<(tch::Tensor, tch::Tensor)>> {
        self.0.velocity_and_divergence(x, t)
    }
}

impl<M: fm_model::VelocityModel + ?Sized> fm_model::VelocityModel for AsDyn<'_, M> {
    fn forward(&self, x: &tch::Tensor, t: &tch::Tensor) -> fm_model::Result<tch::Tensor> {
        self.0.forward(x, t)
    }
    fn condition_shape(&self) -> fm_model::ConditionShape {
        self.0.condition_shape()
    }
    fn velocity_given(&self, x: &tch::Tensor, t: f64, c: &tch::Tensor) -> fm_ode::Result<tch::Tensor> {
        self.0.velocity_given(x, t, c)
    }
    fn velocity_and_divergence_given(&self, x: &tch::Tensor, t: f64, c: &tch::Tensor) -> fm_ode::Result<Option<(tch::Tensor, tch::Tensor)>> {
        self.0.velocity_and_divergence_given(x, t, c)
    }
    fn dim(&self) -> usize {
        self.0.dim()
    }
    fn time_inputs(&self) -> usize {
        self.0.time_inputs()
    }
    fn jvp(&self, x: &tch::Tensor, t: &tch::Tensor, dx: &tch::Tensor, dt: &tch::Tensor) -> fm_model::Result<(tch::Tensor, tch::Tensor)> {
        self.0.jvp(x, t, dx, dt)
    }
    fn device(&self) -> tch::Device {
        self.0.device()
    }
    fn named_parameters(&self) -> Vec<(String, tch::Tensor)> {
        self.0.named_parameters()
    }
    fn architecture(&self) -> fm_model::Architecture {
        self.0.architecture()
    }
    fn mse_backward(&self, x: &tch::Tensor, t: &tch::Tensor, target: &tch::Tensor) -> fm_model::Result<Option<tch::Tensor>> {
        self.0.mse_backward(x, t, target)
    }
}

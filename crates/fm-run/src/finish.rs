//! The second half of a run: sample the trained model, judge the samples and the model, and
//! write the samples, labels and report into the run folder (`fm run` after training).

use crate::{seeds, Report, Result, RunConfig, RunDir, Trained};
use fm_dist::importance::ImportanceSummary;
use fm_dist::metrics::SampleQuality;
use ndarray::{Array2, ArrayView2};
use rand::{rngs::StdRng, SeedableRng};
use std::time::Instant;

/// What finishing a run computed and wrote ([`RunDir::SAMPLES`], [`RunDir::LABELS`] for a
/// class-conditional model, [`RunDir::REPORT`]); the report holds every figure.
pub struct Finished {
    /// The samples, in the data's units.
    pub samples: Array2<f64>,
    /// Each sample's class, for a class-conditional model (each class in its share of the target).
    pub labels: Option<Vec<usize>>,
    /// What was written into the report.
    pub report: Report,
}

impl Finished {
    /// Whether the model is class-conditional (its samples drawn class by class).
    pub fn by_class(&self) -> bool {
        self.labels.is_some()
    }
}

/// Prepares `cfg`'s sampling for the model its objective trains, before any work: the sampler
/// defaults of that kind of model where the user gave none (`steps_given`, `method_given`), then
/// every check that would otherwise fail after training (sampling, judging).
///
/// # Errors
/// A sampler the model cannot use, or settings out of range.
pub fn prepare(cfg: &mut RunConfig, steps_given: bool, method_given: bool) -> Result<()> {
    let generator = cfg.generator();
    generator.defaults(&mut cfg.sample, steps_given, method_given);
    generator.check(&cfg.sample)?;
    cfg.sample.validate()?;
    cfg.eval.validate(cfg.sample.n_samples)
}

/// Samples `trained` as `cfg` says (a class-conditional model: each class in its share of the
/// target, so that together they follow the whole target), judges the samples (beside
/// `alongside`, run on a helper thread with the samples and labels: the caller's figure), the
/// model's likelihood where it has one, and a class-conditional model class by class; writes the
/// samples, labels and report into `dir`. Each finding goes to `log` as soon as it is made (the
/// sampling, what is not judged and why, the quality, the likelihood, each class).
///
/// # Errors
/// Sampling, judging or writing failed, or `alongside` did (its error is returned after the
/// report is written only if everything else succeeded).
pub fn finish_run<R: Send>(
    cfg: &RunConfig,
    dir: &RunDir,
    trained: &Trained,
    log: &mut dyn FnMut(&str),
    alongside: impl FnOnce(ArrayView2<f64>, Option<&[usize]>) -> R + Send,
) -> Result<(Finished, R)> {
    let conditional = trained.model.condition_shape().classes > 0;
    let request = fm_train::Request::new(trained.generator, &cfg.sample);
    let (samples, labels, weights, sample_seconds) = sample_into(cfg, dir, trained, &request, log)?;
    // A one-step or MeanFlow model's likelihood is not its sampler's: its samples judge it. A
    // conditional model trained with cond_drop 0 has no trained "no condition" entry to judge.
    let null_untrained = fm_train::conditional::null_entry_untrained(&cfg.train);
    let judge_kl = trained.target.has_density()
        && trained.target.has_sampler()
        && trained.data_map.is_none()
        && cfg.eval.kl_points > 0
        && trained.generator.is_flow()
        && !null_untrained;
    // The caller's figure (pure Rust, on a helper thread) and the quality are computed while the
    // model's likelihood (libtorch, on this thread) is: their threads are measured, not fixed.
    let target = trained.target.as_ref();
    let (beside, quality, kl) = std::thread::scope(|scope| {
        let beside = scope.spawn(|| alongside(samples.view(), labels.as_deref()));
        // Without a sampler there are no target samples to judge against.
        let quality = scope.spawn(|| {
            target.has_sampler().then(|| cfg.eval.measure(target, samples.view(), &mut StdRng::seed_from_u64(seeds::quality(cfg.train.seed)))).transpose()
        });
        let kl = match judge_kl {
            true => {
                let mut rng = StdRng::seed_from_u64(seeds::kl(cfg.train.seed));
                fm_train::kl_estimate(trained.target.as_ref(), &*trained.model, trained.source.as_ref(), cfg.eval.kl_points, &cfg.eval.likelihood, &mut rng)
                    .map(Some)
            }
            false => Ok(None),
        };
        (joined(beside), joined(quality), kl)
    });
    let (quality, kl) = (quality?, kl?);
    if null_untrained {
        log("note: no pooled likelihood: cond_drop 0 left the \"no condition\" entry untrained; the per-class table judges each class");
    }
    match &quality {
        Some(quality) => log(&format!("quality of the samples:\n{quality}")),
        None => log(&format!("note: no sample quality (W2, shares): the target {} has no sampler to judge against", target.name())),
    }
    if let Some(kl) = &kl {
        let entry = if conditional { " (its \"no condition\" entry)" } else { "" };
        log(&format!("likelihood of the model{entry}:\n  {kl}"));
    }
    let mut per_class = Vec::new();
    if conditional {
        log("per class (w = 1):");
        let mut rng = StdRng::seed_from_u64(seeds::quality(cfg.train.seed).wrapping_add(1));
        let w2_points = cfg.eval.w2_points.min(cfg.sample.n_samples);
        for class in 0..trained.target.classes() {
            let units = trained.units();
            let q = fm_train::class_quality(&units, trained.target.as_ref(), class, &request, w2_points, cfg.eval.kl_points, &cfg.eval.likelihood, &mut rng)?;
            log(&format!("  {q}"));
            per_class.push(q);
        }
    }
    let report = Report {
        train: trained.report.clone(),
        loss_floor: trained.loss_floor,
        sample_seconds,
        max_share_error: quality.as_ref().and_then(SampleQuality::max_share_error),
        log_prob_gap: quality.as_ref().and_then(SampleQuality::log_prob_gap),
        w2_excess: quality.as_ref().map(SampleQuality::w2_excess),
        quality,
        kl,
        weights,
        per_class,
    };
    dir.write_report(&report)?;
    Ok((Finished { samples, labels, report }, beside))
}

/// Samples the trained model into `dir` (samples, labels, `log q`; what an earlier command left
/// there that is not theirs removed): class by class for a class-conditional model; with each
/// sample's exact `log q` from the same forward solve for an energy-weighted run, whose samples
/// are then weighed against the density it learnt from (the only judgement of a target known
/// by its density alone). Returns the samples, labels, weights and seconds spent sampling.
#[allow(clippy::type_complexity)]
fn sample_into(
    cfg: &RunConfig,
    dir: &RunDir,
    trained: &Trained,
    request: &fm_train::Request<'_>,
    log: &mut dyn FnMut(&str),
) -> Result<(Array2<f64>, Option<Vec<usize>>, Option<ImportanceSummary>, f64)> {
    let t0 = Instant::now();
    let conditional = trained.model.condition_shape().classes > 0;
    let density = cfg.train.objective.energy().and_then(|_| fm_dist::density_of(trained.target.as_ref()));
    let (samples, labels, log_q) = if conditional {
        let counts = fm_train::counts_by_weight(cfg.sample.n_samples, &trained.target.class_weights());
        let generated = trained.units().generate(&request.clone().given(fm_train::Condition::Classes(&counts)))?;
        (generated.points, generated.labels, None)
    } else if density.is_some() {
        let (points, log_q) = trained.units().sample_with_log_q(&cfg.sample)?;
        (points, None, Some(log_q))
    } else {
        (trained.units().generate(request)?.points, None, None)
    };
    let sample_seconds = t0.elapsed().as_secs_f64();
    let by_class = if conditional { ", each class in its share of the target" } else { "" };
    let with_log_q = if log_q.is_some() { " and their exact log q" } else { "" };
    log(&format!("sampled {} points{with_log_q} with {}{by_class} in {sample_seconds:.3} s", samples.nrows(), crate::describe(&cfg.sample)));
    fm_dist::io::write_npy(&dir.file(RunDir::SAMPLES), samples.mapv(|v| v as f32).view())?;
    write_labels(&dir.file(RunDir::LABELS), labels.as_deref())?;
    // Beside the samples, their log q, as `fm sample --log-q` writes it; without, an earlier
    // `fm sample --log-q` into the run folder is removed: its values are not these samples'.
    let log_q_file = crate::log_q_path(&dir.file(RunDir::SAMPLES));
    match &log_q {
        Some(values) => fm_dist::io::write_npy(&log_q_file, values.view().insert_axis(ndarray::Axis(1)))?,
        None => remove_stale(&log_q_file)?,
    }
    let weights = match (&density, &log_q) {
        (Some(density), Some(log_q)) => {
            let summary = fm_dist::importance::ImportanceWeights::new(&**density, samples.view(), log_q.view())?.summary();
            log(&format!(
                "importance weights against {}:\n{}",
                trained.target.name(),
                crate::judge::weight_lines(&summary, density.log_normalizer()).join("\n")
            ));
            Some(summary)
        }
        _ => None,
    };
    Ok((samples, labels, weights, sample_seconds))
}

/// A helper thread's result; its panic re-raised here, as it would have been without threads.
fn joined<T>(handle: std::thread::ScopedJoinHandle<'_, T>) -> T {
    handle.join().unwrap_or_else(|e| std::panic::resume_unwind(e))
}

/// Writes each row's class as an int64 `N × 1` `.npy` (what `fm sample --class` and `fm run`
/// write beside their samples); with no labels, removes the file an earlier run left there, whose
/// labels would not be these samples'.
///
/// # Errors
/// The file cannot be written or removed.
pub fn write_labels(path: &std::path::Path, labels: Option<&[usize]>) -> Result<()> {
    match labels {
        Some(labels) => {
            let column = Array2::from_shape_fn((labels.len(), 1), |(i, _)| labels[i] as i64);
            Ok(fm_dist::io::write_npy(path, column.view())?)
        }
        None => remove_stale(path),
    }
}

/// Removes a file an earlier run left beside new samples, whose values would not be theirs.
pub(crate) fn remove_stale(path: &std::path::Path) -> Result<()> {
    match std::fs::remove_file(path) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(crate::Error::Io { what: "cannot remove", path: path.into(), source: e }),
        _ => Ok(()),
    }
}

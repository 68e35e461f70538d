//! Metrics that compare sample sets, or samples with an analytic target.

use crate::{Error, GaussianMixture, Result, Target};
use ndarray::{s, ArrayView2, Axis};
use rand::RngCore;
use serde::{Deserialize, Serialize};

/// Serde for an `f64` that may be NaN ("no figure": a standard error of one draw, say): JSON
/// has no NaN and serde_json writes it as `null`; this reads `null` back as NaN, so a report
/// written with such a figure reads back.
pub mod nan_as_null {
    use serde::Deserialize;

    /// Reads a number, or `null` as NaN.
    ///
    /// # Errors
    /// What the deserializer reports for anything that is neither.
    pub fn deserialize<'de, D: serde::Deserializer<'de>>(d: D) -> Result<f64, D::Error> {
        Ok(Option::<f64>::deserialize(d)?.unwrap_or(f64::NAN))
    }
}

/// A Monte Carlo mean with its standard error: `mean = Σ v_i / n`, `se = std(v) / √n` with
/// the sample standard deviation (`n − 1` in its denominator). The values must be independent
/// draws for `se` to be the standard error.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Estimate {
    /// The sample mean.
    pub mean: f64,
    /// Its standard error (NaN for fewer than 2 values).
    #[serde(deserialize_with = "nan_as_null::deserialize")]
    pub se: f64,
    /// The number of values averaged.
    pub n: usize,
}

impl Estimate {
    /// The estimate from independent values.
    ///
    /// # Errors
    /// [`Error::Metric`] for no values or a non-finite one.
    pub fn of(values: &[f64]) -> Result<Self> {
        let n = values.len();
        if n == 0 {
            return Err(Error::Metric("an estimate needs at least one value".into()));
        }
        if let Some(bad) = values.iter().find(|v| !v.is_finite()) {
            return Err(Error::Metric(format!("an estimate of non-finite values (found {bad})")));
        }
        let nf = n as f64;
        let mean = values.iter().sum::<f64>() / nf;
        let se = if n < 2 { f64::NAN } else { (values.iter().map(|v| (v - mean) * (v - mean)).sum::<f64>() / (nf - 1.0) / nf).sqrt() };
        Ok(Self { mean, se, n })
    }
}

impl std::fmt::Display for Estimate {
    /// `0.1234 ± 0.0012`; the precision (`{:.2}`) applies to both.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let p = f.precision().unwrap_or(4);
        write!(f, "{:.p$} ± {:.p$}", self.mean, self.se)
    }
}

/// Exact 2-Wasserstein distance between two equal-size sample sets (uniform weights):
/// `sqrt(min_π (1/n) Σ_i |a_i - b_π(i)|²)`, the optimum found by the Jonker–Volgenant
/// solver of the `lsap` crate (scipy's `linear_sum_assignment`). Cost O(n³) worst case,
/// single-threaded; measured on a 2-core EPYC (`cargo bench -p fm-dist -- w2`): 1,000
/// points 0.09 s, 2,000 points 0.68 s (the most that fits in a second), 4,000 points 3.8 s.
///
/// # Errors
/// [`Error::Metric`] for sets of different shapes, empty sets, or a NaN or infinite value.
pub fn w2(a: ArrayView2<f64>, b: ArrayView2<f64>) -> Result<f64> {
    if a.dim() != b.dim() {
        return Err(Error::Metric(format!("W2 needs two sets of equal shape, got {:?} and {:?}", a.dim(), b.dim())));
    }
    let n = a.nrows();
    if n == 0 {
        return Err(Error::Metric("W2 of empty sample sets".into()));
    }
    if a.iter().chain(b.iter()).any(|v| !v.is_finite()) {
        return Err(Error::Metric("W2 of samples with NaN or infinite values".into()));
    }
    let mut cost = Vec::with_capacity(n * n);
    for ra in a.axis_iter(Axis(0)) {
        for rb in b.axis_iter(Axis(0)) {
            cost.push(ra.iter().zip(rb.iter()).map(|(x, y)| (x - y) * (x - y)).sum::<f64>());
        }
    }
    let total = lsap::get_assigned_cost(n, n, &cost, false).map_err(|e| Error::Metric(format!("assignment solver failed: {e}")))?;
    Ok((total / n as f64).max(0.0).sqrt())
}

/// Unbiased estimate of the squared maximum mean discrepancy between the laws of `a`
/// (`m` rows) and `b` (`n` rows), with the kernel `k(x, y) = Σ_h exp(−|x − y|² / (2h²))`
/// summed over `bandwidths` (a sum covers several length scales at once):
///
/// `MMD²_u = Σ_{i≠j} k(a_i, a_j) / (m(m−1)) + Σ_{i≠j} k(b_i, b_j) / (n(n−1)) − 2 Σ_{i,j} k(a_i, b_j) / (mn)`.
///
/// Its expectation is exactly MMD² (0 when both sets come from one law), so it can be
/// slightly negative. Needs at least 2 rows per set; cost O((m + n)² · bandwidths).
///
/// # Errors
/// [`Error::Dim`] for sets of different widths; [`Error::Metric`] for fewer than 2 rows in a
/// set, no bandwidth, a bandwidth that is not finite and positive, or a NaN or infinite value.
pub fn mmd2_unbiased(a: ArrayView2<f64>, b: ArrayView2<f64>, bandwidths: &[f64]) -> Result<f64> {
    if a.ncols() != b.ncols() {
        return Err(Error::Dim { expected: a.ncols(), got: b.ncols() });
    }
    let (m, n) = (a.nrows(), b.nrows());
    if m < 2 || n < 2 {
        return Err(Error::Metric(format!("unbiased MMD needs at least 2 samples per set, got {m} and {n}")));
    }
    if bandwidths.is_empty() {
        return Err(Error::Metric("MMD needs at least one kernel bandwidth".into()));
    }
    if let Some(h) = bandwidths.iter().find(|h| !(h.is_finite() && **h > 0.0)) {
        return Err(Error::Metric(format!("MMD bandwidths must be finite and positive, got {h}")));
    }
    if a.iter().chain(b.iter()).any(|v| !v.is_finite()) {
        return Err(Error::Metric("MMD of samples with NaN or infinite values".into()));
    }
    let inv_two_h2: Vec<f64> = bandwidths.iter().map(|h| 0.5 / (h * h)).collect();
    let kernel = |x: ndarray::ArrayView1<f64>, y: ndarray::ArrayView1<f64>| {
        let d2: f64 = x.iter().zip(y.iter()).map(|(p, q)| (p - q) * (p - q)).sum();
        inv_two_h2.iter().map(|c| (-c * d2).exp()).sum::<f64>()
    };
    // Sum over i < j, doubled: the kernel is symmetric.
    let within = |x: ArrayView2<f64>| {
        let mut s = 0.0;
        for i in 0..x.nrows() {
            for j in i + 1..x.nrows() {
                s += kernel(x.row(i), x.row(j));
            }
        }
        2.0 * s
    };
    let mut cross = 0.0;
    for ra in a.axis_iter(Axis(0)) {
        for rb in b.axis_iter(Axis(0)) {
            cross += kernel(ra, rb);
        }
    }
    let (mf, nf) = (m as f64, n as f64);
    Ok(within(a) / (mf * (mf - 1.0)) + within(b) / (nf * (nf - 1.0)) - 2.0 * cross / (mf * nf))
}

/// Fraction of samples whose most probable component (of `ln w_k + ln N_k`) is `k`.
///
/// # Errors
/// [`Error::Dim`] when `x` does not have the mixture's dimension.
pub fn mixture_shares(gmm: &GaussianMixture, x: ArrayView2<f64>) -> Result<Vec<f64>> {
    let joint = gmm.component_log_joint(x)?;
    let mut counts = vec![0usize; gmm.n_components()];
    for row in joint.axis_iter(Axis(0)) {
        let best = row.iter().enumerate().fold((0, f64::NEG_INFINITY), |b, (k, &v)| if v > b.1 { (k, v) } else { b });
        counts[best.0] += 1;
    }
    let n = x.nrows().max(1) as f64;
    Ok(counts.into_iter().map(|c| c as f64 / n).collect())
}

/// Mean log-density of the rows of `x` under `target`.
///
/// # Errors
/// [`Error::Metric`] for no rows; otherwise the error of [`Target::log_prob`]
/// ([`Error::NoDensity`] without a density, [`Error::Dim`] for the wrong width).
pub fn mean_log_prob(target: &dyn Target, x: ArrayView2<f64>) -> Result<f64> {
    if x.nrows() == 0 {
        return Err(Error::Metric("mean log-density of an empty sample set".into()));
    }
    Ok(target.log_prob(x)?.mean().unwrap_or(f64::NAN))
}

/// Median of the pairwise distances between the first `max_points` rows of `x` (the
/// usual scale for a Gaussian kernel's bandwidth); 1 when all points coincide.
pub fn median_distance(x: ArrayView2<f64>, max_points: usize) -> f64 {
    let n = x.nrows().min(max_points);
    let mut d: Vec<f64> = (0..n).flat_map(|i| (i + 1..n).map(move |j| (i, j))).map(|(i, j)| (&x.row(i) - &x.row(j)).mapv(|v| v * v).sum().sqrt()).collect();
    if d.is_empty() {
        return 1.0;
    }
    let mid = d.len() / 2;
    let (_, m, _) = d.select_nth_unstable_by(mid, f64::total_cmp);
    if *m > 0.0 && m.is_finite() {
        *m
    } else {
        1.0
    }
}

/// How generated samples compare with a target: the figures flow-matching runs are judged by.
///
/// W2 and MMD need only samples, so they exist for every target; the mean log-density
/// needs a density, the component shares a Gaussian mixture. Every figure comes with its
/// reference (the same figure for fresh true samples, so noise floors are visible) and a
/// standard error.
///
/// For a mixture, the true sets of the W2 and MMD figures are drawn with the generated
/// window's component counts (each true point's most probable component, as for the shares):
/// two 2,000-point draws of a well-separated mixture differ in their counts by tens of points,
/// and moving that mass between modes dominated W2 (the same samples scored an excess of −0.006
/// and 0.126 on two seeds). Mass in the wrong component is what the shares measure; W2 then
/// measures the shape within the components.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SampleQuality {
    /// The target's name ([`Target::name`]).
    pub target: String,
    /// Rows of the generated set.
    pub n_samples: usize,
    /// Share of the generated samples per most probable component ([`mixture_shares`]);
    /// `None` unless the target is a Gaussian mixture.
    pub shares: Option<Vec<f64>>,
    /// The mixture's weights, to compare the shares with; `None` unless the target is a
    /// Gaussian mixture.
    pub weights: Option<Vec<f64>>,
    /// The binomial standard error of a share at the mixture's largest `w(1 − w)`: `√(max w(1 − w) / n)`.
    pub share_se: Option<f64>,
    /// Mean log-density of the generated samples under the target …
    pub mean_log_prob: Option<f64>,
    /// … and of as many fresh true samples (the reference).
    pub reference_mean_log_prob: Option<f64>,
    /// Standard error of the gap between the two: `√(var_gen / n + var_true / n)`.
    pub log_prob_gap_se: Option<f64>,
    /// Generated samples where the target's density is 0 (outside a `checkerboard`'s squares,
    /// say): their log-density is −∞, so the mean log-density figures are `None` when any is.
    #[serde(default)]
    pub outside_support: usize,
    /// Exact W2 between `w2_points` generated and fresh true samples, averaged over `w2_draws` draws …
    pub w2: f64,
    /// … and between two independent true sets of the same size (the noise floor).
    pub w2_reference: f64,
    /// Standard error of the excess `w2 − w2_reference` over the draws (NaN for one draw).
    #[serde(deserialize_with = "nan_as_null::deserialize")]
    pub w2_excess_se: f64,
    /// Points per set in each W2 draw.
    pub w2_points: usize,
    /// Number of W2 draws averaged, each on a window of `w2_points` generated rows.
    pub w2_draws: usize,
    /// Whether the true sets had the generated windows' component counts (mixtures, unless a
    /// component the samples crowd is too rare to draw that often: then every draw from the
    /// first such one on is independent).
    pub w2_matched_counts: bool,
    /// Unbiased MMD² between the first `min(w2_points, 1000)` points of each generated window and a
    /// fresh true set of that size (independent draws), averaged over the draws, with the kernel summed over `mmd_bandwidths` (the median
    /// distance of true samples × ¼, ½, 1, 2, 4) …
    pub mmd2: f64,
    /// … and its standard error over the draws (NaN for one draw).
    #[serde(deserialize_with = "nan_as_null::deserialize")]
    pub mmd2_se: f64,
    /// The MMD kernel's bandwidths: ¼, ½, 1, 2 and 4 times the median pairwise distance
    /// ([`median_distance`]) of the first `min(w2_points, 1000)` points of the first draw's
    /// true set.
    pub mmd_bandwidths: Vec<f64>,
}

/// True samples of `gmm` with the given counts per most probable component (the argmax of
/// [`GaussianMixture::component_log_joint`]), by drawing and sorting; errors when a component
/// is too rare to fill within 1,000 draws per point asked for.
///
/// # Errors
/// [`Error::Metric`] when a component is that rare.
pub fn draw_with_counts(gmm: &GaussianMixture, counts: &[usize], rng: &mut dyn RngCore) -> Result<ndarray::Array2<f64>> {
    let total: usize = counts.iter().sum();
    let mut missing = counts.to_vec();
    let mut rows: Vec<Vec<ndarray::Array1<f64>>> = vec![Vec::new(); counts.len()];
    let mut drawn = 0usize;
    while missing.iter().any(|&m| m > 0) {
        if drawn > 1000 * total.max(1) {
            let k = missing.iter().position(|&m| m > 0).unwrap_or(0);
            return Err(Error::Metric(format!("cannot draw {} true samples of component {k}: it is too rare (weight {})", counts[k], gmm.weights()[k])));
        }
        let batch = gmm.sample(total.max(256), rng);
        drawn += batch.nrows();
        let joint = gmm.component_log_joint(batch.view())?;
        for (row, lj) in batch.rows().into_iter().zip(joint.rows()) {
            let k = argmax(lj);
            if missing[k] > 0 {
                missing[k] -= 1;
                rows[k].push(row.to_owned());
            }
        }
    }
    let views: Vec<_> = rows.iter().flatten().map(|r| r.view()).collect();
    if views.is_empty() {
        return Ok(ndarray::Array2::zeros((0, gmm.dim())));
    }
    ndarray::stack(Axis(0), &views).map_err(|e| Error::Metric(e.to_string()))
}

fn argmax(v: ndarray::ArrayView1<f64>) -> usize {
    v.iter().enumerate().fold((0, f64::NEG_INFINITY), |b, (k, &x)| if x > b.1 { (k, x) } else { b }).0
}

/// Points per most probable component of `x`.
fn component_counts(gmm: &GaussianMixture, x: ArrayView2<f64>) -> Result<Vec<usize>> {
    let mut counts = vec![0; gmm.n_components()];
    for row in gmm.component_log_joint(x)?.rows() {
        counts[argmax(row)] += 1;
    }
    Ok(counts)
}

impl SampleQuality {
    /// Points per set of the W2 figure the seed experiment is judged by.
    pub const W2_POINTS: usize = 2000;
    /// Draws that figure is averaged over (a single draw is noisy).
    pub const W2_DRAWS: usize = 5;
    /// Points per set of the MMD figure (its cost is quadratic).
    pub const MMD_POINTS: usize = 1000;

    /// Computes the report; W2 figures use `w2_points` samples per set and average `w2_draws` draws.
    ///
    /// # Errors
    /// [`Error::Dim`] when `generated` is not as wide as the target; [`Error::Metric`] for
    /// `w2_points` outside `2..=n`, no draw, or NaN or infinite values in the generated rows a
    /// metric reads.
    pub fn measure(target: &dyn Target, generated: ArrayView2<f64>, w2_points: usize, w2_draws: usize, rng: &mut dyn RngCore) -> Result<Self> {
        crate::check_dim(&generated, target.dim())?;
        let n = generated.nrows();
        if w2_points < 2 || w2_draws == 0 || w2_points > n {
            return Err(Error::Metric(format!("W2 on {w2_points} points × {w2_draws} draws needs 2..={n} points and at least one draw")));
        }
        let gmm = target.as_mixture();
        let mut matched = gmm.is_some();
        let m = w2_points.min(Self::MMD_POINTS);
        // Every random draw first, in the generator's order; then the assignments (nearly all
        // the time: O(n³) each) and the MMDs, on helper threads. The figures do not depend on
        // the number of threads.
        let mut draws = Vec::with_capacity(w2_draws);
        let mut bandwidths = None;
        for draw in 0..w2_draws {
            // Disjoint windows of the generated set when it is large enough, else overlapping ones.
            let start = (draw * w2_points) % (n - w2_points + 1);
            let gen = generated.slice(s![start..start + w2_points, ..]);
            // Samples crowding a component the mixture almost never draws cannot be matched:
            // those draws fall back to independent true sets (and the report says so).
            let with_counts = gmm.filter(|_| matched).map(|g| -> Result<_> {
                let counts = component_counts(g, gen)?;
                Ok((draw_with_counts(g, &counts, rng)?, draw_with_counts(g, &counts, rng)?))
            });
            let (t1, t2) = match with_counts {
                Some(Ok(sets)) => sets,
                _ => {
                    matched = false;
                    (target.sample(w2_points, rng), target.sample(w2_points, rng))
                }
            };
            if bandwidths.is_none() {
                let h = median_distance(t1.view(), m);
                bandwidths = Some([0.25, 0.5, 1.0, 2.0, 4.0].iter().map(|f| f * h).collect::<Vec<f64>>());
            }
            // MMD²'s unbiasedness needs independent draws on both sides: a fresh true set, not
            // one with the samples' counts (that pairing biases it below 0).
            let fresh = target.sample(m, rng);
            draws.push((gen, t1, t2, fresh));
        }
        let h = bandwidths.clone().unwrap_or_default();
        // Jobs 3k, 3k + 1, 3k + 2: draw k's W2 to the samples, W2 between its true sets, MMD².
        let jobs = crate::threads::map_jobs(3 * draws.len(), |j| {
            let (gen, t1, t2, fresh) = &draws[j / 3];
            match j % 3 {
                0 => w2(*gen, t1.view()),
                1 => w2(t1.view(), t2.view()),
                _ => mmd2_unbiased(gen.slice(s![..m, ..]), fresh.view(), &h),
            }
        });
        let jobs = jobs.into_iter().collect::<Result<Vec<f64>>>()?;
        let (mut w2s, mut refs, mut excess, mut mmds) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
        for k in jobs.chunks_exact(3) {
            w2s.push(k[0]);
            refs.push(k[1]);
            excess.push(k[0] - k[1]);
            mmds.push(k[2]);
        }
        let log_p = if target.has_density() { Some(target.log_prob(generated)?) } else { None };
        let outside_support = log_p.as_ref().map_or(0, |l| l.iter().filter(|v| **v == f64::NEG_INFINITY).count());
        let (mean_log_prob, reference_mean_log_prob, log_prob_gap_se) = match log_p {
            Some(log_p) if outside_support == 0 => {
                let fresh = target.sample(n, rng);
                let (a, b) = (Estimate::of(log_p.as_slice().unwrap_or(&[]))?, Estimate::of(target.log_prob(fresh.view())?.as_slice().unwrap_or(&[]))?);
                let se = (a.se.powi(2) + b.se.powi(2)).sqrt();
                (Some(a.mean), Some(b.mean), Some(se))
            }
            _ => (None, None, None),
        };
        let weights = gmm.map(|g| g.weights().to_vec());
        let mean = |v: &[f64]| v.iter().sum::<f64>() / v.len() as f64;
        Ok(Self {
            target: target.name(),
            n_samples: n,
            shares: gmm.map(|g| mixture_shares(g, generated)).transpose()?,
            share_se: weights.as_ref().map(|w| (w.iter().map(|w| w * (1.0 - w)).fold(0.0, f64::max) / n as f64).sqrt()),
            weights,
            mean_log_prob,
            reference_mean_log_prob,
            log_prob_gap_se,
            outside_support,
            w2: mean(&w2s),
            w2_reference: mean(&refs),
            w2_excess_se: Estimate::of(&excess)?.se,
            w2_points,
            w2_draws,
            w2_matched_counts: matched,
            mmd2: mean(&mmds),
            mmd2_se: Estimate::of(&mmds)?.se,
            mmd_bandwidths: bandwidths.unwrap_or_default(),
        })
    }

    /// Largest |share − weight| over components (mixtures only).
    pub fn max_share_error(&self) -> Option<f64> {
        Some(self.shares.as_ref()?.iter().zip(self.weights.as_ref()?).map(|(s, w)| (s - w).abs()).fold(0.0, f64::max))
    }
    /// Reference minus generated mean log-density (positive: samples sit in less likely places).
    pub fn log_prob_gap(&self) -> Option<f64> {
        Some(self.reference_mean_log_prob? - self.mean_log_prob?)
    }
    /// W2 above the noise floor of two true sets.
    pub fn w2_excess(&self) -> f64 {
        self.w2 - self.w2_reference
    }
}

impl std::fmt::Display for SampleQuality {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let fmt_list = |v: &[f64]| v.iter().map(|x| format!("{x:.3}")).collect::<Vec<_>>().join(" / ");
        let se = |v: f64, p: usize| if v.is_finite() { format!(" ± {v:.p$}") } else { String::new() };
        if let (Some(shares), Some(weights), Some(err)) = (&self.shares, &self.weights, self.max_share_error()) {
            let share_se = self.share_se.map_or(String::new(), |v| format!("; each share ±{v:.3}"));
            writeln!(f, "  component shares   {}   (weights {}; max error {err:.3}{share_se})", fmt_list(shares), fmt_list(weights))?;
        }
        if self.outside_support > 0 {
            writeln!(
                f,
                "  mean log-density   −∞   ({} of {} samples fall where the target has no density)",
                crate::empirical::group_digits(self.outside_support),
                crate::empirical::group_digits(self.n_samples)
            )?;
        }
        if let (Some(m), Some(r), Some(gap)) = (self.mean_log_prob, self.reference_mean_log_prob, self.log_prob_gap()) {
            writeln!(f, "  mean log-density   {m:.3}   (true samples {r:.3}; gap {gap:.3}{} nats)", se(self.log_prob_gap_se.unwrap_or(f64::NAN), 3))?;
        }
        let matched = match (self.w2_matched_counts, self.shares.is_some()) {
            (true, _) => ", true sets with the samples' component counts",
            (false, true) => ", independent true sets: a component the samples crowd is too rare to draw as often",
            (false, false) => "",
        };
        writeln!(
            f,
            "  W2 to true samples {:.3}   (true vs true {:.3}; excess {:.3}{}; {} points × {} draws{matched})",
            self.w2,
            self.w2_reference,
            self.w2_excess(),
            se(self.w2_excess_se, 3),
            self.w2_points,
            self.w2_draws
        )?;
        write!(
            f,
            "  MMD²               {:.5}{}   (unbiased; 0 in expectation for true samples; bandwidths {})",
            self.mmd2,
            se(self.mmd2_se, 5),
            fmt_list(&self.mmd_bandwidths)
        )
    }
}

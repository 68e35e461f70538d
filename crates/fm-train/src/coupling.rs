//! Couplings: which source sample is paired with which target sample in a batch.
//!
//! They work on the host, on the `f64` batches `fm-dist` draws, before the batch tensor
//! is built: exact OT on 256 points is a Jonker–Volgenant solve of a 256 × 256 matrix.

use crate::{Error, Result};
use ndarray::{Array2, ArrayView2, Axis};
use rand::{Rng, RngCore};
use serde::{Deserialize, Serialize};

/// How the rows of a source batch `x0` and a target batch `x1` are paired.
///
/// Serde names: `"independent"`, `"ot"`, `{ sinkhorn = { reg = 0.5 } }`, `"ot-class"`,
/// `{ c2ot = { ratio = 0.05 } }`. [`std::str::FromStr`] takes `independent`, `ot`,
/// `sinkhorn:REG`, `ot-class`, `c2ot` and `c2ot:RATIO`.
///
/// With conditions (class labels, condition vectors) every coupling keeps each target row's
/// condition with it. `independent`, `ot` and `sinkhorn` ignore the conditions (condition-blind
/// OT is known to break conditional generation: Cheng & Schwing 2025); `ot-class` and `c2ot`
/// respect them ([`Coupling::pairs_conditioned`]).
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Coupling {
    /// Row `i` of `x0` with row `i` of `x1`: the product of the marginals (the seed).
    #[default]
    Independent,
    /// Minibatch exact optimal transport (OT-CFM, Tong et al. 2023; Pooladian et al. 2023):
    /// `x1` is permuted by the assignment `π` minimising `Σ_i |x0_i − x1_π(i)|²`
    /// ([`ot_assignment`]). A permutation: every sample is used once.
    Ot,
    /// Minibatch entropic OT: `n` pairs `(i, j)` drawn with replacement from the Sinkhorn
    /// plan of the squared distances with regularisation `reg` ([`sinkhorn_plan`]), as
    /// TorchCFM's `OTPlanSampler(method="sinkhorn")` does. With the Schrödinger-bridge path
    /// of parameter σ, `reg = 2σ²`.
    Sinkhorn {
        /// The entropic regularisation, `> 0`: the weight of `−H(P)` in the objective (the
        /// kernel is `exp(−C / reg)`). Small values approach exact OT.
        reg: f64,
    },
    /// Exact OT within each class: the source rows are split among the classes at random, in
    /// the batch's class counts (source row `i` takes the class of target row `i`, its
    /// independent partner), and each class's rows are paired by [`ot_assignment`]. No pair
    /// crosses a class, and the source rows of a class stay a random draw of the source, so the
    /// condition's prior is the source itself, as at sampling time. For class labels this is
    /// C2OT's plan (Cheng & Schwing 2025, their `w = 10⁶` "effectively infinity" for classes).
    OtClass,
    /// C2OT (Cheng & Schwing, "The Curse of Conditions", ICCV 2025): exact OT of the cost
    /// `|x0_i − x1_j|² + w · C(y_i, y_j)`, where source row `i` carries the condition `y_i` of its
    /// independent partner (target row `i`). For class labels `C` is 0 within a class and
    /// infinite across ([`Coupling::OtClass`]'s plan); for condition vectors `C` is the squared
    /// distance, and `w` is found per batch (doubling from 1, then bisection, as their
    /// `search_for_w`) so that a share `ratio` of the pairs `(i, j)` are no dearer than `j`'s
    /// independent pair `(j, j)`: their default `ratio` is 0.05.
    C2ot {
        /// The share of pairs no dearer than the independent ones that fixes `w`, in `(0, 1)`.
        ratio: f64,
    },
}

impl Coupling {
    /// The entropic coupling of Schrödinger-bridge CFM with noise `sigma`: `reg = 2σ²`.
    pub fn schrodinger_bridge(sigma: f64) -> Self {
        Coupling::Sinkhorn { reg: 2.0 * sigma * sigma }
    }

    /// The name of the variant (`independent`, `ot`, `sinkhorn`), without its parameter
    /// (which [`std::fmt::Display`] adds: `sinkhorn:0.5`).
    pub fn name(self) -> &'static str {
        match self {
            Coupling::Independent => "independent",
            Coupling::Ot => "ot",
            Coupling::Sinkhorn { .. } => "sinkhorn",
            Coupling::OtClass => "ot-class",
            Coupling::C2ot { .. } => "c2ot",
        }
    }

    /// C2OT with its authors' default ratio, 0.05.
    pub fn c2ot() -> Self {
        Coupling::C2ot { ratio: 0.05 }
    }

    /// Whether the pairs depend on the rows' conditions (`ot-class`, `c2ot`), so that
    /// [`Coupling::pairs_conditioned`] needs them.
    pub fn uses_conditions(self) -> bool {
        matches!(self, Coupling::OtClass | Coupling::C2ot { .. })
    }

    /// Whether [`Coupling::pairs`] draws from the generator.
    pub fn is_random(self) -> bool {
        matches!(self, Coupling::Sinkhorn { .. })
    }

    /// Checks the parameters; the message names the field.
    ///
    /// # Errors
    /// [`Error::Config`] for a Sinkhorn `reg` that is not a positive finite number.
    pub fn validate(self) -> Result<()> {
        if let Coupling::Sinkhorn { reg } = self {
            if !(reg.is_finite() && reg > 0.0) {
                return Err(Error::Config(format!("coupling: sinkhorn reg must be a positive number, got {reg}")));
            }
        }
        if let Coupling::C2ot { ratio } = self {
            if !(ratio > 0.0 && ratio < 1.0) {
                return Err(Error::Config(format!("coupling: c2ot ratio must be in (0, 1), got {ratio}")));
            }
        }
        Ok(())
    }

    /// The pairs `(row of x0, row of x1)` to train on, `x0.nrows()` of them; `x0` and `x1`
    /// must have the same shape. Only [`Coupling::Sinkhorn`] draws from `rng`.
    ///
    /// # Errors
    /// [`Error::Config`] for batches of different shapes or empty, [`Error::Data`] for NaN or
    /// infinite values; a failing assignment solver ([`ot_assignment`]); a Sinkhorn `reg` too small for
    /// the distances ([`sinkhorn_plan`]).
    pub fn pairs(self, x0: ArrayView2<f64>, x1: ArrayView2<f64>, rng: &mut dyn RngCore) -> Result<Vec<(usize, usize)>> {
        check_batches(x0, x1)?;
        Ok(match self {
            Coupling::Independent => (0..x0.nrows()).map(|i| (i, i)).collect(),
            Coupling::Ot => ot_assignment(x0, x1)?.into_iter().enumerate().collect(),
            Coupling::Sinkhorn { reg } => sample_plan(&sinkhorn_plan(x0, x1, reg)?, x0.nrows(), rng),
            Coupling::OtClass | Coupling::C2ot { .. } => {
                return Err(Error::Config(format!("coupling {self} pairs within conditions: the data carry none (train with a condition)")))
            }
        })
    }

    /// [`Coupling::pairs`] for target rows with conditions: `labels` (one class per row of `x1`)
    /// and/or `values` (`n × c`, one condition vector per row). The blind couplings ignore
    /// them; `ot-class` needs labels; `c2ot` takes labels, or vectors when there are no labels.
    ///
    /// # Errors
    /// As [`Coupling::pairs`]; [`Error::Config`] for conditions of another row count, or none
    /// where the coupling needs them.
    pub fn pairs_conditioned(
        self,
        x0: ArrayView2<f64>,
        x1: ArrayView2<f64>,
        labels: Option<&[usize]>,
        values: Option<ArrayView2<f64>>,
        rng: &mut dyn RngCore,
    ) -> Result<Vec<(usize, usize)>> {
        if !self.uses_conditions() {
            return self.pairs(x0, x1, rng);
        }
        check_batches(x0, x1)?;
        let n = x1.nrows();
        if labels.is_some_and(|l| l.len() != n) || values.is_some_and(|v| v.nrows() != n) {
            return Err(Error::Config(format!("coupling {self}: conditions for another number of rows than the batch's {n}")));
        }
        match (self, labels, values) {
            (_, Some(labels), _) => ot_within_classes(x0, x1, labels),
            (Coupling::C2ot { ratio }, None, Some(values)) => c2ot_assignment(x0, x1, values, ratio).map(|p| p.into_iter().enumerate().collect()),
            _ => Err(Error::Config(format!("coupling {self} pairs within classes: the data carry no class labels (use c2ot for condition vectors)"))),
        }
    }
}

/// Exact OT within each class (source row `i` in the class of target row `i`): the pairs of
/// [`Coupling::OtClass`], `(i, π(i))` with `labels[i] == labels[π(i)]` for every `i`.
///
/// # Errors
/// What [`ot_assignment`] returns for a class's rows.
pub fn ot_within_classes(x0: ArrayView2<f64>, x1: ArrayView2<f64>, labels: &[usize]) -> Result<Vec<(usize, usize)>> {
    let mut rows_of: std::collections::BTreeMap<usize, Vec<usize>> = std::collections::BTreeMap::new();
    for (i, &c) in labels.iter().enumerate() {
        rows_of.entry(c).or_default().push(i);
    }
    let mut pairs = Vec::with_capacity(labels.len());
    for rows in rows_of.values() {
        let perm = ot_assignment(x0.select(Axis(0), rows).view(), x1.select(Axis(0), rows).view())?;
        pairs.extend(perm.into_iter().enumerate().map(|(a, b)| (rows[a], rows[b])));
    }
    pairs.sort_unstable();
    Ok(pairs)
}

/// C2OT's assignment for condition vectors `y` (one per row of `x1`; source row `i` carries
/// `y_i`): the permutation minimising `Σ_i |x0_i − x1_π(i)|² + w |y_i − y_π(i)|²`, with `w` set
/// so that a share `ratio` of the entries of that cost are no larger than their column's
/// diagonal entry ([`Coupling::C2ot`]). Returns `π`.
///
/// # Errors
/// As [`ot_assignment`]; [`Error::Data`] for non-finite condition values.
pub fn c2ot_assignment(x0: ArrayView2<f64>, x1: ArrayView2<f64>, y: ArrayView2<f64>, ratio: f64) -> Result<Vec<usize>> {
    check_batches(x0, x1)?;
    if y.iter().any(|v| !v.is_finite()) {
        return Err(Error::Data("coupling c2ot: condition values with NaN or infinite values".into()));
    }
    let n = x0.nrows();
    let m = squared_distances(x0, x1);
    let c = squared_distances(y, y);
    let w = c2ot_weight(&m, &c, n, ratio);
    let cost: Vec<f64> = m.iter().zip(&c).map(|(a, b)| a + w * b).collect();
    assign(n, &cost)
}

/// The weight `w` of [`c2ot_assignment`]: the share of entries `(i, j)` of `M + wC` no larger
/// than `M_jj` falls as `w` grows; 0 when the share is already below `ratio`, else doubling
/// from 1 (at most 2⁴⁰) then 30 bisections. Deterministic per batch (the authors' code carries
/// `w` from batch to batch, which would make a step's pairs depend on the steps before it).
pub fn c2ot_weight(m: &[f64], c: &[f64], n: usize, ratio: f64) -> f64 {
    let share = |w: f64| {
        let below = (0..n * n).filter(|&k| m[k] + w * c[k] <= m[(k % n) * n + k % n]).count();
        below as f64 / (n * n) as f64
    };
    if share(0.0) <= ratio {
        return 0.0;
    }
    let (mut low, mut high) = (0.0, 1.0);
    while share(high) > ratio {
        low = high;
        high *= 2.0;
        if high > 1e12 {
            return high;
        }
    }
    for _ in 0..30 {
        let mid = 0.5 * (low + high);
        if share(mid) > ratio {
            low = mid;
        } else {
            high = mid;
        }
    }
    high
}

/// The optimal assignment of an `n × n` row-major cost (row `i` to column `π[i]`).
#[allow(clippy::ptr_arg)] // lsap::solve takes a &Vec
fn assign(n: usize, cost: &Vec<f64>) -> Result<Vec<usize>> {
    let (rows, cols) = lsap::solve(n, n, cost, false).map_err(|e| Error::Data(format!("coupling: the assignment solver failed: {e}")))?;
    let mut perm = vec![usize::MAX; n];
    for (r, c) in rows.into_iter().zip(cols) {
        perm[r] = c;
    }
    // lsap returns one column per row of a square problem; anything else is a solver bug.
    if perm.iter().any(|&c| c >= n) {
        return Err(Error::Internal("coupling: the assignment solver returned an incomplete assignment".into()));
    }
    Ok(perm)
}

impl std::fmt::Display for Coupling {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Coupling::Sinkhorn { reg } => write!(f, "sinkhorn:{reg}"),
            Coupling::C2ot { ratio } => write!(f, "c2ot:{ratio}"),
            _ => f.write_str(self.name()),
        }
    }
}

impl std::str::FromStr for Coupling {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        let spec = s.trim().to_ascii_lowercase();
        let coupling = match spec.split_once(':') {
            None if spec == "independent" => Coupling::Independent,
            None if spec == "ot" => Coupling::Ot,
            None if spec == "ot-class" => Coupling::OtClass,
            None if spec == "c2ot" => Coupling::c2ot(),
            Some(("c2ot", r)) => {
                Coupling::C2ot { ratio: r.trim().parse().map_err(|_| Error::Config(format!("coupling 'c2ot' takes a share RATIO in (0, 1), got '{r}'")))? }
            }
            Some(("sinkhorn", reg)) => {
                Coupling::Sinkhorn { reg: reg.trim().parse().map_err(|_| Error::Config(format!("coupling 'sinkhorn' takes a number REG, got '{reg}'")))? }
            }
            None if spec == "sinkhorn" => return Err(Error::Config("coupling 'sinkhorn' needs its regularisation: sinkhorn:REG".into())),
            _ => {
                return Err(Error::Config(format!(
                    "unknown coupling '{}'; valid couplings: independent, ot, sinkhorn:REG, ot-class, c2ot, c2ot:RATIO",
                    s.trim()
                )))
            }
        };
        coupling.validate()?;
        Ok(coupling)
    }
}

fn check_batches(x0: ArrayView2<f64>, x1: ArrayView2<f64>) -> Result<()> {
    if x0.dim() != x1.dim() || x0.nrows() == 0 {
        return Err(Error::Config(format!("coupling needs two non-empty batches of equal shape, got {:?} and {:?}", x0.dim(), x1.dim())));
    }
    if x0.iter().chain(x1.iter()).any(|v| !v.is_finite()) {
        return Err(Error::Data("coupling of samples with NaN or infinite values".into()));
    }
    Ok(())
}

/// `C_ij = |x0_i − x1_j|²`, row-major `n × m` (over the first `min(d0, d1)` columns).
pub fn squared_distances(x0: ArrayView2<f64>, x1: ArrayView2<f64>) -> Vec<f64> {
    // Row-major copies: plain slices make the n·m·d loop fast whatever the input's layout.
    let d = x0.ncols().min(x1.ncols());
    if d == 0 {
        return vec![0.0; x0.nrows() * x1.nrows()];
    }
    let rows = |x: ArrayView2<f64>| -> Vec<f64> { x.axis_iter(Axis(0)).flat_map(|r| r.iter().take(d).copied().collect::<Vec<_>>()).collect() };
    let (a, b) = (rows(x0), rows(x1));
    let mut cost = Vec::with_capacity(x0.nrows() * x1.nrows());
    for ra in a.chunks_exact(d) {
        for rb in b.chunks_exact(d) {
            cost.push(ra.iter().zip(rb).map(|(p, q)| (p - q) * (p - q)).sum::<f64>());
        }
    }
    cost
}

/// The optimal assignment `π` (a permutation: row `i` of `x0` goes with row `π[i]` of `x1`)
/// minimising `Σ_i |x0_i − x1_π(i)|²`, by the `lsap` crate's Jonker–Volgenant solver
/// (the algorithm of scipy's `linear_sum_assignment`, which POT's exact plan equals on
/// uniform equal-size batches).
///
/// # Errors
/// [`Error::Config`] for batches of different shapes or empty; [`Error::Data`] for NaN or
/// infinite values, or when the solver fails.
pub fn ot_assignment(x0: ArrayView2<f64>, x1: ArrayView2<f64>) -> Result<Vec<usize>> {
    check_batches(x0, x1)?;
    assign(x0.nrows(), &squared_distances(x0, x1))
}

/// Most Sinkhorn iterations before the plan is returned as it is.
pub const SINKHORN_MAX_ITERS: usize = 1000;
/// Sinkhorn stops when the row marginals are off by at most this much in total (L1; each
/// marginal has mass 1).
pub const SINKHORN_TOL: f64 = 1e-6;

/// The entropic OT plan between the uniform measures on the rows of `x0` and `x1`
/// (`n × m`, entries summing to 1): the `P` minimising `⟨P, C⟩ − reg · H(P)` for the squared
/// distances `C`, by Sinkhorn's matrix scaling (POT's `ot.sinkhorn`, without cost
/// normalisation), stopping at [`SINKHORN_TOL`] or after [`SINKHORN_MAX_ITERS`].
///
/// The kernel is `exp(−(C_ij − r_i − c_j) / reg)` with row and column minima `r`, `c`
/// taken out first (the plan does not change: they are absorbed by the scalings); this
/// keeps a 1 in every row and column, so moderate `reg` never underflows. When `reg` is
/// too small for the distances the scalings still over- or underflow: that is an error.
///
/// # Errors
/// [`Error::Config`] for batches of different widths or empty, or a `reg` that is not positive
/// and finite; [`Error::Data`] for non-finite distances, or scalings that under- or overflow.
pub fn sinkhorn_plan(x0: ArrayView2<f64>, x1: ArrayView2<f64>, reg: f64) -> Result<Array2<f64>> {
    if x0.ncols() != x1.ncols() || x0.nrows() == 0 || x1.nrows() == 0 {
        return Err(Error::Config(format!("sinkhorn needs two non-empty batches of equal dimension, got {:?} and {:?}", x0.dim(), x1.dim())));
    }
    Coupling::Sinkhorn { reg }.validate()?;
    let (n, m) = (x0.nrows(), x1.nrows());
    let mut cost = squared_distances(x0, x1);
    if cost.iter().any(|c| !c.is_finite()) {
        return Err(Error::Data("sinkhorn of samples with NaN or infinite values".into()));
    }
    let max_cost = cost.iter().copied().fold(0.0, f64::max);
    for row in cost.chunks_mut(m) {
        let r = row.iter().copied().fold(f64::INFINITY, f64::min);
        row.iter_mut().for_each(|c| *c -= r);
    }
    let mut col_min = vec![f64::INFINITY; m];
    for row in cost.chunks(m) {
        col_min.iter_mut().zip(row).for_each(|(c, &v)| *c = c.min(v));
    }
    let kernel: Vec<f64> = cost.chunks(m).flat_map(|row| row.iter().zip(&col_min).map(|(&v, c)| (-(v - c) / reg).exp())).collect();
    let (a, b) = (1.0 / n as f64, 1.0 / m as f64);
    let (mut u, mut v) = (vec![1.0; n], vec![1.0; m]);
    let mut kv = vec![0.0; n];
    let mut ktu = vec![0.0; m];
    let underflow = || {
        Error::Data(format!("coupling: sinkhorn with reg = {reg} under- or overflows for squared distances up to {max_cost:.3}; use a larger reg (a larger sigma) or the exact 'ot' coupling"))
    };
    for iter in 1..=SINKHORN_MAX_ITERS {
        for (i, row) in kernel.chunks(m).enumerate() {
            kv[i] = row.iter().zip(&v).map(|(k, v)| k * v).sum();
            u[i] = a / kv[i];
        }
        ktu.iter_mut().for_each(|x| *x = 0.0);
        for (row, &ui) in kernel.chunks(m).zip(&u) {
            ktu.iter_mut().zip(row).for_each(|(acc, k)| *acc += k * ui);
        }
        v.iter_mut().zip(&ktu).for_each(|(v, s)| *v = b / s);
        if u.iter().chain(v.iter()).any(|x| !(x.is_finite() && *x > 0.0)) {
            return Err(underflow());
        }
        // Columns are exact after the v-update; check how far the rows are.
        if iter % 10 == 0 || iter == SINKHORN_MAX_ITERS {
            let err: f64 = kernel.chunks(m).zip(&u).map(|(row, ui)| (ui * row.iter().zip(&v).map(|(k, v)| k * v).sum::<f64>() - a).abs()).sum();
            if err <= SINKHORN_TOL {
                break;
            }
        }
    }
    let plan: Vec<f64> = kernel.chunks(m).zip(&u).flat_map(|(row, &ui)| row.iter().zip(&v).map(move |(k, vj)| ui * k * vj)).collect();
    if plan.iter().any(|p| !p.is_finite()) {
        return Err(underflow());
    }
    Ok(Array2::from_shape_vec((n, m), plan).expect("n*m entries"))
}

/// `k` pairs `(i, j)` drawn with replacement with probabilities proportional to `plan[i, j]`
/// (negative entries count as 0); an empty plan gives no pairs.
pub fn sample_plan(plan: &Array2<f64>, k: usize, rng: &mut dyn RngCore) -> Vec<(usize, usize)> {
    let m = plan.ncols();
    if plan.is_empty() {
        return Vec::new();
    }
    let mut cumulative = Vec::with_capacity(plan.len());
    let mut total = 0.0;
    for &p in plan.iter() {
        total += p.max(0.0);
        cumulative.push(total);
    }
    (0..k)
        .map(|_| {
            let x = rng.random::<f64>() * total;
            let idx = cumulative.partition_point(|&c| c <= x).min(plan.len() - 1);
            (idx / m, idx % m)
        })
        .collect()
}

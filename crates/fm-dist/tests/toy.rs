//! The 2-D benchmark targets, the name registry and the MMD metric.
//!
//! Statistical tolerances: with `n` i.i.d. samples, the sample mean of a coordinate
//! has standard error `σ/√n` (σ² the exact variance from the definition) and the
//! sample variance has standard error `√((μ₄ − s⁴)/n)` (μ₄ the fourth central moment,
//! estimated from the same sample). Every check allows 5 standard errors, a false
//! alarm rate below 1e-6 per check, on a fixed seed, so a pass is reproducible and a
//! wrong constant (a shift of 0.05, a scale off by a few percent) fails.

use fm_dist::metrics::{mixture_shares, mmd2_unbiased};
use fm_dist::toy::{Checkerboard, Circles, EightGaussians, Moons, Pinwheel, SwissRoll, TwentyFiveGaussians, TwoSpirals};
use fm_dist::{list_targets, parse_target, Error, Target};
use ndarray::{array, Array2, Axis};
use rand::{rngs::StdRng, SeedableRng};
use std::f64::consts::PI;

fn rng(seed: u64) -> StdRng {
    StdRng::seed_from_u64(seed)
}

fn all_toys() -> Vec<Box<dyn Target>> {
    vec![
        Box::new(EightGaussians::default()),
        Box::new(TwentyFiveGaussians::default()),
        Box::new(Moons),
        Box::new(Circles),
        Box::new(Checkerboard),
        Box::new(SwissRoll),
        Box::new(TwoSpirals),
        Box::new(Pinwheel),
    ]
}

/// `∫₀¹ f(u) du` by composite Simpson on 20,000 intervals (error far below the tolerances).
fn simpson(f: impl Fn(f64) -> f64) -> f64 {
    let m = 20_000;
    let h = 1.0 / m as f64;
    let mut s = f(0.0) + f(1.0);
    for i in 1..m {
        s += f(i as f64 * h) * if i % 2 == 1 { 4.0 } else { 2.0 };
    }
    s * h / 3.0
}

/// Exact per-coordinate mean and variance of a target, from its definition.
struct Moments {
    mean: [f64; 2],
    var: [f64; 2],
}

/// Checks sample mean and variance of each coordinate against `exact`, 5 standard errors each.
fn check_moments(name: &str, x: &Array2<f64>, exact: &Moments) {
    let n = x.nrows() as f64;
    for j in 0..2 {
        let col = x.column(j);
        let mean = col.mean().unwrap();
        let var = col.mapv(|v| (v - mean).powi(2)).mean().unwrap();
        let m4 = col.mapv(|v| (v - mean).powi(4)).mean().unwrap();
        let tol_mean = 5.0 * (exact.var[j] / n).sqrt();
        let tol_var = 5.0 * ((m4 - var * var).max(0.0) / n).sqrt();
        assert!((mean - exact.mean[j]).abs() < tol_mean, "{name}: mean[{j}] {mean} vs {} (tol {tol_mean})", exact.mean[j]);
        assert!((var - exact.var[j]).abs() < tol_var, "{name}: var[{j}] {var} vs {} (tol {tol_var})", exact.var[j]);
    }
}

/// Mean and variance of an equal mixture of parametric curves `c(u)`, `u ~ U[0, 1]`
/// (each curve a closure), plus independent noise of variance `noise_var` per coordinate.
fn curve_moments(curves: &[&dyn Fn(f64) -> [f64; 2]], noise_var: f64) -> Moments {
    let k = curves.len() as f64;
    let mut mean = [0.0; 2];
    let mut second = [0.0; 2];
    for c in curves {
        for j in 0..2 {
            mean[j] += simpson(|u| c(u)[j]) / k;
            second[j] += simpson(|u| c(u)[j].powi(2)) / k;
        }
    }
    Moments { mean, var: [second[0] - mean[0].powi(2) + noise_var, second[1] - mean[1].powi(2) + noise_var] }
}

const N: usize = 100_000;

#[test]
fn every_target_is_reproducible_finite_and_two_dimensional() {
    for t in all_toys() {
        let a = t.sample(500, &mut rng(7));
        let b = t.sample(500, &mut rng(7));
        let c = t.sample(500, &mut rng(8));
        assert_eq!(t.dim(), 2, "{}", t.name());
        assert_eq!(a.dim(), (500, 2), "{}", t.name());
        assert!(a.iter().all(|v| v.is_finite()), "{}: non-finite sample", t.name());
        assert_eq!(a, b, "{}: same seed, different samples", t.name());
        assert_ne!(a, c, "{}: different seeds, same samples", t.name());
        assert_eq!(t.sample(0, &mut rng(7)).dim(), (0, 2), "{}", t.name());
    }
}

#[test]
fn densities_are_present_exactly_where_they_should_be() {
    let x = array![[0.0, 0.0], [1.0, 1.0]];
    for t in all_toys() {
        let with = matches!(t.name().as_str(), "8gaussians" | "25gaussians" | "checkerboard");
        assert_eq!(t.has_density(), with, "{}", t.name());
        match t.log_prob(x.view()) {
            Ok(lp) => {
                assert!(with, "{} returned a density", t.name());
                assert_eq!(lp.len(), 2);
            }
            Err(Error::NoDensity(name)) => {
                assert!(!with, "{} has a density but said NoDensity", t.name());
                assert_eq!(name, t.name());
            }
            Err(e) => panic!("{}: unexpected error {e}", t.name()),
        }
    }
}

#[test]
fn eight_gaussians_match_torchcfm() {
    let t = EightGaussians::default();
    let (r, v) = (5.0, 0.1f64.sqrt());
    assert_eq!((t.radius(), t.variance()), (r, EightGaussians::VARIANCE));
    assert!((t.variance() - v).abs() < 1e-15);
    let x = t.sample(N, &mut rng(1));
    // Centres (±1, 0), (0, ±1), (±1/√2, ±1/√2) times 5: per-coordinate second moment 25/2.
    check_moments("8gaussians", &x, &Moments { mean: [0.0; 2], var: [r * r / 2.0 + v; 2] });
    // Mean radius: |c + ε| ≈ r + ε_radial + ε_tangential² / (2r), so E = r + v/(2r) + O(v²/r³).
    let radii = x.map_axis(Axis(1), |p| p.dot(&p).sqrt());
    let mean_r = radii.mean().unwrap();
    let tol = 5.0 * (v / N as f64).sqrt() + 1e-3;
    assert!((mean_r - (r + v / (2.0 * r))).abs() < tol, "mean radius {mean_r}");
    // Each component holds 1/8 of the samples: binomial proportion, 5 standard errors.
    let shares = mixture_shares(t.mixture(), x.view()).unwrap();
    let tol = 5.0 * (0.125f64 * 0.875 / N as f64).sqrt();
    assert!(shares.iter().all(|s| (s - 0.125).abs() < tol), "{shares:?}");
    // Squared distance to the nearest centre: mean 2v (χ²₂ · v, sd 2v), the nearest-centre cut at
    // 5·sin(π/8) ≈ 1.9 = 3.4 std removing a negligible tail.
    let means = t.mixture().means();
    let d2 = x.map_axis(Axis(1), |p| means.axis_iter(Axis(0)).map(|c| (&p - &c).mapv(|v| v * v).sum()).fold(f64::INFINITY, f64::min));
    let m = d2.mean().unwrap();
    assert!((m - 2.0 * v).abs() < 5.0 * 2.0 * v / (N as f64).sqrt() + 2e-3, "mean squared offset {m} vs {}", 2.0 * v);
    assert!(EightGaussians::new(-1.0, 0.1).is_err() && EightGaussians::new(5.0, 0.0).is_err());
    assert!(EightGaussians::new(5.0, f64::NAN).is_err());
}

#[test]
fn twenty_five_gaussians_sit_on_the_grid() {
    let t = TwentyFiveGaussians::default();
    let x = t.sample(N, &mut rng(2));
    // Centre coordinates uniform on 2·{−2, …, 2}: second moment 4 · 2 = 8, plus std² = 0.01.
    check_moments("25gaussians", &x, &Moments { mean: [0.0; 2], var: [8.01; 2] });
    let shares = mixture_shares(t.mixture(), x.view()).unwrap();
    let tol = 5.0 * (0.04f64 * 0.96 / N as f64).sqrt();
    assert_eq!(shares.len(), 25);
    assert!(shares.iter().all(|s| (s - 0.04).abs() < tol), "{shares:?}");
    // At 10 std from any centre no sample should be found (P < 1e-20 per sample).
    assert!(x.iter().all(|v| (v / 2.0 - (v / 2.0).round()).abs() * 2.0 < 1.0), "a sample far off the grid");
    // Offsets from the nearest grid point have variance std² = 0.01 per coordinate (the cut at ±1,
    // 10 std, is negligible); the sample variance of n·2 normal offsets has standard error
    // 0.01·√(2/(2n)).
    let off = x.mapv(|v| v - 2.0 * (v / 2.0).round());
    let var_off = off.mapv(|v| v * v).mean().unwrap();
    assert!((var_off - 0.01).abs() < 5.0 * 0.01 * (1.0 / N as f64).sqrt(), "offset variance {var_off}");
    assert!(TwentyFiveGaussians::new(2.0, -0.1).is_err());
}

#[test]
fn moons_match_the_definition() {
    let upper = |u: f64| [(PI * u).cos(), (PI * u).sin()];
    let lower = |u: f64| [1.0 - (PI * u).cos(), 0.5 - (PI * u).sin()];
    let m = curve_moments(&[&upper, &lower], 0.1 * 0.1);
    // After x·2 + (−1, −0.2): mean 2m − (1, 0.2) = (0, 0.3), variance ×4.
    let exact = Moments { mean: [2.0 * m.mean[0] - 1.0, 2.0 * m.mean[1] - 0.2], var: [4.0 * m.var[0], 4.0 * m.var[1]] };
    assert!(exact.mean[0].abs() < 1e-9 && (exact.mean[1] - 0.3).abs() < 1e-9);
    check_moments("moons", &Moons.sample(N, &mut rng(3)), &exact);
}

#[test]
fn circles_match_the_definition() {
    // Radii 3 and 1.5 with probability ½: E[x²] = (9 + 2.25)/2 · ½ per coordinate, plus 0.24².
    let var = (9.0 + 2.25) / 4.0 + 0.24 * 0.24;
    let x = Circles.sample(N, &mut rng(4));
    check_moments("circles", &x, &Moments { mean: [0.0; 2], var: [var; 2] });
    // Radii: a point within 1.5 noise std (0.36) of a ring belongs to it; both rings get ~½.
    let r = x.map_axis(Axis(1), |p| p.dot(&p).sqrt());
    let outer = r.iter().filter(|&&v| (v - 3.0).abs() < 0.75).count() as f64 / N as f64;
    let inner = r.iter().filter(|&&v| (v - 1.5).abs() < 0.75).count() as f64 / N as f64;
    let tol = 5.0 * (0.25 / N as f64).sqrt();
    assert!((outer - 0.5).abs() < tol + 0.002 && (inner - 0.5).abs() < tol + 0.002, "outer {outer}, inner {inner}");
    // Radial spread: (r − R)² has mean σ² = 0.0576 up to an O(σ⁴/R²) ≤ 0.0015 curvature term and the
    // ±0.75 (3.1 σ) cut of the nearest-ring assignment (≈ 0.001), hence the 0.004 allowance; its
    // standard error is about σ²·√2/√n.
    let d2 = r.mapv(|v| (v - 3.0).powi(2).min((v - 1.5).powi(2))).mean().unwrap();
    assert!((d2 - 0.0576).abs() < 5.0 * 0.0576 * (2.0 / N as f64).sqrt() + 0.004, "radial variance {d2}");
}

#[test]
fn swissroll_matches_the_definition() {
    // t = 1.5π(1 + 2u); (t cos t, t sin t)/5 + N(0, 0.2²).
    let curve = |u: f64| {
        let t = 1.5 * PI * (1.0 + 2.0 * u);
        [t * t.cos() / 5.0, t * t.sin() / 5.0]
    };
    let exact = curve_moments(&[&curve], 0.2 * 0.2);
    // Closed forms of the means: ∫t cos t = 6π, ∫t sin t = 2 over [1.5π, 4.5π], / 3π / 5.
    assert!((exact.mean[0] - 0.4).abs() < 1e-9 && (exact.mean[1] - 2.0 / (15.0 * PI)).abs() < 1e-9);
    check_moments("swissroll", &SwissRoll.sample(N, &mut rng(5)), &exact);
}

#[test]
fn two_spirals_match_the_definition() {
    // s = 3π√u; with u = w², E[g(s)] = ∫₀¹ g(3πw) 2w dw. One spiral: (−s cos s + ½u₁, s sin s + ½u₂)/3,
    // the other its negation (so the mean is 0), plus N(0, 0.1²). Per coordinate, with c the curve,
    // E[(c + ½u₁)²] = E[c²] + ½E[c] + 1/12.
    let s = |w: f64| 3.0 * PI * w;
    let ex = simpson(|w| -s(w).cos() * s(w) * 2.0 * w);
    let ey = simpson(|w| s(w).sin() * s(w) * 2.0 * w);
    let ex2 = simpson(|w| (s(w).cos() * s(w)).powi(2) * 2.0 * w);
    let ey2 = simpson(|w| (s(w).sin() * s(w)).powi(2) * 2.0 * w);
    let var = |e: f64, e2: f64| (e2 + 0.5 * e + 1.0 / 12.0) / 9.0 + 0.01;
    let exact = Moments { mean: [0.0; 2], var: [var(ex, ex2), var(ey, ey2)] };
    check_moments("2spirals", &TwoSpirals.sample(N, &mut rng(6)), &exact);
}

#[test]
fn pinwheel_matches_the_definition() {
    // Rotations keep |f|: E|x|² = 4 E|f|² = 4 (1 + 0.3² + 0.1²) = 4.4; 5-fold symmetry makes the
    // covariance isotropic (2.2 per coordinate) and the mean 0.
    let x = Pinwheel.sample(N, &mut rng(9));
    check_moments("pinwheel", &x, &Moments { mean: [0.0; 2], var: [2.2; 2] });
    // E[z⁵] for z = x₀ + i x₁ depends on the curl: z = 2 (f₀ + i f₁) e^{−ia} with a = 2πc/5 + 0.25 e^{f₀},
    // so z⁵ = 32 (f₀ + i f₁)⁵ e^{−5i·0.25·e^{f₀}} (the blade offset drops out). Averaging over
    // f₁ ~ N(0, 0.1²): (f₀ + i f₁)⁵ → f₀⁵ − 10·0.01 f₀³ + 15·0.0001 f₀; then quadrature over
    // f₀ ~ N(1, 0.3²) on ±8 std. Tolerance: 5 standard errors of each part's sample mean.
    let st2 = 0.1f64 * 0.1;
    let (lo, hi) = (1.0 - 8.0 * 0.3, 1.0 + 8.0 * 0.3);
    let integrand = |u: f64, part: usize| {
        let f0 = lo + (hi - lo) * u;
        let pdf = (-(f0 - 1.0).powi(2) / (2.0 * 0.09)).exp() / (0.3 * (2.0 * PI).sqrt());
        let poly = f0.powi(5) - 10.0 * st2 * f0.powi(3) + 15.0 * st2 * st2 * f0;
        let phase = -5.0 * 0.25 * f0.exp();
        32.0 * pdf * poly * if part == 0 { phase.cos() } else { phase.sin() } * (hi - lo)
    };
    let exact = [simpson(|u| integrand(u, 0)), simpson(|u| integrand(u, 1))];
    let z5: Vec<[f64; 2]> = x
        .axis_iter(Axis(0))
        .map(|p| {
            let (r2, th) = (p[0] * p[0] + p[1] * p[1], p[1].atan2(p[0]));
            let r5 = r2.powf(2.5);
            [r5 * (5.0 * th).cos(), r5 * (5.0 * th).sin()]
        })
        .collect();
    for part in 0..2 {
        let m = z5.iter().map(|v| v[part]).sum::<f64>() / N as f64;
        let sd = (z5.iter().map(|v| (v[part] - m).powi(2)).sum::<f64>() / (N - 1) as f64).sqrt();
        let tol = 5.0 * sd / (N as f64).sqrt();
        assert!((m - exact[part]).abs() < tol, "E[z^5] part {part}: {m} vs {} (tol {tol})", exact[part]);
    }
    // The blades curl: the mean angle offset 0.25·E[exp(f₀)] = 0.25·e^{1.045} ≈ 0.71 rad is what
    // makes the first blade's points lie clockwise of the x axis (negative y) on average.
    let first: Vec<f64> = x.axis_iter(Axis(0)).filter(|p| p[0] > 0.0 && p[1].atan2(p[0]).abs() < 1.2).map(|p| p[1]).collect();
    assert!(!first.is_empty() && first.iter().sum::<f64>() / (first.len() as f64) < 0.0);
}

#[test]
fn checkerboard_samples_sit_on_dark_squares_uniformly() {
    let x = Checkerboard.sample(N, &mut rng(10));
    assert!(x.axis_iter(Axis(0)).all(|p| Checkerboard::contains(p[0], p[1])), "a sample on a light square");
    // Uniform on the dark squares: u = x/2 is uniform per coordinate on [−2, 2): variance 4/3, ×4.
    check_moments("checkerboard", &x, &Moments { mean: [0.0; 2], var: [16.0 / 3.0; 2] });
    // Each of the 8 squares holds 1/8: binomial proportion, 5 standard errors.
    let mut counts = std::collections::HashMap::new();
    for p in x.axis_iter(Axis(0)) {
        *counts.entry(((p[0] / 2.0).floor() as i64, (p[1] / 2.0).floor() as i64)).or_insert(0usize) += 1;
    }
    assert_eq!(counts.len(), 8);
    let tol = 5.0 * (0.125f64 * 0.875 / N as f64).sqrt();
    assert!(counts.values().all(|&c| (c as f64 / N as f64 - 0.125).abs() < tol), "{counts:?}");
}

#[test]
fn checkerboard_density_is_one_over_32_and_integrates_to_one() {
    let lp = Checkerboard.log_prob(array![[1.0, 1.0], [1.0, 3.0], [5.0, 0.0], [-3.0, -3.0], [f64::NAN, 0.0]].view()).unwrap();
    assert!((lp[0] + 32f64.ln()).abs() < 1e-15 && lp[3] == lp[0]);
    assert_eq!((lp[1], lp[2]), (f64::NEG_INFINITY, f64::NEG_INFINITY));
    assert!(lp[4].is_nan());
    // Midpoint rule on a 400 × 400 grid over [−4, 4]²: cell edges fall on the squares' edges,
    // so the sum is exact up to rounding.
    let m = 400;
    let h = 8.0 / m as f64;
    let grid = Array2::from_shape_fn((m * m, 2), |(k, j)| -4.0 + h * (if j == 0 { k / m } else { k % m } as f64 + 0.5));
    let mass: f64 = Checkerboard.log_prob(grid.view()).unwrap().mapv(f64::exp).sum() * h * h;
    assert!((mass - 1.0).abs() < 1e-9, "mass {mass}");
    assert!(matches!(Checkerboard.log_prob(Array2::<f64>::zeros((2, 3)).view()), Err(Error::Dim { expected: 2, got: 3 })));
}

#[test]
fn parser_knows_every_listed_name() {
    let listed = list_targets();
    assert_eq!(listed.len(), 15);
    for (name, desc) in listed.iter().filter(|(n, _)| !n.ends_with(":FILE")) {
        assert!(!desc.is_empty());
        // A name of a dimension D (manywell:D, funnel:D) parses with one.
        let spec = name.replace(":D", ":4");
        let t = parse_target(&spec).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(t.dim(), if spec.ends_with(":4") { 4 } else { 2 }, "{name}");
        if !matches!(*name, "gmm3" | "normal" | "gmm40" | "manywell:D" | "funnel:D") {
            assert_eq!(t.name(), *name);
        }
    }
    assert_eq!(parse_target(" Moons ").unwrap().name(), "moons");
    assert_eq!(parse_target("normal:5").unwrap().dim(), 5);
    assert_eq!(parse_target("gmm3").unwrap().name(), fm_dist::GaussianMixture::seed().name());
    for bad in ["normal:0", "normal:x", "normal:", "moons:2"] {
        assert!(parse_target(bad).is_err(), "{bad} accepted");
    }
    let msg = parse_target("banana").err().expect("banana accepted").to_string();
    assert!(msg.contains("banana"), "{msg}");
    for (name, _) in &listed {
        assert!(msg.contains(name), "error message lacks {name}: {msg}");
    }
}

#[test]
fn mmd_matches_a_hand_computed_case() {
    // a = {0, 1}, b = {0, 2}, h = 1: within a e^{−½}, within b e^{−2}, cross (1 + e^{−2} + 2e^{−½})/2,
    // so MMD²_u = ½e^{−2} − ½. A second bandwidth adds its own kernel term.
    let a = array![[0.0], [1.0]];
    let b = array![[0.0], [2.0]];
    let one = mmd2_unbiased(a.view(), b.view(), &[1.0]).unwrap();
    assert!((one - (0.5 * (-2.0f64).exp() - 0.5)).abs() < 1e-14, "{one}");
    let two = mmd2_unbiased(a.view(), b.view(), &[2.0]).unwrap();
    let both = mmd2_unbiased(a.view(), b.view(), &[1.0, 2.0]).unwrap();
    assert!((both - one - two).abs() < 1e-14);
    assert!((mmd2_unbiased(b.view(), a.view(), &[1.0]).unwrap() - one).abs() < 1e-14);
}

#[test]
fn mmd_rejects_bad_inputs() {
    let a = Array2::<f64>::zeros((3, 2));
    assert!(matches!(mmd2_unbiased(a.view(), Array2::<f64>::zeros((3, 3)).view(), &[1.0]), Err(Error::Dim { .. })));
    assert!(mmd2_unbiased(a.view(), Array2::<f64>::zeros((1, 2)).view(), &[1.0]).is_err());
    for h in [0.0, -1.0, f64::NAN, f64::INFINITY] {
        assert!(mmd2_unbiased(a.view(), a.view(), &[1.0, h]).is_err(), "bandwidth {h} accepted");
    }
    assert!(mmd2_unbiased(a.view(), a.view(), &[]).is_err());
    let mut b = a.clone();
    b[[1, 0]] = f64::NAN;
    assert!(mmd2_unbiased(a.view(), b.view(), &[1.0]).unwrap_err().to_string().contains("NaN"));
}

#[test]
fn mmd_is_unbiased_under_the_null_and_large_between_different_targets() {
    // R independent pairs of n samples of one law: the estimator's mean must be within 5 standard
    // errors (sd/√R) of 0. The biased (V-statistic) version would sit about 2(Σ_h 1 − E k)/n above
    // 0, many standard errors away, so this tests the unbiasedness itself.
    let t = EightGaussians::default();
    let bw = [0.5, 1.0, 2.0];
    let (reps, n) = (40, 300);
    let mut r = rng(11);
    let vals: Vec<f64> = (0..reps)
        .map(|_| {
            let a = t.sample(n, &mut r);
            let b = t.sample(n, &mut r);
            mmd2_unbiased(a.view(), b.view(), &bw).unwrap()
        })
        .collect();
    let mean = vals.iter().sum::<f64>() / reps as f64;
    let sd = (vals.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / (reps - 1) as f64).sqrt();
    assert!(mean.abs() < 5.0 * sd / (reps as f64).sqrt(), "null mean {mean}, sd {sd}");
    assert!(vals.iter().all(|v| v.abs() < 5.0 * sd), "a null value beyond 5 sd: {vals:?}");
    // 8 Gaussians vs moons: far beyond the null spread.
    let a = t.sample(n, &mut r);
    let b = Moons.sample(n, &mut r);
    let alt = mmd2_unbiased(a.view(), b.view(), &bw).unwrap();
    assert!(alt > 50.0 * sd && alt > 0.1, "8gaussians vs moons MMD² {alt} (null sd {sd})");
}

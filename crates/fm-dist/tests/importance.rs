//! Importance weights against closed forms: a Gaussian proposal for a Gaussian target (ESS), a
//! normalised mixture's log Z (0 within its standard error), a proposal equal to the target.

use fm_dist::importance::{energy_w2, ImportanceWeights};
use fm_dist::{density_of, GaussianMixture, StandardNormal, Target};
use rand::{rngs::StdRng, SeedableRng};

/// Samples of N(0, s² I) and their log-densities.
fn wide(n: usize, d: usize, s: f64, seed: u64) -> (ndarray::Array2<f64>, ndarray::Array1<f64>) {
    let x = StandardNormal::new(d).unwrap().sample(n, &mut StdRng::seed_from_u64(seed)) * s;
    let log_q = StandardNormal::new(d).unwrap().log_prob((&x / s).view()).unwrap() - d as f64 * s.ln();
    (x, log_q)
}

#[test]
fn a_gaussian_proposal_has_its_closed_form_ess_and_log_z() {
    // N(0, I₂) weighed from N(0, 4 I₂): ESS/n → (√(2 − 1/s²)/s)^d = 0.4375 (E_q[w²] = (s/√(2 − 1/s²))^d).
    let target = StandardNormal::new(2).unwrap();
    let (x, log_q) = wide(200_000, 2, 2.0, 1);
    let s = ImportanceWeights::new(&*density_of(&target).unwrap(), x.view(), log_q.view()).unwrap().summary();
    assert!((s.ess - 0.4375).abs() < 0.01, "ESS {}", s.ess);
    assert!(s.log_z.abs() < 3.0 * s.log_z_se && s.log_z_se < 0.01, "log Z {} ± {}", s.log_z, s.log_z_se);
    // The proposal equal to the target: every weight 1, ESS 1, log Z 0 exactly.
    let (x, log_q) = wide(1000, 2, 1.0, 2);
    let s = ImportanceWeights::new(&*density_of(&target).unwrap(), x.view(), log_q.view()).unwrap().summary();
    assert!((s.ess - 1.0).abs() < 1e-12 && s.log_z.abs() < 1e-12 && s.log_z_se < 1e-8, "{s:?}");
}

#[test]
fn a_normalised_mixture_has_log_z_zero_within_its_standard_error() {
    let gmm = GaussianMixture::seed();
    let density = density_of(&gmm).unwrap();
    for seed in 0..5 {
        let (x, log_q) = wide(20_000, 2, 5.0, seed);
        let w = ImportanceWeights::new(&*density, x.view(), log_q.view()).unwrap();
        let s = w.summary();
        assert!(s.log_z.abs() < 3.5 * s.log_z_se, "seed {seed}: log Z {} ± {}", s.log_z, s.log_z_se);
        // Self-normalised: the mixture's mean (0.3·(−2,−1) + 0.5·(1,3) + 0.2·(4,−2) = (0.7, 0.8)).
        let mean = w.expectation(x.column(0));
        assert!((mean - 0.7).abs() < 0.1, "seed {seed}: E[x1] = {mean}");
    }
}

#[test]
fn bad_weights_are_refused_and_energy_w2_of_the_same_law_is_small() {
    let target = StandardNormal::new(2).unwrap();
    let density = density_of(&target).unwrap();
    let (x, mut log_q) = wide(10, 2, 1.0, 3);
    log_q[4] = f64::NAN;
    assert!(ImportanceWeights::new(&*density, x.view(), log_q.view()).unwrap_err().to_string().contains("log q of sample 4"));
    assert!(ImportanceWeights::new(&*density, x.view(), log_q.slice(ndarray::s![..5])).is_err());
    let (a, _) = wide(4000, 2, 1.0, 4);
    let (b, _) = wide(4000, 2, 1.0, 5);
    let (c, _) = wide(4000, 2, 1.5, 6);
    let (same, wider) = (energy_w2(&*density, a.view(), b.view()).unwrap(), energy_w2(&*density, a.view(), c.view()).unwrap());
    assert!(same < 0.1 && wider > 5.0 * same, "same law {same}, wider proposal {wider}");
}

/// A summary with nothing estimated (one sample: an infinite se; every weight 0: log Z = −∞) is
/// written to JSON as nulls (report.json) and read back, as NaN.
#[test]
fn a_summary_of_non_finite_figures_round_trips_through_json() {
    let s = fm_dist::importance::ImportanceSummary { n: 1, ess: 0.0, log_z: f64::NEG_INFINITY, log_z_se: f64::INFINITY };
    let json = serde_json::to_string(&s).unwrap();
    assert_eq!(json, r#"{"n":1,"ess":0.0,"log_z":null,"log_z_se":null}"#);
    let back: fm_dist::importance::ImportanceSummary = serde_json::from_str(&json).unwrap();
    assert!(back.n == 1 && back.ess == 0.0 && back.log_z.is_nan() && back.log_z_se.is_nan());
}

//! The energy-only baselines: MALA's chains reach the target and count their evaluations; the
//! wide-Gaussian proposal's log q is its density.

use fm_dist::baselines::{importance_from_normal, mala};
use fm_dist::importance::ImportanceWeights;
use fm_dist::{density_of, Density, ManyWell, StandardNormal, Target};
use rand::{rngs::StdRng, SeedableRng};

#[test]
fn mala_samples_a_gaussian_and_counts_its_evaluations() {
    let target = StandardNormal::new(3).unwrap();
    let density = density_of(&target).unwrap();
    let mut rng = StdRng::seed_from_u64(2);
    // Started far too wide, 4,000 chains of 200 steps.
    let init = target.sample(4000, &mut rng) * 3.0;
    let out = mala(&*density, init, 200, 0.5, &mut rng).unwrap();
    assert_eq!(out.evaluations, 4000 * 201);
    assert!((out.acceptance - 0.574).abs() < 0.1, "acceptance {}", out.acceptance);
    for j in 0..3 {
        let (mean, var) = (out.samples.column(j).mean().unwrap(), out.samples.column(j).var(0.0));
        // Independent chains: standard errors from the sample size (4 of them).
        assert!(mean.abs() < 4.0 / 4000f64.sqrt() && (var - 1.0).abs() < 4.0 * (2.0 / 4000.0f64).sqrt(), "coordinate {j}: {mean} {var}");
    }
    assert!(mala(&*density, target.sample(2, &mut rng), 5, -1.0, &mut rng).is_err());
}

#[test]
fn mala_keeps_manywell_and_a_wide_proposal_weighs_it() {
    // MALA from the exact sampler stays on the target (its stationary law): each well's share holds.
    let mw = ManyWell::new(2).unwrap();
    let mut rng = StdRng::seed_from_u64(3);
    let init = mw.sample(3000, &mut rng);
    let right = init.column(0).iter().filter(|v| **v > 0.0).count() as f64 / 3000.0;
    let out = mala(&mw, init, 100, 0.05, &mut rng).unwrap();
    let after = out.samples.column(0).iter().filter(|v| **v > 0.0).count() as f64 / 3000.0;
    assert!((after - right).abs() < 0.05, "right-well share {right} → {after}");
    // A wide Gaussian proposal: log Z of ManyWell-2 within its standard error.
    let (x, log_q) = importance_from_normal(&mw, 50_000, 3.0, &mut rng).unwrap();
    let s = ImportanceWeights::new(&mw, x.view(), log_q.view()).unwrap().summary();
    let exact = mw.log_normalizer().unwrap();
    assert!((s.log_z - exact).abs() < 4.0 * s.log_z_se, "log Z {} ± {} against {exact}", s.log_z, s.log_z_se);
}

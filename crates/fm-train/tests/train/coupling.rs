//! Couplings: exact OT is an optimal permutation, Sinkhorn plans have the right marginals,
//! pairs drawn from a plan follow it.

use fm_dist::{StandardNormal, Target};
use fm_train::coupling::{ot_assignment, sample_plan, sinkhorn_plan, squared_distances, SINKHORN_TOL};
use fm_train::Coupling;
use ndarray::{array, Array2, ArrayView2};
use rand::{rngs::StdRng, SeedableRng};

fn cost_of(x0: ArrayView2<f64>, x1: ArrayView2<f64>, perm: &[usize]) -> f64 {
    let m = x1.nrows();
    let c = squared_distances(x0, x1);
    perm.iter().enumerate().map(|(i, &j)| c[i * m + j]).sum()
}

/// Every permutation of `0..n` (Heap's algorithm).
pub(crate) fn permutations(n: usize) -> Vec<Vec<usize>> {
    fn heap(k: usize, a: &mut Vec<usize>, out: &mut Vec<Vec<usize>>) {
        if k <= 1 {
            out.push(a.clone());
            return;
        }
        for i in 0..k - 1 {
            heap(k - 1, a, out);
            if k.is_multiple_of(2) {
                a.swap(i, k - 1);
            } else {
                a.swap(0, k - 1);
            }
        }
        heap(k - 1, a, out);
    }
    let mut out = Vec::new();
    heap(n, &mut (0..n).collect(), &mut out);
    out
}

fn is_permutation(p: &[usize]) -> bool {
    let mut seen = vec![false; p.len()];
    p.iter().all(|&j| j < p.len() && !std::mem::replace(&mut seen[j], true))
}

#[test]
fn ot_is_an_optimal_permutation_on_tiny_batches() {
    let mut rng = StdRng::seed_from_u64(3);
    let normal = StandardNormal::new(2).unwrap();
    for n in 1..=6 {
        let all = permutations(n);
        assert_eq!(all.len(), (1..=n).product::<usize>());
        for _ in 0..20 {
            let x0 = normal.sample(n, &mut rng);
            let x1 = normal.sample(n, &mut rng) * 3.0 + 1.0;
            let perm = ot_assignment(x0.view(), x1.view()).unwrap();
            assert!(is_permutation(&perm), "{perm:?}");
            let got = cost_of(x0.view(), x1.view(), &perm);
            let identity: Vec<usize> = (0..n).collect();
            assert!(got <= cost_of(x0.view(), x1.view(), &identity) + 1e-12);
            let best = all.iter().map(|p| cost_of(x0.view(), x1.view(), p)).fold(f64::INFINITY, f64::min);
            assert!((got - best).abs() <= 1e-9 * (1.0 + best), "n = {n}: got {got}, brute force {best}");
        }
    }
}

#[test]
fn ot_pairs_a_training_batch_and_lowers_its_cost() {
    let mut rng = StdRng::seed_from_u64(4);
    let x0 = StandardNormal::new(2).unwrap().sample(256, &mut rng);
    let x1 = fm_dist::EightGaussians::new_default().sample(256, &mut rng);
    let pairs = Coupling::Ot.pairs(x0.view(), x1.view(), &mut rng).unwrap();
    assert!(pairs.iter().enumerate().all(|(k, &(i, _))| k == i));
    let perm: Vec<usize> = pairs.iter().map(|p| p.1).collect();
    assert!(is_permutation(&perm));
    let identity: Vec<usize> = (0..256).collect();
    let (ot, ind) = (cost_of(x0.view(), x1.view(), &perm), cost_of(x0.view(), x1.view(), &identity));
    // Independent pairs of N(0, I) and the radius-5 ring cost E|x0|² + E|x1|² ≈ 2 + 25.6 per
    // pair; OT moves each point only from its radius to the ring's (measured ≈ 14 per pair).
    assert!(ot < 0.6 * ind, "OT cost {ot}, independent {ind}");
    // Independent pairing is the identity and draws nothing.
    let ind_pairs = Coupling::Independent.pairs(x0.view(), x1.view(), &mut rng).unwrap();
    assert!(ind_pairs.iter().enumerate().all(|(k, &p)| p == (k, k)));
}

#[test]
fn bad_batches_are_errors() {
    let mut rng = StdRng::seed_from_u64(0);
    let a = array![[0.0, 1.0], [2.0, 3.0]];
    let b = array![[0.0, 1.0]];
    let nan = array![[0.0, f64::NAN], [2.0, 3.0]];
    for c in [Coupling::Ot, Coupling::Sinkhorn { reg: 1.0 }, Coupling::Independent] {
        assert!(c.pairs(a.view(), b.view(), &mut rng).is_err(), "{c}");
        assert!(c.pairs(a.view(), nan.view(), &mut rng).is_err(), "{c}");
    }
    let empty = Array2::<f64>::zeros((0, 2));
    assert!(ot_assignment(empty.view(), empty.view()).is_err());
}

#[test]
fn sinkhorn_plans_have_uniform_marginals_and_the_right_limits() {
    let mut rng = StdRng::seed_from_u64(5);
    let normal = StandardNormal::new(2).unwrap();
    let n = 40;
    let x0 = normal.sample(n, &mut rng);
    let x1 = normal.sample(n, &mut rng) * 2.0;
    // Converged within the iteration cap (reg ≥ 1 here): the total row error is at most the
    // tolerance. Small reg converges slowly; after the cap the rows are still close.
    for (reg, row_tol) in [(0.1, 1e-3), (1.0, SINKHORN_TOL), (10.0, SINKHORN_TOL)] {
        let plan = sinkhorn_plan(x0.view(), x1.view(), reg).unwrap();
        assert!(plan.iter().all(|&p| p >= 0.0));
        let rows = plan.sum_axis(ndarray::Axis(1));
        let cols = plan.sum_axis(ndarray::Axis(0));
        let row_err: f64 = rows.iter().map(|r| (r - 1.0 / n as f64).abs()).sum();
        assert!(row_err <= row_tol, "reg {reg}: row error {row_err:e}");
        // Columns are exact after each column update.
        assert!(cols.iter().all(|c| (c - 1.0 / n as f64).abs() < 1e-12), "reg {reg}");
    }
    // Large reg: the plan tends to the product of the marginals.
    let flat = sinkhorn_plan(x0.view(), x1.view(), 1e4).unwrap();
    assert!(flat.iter().all(|p| (p * (n * n) as f64 - 1.0).abs() < 0.01));
    // Small reg: it tends to the optimal permutation's plan.
    let perm = ot_assignment(x0.view(), x1.view()).unwrap();
    let sharp = sinkhorn_plan(x0.view(), x1.view(), 0.01).unwrap();
    let on_perm: f64 = perm.iter().enumerate().map(|(i, &j)| sharp[[i, j]]).sum();
    assert!(on_perm > 0.9, "mass on the OT permutation {on_perm}");
    // Tiny reg on spread-out points under- or overflows: an error, not a panic or NaNs.
    let far = x1.clone() * 100.0;
    let err = sinkhorn_plan(x0.view(), far.view(), 1e-4).unwrap_err().to_string();
    assert!(err.contains("sinkhorn") && err.contains("reg"), "{err}");
    assert!(sinkhorn_plan(x0.view(), x1.view(), 0.0).is_err());
}

#[test]
fn pairs_drawn_from_a_plan_follow_it() {
    let plan = array![[0.4, 0.1], [0.05, 0.45]];
    let draws = 40_000;
    let pairs = sample_plan(&plan, draws, &mut StdRng::seed_from_u64(6));
    let mut counts = [[0usize; 2]; 2];
    pairs.iter().for_each(|&(i, j)| counts[i][j] += 1);
    for i in 0..2 {
        for j in 0..2 {
            let p = plan[[i, j]];
            let sd = (p * (1.0 - p) / draws as f64).sqrt();
            let got = counts[i][j] as f64 / draws as f64;
            assert!((got - p).abs() < 5.0 * sd, "cell ({i}, {j}): {got} vs {p}");
        }
    }
    // Same generator state, same pairs.
    let again = sample_plan(&plan, draws, &mut StdRng::seed_from_u64(6));
    assert_eq!(pairs, again);
    let c = Coupling::Sinkhorn { reg: 0.5 };
    let x = array![[0.0, 0.0], [1.0, 0.0], [0.0, 3.0]];
    let y = array![[0.5, 0.0], [1.0, 1.0], [0.0, 2.0]];
    let draw = |seed| c.pairs(x.view(), y.view(), &mut StdRng::seed_from_u64(seed)).unwrap();
    assert_eq!(draw(1), draw(1));
    assert_eq!(draw(1).len(), 3);
}

#[test]
fn couplings_parse_print_and_serialize() {
    for c in [Coupling::Independent, Coupling::Ot, Coupling::Sinkhorn { reg: 0.5 }] {
        assert_eq!(c.to_string().parse::<Coupling>().unwrap(), c);
        let json = serde_json::to_string(&c).unwrap();
        assert_eq!(serde_json::from_str::<Coupling>(&json).unwrap(), c);
    }
    assert_eq!(serde_json::to_string(&Coupling::Ot).unwrap(), "\"ot\"");
    assert_eq!(Coupling::schrodinger_bridge(0.5), Coupling::Sinkhorn { reg: 0.5 });
    let err = "exact".parse::<Coupling>().unwrap_err().to_string();
    assert!(err.contains("independent") && err.contains("ot") && err.contains("sinkhorn"), "{err}");
    assert!("sinkhorn:-1".parse::<Coupling>().unwrap_err().to_string().contains("reg must be a positive number"));
    assert!("sinkhorn".parse::<Coupling>().is_err());
}

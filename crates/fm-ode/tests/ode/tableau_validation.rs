//! Malformed Butcher tableaux are errors, not panics, from `validate` and from every solver.

use fm_ode::{log_likelihood_with, solve_with, ButcherTableau, Error, ErrorEstimate, LikelihoodOptions, SolveOptions, Stepping, TimeGrid, Weights};
use tch::{Kind, Tensor};

fn invalid(t: &ButcherTableau) -> String {
    match t.validate() {
        Err(Error::Invalid(msg)) => msg,
        other => panic!("{}: expected Error::Invalid, got {other:?}", t.name),
    }
}

#[test]
fn malformed_tableaux_are_reported() {
    let rk4 = ButcherTableau::rk4();
    let mut ragged = rk4.clone();
    ragged.a[2] = Weights::rational(&[1], 2);
    let mut implicit = rk4.clone();
    implicit.a[1] = Weights::real(&[0.25, 0.25]);
    let mut trailing_zero = rk4.clone();
    trailing_zero.a[1] = Weights::rational(&[1, 0], 2);
    let mut nodes = rk4.clone();
    nodes.c[2] = 0.6;
    let mut weights = rk4.clone();
    weights.b = Weights::rational(&[1, 2, 2, 2], 6);
    let mut short_b = rk4.clone();
    short_b.b = Weights::rational(&[1, 1], 2);
    let mut rows = rk4.clone();
    rows.a.pop();
    let mut zero_denominator = rk4.clone();
    zero_denominator.a[1] = Weights::rational(&[1], 0);
    let mut nan = rk4.clone();
    nan.a[1] = Weights::real(&[f64::NAN]);
    let mut estimate = rk4.clone();
    estimate.error = Some(ErrorEstimate { order: 3, weights: Weights::rational(&[1, 0, 0, 0], 6) });
    let mut dense = rk4.clone();
    dense.dense = Some(Weights::real(&[1.0]));
    let empty = ButcherTableau { name: "empty".into(), order: 1, c: vec![], a: vec![], b: Weights::real(&[]), error: None, dense: None };
    let zero_order = ButcherTableau { order: 0, ..ButcherTableau::euler() };
    let cases = [
        (ragged, "ragged rows: a[2] has 1 coefficients, stage 2 of an explicit method has 2"),
        (implicit, "a[1][1] is not zero: the method is not explicit"),
        (trailing_zero, "ragged rows: a[1] has 2 coefficients"),
        (nodes, "c[2] = 0.6 is not the row sum 0.5 of a[2]"),
        (weights, "the weights b sum to 1.1666"),
        (short_b, "weights b has 2 coefficients, expected 4"),
        (rows, "a has 3 rows for 4 stages"),
        (zero_denominator, "a[1] has denominator 0"),
        (nan, "a[1] holds a non-finite coefficient at 0"),
        (estimate, "the error weights sum to 0.1666"),
        (dense, "dense-output weights has 1 coefficients, expected 4"),
        (empty, "no stages"),
        (zero_order, "order must be at least 1"),
    ];
    for (t, expected) in cases {
        let msg = invalid(&t);
        assert!(msg.starts_with(&format!("Butcher tableau '{}': ", t.name)) && msg.contains(expected), "{msg}\nexpected: {expected}");
    }
}

#[test]
fn solvers_refuse_malformed_tableaux_and_adaptive_steps_without_an_estimate() {
    let field = |x: &Tensor, _: f64| -> fm_ode::Result<Tensor> { Ok(x.f_neg()?) };
    let x = Tensor::ones([3, 2], (Kind::Double, tch::Device::Cpu));
    let grid = TimeGrid::uniform(0.0, 1.0, 4).unwrap();
    let mut bad = ButcherTableau::heun();
    bad.c[1] = 0.5;
    let o = SolveOptions::default();
    assert!(matches!(solve_with(&field, &x, &grid, &bad, Stepping::Fixed, o), Err(Error::Invalid(_))));
    assert!(matches!(bad.step(&field, &x, 0.0, 0.1, &mut 0), Err(Error::Invalid(_))));
    let lik = log_likelihood_with(&field, &x, &grid, &bad, Stepping::Fixed, &LikelihoodOptions::default());
    assert!(matches!(lik, Err(Error::Invalid(_))));
    let err = solve_with(&field, &x, &grid, &ButcherTableau::rk4(), Stepping::Adaptive, o).unwrap_err().to_string();
    assert!(err.contains("rk4 has no error estimate"), "{err}");
    // Dormand–Prince in fixed steps: its fifth-order solution, one step per interval.
    let sol = solve_with(&field, &x, &grid, &ButcherTableau::dopri5(), Stepping::Fixed, o).unwrap();
    assert_eq!((sol.nfe, sol.steps), (4 * 6, 4));
}

#[test]
fn exact_differences_of_embedded_weights() {
    let e = ErrorEstimate::from_embedded(&Weights::rational(&[2, 3, 4, 0], 9), &Weights::rational(&[7, 6, 8, 3], 24), 2).unwrap();
    assert_eq!(e.weights, Weights::rational(&[-5, 6, 8, -9], 72));
    let r = ErrorEstimate::from_embedded(&Weights::real(&[0.5, 0.5]), &Weights::rational(&[1, 0], 1), 1).unwrap();
    assert_eq!(r.weights, Weights::real(&[-0.5, 0.5]));
    assert!(ErrorEstimate::from_embedded(&Weights::real(&[1.0]), &Weights::real(&[0.5, 0.5]), 1).is_err());
    assert!(ErrorEstimate::from_embedded(&Weights::rational(&[i64::MAX], 3), &Weights::rational(&[1], 2), 1).is_err());
}

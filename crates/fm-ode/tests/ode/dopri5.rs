//! The adaptive Dormand–Prince 5(4) solver: tolerances, cost, direction, output times, failures.

use crate::common::{max_abs, problems, Problem};
use fm_ode::{solve, AdaptiveOptions, Error, Method, Solution, SolveOptions, TimeGrid};
use tch::{Kind, Tensor};

fn opts(tol: f64) -> SolveOptions {
    SolveOptions { adaptive: AdaptiveOptions { rtol: tol, atol: tol, ..Default::default() }, ..Default::default() }
}

fn dopri(p: &Problem, t0: f64, t1: f64, tol: f64) -> Solution {
    solve(&p.field, &(p.x0)(), &TimeGrid::new(vec![t0, t1]).unwrap(), Method::Dopri5, opts(tol)).unwrap()
}

/// Error at `t1` against the closed form, in units of the tolerance's scale `tol·(1 + |x|)`
/// (the error norm weighs each element by `atol + rtol·|y|`).
fn scaled_error(p: &Problem, x: &Tensor, t0: f64, t1: f64, tol: f64) -> f64 {
    let exact = (p.exact)(&(p.x0)(), t0, t1);
    max_abs(&((x - &exact) / (exact.abs() * tol + tol)))
}

/// The controller keeps each step's estimated local error (that of the fourth-order solution)
/// below one tolerance, and the fifth-order solution that is kept errs less; on these smooth,
/// non-growing problems the global error is the sum of a few such local errors, so it stays
/// within a small multiple of the tolerance (measured: at most 0.5 here).
const TOLERANCE_MULTIPLE: f64 = 3.0;

#[test]
fn dopri5_meets_its_tolerance_forwards_and_backwards() {
    for p in problems() {
        for (t0, t1) in [(0.0, 1.0), (1.0, -0.5)] {
            let mut last_nfe = 0;
            for tol in [1e-3, 1e-5, 1e-7, 1e-9] {
                let sol = dopri(&p, t0, t1, tol);
                let e = scaled_error(&p, &sol.x, t0, t1, tol);
                eprintln!("{} {t0}→{t1} tol {tol:.0e}: error {e:.2} tol, {} NFE ({} steps, {} rejected)", p.name, sol.nfe, sol.steps, sol.rejected);
                assert!(e < TOLERANCE_MULTIPLE, "{} {t0}→{t1} tol {tol:e}: error is {e:.2} tolerances", p.name);
                assert!(sol.nfe >= last_nfe, "{}: tighter tolerance, fewer evaluations", p.name);
                assert_eq!(sol.nfe, 2 + 6 * (sol.steps + sol.rejected), "FSAL: 6 evaluations per attempt plus 2 to start");
                last_nfe = sol.nfe;
            }
        }
    }
}

/// RK4 evaluations (4 per step) needed to reach `target` error at t = 1: doubling then bisection
/// on the number of steps (RK4's error falls monotonically with the step count here).
fn rk4_nfe_for(p: &Problem, target: f64) -> usize {
    let err = |n: usize| {
        let x = solve(&p.field, &(p.x0)(), &TimeGrid::uniform(0.0, 1.0, n).unwrap(), Method::Rk4, SolveOptions::default()).unwrap().x;
        max_abs(&(x - (p.exact)(&(p.x0)(), 0.0, 1.0)))
    };
    let mut hi = 1;
    while err(hi) > target {
        hi *= 2;
    }
    let mut lo = hi / 2; // err(lo) > target, or lo = 0
    while hi - lo > 1 {
        let mid = (lo + hi) / 2;
        if err(mid) > target {
            lo = mid;
        } else {
            hi = mid;
        }
    }
    4 * hi
}

#[test]
fn dopri5_needs_fewer_evaluations_than_rk4_for_the_same_error() {
    for p in problems() {
        for tol in [1e-6, 1e-9] {
            let sol = dopri(&p, 0.0, 1.0, tol);
            let error = max_abs(&(&sol.x - (p.exact)(&(p.x0)(), 0.0, 1.0)));
            let rk4 = rk4_nfe_for(&p, error);
            eprintln!("{} tol {tol:.0e}: dopri5 error {error:.2e} with {} NFE; RK4 needs {rk4} NFE", p.name, sol.nfe);
            assert!(sol.nfe < rk4, "{} tol {tol:e}: dopri5 {} NFE, RK4 {rk4} NFE for error {error:e}", p.name, sol.nfe);
        }
    }
}

#[test]
fn dopri5_backwards_inverts_forwards() {
    let tol = 1e-8;
    for p in problems() {
        let fwd = dopri(&p, 0.0, 1.0, tol).x;
        let back = solve(&p.field, &fwd, &TimeGrid::new(vec![1.0, 0.0]).unwrap(), Method::Dopri5, opts(tol)).unwrap().x;
        let x0 = (p.x0)();
        let e = max_abs(&((back - &x0) / (x0.abs() * tol + tol)));
        assert!(e < 2.0 * TOLERANCE_MULTIPLE, "{}: round trip error {e:.2} tolerances", p.name);
    }
}

/// With a trajectory, the states at the grid's inner times come from the dense output and meet
/// the tolerance; the step sequence, hence the final state, is the same as without.
#[test]
fn dopri5_trajectory_holds_the_states_at_the_requested_times() {
    let tol = 1e-7;
    for p in problems() {
        for times in [vec![0.0, 0.1, 0.37, 0.5, 0.9, 0.95, 1.0], vec![1.0, 0.999, 0.6, 0.2, -0.5]] {
            let grid = TimeGrid::new(times.clone()).unwrap();
            let x0 = (p.x0)();
            let with = solve(&p.field, &x0, &grid, Method::Dopri5, SolveOptions { keep_trajectory: true, ..opts(tol) }).unwrap();
            let without = solve(&p.field, &x0, &grid, Method::Dopri5, opts(tol)).unwrap();
            assert!(without.trajectory.is_none());
            assert_eq!(max_abs(&(&with.x - &without.x)), 0.0, "{}: the trajectory changed the steps", p.name);
            assert_eq!(with.nfe, without.nfe);
            let traj = with.trajectory.unwrap();
            assert_eq!(traj.len(), times.len());
            assert_eq!(max_abs(&(&traj[0] - &x0)), 0.0);
            assert_eq!(max_abs(&(&traj[times.len() - 1] - &with.x)), 0.0);
            for (state, &t) in traj.iter().zip(&times) {
                let e = scaled_error(&p, state, times[0], t, tol);
                assert!(e < TOLERANCE_MULTIPLE, "{} at t = {t}: error {e:.2} tolerances", p.name);
            }
            // The inner times are outputs only: the steps are those of the two-point grid.
            let two_point = solve(&p.field, &x0, &TimeGrid::new(vec![times[0], times[times.len() - 1]]).unwrap(), Method::Dopri5, opts(tol)).unwrap();
            assert_eq!(max_abs(&(&two_point.x - &with.x)), 0.0, "{}: inner grid times changed the steps", p.name);
        }
    }
}

/// `f32` states (the model's kind) at the default tolerances: no spinning on round-off.
#[test]
fn dopri5_on_f32_states_at_default_tolerances() {
    let p = crate::common::rotation();
    let x0 = (p.x0)().to_kind(Kind::Float);
    let sol = solve(&p.field, &x0, &TimeGrid::new(vec![0.0, 1.0]).unwrap(), Method::Dopri5, SolveOptions::default()).unwrap();
    assert_eq!(sol.x.kind(), Kind::Float);
    let e = max_abs(&(sol.x.to_kind(Kind::Double) - (p.exact)(&(p.x0)(), 0.0, 1.0)));
    assert!(e < 1e-4, "error {e:e}");
    assert!(sol.nfe < 100, "{} NFE", sol.nfe);
}

/// dx/dt = 1/(1−t)³ blows up at t = 1: the steps shrink to nothing before it.
#[test]
fn blow_up_is_a_step_size_underflow() {
    let field = |x: &Tensor, t: f64| -> fm_ode::Result<Tensor> { Ok(x.f_ones_like()?.f_mul_scalar((1.0 - t).powi(-3))?) };
    let x0 = Tensor::zeros([2, 1], (Kind::Double, tch::Device::Cpu));
    let err = solve(&field, &x0, &TimeGrid::new(vec![0.0, 2.0]).unwrap(), Method::Dopri5, SolveOptions::default()).unwrap_err();
    match err {
        Error::StepSizeUnderflow { t, h, .. } => assert!((1.0 - t).abs() < 1e-3 && h < 1e-13, "t = {t}, h = {h:e}"),
        e => panic!("expected a step size underflow, got {e}"),
    }
}

#[test]
fn step_budget_runs_out_with_an_error() {
    let p = crate::common::rotation();
    let o = SolveOptions { adaptive: AdaptiveOptions { rtol: 1e-10, atol: 1e-10, max_steps: 5 }, ..Default::default() };
    let err = solve(&p.field, &(p.x0)(), &TimeGrid::new(vec![0.0, 10.0]).unwrap(), Method::Dopri5, o).unwrap_err();
    assert!(matches!(err, Error::StepBudget { max_steps: 5, t_end: 10.0, .. }), "{err}");
    assert!(err.to_string().contains("budget of 5 steps"), "{err}");
}

#[test]
fn non_finite_fields_and_states_are_errors() {
    let grid = TimeGrid::new(vec![0.0, 1.0]).unwrap();
    let x0 = Tensor::ones([3, 2], (Kind::Double, tch::Device::Cpu));
    // NaN everywhere: caught at the first evaluation.
    let nan = |x: &Tensor, _: f64| -> fm_ode::Result<Tensor> { Ok(x.f_full_like(f64::NAN)?) };
    let err = solve(&nan, &x0, &grid, Method::Dopri5, SolveOptions::default()).unwrap_err();
    assert!(matches!(err, Error::NonFinite { t: 0.0, .. }), "{err}");
    // NaN from t = 0.5 on: every step across it is rejected until the step underflows.
    let late_nan = |x: &Tensor, t: f64| -> fm_ode::Result<Tensor> { Ok(if t > 0.5 { x.f_full_like(f64::NAN)? } else { x.f_neg()? }) };
    match solve(&late_nan, &x0, &grid, Method::Dopri5, SolveOptions::default()).unwrap_err() {
        Error::StepSizeUnderflow { t, non_finite_trials, .. } => {
            assert!((t - 0.5).abs() < 1e-9 && non_finite_trials > 10, "t = {t}, {non_finite_trials}")
        }
        e => panic!("expected a step size underflow, got {e}"),
    }
    // A NaN in the initial state.
    let bad_x0 = Tensor::from_slice(&[1.0f64, f64::NAN]).reshape([1, 2]);
    let err = solve(&|x: &Tensor, _: f64| Ok(x.f_neg()?), &bad_x0, &grid, Method::Dopri5, SolveOptions::default()).unwrap_err();
    assert!(matches!(err, Error::NonFinite { what: "the initial state", .. }), "{err}");
}

#[test]
fn invalid_tolerances_are_errors() {
    let p = crate::common::decay();
    let grid = TimeGrid::new(vec![0.0, 1.0]).unwrap();
    for (rtol, atol, max_steps) in [(-1.0, 1e-5, 10), (f64::NAN, 1e-5, 10), (1e-5, 0.0, 10), (1e-5, f64::INFINITY, 10), (1e-5, 1e-5, 0)] {
        let o = SolveOptions { adaptive: AdaptiveOptions { rtol, atol, max_steps }, ..Default::default() };
        assert!(matches!(solve(&p.field, &(p.x0)(), &grid, Method::Dopri5, o), Err(Error::Invalid(_))), "{rtol} {atol} {max_steps}");
        // Fixed-step methods ignore the adaptive settings.
        assert!(solve(&p.field, &(p.x0)(), &grid, Method::Rk4, o).is_ok());
    }
}

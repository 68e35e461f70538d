//! Fixed-step integrators against closed-form solutions.

use crate::common::{problems, Problem};
use fm_ode::{solve, Method, SolveOptions, TimeGrid};
use tch::{Device, Kind, Tensor};

/// dx/dt = x cos(t) + t: no method integrates it exactly; solved to ~1e-12 by a fine RK4 reference.
fn field(x: &Tensor, t: f64) -> fm_ode::Result<Tensor> {
    Ok(x.f_mul_scalar(t.cos())?.f_add_scalar(t)?)
}

fn x0() -> Tensor {
    Tensor::from_slice(&[0.5f64, -1.0, 2.0]).reshape([3, 1])
}

fn max_abs(t: &Tensor) -> f64 {
    f64::try_from(t.abs().max()).unwrap()
}

fn run(method: Method, steps: usize) -> Tensor {
    solve(&field, &x0(), &TimeGrid::uniform(0.0, 1.0, steps).unwrap(), method, SolveOptions::default()).unwrap().x
}

#[test]
fn each_method_converges_at_its_order() {
    let reference = run(Method::Rk4, 4000);
    for method in Method::FIXED_STEP {
        let e1 = max_abs(&(run(method, 20) - &reference));
        let e2 = max_abs(&(run(method, 40) - &reference));
        let observed = (e1 / e2).log2();
        let order = method.order() as f64;
        assert!((observed - order).abs() < 0.25, "{method}: observed order {observed:.2}, expected {order}");
    }
}

/// Max error at `t1` against the closed form, on a grid of `n` steps whose times are
/// `t0 + (t1 − t0)·s(i/n)` (the identity or a smooth warp, so doubling `n` halves every step).
fn closed_form_error(p: &Problem, method: Method, t0: f64, t1: f64, n: usize, warp: fn(f64) -> f64) -> f64 {
    let times = (0..=n).map(|i| t0 + (t1 - t0) * warp(i as f64 / n as f64)).collect();
    let x0 = (p.x0)();
    let sol = solve(&p.field, &x0, &TimeGrid::new(times).unwrap(), method, SolveOptions::default()).unwrap();
    crate::common::max_abs(&(sol.x - (p.exact)(&x0, t0, t1)))
}

/// Halving every step divides the error by 2^order (2, 4, 4, 16): on the closed-form problems,
/// forwards and backwards, on uniform and on non-uniform grids.
#[test]
fn halving_the_step_divides_the_error_by_two_to_the_order() {
    type Warp = (&'static str, fn(f64) -> f64);
    let warps: [Warp; 2] = [("uniform", |u| u), ("warped", |u| (u + u * u) / 2.0)];
    for p in problems() {
        for (t0, t1) in [(0.0, 1.0), (1.0, -0.5)] {
            for (wname, warp) in warps {
                for method in Method::FIXED_STEP {
                    let e1 = closed_form_error(&p, method, t0, t1, 20, warp);
                    let e2 = closed_form_error(&p, method, t0, t1, 40, warp);
                    let observed = (e1 / e2).log2();
                    let order = method.order() as f64;
                    assert!(
                        (observed - order).abs() < 0.25,
                        "{} {t0}→{t1} {wname} {method}: errors {e1:.3e} → {e2:.3e}, observed order {observed:.2}, expected {order}",
                        p.name
                    );
                }
            }
        }
    }
}

/// `Method::step` of Dopri5 on its own is a fifth-order fixed step.
#[test]
fn dopri5_fixed_step_is_fifth_order() {
    let p = crate::common::time_dependent();
    let err = |n: usize| {
        let (mut x, mut nfe, dt) = ((p.x0)(), 0, 1.0 / n as f64);
        for i in 0..n {
            x = Method::Dopri5.step(&p.field, &x, i as f64 * dt, dt, &mut nfe).unwrap();
        }
        assert_eq!(nfe, 6 * n);
        crate::common::max_abs(&(x - (p.exact)(&(p.x0)(), 0.0, 1.0)))
    };
    let observed = (err(5) / err(10)).log2();
    assert!((observed - 5.0).abs() < 0.3, "observed order {observed:.2}");
}

/// The trajectory holds the states at the grid times, not only the right number of them.
#[test]
fn fixed_step_trajectory_holds_the_states_at_the_grid_times() {
    let p = crate::common::rotation();
    let times = vec![0.0, 0.05, 0.1, 0.3, 0.31, 0.6, 1.0];
    let x0 = (p.x0)();
    let opts = SolveOptions { keep_trajectory: true, ..Default::default() };
    let sol = solve(&p.field, &x0, &TimeGrid::new(times.clone()).unwrap(), Method::Rk4, opts).unwrap();
    let traj = sol.trajectory.unwrap();
    assert_eq!(traj.len(), times.len());
    for (state, &t) in traj.iter().zip(&times) {
        // RK4's global error with steps of at most 0.4 on a unit-speed rotation stays below 1e-3.
        assert!(crate::common::max_abs(&(state - (p.exact)(&x0, 0.0, t))) < 1e-3, "t = {t}");
    }
    assert_eq!(sol.steps, times.len() - 1);
    assert_eq!(sol.rejected, 0);
}

#[test]
fn backward_integration_inverts_forward() {
    let fwd = run(Method::Rk4, 50);
    let back = solve(&field, &fwd, &TimeGrid::uniform(1.0, 0.0, 50).unwrap(), Method::Rk4, SolveOptions::default()).unwrap().x;
    assert!(max_abs(&(back - x0())) < 1e-6);
}

#[test]
fn nfe_and_trajectory_are_reported() {
    let grid = TimeGrid::new(vec![0.0, 0.1, 0.5, 1.0]).unwrap();
    for method in Method::FIXED_STEP {
        let sol = solve(&field, &x0(), &grid, method, SolveOptions { keep_trajectory: true, ..Default::default() }).unwrap();
        assert_eq!(sol.nfe, 3 * method.evals_per_step());
        let traj = sol.trajectory.unwrap();
        assert_eq!(traj.len(), 4);
        assert!(max_abs(&(&traj[0] - x0())) == 0.0);
        assert!(max_abs(&(&traj[3] - &sol.x)) == 0.0);
    }
    assert!(solve(&field, &x0(), &grid, Method::Euler, SolveOptions::default()).unwrap().trajectory.is_none());
}

#[test]
fn euler_matches_the_seed_loop() {
    // The seed: x ← x + dt · v(x, step/N) for step in 0..N.
    let n = 100;
    let mut x = Tensor::ones([4, 2], (Kind::Float, Device::Cpu));
    let f = |x: &Tensor, t: f64| -> fm_ode::Result<Tensor> { Ok(x.f_mul_scalar(-t)?.f_add_scalar(1.0)?) };
    for step in 0..n {
        x = &x + f(&x, step as f64 / n as f64).unwrap() * (1.0 / n as f64);
    }
    let ours =
        solve(&f, &Tensor::ones([4, 2], (Kind::Float, Device::Cpu)), &TimeGrid::uniform(0.0, 1.0, n).unwrap(), Method::Euler, SolveOptions::default()).unwrap();
    assert!(max_abs(&(ours.x - x)) < 1e-6);
}

#[test]
fn bad_grids_and_names_are_errors() {
    assert!(TimeGrid::uniform(0.0, 1.0, 0).unwrap_err().to_string().contains("at least 1"));
    assert!(TimeGrid::new(vec![0.0]).is_err());
    assert!(TimeGrid::new(vec![0.0, 0.5, 0.5, 1.0]).unwrap_err().to_string().contains("not strictly monotone"));
    assert!(TimeGrid::new(vec![0.0, f64::NAN]).is_err());
    assert_eq!("RK4".parse::<Method>().unwrap(), Method::Rk4);
    let err = "rk5".parse::<Method>().unwrap_err().to_string();
    assert!(err.contains("unknown integration method 'rk5'") && err.contains("euler, midpoint, heun, rk4, dopri5"), "{err}");
    assert_eq!(" Dopri5 ".parse::<Method>().unwrap(), Method::Dopri5);
    for method in Method::ALL {
        assert_eq!(method.to_string().parse::<Method>().unwrap(), method);
        assert_eq!(method.is_adaptive(), method == Method::Dopri5);
    }
}

#[test]
fn field_errors_propagate() {
    let failing = |_: &Tensor, _: f64| -> fm_ode::Result<Tensor> { Err(fm_ode::Error::Invalid("boom".into())) };
    let err = solve(&failing, &x0(), &TimeGrid::uniform(0.0, 1.0, 3).unwrap(), Method::Heun, SolveOptions::default()).unwrap_err();
    assert_eq!(err.to_string(), "boom");
}

/// Found by the fuzzer through a run file (`[sample] steps = 858018556`): the grid of a step
/// count read from a file was allocated before anything bounded the count (6.9 GB, an abort;
/// `usize::MAX` was a capacity-overflow panic).
#[test]
fn step_counts_no_grid_can_hold_are_errors() {
    for steps in [TimeGrid::MAX_UNIFORM_STEPS + 1, 858_018_556, usize::MAX] {
        let err = TimeGrid::uniform(0.0, 1.0, steps).unwrap_err().to_string();
        assert!(err.contains(&format!("{steps} integration steps is more than the 1000000 a time grid may have")), "{err}");
    }
    assert_eq!(TimeGrid::uniform(1.0, 0.0, TimeGrid::MAX_UNIFORM_STEPS).unwrap().times().len(), TimeGrid::MAX_UNIFORM_STEPS + 1);
}

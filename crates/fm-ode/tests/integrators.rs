//! Integrators against closed-form solutions.

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
    for method in Method::ALL {
        let e1 = max_abs(&(run(method, 20) - &reference));
        let e2 = max_abs(&(run(method, 40) - &reference));
        let observed = (e1 / e2).log2();
        let order = method.order() as f64;
        assert!((observed - order).abs() < 0.25, "{method}: observed order {observed:.2}, expected {order}");
    }
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
    for method in Method::ALL {
        let sol = solve(&field, &x0(), &grid, method, SolveOptions { keep_trajectory: true }).unwrap();
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
    let ours = solve(&f, &Tensor::ones([4, 2], (Kind::Float, Device::Cpu)), &TimeGrid::uniform(0.0, 1.0, n).unwrap(), Method::Euler, SolveOptions::default()).unwrap();
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
    assert!(err.contains("unknown integration method 'rk5'") && err.contains("euler, midpoint, heun, rk4"), "{err}");
}

#[test]
fn field_errors_propagate() {
    let failing = |_: &Tensor, _: f64| -> fm_ode::Result<Tensor> { Err(fm_ode::Error::Invalid("boom".into())) };
    let err = solve(&failing, &x0(), &TimeGrid::uniform(0.0, 1.0, 3).unwrap(), Method::Heun, SolveOptions::default()).unwrap_err();
    assert_eq!(err.to_string(), "boom");
}

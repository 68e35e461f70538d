//! Issue 15: methods fm-ode does not ship, added from outside through the public API as
//! Butcher tableaux, converge at their order — fixed-step, and adaptive with an embedded pair.

use crate::common::{max_abs, problems, Problem};
use fm_ode::{solve, solve_with, AdaptiveOptions, ButcherTableau, ErrorEstimate, Method, SolveOptions, Stepping, TimeGrid, Weights};

/// Kutta's 3/8 rule (order 4; Kutta 1901, in Hairer, Nørsett & Wanner, *Solving ODEs I*, §II.1).
fn three_eighths() -> ButcherTableau {
    ButcherTableau {
        name: "rk38".into(),
        order: 4,
        c: vec![0.0, 1.0 / 3.0, 2.0 / 3.0, 1.0],
        a: vec![Weights::rational(&[], 1), Weights::rational(&[1], 3), Weights::rational(&[-1, 3], 3), Weights::rational(&[1, -1, 1], 1)],
        b: Weights::rational(&[1, 3, 3, 1], 8),
        error: None,
        dense: None,
    }
}

/// Ralston's third-order method (order 3; Ralston, *Math. Comp.* 16 (1962) 431–437), with
/// `f64` coefficients.
fn ralston3() -> ButcherTableau {
    ButcherTableau {
        name: "ralston3".into(),
        order: 3,
        c: vec![0.0, 0.5, 0.75],
        a: vec![Weights::real(&[]), Weights::real(&[0.5]), Weights::real(&[0.0, 0.75])],
        b: Weights::real(&[2.0 / 9.0, 1.0 / 3.0, 4.0 / 9.0]),
        error: None,
        dense: None,
    }
}

/// Bogacki–Shampine 3(2) (Bogacki & Shampine, *Appl. Math. Lett.* 2 (1989) 321–325): order 3,
/// first same as last, with a second-order embedded solution `b̂ = (7/24, 1/4, 1/3, 1/8)`.
fn bogacki_shampine() -> ButcherTableau {
    let b = Weights::rational(&[2, 3, 4, 0], 9);
    let error = ErrorEstimate::from_embedded(&b, &Weights::rational(&[7, 6, 8, 3], 24), 2).unwrap();
    ButcherTableau {
        name: "bs3".into(),
        order: 3,
        c: vec![0.0, 0.5, 0.75, 1.0],
        a: vec![Weights::rational(&[], 1), Weights::rational(&[1], 2), Weights::rational(&[0, 3], 4), Weights::rational(&[2, 3, 4], 9)],
        b,
        error: Some(error),
        dense: None,
    }
}

/// Heun–Euler 2(1): Heun's method with Euler's solution as the embedded one; not first same
/// as last, so each attempt evaluates `f(y1)` anew.
fn heun_euler() -> ButcherTableau {
    let b = Weights::rational(&[1, 1], 2);
    let error = ErrorEstimate::from_embedded(&b, &Weights::rational(&[1, 0], 1), 1).unwrap();
    ButcherTableau { name: "heun-euler".into(), error: Some(error), ..ButcherTableau::heun() }
}

/// The embedded solution of a pair as a method of its own (order: the estimate's).
fn embedded_only(t: &ButcherTableau, b_hat: Weights) -> ButcherTableau {
    let order = t.error.as_ref().unwrap().order;
    ButcherTableau { name: format!("{} embedded", t.name), order, b: b_hat, error: None, ..t.clone() }
}

/// Max error at `t1` against the closed form after `n` equal fixed steps.
fn fixed_error(p: &Problem, tab: &ButcherTableau, t0: f64, t1: f64, n: usize) -> f64 {
    let x0 = (p.x0)();
    let sol = solve_with(&p.field, &x0, &TimeGrid::uniform(t0, t1, n).unwrap(), tab, Stepping::Fixed, SolveOptions::default()).unwrap();
    assert_eq!(sol.nfe, n * tab.evals_per_step());
    max_abs(&(sol.x - (p.exact)(&x0, t0, t1)))
}

/// Empirical order `log2(e_N / e_2N)` on every closed-form problem (f64 states), forwards and
/// backwards, asserted within 0.3 of `order`.
fn assert_converges_at(tab: &ButcherTableau, order: u32, n: usize) {
    tab.validate().unwrap();
    for p in problems() {
        for (t0, t1) in [(0.0, 1.0), (1.0, -0.5)] {
            let (e1, e2) = (fixed_error(&p, tab, t0, t1, n), fixed_error(&p, tab, t0, t1, 2 * n));
            let observed = (e1 / e2).log2();
            println!("{} on {} {t0}→{t1}: errors {e1:.3e} ({n} steps) → {e2:.3e} ({} steps), observed order {observed:.3}", tab.name, p.name, 2 * n);
            assert!((observed - order as f64).abs() < 0.3, "{} on {} {t0}→{t1}: observed order {observed:.2}, expected {order}", tab.name, p.name);
        }
    }
}

#[test]
fn user_tableaux_converge_at_their_order() {
    for tab in [three_eighths(), ralston3(), bogacki_shampine(), heun_euler()] {
        assert_converges_at(&tab, tab.order, 32);
    }
}

/// The embedded weights are right: on their own they converge at the estimate's order.
#[test]
fn embedded_solutions_converge_at_the_estimates_order() {
    let bs = bogacki_shampine();
    assert_converges_at(&embedded_only(&bs, Weights::rational(&[7, 6, 8, 3], 24)), 2, 16);
    let he = heun_euler();
    assert_converges_at(&embedded_only(&he, Weights::rational(&[1, 0], 1)), 1, 32);
}

#[test]
fn embedded_pairs_meet_their_tolerance_adaptively() {
    for (tab, evals) in [(bogacki_shampine(), 3), (heun_euler(), 2)] {
        assert_eq!(tab.evals_per_attempt(), evals, "{}", tab.name);
        assert_eq!(tab.is_fsal(), evals == 3, "{}", tab.name);
        for p in problems() {
            for (t0, t1) in [(0.0, 1.0), (1.0, -0.5)] {
                let mut last_nfe = 0;
                for tol in [1e-3, 1e-5, 1e-7] {
                    let opts = SolveOptions { adaptive: AdaptiveOptions { rtol: tol, atol: tol, max_steps: 100_000 }, ..Default::default() };
                    let x0 = (p.x0)();
                    let sol = solve_with(&p.field, &x0, &TimeGrid::new(vec![t0, t1]).unwrap(), &tab, Stepping::Adaptive, opts).unwrap();
                    let exact = (p.exact)(&x0, t0, t1);
                    let e = max_abs(&((&sol.x - &exact) / (exact.abs() * tol + tol)));
                    println!(
                        "{} on {} {t0}→{t1} tol {tol:.0e}: error {e:.2} tolerances, {} NFE ({} steps, {} rejected)",
                        tab.name, p.name, sol.nfe, sol.steps, sol.rejected
                    );
                    assert!(e < 5.0, "{} on {} tol {tol:e}: error {e:.2} tolerances", tab.name, p.name);
                    assert_eq!(sol.nfe, 2 + evals * (sol.steps + sol.rejected), "{}: evaluations per attempt", tab.name);
                    assert!(sol.nfe > last_nfe, "{}: a tighter tolerance cost no more", tab.name);
                    last_nfe = sol.nfe;
                }
            }
        }
    }
}

/// Without dense-output weights the output times come from the cubic Hermite interpolant,
/// which is third order: at a tight tolerance its error stays within the tolerance's scale.
#[test]
fn adaptive_trajectories_of_user_pairs_hold_the_states_at_the_grid_times() {
    let tol = 1e-6;
    let opts = SolveOptions { keep_trajectory: true, adaptive: AdaptiveOptions { rtol: tol, atol: tol, ..Default::default() } };
    for tab in [bogacki_shampine(), heun_euler()] {
        for p in problems() {
            let times = vec![0.0, 0.1, 0.37, 0.5, 0.9, 1.0];
            let x0 = (p.x0)();
            let sol = solve_with(&p.field, &x0, &TimeGrid::new(times.clone()).unwrap(), &tab, Stepping::Adaptive, opts).unwrap();
            let traj = sol.trajectory.unwrap();
            assert_eq!(traj.len(), times.len());
            for (state, &t) in traj.iter().zip(&times) {
                let exact = (p.exact)(&x0, 0.0, t);
                let e = max_abs(&((state - &exact) / (exact.abs() * tol + tol)));
                assert!(e < 5.0, "{} on {} at t = {t}: error {e:.2} tolerances", tab.name, p.name);
            }
        }
    }
}

/// A user's literal of a named method is that method, bit for bit; written with `f64`
/// coefficients instead of fractions it is the same method up to rounding.
#[test]
fn a_user_written_named_tableau_is_the_named_method() {
    let p = crate::common::rotation();
    let grid = TimeGrid::uniform(0.0, 1.0, 10).unwrap();
    let x0 = (p.x0)();
    let rk4 = ButcherTableau {
        name: "my rk4".into(),
        order: 4,
        c: vec![0.0, 0.5, 0.5, 1.0],
        a: vec![Weights::rational(&[], 1), Weights::rational(&[1], 2), Weights::rational(&[0, 1], 2), Weights::rational(&[0, 0, 1], 1)],
        b: Weights::rational(&[1, 2, 2, 1], 6),
        error: None,
        dense: None,
    };
    let ours = solve_with(&p.field, &x0, &grid, &rk4, Stepping::Fixed, SolveOptions::default()).unwrap().x;
    let named = solve(&p.field, &x0, &grid, Method::Rk4, SolveOptions::default()).unwrap().x;
    assert!(ours.equal(&named));
    let real = ButcherTableau { a: rk4.a.iter().map(|r| Weights::Real(r.values())).collect(), b: Weights::Real(rk4.b.values()), ..rk4 };
    let x = solve_with(&p.field, &x0, &grid, &real, Stepping::Fixed, SolveOptions::default()).unwrap().x;
    let diff = max_abs(&(&x - &named));
    assert!(diff < 1e-14, "f64 coefficients moved RK4 by {diff:e}");
}

/// Every named method is its tableau, and that tableau is well formed.
#[test]
fn named_methods_are_their_tableaux() {
    let constructors = [ButcherTableau::euler(), ButcherTableau::midpoint(), ButcherTableau::heun(), ButcherTableau::rk4(), ButcherTableau::dopri5()];
    for (method, tab) in Method::ALL.into_iter().zip(constructors) {
        tab.validate().unwrap();
        assert_eq!(method.tableau(), &tab);
        assert_eq!(tab.name, method.name());
        assert_eq!(tab.order, method.order());
        assert_eq!(tab.evals_per_step(), method.evals_per_step());
        assert_eq!(method.stepping(), if method == Method::Dopri5 { Stepping::Adaptive } else { Stepping::Fixed });
    }
    assert!(ButcherTableau::dopri5().is_fsal() && ButcherTableau::dopri5().evals_per_attempt() == 6);
    assert!(!ButcherTableau::rk4().is_fsal());
}

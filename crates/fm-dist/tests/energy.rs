//! The Boltzmann benchmarks: each density integrates (quadrature, in 2-D) to the normalising
//! constant it states, its exact sampler follows its density, its gradient is its density's,
//! and the published constants hold (ManyWell-32's log Z = 164.6957, GMM-40's spread).

use fm_dist::{density_of, parse_target, Density, Funnel, ManyWell, Target};
use ndarray::{Array2, ArrayView2};
use rand::{rngs::StdRng, SeedableRng};

/// `∫∫ exp(f(x, y)) dx dy` on `[x0, x1] × [y0(x), y1(x)]` by the midpoint rule, `n` cells a side.
fn integrate_2d(f: &dyn Fn(ArrayView2<f64>) -> ndarray::Array1<f64>, x: (f64, f64), y: &dyn Fn(f64) -> (f64, f64), n: usize) -> f64 {
    let hx = (x.1 - x.0) / n as f64;
    let mut total = 0.0;
    for i in 0..n {
        let xi = x.0 + (i as f64 + 0.5) * hx;
        let (y0, y1) = y(xi);
        let hy = (y1 - y0) / n as f64;
        let rows = Array2::from_shape_fn((n, 2), |(j, k)| if k == 0 { xi } else { y0 + (j as f64 + 0.5) * hy });
        total += f(rows.view()).iter().map(|v| v.exp()).sum::<f64>() * hx * hy;
    }
    total
}

#[test]
fn manywell_32_has_the_published_normalising_constant() {
    let d = ManyWell::new(32).unwrap();
    let log_z = d.log_normalizer().unwrap();
    assert!((log_z - 164.6957).abs() < 5e-5, "log Z = {log_z}");
    // Its target view is normalised: log p = log p̃ − log Z.
    let x = Array2::from_shape_fn((3, 32), |(i, j)| (i as f64 - 1.0) * 0.3 + j as f64 * 0.01);
    let (p, p_tilde) = (Target::log_prob(&d, x.view()).unwrap(), d.log_density(x.view()).unwrap());
    assert!(p.iter().zip(&p_tilde).all(|(a, b)| (b - a - log_z).abs() < 1e-9));
    assert!(ManyWell::new(31).is_err() && ManyWell::new(0).is_err());
}

#[test]
fn each_density_integrates_to_its_stated_constant() {
    // ManyWell in 2-D: one double well beside a Gaussian.
    let mw = ManyWell::new(2).unwrap();
    let z = integrate_2d(&|x| mw.log_density(x).unwrap(), (-4.0, 4.0), &|_| (-9.0, 9.0), 1200);
    assert!((z.ln() - mw.log_normalizer().unwrap()).abs() < 1e-6, "ManyWell-2: log ∫ p̃ = {} against {}", z.ln(), mw.log_normalizer().unwrap());
    // The funnel in 2-D, its x1 range following the neck's width e^{x0/2}.
    let funnel = Funnel::new(2).unwrap();
    let z = integrate_2d(&|x| funnel.log_prob(x).unwrap(), (-27.0, 27.0), &|v| (-12.0 * (0.5 * v).exp(), 12.0 * (0.5 * v).exp()), 1500);
    assert!((z - 1.0).abs() < 1e-6, "Funnel-2 integrates to {z}");
    // GMM-40 over a box 9 standard deviations past its outermost means.
    let gmm = parse_target("gmm40").unwrap();
    let z = integrate_2d(&|x| gmm.log_prob(x).unwrap(), (-52.0, 52.0), &|_| (-52.0, 52.0), 1600);
    assert!((z - 1.0).abs() < 1e-6, "GMM-40 integrates to {z}");
    let density = density_of(gmm.as_ref()).unwrap();
    assert_eq!(density.log_normalizer(), Some(0.0));
}

#[test]
fn the_exact_samplers_follow_their_densities() {
    let mut rng = StdRng::seed_from_u64(5);
    let n = 40_000;
    // ManyWell: each x1 in the right well with the density's share, each x2 standard normal.
    let mw = ManyWell::new(4).unwrap();
    let x = mw.sample(n, &mut rng);
    let right = {
        // P(x1 > 0) by quadrature of the well.
        let grid: Vec<f64> = (0..200_000).map(|i| -5.0 + (i as f64 + 0.5) * 10.0 / 200_000.0).collect();
        let w: Vec<f64> = grid.iter().map(|&v| (-v.powi(4) + 6.0 * v * v + 0.5 * v - 9.0).exp()).collect();
        grid.iter().zip(&w).filter(|(v, _)| **v > 0.0).map(|(_, w)| w).sum::<f64>() / w.iter().sum::<f64>()
    };
    for j in [0, 2] {
        let share = x.column(j).iter().filter(|v| **v > 0.0).count() as f64 / n as f64;
        let se = (right * (1.0 - right) / n as f64).sqrt();
        assert!((share - right).abs() < 4.0 * se, "well {j}: share {share} against {right} (se {se:.4})");
    }
    for j in [1, 3] {
        let (mean, var) = (x.column(j).mean().unwrap(), x.column(j).var(0.0));
        assert!(mean.abs() < 4.0 / (n as f64).sqrt() && (var - 1.0).abs() < 4.0 * (2.0 / n as f64).sqrt(), "x2 column {j}: {mean} {var}");
    }
    // The funnel: x0 ~ N(0, 9), and x_i e^{−x0/2} ~ N(0, 1).
    let f = Funnel::new(10).unwrap();
    let x = f.sample(n, &mut rng);
    let (mean, var) = (x.column(0).mean().unwrap(), x.column(0).var(0.0));
    assert!(mean.abs() < 4.0 * 3.0 / (n as f64).sqrt() && (var / 9.0 - 1.0).abs() < 4.0 * (2.0 / n as f64).sqrt(), "x0: {mean} {var}");
    let z: Vec<f64> = x.rows().into_iter().map(|r| r[3] * (-0.5 * r[0]).exp()).collect();
    let var = z.iter().map(|v| v * v).sum::<f64>() / n as f64;
    assert!((var - 1.0).abs() < 4.0 * (2.0 / n as f64).sqrt(), "standardised x3: variance {var}");
}

#[test]
fn gradients_are_the_densities_own() {
    let mut rng = StdRng::seed_from_u64(1);
    let check = |name: &str, logp: &dyn Fn(ArrayView2<f64>) -> ndarray::Array1<f64>, grad: Array2<f64>, x: &Array2<f64>| {
        let h = 1e-5;
        for j in 0..x.ncols() {
            let (mut up, mut down) = (x.clone(), x.clone());
            up.column_mut(j).mapv_inplace(|v| v + h);
            down.column_mut(j).mapv_inplace(|v| v - h);
            let fd = (logp(up.view()) - logp(down.view())) / (2.0 * h);
            for (i, (a, b)) in fd.iter().zip(grad.column(j)).enumerate() {
                assert!((a - b).abs() < 1e-4 * (1.0 + b.abs()), "{name}: row {i} coordinate {j}: {a} by differences, {b} given");
            }
        }
    };
    let mw = ManyWell::new(6).unwrap();
    let x = mw.sample(20, &mut rng);
    check("ManyWell", &|x| mw.log_density(x).unwrap(), mw.grad_log_density(x.view()).unwrap(), &x);
    let f = Funnel::new(5).unwrap();
    let x = f.sample(20, &mut rng);
    check("Funnel", &|x| f.log_prob(x).unwrap(), f.score(x.view()).unwrap(), &x);
}

#[test]
fn the_benchmarks_parse_by_their_spellings_and_refuse_bad_dimensions() {
    assert_eq!(parse_target("gmm40").unwrap().name(), "GMM-40");
    assert_eq!(parse_target("gmm40").unwrap().classes(), 40);
    assert_eq!(parse_target("manywell:32").unwrap().dim(), 32);
    assert_eq!(parse_target("funnel:10").unwrap().dim(), 10);
    assert!(parse_target("manywell:7").err().unwrap().to_string().contains("even dimension"));
    assert!(parse_target("funnel:1").err().unwrap().to_string().contains("D ≥ 2"));
    assert!(parse_target("funnel:x").err().unwrap().to_string().contains("positive integer"));
    // GMM-40's means are fab-torch's draws: inside [−40, 40)², the first one as torch prints it.
    let gmm = fm_dist::energy::gmm40();
    assert!(gmm.means().iter().all(|m| (-40.0..40.0).contains(m)));
    assert!((gmm.means()[[0, 1]] - 21.457744598388672).abs() < 1e-12);
    assert!((gmm.covariances()[0][[0, 0]].sqrt() - 1.3132616875182228).abs() < 1e-12, "std softplus(1)");
}

#[test]
fn each_energy_states_the_scale_of_its_samples() {
    // The sample standard deviation of 200,000 exact draws has a relative standard error of
    // about √((κ − 1)/(4n)) ≤ 0.3 % for these marginals (kurtosis κ < 8): 1.5 % is 5 of them.
    let mut rng = StdRng::seed_from_u64(11);
    let n = 200_000;
    for target in [parse_target("gmm40").unwrap(), parse_target("manywell:4").unwrap()] {
        let stated = density_of(target.as_ref()).unwrap().std_dev().expect("a built-in energy states its scale");
        let x = target.sample(n, &mut rng);
        for (j, s) in stated.iter().enumerate() {
            let measured = x.column(j).std(0.0);
            assert!((measured / s - 1.0).abs() < 0.015, "{} coordinate {j}: stated {s}, sampled {measured}", target.name());
        }
    }
    // The funnel's x0 is N(0, 3²); each x_i has variance E[e^{x0}] = e^{9/2}.
    let funnel = density_of(&Funnel::new(3).unwrap()).unwrap().std_dev().unwrap();
    assert_eq!(funnel[0], 3.0);
    assert!((funnel[1] * funnel[1] - 4.5f64.exp()).abs() < 1e-9);
}

/// A density alone (the quadratic well `log p̃ = −|x|²/2`, its log Z unknown to it) as a target:
/// it offers its density and nothing else.
struct Bowl;

impl fm_dist::Density for Bowl {
    fn density_name(&self) -> String {
        "bowl".into()
    }
    fn density_dim(&self) -> usize {
        2
    }
    fn log_density(&self, x: ndarray::ArrayView2<f64>) -> fm_dist::Result<ndarray::Array1<f64>> {
        Ok(x.rows().into_iter().map(|r| -0.5 * r.dot(&r)).collect())
    }
    fn log_normalizer(&self) -> Option<f64> {
        None
    }
    fn grad_log_density(&self, x: ndarray::ArrayView2<f64>) -> fm_dist::Result<ndarray::Array2<f64>> {
        Ok(-x.to_owned())
    }
}

fn open_bowl(arg: &str) -> fm_dist::Result<Box<dyn fm_dist::Target>> {
    match arg {
        "2" => Ok(Box::new(fm_dist::DensityTarget::new(Box::new(Bowl)))),
        other => Err(fm_dist::Error::Invalid(format!("bowl:{other}: only bowl:2"))),
    }
}

#[test]
fn a_density_alone_is_a_target_without_a_sampler_registered_by_name() {
    let scheme = fm_dist::Scheme { name: "bowl", spelling: "bowl:2", help: "a quadratic well", open: open_bowl };
    fm_dist::registry::register(scheme).unwrap();
    // Registering again replaces it; a built-in name is refused.
    fm_dist::registry::register(scheme).unwrap();
    assert!(fm_dist::registry::register(fm_dist::Scheme { name: "gmm40", ..scheme }).is_err());
    assert!(fm_dist::registry::register(fm_dist::Scheme { name: "Bad Name", ..scheme }).is_err());
    assert_eq!(fm_dist::list_targets().iter().filter(|(n, _)| *n == "bowl:2").count(), 1);

    let target = fm_dist::parse_target("bowl:2").unwrap();
    assert!(!target.has_sampler() && !target.has_density());
    assert_eq!((target.name(), target.dim()), ("bowl".to_string(), 2));
    // No sampler: no rows, so a metric handed them refuses an empty set.
    let drawn = target.sample(5, &mut rand::rngs::StdRng::seed_from_u64(0));
    assert_eq!(drawn.dim(), (0, 2));
    assert!(fm_dist::metrics::w2(drawn.view(), ndarray::Array2::zeros((3, 2)).view()).is_err());
    // Its density is its own, unnormalised; no normalised log-density is claimed.
    let x = ndarray::array![[1.0, 2.0]];
    assert_eq!(fm_dist::density_of(target.as_ref()).unwrap().log_density(x.view()).unwrap()[0], -2.5);
    assert!(target.log_prob(x.view()).is_err());
    assert_eq!(target.score(x.view()).unwrap(), -x.clone());
    // The scheme needs its argument; the argument's own errors pass through.
    assert!(fm_dist::parse_target("bowl").err().unwrap().to_string().contains("bowl:2"));
    assert!(fm_dist::parse_target("bowl:3").err().unwrap().to_string().contains("only bowl:2"));
}

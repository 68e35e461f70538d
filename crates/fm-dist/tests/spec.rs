//! Mixture spec files (TOML/JSON; full, diagonal and isotropic covariances), the score,
//! and property tests that no spec input panics.

use approx::assert_relative_eq;
use fm_dist::{parse_target, GaussianMixture, MixtureSpec, SpecFormat, Target};
use ndarray::{array, Array2, Axis};
use proptest::prelude::*;
use rand::{rngs::StdRng, SeedableRng};

const SEED_TOML: &str = r#"
name = "seed mixture"
[[components]]
weight = 0.3
mean = [-2.0, -1.0]
cov = [[0.5, 0.1], [0.1, 0.4]]
[[components]]
weight = 0.5
mean = [1.0, 3.0]
cov = [[0.6, -0.2], [-0.2, 0.5]]
[[components]]
weight = 0.2
mean = [4.0, -2.0]
diag = [0.4, 0.6]
"#;

fn toml(text: &str) -> fm_dist::Result<GaussianMixture> {
    MixtureSpec::parse(text, SpecFormat::Toml)?.to_mixture()
}

fn err(text: &str) -> String {
    toml(text).unwrap_err().to_string()
}

#[test]
fn toml_spec_builds_the_seed_mixture() {
    let g = toml(SEED_TOML).unwrap();
    let seed = GaussianMixture::seed();
    assert_eq!(g.name(), "seed mixture");
    assert_eq!(g.weights(), seed.weights());
    assert_eq!(g.means(), seed.means());
    assert_eq!(g.covariances(), seed.covariances());
    let x = seed.sample(100, &mut StdRng::seed_from_u64(0));
    assert_eq!(g.log_prob(x.view()).unwrap(), seed.log_prob(x.view()).unwrap());
}

#[test]
fn json_spec_round_trips_through_the_mixture() {
    let seed = GaussianMixture::seed();
    let json = serde_json::to_string(&MixtureSpec::from(&seed)).unwrap();
    let back = MixtureSpec::parse(&json, SpecFormat::Json).unwrap().to_mixture().unwrap();
    assert_eq!(back.covariances(), seed.covariances());
    assert_eq!(back.weights(), seed.weights());
}

#[test]
fn diagonal_and_isotropic_forms_are_the_full_matrices() {
    let g = toml("[[components]]\nmean = [1.0, 2.0, 3.0]\ndiag = [0.5, 1.0, 2.0]\n[[components]]\nmean = [0.0, 0.0, 0.0]\nvar = 0.25\n").unwrap();
    assert_eq!(g.weights(), &[0.5, 0.5], "weights left out are equal");
    assert_eq!(g.covariances()[0], array![[0.5, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 2.0]]);
    assert_eq!(g.covariances()[1], Array2::<f64>::eye(3) * 0.25);
}

/// A 64-D, 10-component mixture with diagonal covariances from a spec: its log-density
/// matches statrs' multivariate normal, component by component.
#[test]
fn sixty_four_dimensional_spec_matches_statrs() {
    let d = 64;
    let mut text = String::new();
    for k in 0..10 {
        let mean: Vec<String> = (0..d).map(|j| format!("{:.2}", ((k * 7 + j) % 11) as f64 - 5.0)).collect();
        let diag: Vec<String> = (0..d).map(|j| format!("{:.2}", 0.5 + ((k + j) % 5) as f64 * 0.25)).collect();
        text += &format!("[[components]]\nweight = 0.1\nmean = [{}]\ndiag = [{}]\n", mean.join(","), diag.join(","));
    }
    let g = toml(&text).unwrap();
    assert_eq!((g.dim(), g.n_components()), (64, 10));
    let x = g.sample(20, &mut StdRng::seed_from_u64(1));
    let ours = g.log_prob(x.view()).unwrap();
    let mvns: Vec<_> = (0..10)
        .map(|k| statrs::distribution::MultivariateNormal::new(g.means().row(k).to_vec(), g.covariances()[k].iter().cloned().collect()).unwrap())
        .collect();
    for (row, lp) in x.axis_iter(Axis(0)).zip(ours.iter()) {
        let v = nalgebra::DVector::from_vec(row.to_vec());
        let p: f64 = mvns.iter().map(|m| 0.1 * statrs::distribution::Continuous::pdf(m, &v)).sum();
        assert_relative_eq!(*lp, p.ln(), max_relative = 1e-9);
    }
}

#[test]
fn spec_errors_name_the_component_and_the_problem() {
    let cases = [
        ("[[components]]\nmean = [0.0, 0.0]\n", "component 0: give a covariance"),
        ("[[components]]\nmean = [0.0, 0.0]\nvar = 1.0\ndiag = [1.0, 1.0]\n", "component 0: give only one of"),
        ("[[components]]\nmean = [0.0, 0.0]\nvar = 1.0\n[[components]]\nmean = [0.0]\nvar = 1.0\n", "component 1: mean has 1 entries"),
        ("[[components]]\nmean = [0.0, 0.0]\nvar = 1.0\n[[components]]\nmean = [1.0, 0.0]\ndiag = [1.0]\n", "component 1: diag has 1 entries"),
        ("[[components]]\nmean = [0.0, 0.0]\nvar = -1.0\n", "component 0: var must be a finite positive number"),
        ("[[components]]\nmean = [0.0, 0.0]\ndiag = [1.0, nan]\n", "component 0: diag[1] must be"),
        ("[[components]]\nmean = [0.0, 0.0]\ncov = [[1.0, 2.0], [2.0, 1.0]]\n", "component 0: covariance is not positive definite"),
        ("[[components]]\nmean = [0.0, 0.0]\ncov = [[1.0, 0.5], [0.0, 1.0]]\n", "component 0: covariance is not symmetric"),
        ("[[components]]\nmean = [0.0, 0.0]\ncov = [[1.0, 0.0]]\n", "component 0: cov must be 2×2"),
        ("[[components]]\nweight = 0.5\nmean = [0.0]\nvar = 1.0\n[[components]]\nmean = [1.0]\nvar = 1.0\n", "1 of 2 components give a weight"),
        ("[[components]]\nweight = 0.5\nmean = [0.0]\nvar = 1.0\n", "weights sum to 0.5"),
        ("components = []\n", "at least one component"),
        ("[[components]]\nmean = [0.0]\nvar = 1.0\ncolour = 'red'\n", "unknown field `colour`"),
        ("[[components]]\nmean = [0.0\n", "at line 2"),
    ];
    for (text, want) in cases {
        let e = err(text);
        assert!(e.contains(want), "{text:?}: got '{e}', expected it to contain '{want}'");
        assert!(!e.contains('\n'), "error is not one line: {e:?}");
    }
}

#[test]
fn spec_files_load_through_the_target_parser() {
    let dir = std::env::temp_dir().join(format!("fm-dist-spec-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("Mix.toml");
    std::fs::write(&path, SEED_TOML).unwrap();
    let t = parse_target(&format!("spec:{}", path.display())).unwrap();
    assert_eq!((t.name().as_str(), t.dim()), ("seed mixture", 2));
    let bad = dir.join("bad.json");
    std::fs::write(&bad, "{\"components\": [{\"mean\": [0.0]}]}").unwrap();
    let e = parse_target(&format!("spec:{}", bad.display())).err().unwrap().to_string();
    assert!(e.contains("bad.json") && e.contains("component 0: give a covariance"), "{e}");
    let e = parse_target(&format!("spec:{}", dir.join("missing.toml").display())).err().unwrap().to_string();
    assert!(e.contains("missing.toml"), "{e}");
    let e = parse_target(&format!("spec:{}", dir.join("mix.yaml").display())).err().unwrap().to_string();
    assert!(e.contains(".toml or .json"), "{e}");
    std::fs::remove_dir_all(&dir).unwrap();
}

/// Central finite differences of `log_prob` agree with `score` (relative error of a
/// second-order difference with h = 1e-5 is about h² · |∂³ log p| plus 1e-16 / h rounding).
#[test]
fn score_matches_finite_differences() {
    let targets: Vec<Box<dyn Target>> = vec![
        Box::new(GaussianMixture::seed()),
        parse_target("8gaussians").unwrap(),
        parse_target("25gaussians").unwrap(),
        parse_target("normal:3").unwrap(),
        Box::new(toml("[[components]]\nweight = 0.4\nmean = [0, 1, 2]\ncov = [[1, 0.3, 0], [0.3, 2, 0.1], [0, 0.1, 0.5]]\n[[components]]\nweight = 0.6\nmean = [1, -1, 0]\ndiag = [0.3, 0.4, 0.5]\n").unwrap()),
    ];
    let h = 1e-5;
    for t in &targets {
        // Points near the mass and between modes, where responsibilities are mixed.
        let x = t.sample(30, &mut StdRng::seed_from_u64(3)) * 1.3;
        let score = t.score(x.view()).unwrap();
        for i in 0..x.nrows() {
            for j in 0..x.ncols() {
                let (mut up, mut down) = (x.row(i).to_owned().insert_axis(Axis(0)), x.row(i).to_owned().insert_axis(Axis(0)));
                up[[0, j]] += h;
                down[[0, j]] -= h;
                let fd = (t.log_prob(up.view()).unwrap()[0] - t.log_prob(down.view()).unwrap()[0]) / (2.0 * h);
                let s = score[[i, j]];
                assert!((fd - s).abs() <= 1e-5 * (1.0 + s.abs()), "{}: d/dx{j} at row {i}: finite differences {fd}, score {s}", t.name());
            }
        }
    }
}

#[test]
fn targets_without_a_density_have_no_score() {
    for name in ["moons", "checkerboard"] {
        let t = parse_target(name).unwrap();
        assert!(t.score(array![[0.0, 0.0]].view()).unwrap_err().to_string().contains("no analytic density"));
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    /// Arbitrary text, in either format, is parsed or rejected, never a panic.
    #[test]
    fn arbitrary_text_never_panics(text in ".{0,200}") {
        for format in [SpecFormat::Toml, SpecFormat::Json] {
            if let Ok(spec) = MixtureSpec::parse(&text, format) {
                let _ = spec.to_mixture();
            }
        }
    }

    /// Structurally plausible specs with arbitrary numbers (NaN, infinities, negatives,
    /// ragged sizes): every outcome is a mixture whose log-density is finite, or an error.
    #[test]
    fn arbitrary_numbers_are_a_mixture_or_an_error(
        comps in prop::collection::vec(
            (prop::option::of(prop::num::f64::ANY), prop::collection::vec(prop::num::f64::ANY, 0..4),
             prop::option::of(prop::collection::vec(prop::collection::vec(prop::num::f64::ANY, 0..4), 0..4)),
             prop::option::of(prop::collection::vec(prop::num::f64::ANY, 0..4)),
             prop::option::of(prop::num::f64::ANY)),
            0..4),
    ) {
        let components = comps.into_iter().map(|(weight, mean, cov, diag, var)| fm_dist::ComponentSpec { weight, mean, cov, diag, var }).collect();
        if let Ok(g) = (MixtureSpec { name: None, components }).to_mixture() {
            let x = g.sample(4, &mut StdRng::seed_from_u64(0));
            prop_assert!(g.log_prob(x.view()).unwrap().iter().all(|v| !v.is_nan()));
        }
    }

    /// The constructor itself: random weights, means and covariances never panic.
    #[test]
    fn constructor_never_panics(w in prop::collection::vec(-1.0f64..2.0, 0..4), m in prop::collection::vec(prop::num::f64::ANY, 0..8), c in prop::collection::vec(prop::num::f64::ANY, 0..16)) {
        let k = w.len();
        let d = m.len().checked_div(k).unwrap_or(0);
        let means = Array2::from_shape_vec((k, d), m[..k * d].to_vec()).unwrap();
        let dd = (c.len() as f64).sqrt() as usize;
        let covs = (0..k).map(|_| Array2::from_shape_vec((dd, dd), c[..dd * dd].to_vec()).unwrap()).collect();
        let _ = GaussianMixture::new(w, means, covs);
    }
}

/// A few bytes of `var` or `diag` stand for `dim²` covariance entries: a spec too large to hold
/// is refused before anything is built (a 200 kB file of one 100,000-D component asked for
/// 80 GB, and a Cholesky factorisation of hours).
#[test]
fn a_spec_too_large_to_hold_is_refused_before_it_is_built() {
    let zeros = |d: usize| vec!["0"; d].join(",");
    let e = err(&format!("[[components]]\nmean = [{}]\nvar = 1.0\n", zeros(100_000)));
    assert!(e.contains("too large for a mixture spec: 100000 dimensions and 1 components (at most 1024 dimensions"), "{e}");
    let e = err(&format!("[[components]]\nmean = [{}]\ndiag = [{}]\n", zeros(1025), vec!["1"; 1025].join(",")));
    assert!(e.contains("1025 dimensions"), "{e}");
    // Within the dimension cap, but 17 full 1024 × 1024 covariances.
    let e = err(&format!("[[components]]\nmean = [{}]\nvar = 1.0\n", zeros(1024)).repeat(17));
    assert!(e.contains("1024 dimensions and 17 components") && e.contains("at most 16777216"), "{e}");
}

//! Probability paths: the endpoints, `u_t = ∂_t x_t`, names and validation.

use fm_train::ProbabilityPath;
use tch::{Device, Kind, Tensor};

const PATHS: [ProbabilityPath; 5] = [
    ProbabilityPath::Linear,
    ProbabilityPath::Icfm { sigma: 0.3 },
    ProbabilityPath::Lipman { sigma_min: 0.05 },
    ProbabilityPath::Vp,
    ProbabilityPath::SchrodingerBridge { sigma: 0.7 },
];

fn tensor(v: &[f64]) -> Tensor {
    Tensor::from_slice(v).reshape([3, 2])
}

/// Source, target and noise batches (float64, so finite differences are accurate).
fn batches() -> (Tensor, Tensor, Tensor) {
    (tensor(&[1.0, 2.0, -1.0, 0.5, 0.3, -2.2]), tensor(&[3.0, -1.0, 0.0, 4.0, -1.5, 0.7]), tensor(&[0.4, -1.3, 2.1, 0.2, -0.6, 1.1]))
}

fn times(t: &[f64]) -> Tensor {
    Tensor::from_slice(t).reshape([-1, 1])
}

fn max_abs(t: &Tensor) -> f64 {
    f64::try_from(t.abs().max()).unwrap()
}

#[test]
fn endpoints_are_the_source_and_the_target() {
    let (x0, x1, eps) = batches();
    let (zero, one) = (times(&[0.0; 3]), times(&[1.0; 3]));
    for path in PATHS {
        // What x_t must be at t = 0 and t = 1 (with the noise held at `eps`).
        let (want0, want1) = match path {
            ProbabilityPath::Icfm { sigma } => (&x0 + &eps * sigma, &x1 + &eps * sigma),
            ProbabilityPath::Lipman { sigma_min } => (x0.shallow_clone(), &x1 + &x0 * sigma_min),
            _ => (x0.shallow_clone(), x1.shallow_clone()),
        };
        let (xt0, _) = path.interpolate_with_noise(&x0, &x1, &zero, &eps).unwrap();
        let (xt1, u1) = path.interpolate_with_noise(&x0, &x1, &one, &eps).unwrap();
        // cos(π/2) is 6e-17 in float64, not 0: the VP path ends within that of x1.
        assert!(max_abs(&(xt0 - &want0)) <= 1e-15, "{path}: x_0");
        assert!(max_abs(&(xt1 - &want1)) <= 1e-15, "{path}: x_1");
        // The velocity is finite at the ends, also where the bridge's noise vanishes.
        assert!(max_abs(&u1).is_finite(), "{path}: u_1");
        // Noise-free form: ε = 0.
        let (a, ua) = path.interpolate(&x0, &x1, &times(&[0.3, 0.6, 0.9])).unwrap();
        let (b, ub) = path.interpolate_with_noise(&x0, &x1, &times(&[0.3, 0.6, 0.9]), &eps.zeros_like()).unwrap();
        assert_eq!(max_abs(&(a - b)), 0.0, "{path}");
        assert_eq!(max_abs(&(ua - ub)), 0.0, "{path}");
    }
    // At the ends, the bridge's velocity is the straight line's.
    let sb = ProbabilityPath::SchrodingerBridge { sigma: 0.7 };
    for t in [&zero, &one] {
        let (_, u) = sb.interpolate_with_noise(&x0, &x1, t, &eps).unwrap();
        assert_eq!(max_abs(&(u - (&x1 - &x0))), 0.0);
    }
    // The Lipman path's endpoint at t = 1 is N(x1, σ_min²) when x0 is noise: σ_min x0.
    let (lip1, _) = ProbabilityPath::Lipman { sigma_min: 0.0 }.interpolate(&x0, &x1, &one).unwrap();
    // t·x1 + (1 − t)·x0 at t = 1 rounds to within an ulp of x1.
    assert!(max_abs(&(lip1 - &x1)) <= 1e-15);
}

#[test]
fn velocity_is_the_time_derivative_with_the_noise_held_fixed() {
    let (x0, x1, eps) = batches();
    let h = 1e-6;
    for path in PATHS {
        for t in [[0.1, 0.5, 0.9], [0.25, 0.7, 0.03], [0.97, 0.4, 0.6]] {
            let at = |dt: f64| path.interpolate_with_noise(&x0, &x1, &(times(&t) + dt), &eps).unwrap();
            let fd = (at(h).0 - at(-h).0) / (2.0 * h);
            let u = at(0.0).1;
            // Central differences: error O(h² x''') plus rounding O(1e-16 / h).
            let err = max_abs(&(&fd - &u)) / (1.0 + max_abs(&u));
            assert!(err < 1e-7, "{path} at t = {t:?}: |fd − u| = {err:e}");
        }
    }
}

#[test]
fn the_paths_are_the_documented_formulas() {
    let (x0, x1, eps) = batches();
    let t = times(&[0.2, 0.5, 0.8]);
    let pi2 = std::f64::consts::FRAC_PI_2;
    // VP: cos/sin weights.
    let (xt, u) = ProbabilityPath::Vp.interpolate(&x0, &x1, &t).unwrap();
    let (c, s) = ((&t * pi2).cos(), (&t * pi2).sin());
    assert!(max_abs(&(xt - (&c * &x0 + &s * &x1))) < 1e-15);
    assert!(max_abs(&(u - (&c * &x1 - &s * &x0) * pi2)) < 1e-15);
    // The VP path preserves variance: |cos|² + |sin|² = 1 at every t.
    // SB: TorchCFM's (1 − 2t) / (2t(1 − t)) (x_t − μ_t) + x1 − x0.
    let sigma = 0.7;
    let (xt, u) = ProbabilityPath::SchrodingerBridge { sigma }.interpolate_with_noise(&x0, &x1, &t, &eps).unwrap();
    let omt: Tensor = 1.0 - &t;
    let mu = &x0 * &omt + &x1 * &t;
    let st = (&t * &omt).sqrt() * sigma;
    assert!(max_abs(&(&xt - (&mu + &st * &eps))) < 1e-15);
    let want_u = (1.0 - &t * 2.0) / (&t * &omt * 2.0) * (&xt - &mu) + (&x1 - &x0);
    assert!(max_abs(&(u - want_u)) < 1e-12);
    // Lipman: x_t = t x1 + (1 − (1 − σ_min) t) x0, u_t = x1 − (1 − σ_min) x0.
    let sm = 0.05;
    let (xt, u) = ProbabilityPath::Lipman { sigma_min: sm }.interpolate(&x0, &x1, &t).unwrap();
    assert!(max_abs(&(xt - (&t * &x1 + (1.0 - &t * (1.0 - sm)) * &x0))) < 1e-15);
    assert!(max_abs(&(u - (&x1 - &x0 * (1.0 - sm)))) < 1e-15);
    // Float32 works too (the training dtype).
    let f = |x: &Tensor| x.to_kind(Kind::Float);
    let (xt, _) = ProbabilityPath::Icfm { sigma: 0.3 }.interpolate_with_noise(&f(&x0), &f(&x1), &f(&t), &f(&eps)).unwrap();
    assert_eq!(xt.kind(), Kind::Float);
    assert_eq!(xt.device(), Device::Cpu);
}

#[test]
fn names_parse_print_and_serialize() {
    for path in PATHS {
        let text = path.to_string();
        assert_eq!(text.parse::<ProbabilityPath>().unwrap(), path, "{text}");
        let json = serde_json::to_string(&path).unwrap();
        assert_eq!(serde_json::from_str::<ProbabilityPath>(&json).unwrap(), path, "{json}");
    }
    assert_eq!(serde_json::to_string(&ProbabilityPath::Linear).unwrap(), "\"linear\"");
    assert_eq!(serde_json::to_string(&ProbabilityPath::Icfm { sigma: 0.1 }).unwrap(), r#"{"icfm":{"sigma":0.1}}"#);
    assert_eq!(serde_json::to_string(&ProbabilityPath::SchrodingerBridge { sigma: 1.0 }).unwrap(), r#"{"schrodinger-bridge":{"sigma":1.0}}"#);
    assert_eq!(serde_json::from_str::<ProbabilityPath>("\"cosine\"").unwrap(), ProbabilityPath::Vp);
    assert_eq!(" Cosine ".parse::<ProbabilityPath>().unwrap(), ProbabilityPath::Vp);
    assert_eq!("lipman:0.01".parse::<ProbabilityPath>().unwrap(), ProbabilityPath::Lipman { sigma_min: 0.01 });

    let err = "straight".parse::<ProbabilityPath>().unwrap_err().to_string();
    for name in ["linear", "icfm", "lipman", "vp", "cosine", "schrodinger-bridge"] {
        assert!(err.contains(name), "{err}");
    }
    for (bad, msg) in [
        ("icfm", "needs its sigma"),
        ("icfm:x", "must be a number"),
        ("icfm:-0.1", "sigma must be finite and ≥ 0"),
        ("lipman:1.5", "sigma_min must be in [0, 1]"),
        ("schrodinger-bridge:0", "sigma must be finite and > 0"),
        ("linear:1", "takes no ':' argument"),
    ] {
        let err = bad.parse::<ProbabilityPath>().unwrap_err().to_string();
        assert!(err.contains(msg), "{bad}: {err}");
    }
    assert!(!ProbabilityPath::Linear.needs_noise() && ProbabilityPath::Icfm { sigma: 0.1 }.needs_noise());
}

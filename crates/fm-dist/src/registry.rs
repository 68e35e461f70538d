//! Targets by name, so a CLI or a config file can pick one at run time.

use crate::toy::{Checkerboard, Circles, EightGaussians, Moons, Pinwheel, SwissRoll, TwentyFiveGaussians, TwoSpirals};
use crate::{Error, GaussianMixture, MixtureSpec, PointCloud, Result, StandardNormal, Target};
use std::path::Path;
use std::sync::RwLock;

/// A family of targets another crate adds under a `NAME:ARG` spelling, for what this crate
/// cannot build itself (fm-train's `energy:FILE`, a TorchScript energy loaded through libtorch).
#[derive(Clone, Copy)]
pub struct Scheme {
    /// The name before the colon (lower case).
    pub name: &'static str,
    /// How it is spelt, for listings (`energy:FILE?dim=D`).
    pub spelling: &'static str,
    /// One line for `fm targets`.
    pub help: &'static str,
    /// Builds the target from what follows the colon.
    pub open: fn(&str) -> Result<Box<dyn Target>>,
}

static SCHEMES: RwLock<Vec<Scheme>> = RwLock::new(Vec::new());

/// Adds `scheme`: [`parse_target`] then builds `NAME:ARG` with it and [`list_targets`] lists it.
/// Registering a name again replaces it (registration may run more than once).
///
/// # Errors
/// [`Error::Invalid`] for a name of the built-in targets, or one that is not a lower-case word.
pub fn register(scheme: Scheme) -> Result<()> {
    let built_in = list_built_in().iter().any(|(n, _)| n.split(':').next() == Some(scheme.name));
    if built_in || scheme.name.is_empty() || !scheme.name.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-') {
        return Err(Error::Invalid(format!("cannot register the target scheme '{}': a built-in name, or not a lower-case word", scheme.name)));
    }
    let mut schemes = SCHEMES.write().unwrap_or_else(std::sync::PoisonError::into_inner);
    schemes.retain(|s| s.name != scheme.name);
    schemes.push(scheme);
    Ok(())
}

fn registered(name: &str) -> Option<Scheme> {
    SCHEMES.read().unwrap_or_else(std::sync::PoisonError::into_inner).iter().find(|s| s.name == name).copied()
}

/// Every name [`parse_target`] knows, with a one-line description (for `--list`): the built-in
/// ones, then those [`register`]ed.
pub fn list_targets() -> Vec<(&'static str, &'static str)> {
    let mut all = list_built_in();
    all.extend(SCHEMES.read().unwrap_or_else(std::sync::PoisonError::into_inner).iter().map(|s| (s.spelling, s.help)));
    all
}

fn list_built_in() -> Vec<(&'static str, &'static str)> {
    vec![
        ("gmm3", "the seed experiment's 3-component 2-D Gaussian mixture, weights 0.3/0.5/0.2"),
        ("normal", "standard normal N(0, I) in 2-D; `normal:D` for dimension D"),
        ("8gaussians", "8 Gaussians on a circle of radius 5, covariance sqrt(0.1)·I (TorchCFM)"),
        ("25gaussians", "25 Gaussians on the grid {-4,-2,0,2,4}², std 0.1"),
        ("moons", "two interleaving half circles (FFJORD: make_moons noise 0.1, ×2 + (-1, -0.2)); no density"),
        ("circles", "two concentric rings of radii 3 and 1.5, noise std 0.24 (FFJORD); no density"),
        ("checkerboard", "uniform on the 8 dark squares of a 4×4 board on [-4,4)², density 1/32 (FFJORD)"),
        ("swissroll", "swiss roll (FFJORD: make_swiss_roll noise 1, columns x,z, /5); no density"),
        ("2spirals", "two point-symmetric spirals of 540° (FFJORD); no density"),
        ("pinwheel", "5-blade pinwheel, radial std 0.3, tangential std 0.1, rate 0.25 (FFJORD); no density"),
        ("gmm40", "40 equal Gaussians in 2-D, means in [-40, 40)², std softplus(1) (fab-torch, DEM's GMM-40 benchmark)"),
        ("manywell:D", "ManyWell: D/2 double wells -x⁴+6x²+x/2 beside N(0, 1), 2^(D/2) modes, log Z known (fab-torch; manywell:32)"),
        ("funnel:D", "Neal's funnel: x0 ~ N(0, 9), xi | x0 ~ N(0, e^x0) (funnel:10)"),
        ("spec:FILE", "a Gaussian mixture of any dimension from a .toml or .json spec (full, diag or iso covariances)"),
        ("file:FILE", "your own point cloud from a .npy (float32/64, N×D) or .csv file, sampled with replacement; no density; FILE?label=last (or a column name) for class labels, ?labels=Y.npy, ?cond=COL,… or ?conds=C.npy for condition vectors"),
    ]
}

/// Builds the target named by `spec` (names are case-insensitive, surrounding spaces ignored).
///
/// `normal:D` asks for the standard normal in `D ≥ 1` dimensions, `spec:FILE` for a
/// mixture spec file ([`MixtureSpec`]), `file:FILE` for a point cloud ([`PointCloud`]);
/// every other name takes no argument. An unknown name is an error listing the valid ones.
///
/// # Errors
/// [`Error::Invalid`] for an unknown name, an argument where none is taken, or a `D` that is
/// not a positive integer; for `spec:` and `file:`, the errors of [`MixtureSpec::read`] and
/// [`PointCloud::read`], and [`Error::File`] for a spec that is no valid mixture.
pub fn parse_target(spec: &str) -> Result<Box<dyn Target>> {
    parse_source(spec, 2)
}

/// [`parse_target`] for a source of `dim`-dimensional points: plain `normal` is `N(0, I_dim)`
/// (noise takes the dimension of the data it is carried to; `normal:D` still says its own).
///
/// # Errors
/// As [`parse_target`].
pub fn parse_source(spec: &str, dim: usize) -> Result<Box<dyn Target>> {
    let spec = spec.trim();
    let (name, arg) = match spec.split_once(':') {
        Some((n, a)) => (n.trim().to_ascii_lowercase(), Some(a.trim())),
        None => (spec.to_ascii_lowercase(), None),
    };
    if let Some(scheme) = registered(&name) {
        return match arg {
            Some(a) => (scheme.open)(a),
            None => Err(Error::Invalid(format!("target '{name}' needs its argument: {}", scheme.spelling))),
        };
    }
    if let Some(a) = arg {
        return match name.as_str() {
            "normal" => {
                let d: usize = a.parse().map_err(|_| Error::Invalid(format!("normal:D needs a positive integer dimension, got '{a}'")))?;
                Ok(Box::new(StandardNormal::new(d)?))
            }
            "manywell" | "funnel" => {
                let d: usize = a.parse().map_err(|_| Error::Invalid(format!("{name}:D needs a positive integer dimension, got '{a}'")))?;
                match name.as_str() {
                    "manywell" => Ok(Box::new(crate::ManyWell::new(d)?)),
                    _ => Ok(Box::new(crate::Funnel::new(d)?)),
                }
            }
            "spec" => Ok(Box::new(MixtureSpec::read(Path::new(a))?.to_mixture().map_err(|e| Error::File { path: a.into(), msg: e.to_string() })?)),
            "file" => Ok(Box::new(PointCloud::open(a)?)),
            _ => Err(Error::Invalid(format!(
                "target '{name}' takes no ':' argument (got '{spec}'); only normal:D, manywell:D, funnel:D, spec:FILE and file:FILE do"
            ))),
        };
    }
    let target: Box<dyn Target> = match name.as_str() {
        "gmm3" => Box::new(GaussianMixture::seed()),
        "gmm40" => Box::new(crate::energy::gmm40()),
        "manywell" => Box::new(crate::ManyWell::new(32)?),
        "funnel" => Box::new(crate::Funnel::new(10)?),
        "normal" => Box::new(StandardNormal::new(dim)?),
        "8gaussians" => Box::new(EightGaussians::new_default()),
        "25gaussians" => Box::new(TwentyFiveGaussians::new_default()),
        "moons" => Box::new(Moons),
        "circles" => Box::new(Circles),
        "checkerboard" => Box::new(Checkerboard),
        "swissroll" => Box::new(SwissRoll),
        "2spirals" => Box::new(TwoSpirals),
        "pinwheel" => Box::new(Pinwheel),
        _ => {
            let names: Vec<&str> = list_targets().into_iter().map(|(n, _)| n).collect();
            let hint = if Path::new(spec).extension().is_some() { " (for a file, write spec:FILE or file:FILE)" } else { "" };
            return Err(Error::Invalid(format!("unknown target '{spec}'{hint}; valid targets: {}, normal:D", names.join(", "))));
        }
    };
    Ok(target)
}

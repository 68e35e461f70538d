//! Gaussian mixtures described in a TOML or JSON file.
//!
//! ```toml
//! # mix.toml: weights must sum to 1 (leave them all out for equal weights)
//! [[components]]
//! weight = 0.7
//! mean = [0.0, 0.0, 0.0]
//! cov = [[1.0, 0.2, 0.0], [0.2, 1.0, 0.0], [0.0, 0.0, 0.5]]   # full covariance
//!
//! [[components]]
//! weight = 0.2
//! mean = [4.0, 0.0, 0.0]
//! diag = [0.5, 0.5, 2.0]                                        # diagonal covariance
//!
//! [[components]]
//! weight = 0.1
//! mean = [0.0, 4.0, 0.0]
//! var = 0.3                                                     # isotropic: 0.3 · I
//! ```
//! The same structure in JSON: `{"components": [{"weight": 0.7, "mean": [..], "cov": [[..]]}, ..]}`.
//! Each component gives exactly one of `cov`, `diag` and `var`.

use crate::{Error, GaussianMixture, Result};
use ndarray::{Array1, Array2};
use serde::{Deserialize, Serialize};
use std::path::Path;

/// A mixture as written in a spec file (see the [module documentation](self)).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MixtureSpec {
    /// Optional display name (defaults to a description of the mixture).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// The `K ≥ 1` components; every mean has the same length `D`.
    pub components: Vec<ComponentSpec>,
}

/// One component: a weight, a mean and one of the three covariance forms.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ComponentSpec {
    /// The mixture weight: give one for every component (summing to 1) or for none (equal
    /// weights `1/K`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub weight: Option<f64>,
    /// The mean: `D` finite values.
    pub mean: Vec<f64>,
    /// Full `D × D` covariance (symmetric positive definite).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cov: Option<Vec<Vec<f64>>>,
    /// Diagonal covariance: the `D` variances.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub diag: Option<Vec<f64>>,
    /// Isotropic covariance `var · I`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub var: Option<f64>,
}

/// The file formats a spec can be written in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SpecFormat {
    /// TOML (`.toml`).
    Toml,
    /// JSON (`.json`).
    Json,
}

impl SpecFormat {
    /// The format named by a file's extension (`.toml` or `.json`, any case).
    ///
    /// # Errors
    /// [`Error::File`] for any other extension, or none.
    pub fn from_path(path: &Path) -> Result<Self> {
        match path.extension().and_then(|e| e.to_str()).map(str::to_ascii_lowercase).as_deref() {
            Some("toml") => Ok(Self::Toml),
            Some("json") => Ok(Self::Json),
            _ => Err(Error::File { path: path.display().to_string(), msg: "a mixture spec must be a .toml or .json file".into() }),
        }
    }
}

impl MixtureSpec {
    /// The largest dimension a spec may describe.
    pub const MAX_DIM: usize = 1024;
    /// The most covariance entries (`components × dim²`) a spec may describe: each component
    /// holds a full `dim × dim` covariance and its Cholesky factor, however short its `diag` or
    /// `var` was in the file (2²⁴ entries are 128 MiB per copy).
    pub const MAX_COV_ENTRIES: usize = 1 << 24;

    /// Parses spec text; syntax errors are one line naming the line and column.
    ///
    /// # Errors
    /// [`Error::Invalid`] for text that is not a spec: bad syntax, an unknown or missing field,
    /// a value of the wrong type. Values are checked later, by [`MixtureSpec::to_mixture`].
    pub fn parse(text: &str, format: SpecFormat) -> Result<Self> {
        match format {
            SpecFormat::Toml => toml::from_str(text).map_err(|e| {
                let at = e.span().map(|s| line_col(text, s.start)).map(|(l, c)| format!(" at line {l} column {c}")).unwrap_or_default();
                Error::Invalid(format!("{}{at}", e.message().trim()))
            }),
            SpecFormat::Json => serde_json::from_str(text).map_err(|e| Error::Invalid(e.to_string())),
        }
    }

    /// Reads and parses a spec file (the format from its extension).
    ///
    /// # Errors
    /// [`Error::Io`] when the file cannot be read; [`Error::File`] for an extension other than
    /// `.toml`/`.json` or text that does not parse.
    pub fn read(path: &Path) -> Result<Self> {
        let format = SpecFormat::from_path(path)?;
        let text = std::fs::read_to_string(path).map_err(|source| Error::Io { path: path.display().to_string(), cause: source })?;
        Self::parse(&text, format).map_err(|e| Error::File { path: path.display().to_string(), msg: e.to_string() })
    }

    /// Builds the mixture; errors name the component and the problem.
    ///
    /// # Errors
    /// [`Error::Invalid`] for no component, a spec beyond [`MixtureSpec::MAX_DIM`] or
    /// [`MixtureSpec::MAX_COV_ENTRIES`], weights given for only some components, or a component
    /// whose mean, weight or covariance is invalid (see [`GaussianMixture::new`]).
    pub fn to_mixture(&self) -> Result<GaussianMixture> {
        let k = self.components.len();
        let first = self.components.first().ok_or_else(|| Error::Invalid("a mixture spec needs at least one component".into()))?;
        let d = first.mean.len();
        // Checked before anything is allocated: a few bytes of `var` stand for d² entries.
        if d > Self::MAX_DIM || k.saturating_mul(d * d) > Self::MAX_COV_ENTRIES {
            return Err(Error::Invalid(format!(
                "too large for a mixture spec: {d} dimensions and {k} components (at most {} dimensions, and components × dimensions² at most {})",
                Self::MAX_DIM,
                Self::MAX_COV_ENTRIES
            )));
        }
        let given = self.components.iter().filter(|c| c.weight.is_some()).count();
        if given != 0 && given != k {
            return Err(Error::Invalid(format!("{given} of {k} components give a weight: give every weight, or none for equal weights")));
        }
        let mut weights = Vec::with_capacity(k);
        let mut means = Array2::<f64>::zeros((k, d));
        let mut covs = Vec::with_capacity(k);
        for (i, c) in self.components.iter().enumerate() {
            let bad = |msg: String| Error::Invalid(format!("component {i}: {msg}"));
            if c.mean.len() != d {
                return Err(bad(format!("mean has {} entries but component 0's has {d}", c.mean.len())));
            }
            weights.push(c.weight.unwrap_or(1.0 / k as f64));
            means.row_mut(i).assign(&Array1::from(c.mean.clone()));
            covs.push(c.covariance(d).map_err(bad)?);
        }
        let mixture = GaussianMixture::new(weights, means, covs)?;
        Ok(match &self.name {
            Some(name) => mixture.with_name(name.clone()),
            None => mixture,
        })
    }
}

impl ComponentSpec {
    /// The `d × d` covariance this component describes.
    fn covariance(&self, d: usize) -> std::result::Result<Array2<f64>, String> {
        let positive = |what: &str, v: f64| {
            if v.is_finite() && v > 0.0 {
                Ok(v)
            } else {
                Err(format!("{what} must be a finite positive number, got {v}"))
            }
        };
        match (&self.cov, &self.diag, self.var) {
            (Some(rows), None, None) => {
                if rows.len() != d || rows.iter().any(|r| r.len() != d) {
                    let shape: Vec<usize> = rows.iter().map(Vec::len).collect();
                    return Err(format!("cov must be {d}×{d} to match the mean, got rows of lengths {shape:?}"));
                }
                Ok(Array2::from_shape_fn((d, d), |(i, j)| rows[i][j]))
            }
            (None, Some(diag), None) => {
                if diag.len() != d {
                    return Err(format!("diag has {} entries, the mean has {d}", diag.len()));
                }
                let mut cov = Array2::zeros((d, d));
                for (j, &v) in diag.iter().enumerate() {
                    cov[[j, j]] = positive(&format!("diag[{j}]"), v)?;
                }
                Ok(cov)
            }
            (None, None, Some(var)) => Ok(Array2::eye(d) * positive("var", var)?),
            (None, None, None) => Err("give a covariance: one of cov (full), diag (variances) or var (isotropic)".into()),
            _ => Err("give only one of cov, diag and var".into()),
        }
    }
}

impl From<&GaussianMixture> for MixtureSpec {
    /// The spec of a mixture (full covariances), e.g. to write the resolved target of a run.
    fn from(g: &GaussianMixture) -> Self {
        let components = (0..g.n_components())
            .map(|k| ComponentSpec {
                weight: Some(g.weights()[k]),
                mean: g.means().row(k).to_vec(),
                cov: Some(g.covariances()[k].rows().into_iter().map(|r| r.to_vec()).collect()),
                ..ComponentSpec::default()
            })
            .collect();
        Self { name: None, components }
    }
}

/// 1-based line and column of byte offset `at` in `text`.
fn line_col(text: &str, at: usize) -> (usize, usize) {
    let before = text.get(..at).unwrap_or(text);
    let line = before.matches('\n').count() + 1;
    let col = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
    (line, col)
}

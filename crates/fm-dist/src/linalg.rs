//! The little dense linear algebra the Gaussians need (Cholesky, triangular solves).

use crate::{Error, Result};
use ndarray::{Array2, ArrayView1, ArrayView2};

/// Lower-triangular Cholesky factor `L` with `L Lᵀ = a`.
///
/// # Errors
/// [`Error::Invalid`] unless `a` is square, finite, symmetric (relative tolerance 1e-9) and
/// positive definite (each pivot above `1e-12` times the largest absolute entry).
pub fn cholesky(a: ArrayView2<f64>) -> Result<Array2<f64>> {
    let n = a.nrows();
    if a.ncols() != n {
        return Err(Error::Invalid(format!("covariance is {}x{}, not square", n, a.ncols())));
    }
    if a.iter().any(|v| !v.is_finite()) {
        return Err(Error::Invalid("covariance has a non-finite entry".into()));
    }
    let scale = a.iter().fold(0.0f64, |m, v| m.max(v.abs())).max(f64::MIN_POSITIVE);
    for i in 0..n {
        for j in 0..i {
            if (a[[i, j]] - a[[j, i]]).abs() > 1e-9 * scale {
                return Err(Error::Invalid(format!("covariance is not symmetric: entry ({i},{j}) = {} but ({j},{i}) = {}", a[[i, j]], a[[j, i]])));
            }
        }
    }
    let mut l = Array2::<f64>::zeros((n, n));
    for j in 0..n {
        let mut d = a[[j, j]];
        for k in 0..j {
            d -= l[[j, k]] * l[[j, k]];
        }
        if d <= 1e-12 * scale || !d.is_finite() {
            return Err(Error::Invalid("covariance is not positive definite".into()));
        }
        let d = d.sqrt();
        l[[j, j]] = d;
        for i in (j + 1)..n {
            let mut s = a[[i, j]];
            for k in 0..j {
                s -= l[[i, k]] * l[[j, k]];
            }
            l[[i, j]] = s / d;
        }
    }
    Ok(l)
}

/// Solves `L y = b` for lower-triangular `L`, writing `y` into `out`.
pub fn solve_lower(l: ArrayView2<f64>, b: ArrayView1<f64>, out: &mut [f64]) {
    let n = b.len();
    for i in 0..n {
        let mut s = b[i];
        for k in 0..i {
            s -= l[[i, k]] * out[k];
        }
        out[i] = s / l[[i, i]];
    }
}

/// Solves `Lᵀ y = b` for lower-triangular `L` (back substitution), writing `y` into `out`.
pub fn solve_lower_transpose(l: ArrayView2<f64>, b: &[f64], out: &mut [f64]) {
    let n = b.len();
    for i in (0..n).rev() {
        let mut s = b[i];
        for k in i + 1..n {
            s -= l[[k, i]] * out[k];
        }
        out[i] = s / l[[i, i]];
    }
}

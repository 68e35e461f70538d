//! What a conditional network is conditioned on, and how a condition enters it.

use crate::{Error, Result};
use serde::{Deserialize, Serialize};

/// The conditions a network takes: `classes` class labels and/or a `dim`-D condition vector.
///
/// A conditional network sees, after its times, the condition's features
/// `[one_hot(c) (classes), y (dim), ∅ (1)]`: the one-hot class, the condition vector, and a
/// flag set for "no condition" (then the rest is 0). The flag is the extra "no condition"
/// entry classifier-free guidance needs (Ho & Salimans 2022): training drops the condition
/// with probability `cond_drop`, so one network learns `v(x, t | c)` and `v(x, t | ∅)`.
/// A linear first layer on a one-hot class is a learned class embedding of the layer's width
/// added to its pre-activation (`W · one_hot(c) = W[:, c]`): the `classes + 1` embedding
/// vectors are columns of that layer, with no separate table.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct ConditionShape {
    /// Number of classes (0: no labels).
    pub classes: usize,
    /// Width of the condition vector (0: none).
    pub dim: usize,
}

impl ConditionShape {
    /// No condition: the unconditional network.
    pub const NONE: ConditionShape = ConditionShape { classes: 0, dim: 0 };

    /// Whether the network takes a condition at all.
    pub fn is_conditional(&self) -> bool {
        self.classes + self.dim > 0
    }

    /// The width of the condition's features: `classes + dim + 1`, or 0 when unconditional.
    pub fn features(&self) -> usize {
        if self.is_conditional() {
            self.classes + self.dim + 1
        } else {
            0
        }
    }

    /// The features of one condition: class `label` and/or vector `values`, or "no condition"
    /// (the null entry) when both are `None`. Empty for an unconditional shape and no condition.
    ///
    /// # Errors
    /// [`Error::Config`] for a label out of range, a vector of another width or not finite, a
    /// label or vector the shape does not take, or one given without the other where the shape
    /// takes both.
    pub fn features_of(&self, label: Option<usize>, values: Option<&[f64]>) -> Result<Vec<f32>> {
        let mut out = vec![0f32; self.features()];
        self.write_features(&mut out, label, values)?;
        Ok(out)
    }

    /// [`ConditionShape::features_of`] into `out` (`features()` long).
    ///
    /// # Errors
    /// As [`ConditionShape::features_of`]; [`Error::Config`] also for `out` of another length.
    pub fn write_features(&self, out: &mut [f32], label: Option<usize>, values: Option<&[f64]>) -> Result<()> {
        if out.len() != self.features() {
            return Err(Error::Config(format!("condition features: {} values for a shape of {}", out.len(), self.features())));
        }
        if !self.is_conditional() {
            return match (label, values) {
                (None, None) => Ok(()),
                _ => Err(Error::Config("the model is unconditional: it takes no class or condition".into())),
            };
        }
        out.fill(0.0);
        if label.is_none() && values.is_none() {
            out[self.classes + self.dim] = 1.0;
            return Ok(());
        }
        match (label, self.classes) {
            (Some(c), k) if c < k => out[c] = 1.0,
            (Some(c), 0) => return Err(Error::Config(format!("class {c}: the model takes no class labels"))),
            (Some(c), k) => return Err(Error::Config(format!("class {c} is out of range: the model has {k} classes, 0 to {}", k - 1))),
            (None, k) if k > 0 && self.dim == 0 => {
                return Err(Error::Config(format!("a condition vector: the model takes class labels (0 to {}), not a condition vector: give a class", k - 1)))
            }
            (None, k) if k > 0 => return Err(Error::Config("the model takes a class with its condition vector".into())),
            (None, _) => {}
        }
        match (values, self.dim) {
            (Some(v), d) if v.len() == d && d > 0 => {
                if let Some(bad) = v.iter().find(|x| !x.is_finite()) {
                    return Err(Error::Config(format!("condition value {bad}: every value must be a finite number")));
                }
                for (o, x) in out[self.classes..self.classes + d].iter_mut().zip(v) {
                    *o = *x as f32;
                }
            }
            (Some(v), 0) => return Err(Error::Config(format!("a {}-D condition vector: the model takes none", v.len()))),
            (Some(v), d) => return Err(Error::Config(format!("a {}-D condition vector: the model takes {d}-D ones", v.len()))),
            (None, d) if d > 0 => return Err(Error::Config(format!("the model takes a {d}-D condition vector"))),
            (None, _) => {}
        }
        Ok(())
    }
}

impl std::fmt::Display for ConditionShape {
    /// `unconditional`, `3 classes`, `a 2-D condition`, `3 classes and a 2-D condition`.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match (self.classes, self.dim) {
            (0, 0) => f.write_str("unconditional"),
            (k, 0) => write!(f, "{k} classes"),
            (0, d) => write!(f, "a {d}-D condition"),
            (k, d) => write!(f, "{k} classes and a {d}-D condition"),
        }
    }
}

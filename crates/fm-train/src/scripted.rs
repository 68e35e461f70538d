//! A user's energy as a TorchScript module: what a scientist can write without Rust.
//!
//! ```python
//! class DoubleWell(torch.nn.Module):
//!     def forward(self, x):                    # x: [n, D] float32
//!         return ((x ** 2 - 1) ** 2).sum(-1)   # E(x): [n]
//! torch.jit.script(DoubleWell()).save("double_well.pt")
//! ```
//!
//! [`ScriptedEnergy`] loads it through tch (libtorch, which the set-up already installs) as a
//! [`Density`] with `log p̃ = −E(x)/T`; its gradient comes from autograd through the module. It
//! trains from Rust like any density (`TrainingData::Energy`) and weighs samples
//! ([`fm_dist::importance`]). NaN or infinite energies are passed on as they are: every consumer
//! refuses a NaN or `+∞` `log p̃` with one line naming the point, and `E = +∞` is `p̃ = 0`.

use crate::{Error, Result};
use fm_dist::Density;
use ndarray::{Array1, Array2, ArrayView2};
use std::path::Path;
use tch::{CModule, Device, Kind, Tensor};

/// An energy `E(x)` from a TorchScript module whose `forward` maps `[n, D]` float32 points to
/// `[n]` (or `[n, 1]`) energies; the density is `p̃ = exp(−E/T)`, its normalising constant unknown.
pub struct ScriptedEnergy {
    module: CModule,
    dim: usize,
    temperature: f64,
    name: String,
    scale: Option<Vec<f64>>,
}

/// How a TorchScript energy is spelt as a target (`fm run --target`, `fm eval --target`, run files).
pub const SPELLING: &str = "energy:FILE?dim=D";

/// Adds the target spelling `energy:FILE?dim=D[&temperature=T][&scale=S]` to fm-dist's registry
/// ([`fm_dist::registry::register`]): the module at `FILE` as a [`ScriptedEnergy`] of `D`-D points
/// at temperature `T` (default 1), `S` its scale (one number, or one per coordinate: the standard
/// deviation energy-weighted training works in units of; default 1). It is a target known by its
/// density alone ([`fm_dist::DensityTarget`]): no sampler, its `log Z` unknown.
///
/// # Errors
/// None in practice (the name is not a built-in one); the registry's refusal otherwise.
pub fn register() -> Result<()> {
    fm_dist::registry::register(fm_dist::Scheme {
        name: "energy",
        spelling: SPELLING,
        help: "your energy E(x) as a TorchScript module (forward: [n, D] float32 → [n]), p ∝ exp(−E/T); &temperature=T, &scale=S (standard deviation, one or D numbers); no sampler: trained by --objective ewfm, judged by importance weights",
        open: open_target,
    })?;
    Ok(())
}

fn open_target(arg: &str) -> fm_dist::Result<Box<dyn fm_dist::Target>> {
    let bad = |m: String| fm_dist::Error::Invalid(format!("energy:{arg}: {m} (spelt {SPELLING}[&temperature=T][&scale=S])"));
    let (file, query) = arg.rsplit_once('?').ok_or_else(|| bad("no ?dim=D: the module does not say how many coordinates a point has".into()))?;
    let (mut dim, mut temperature, mut scale) = (None, 1.0, None);
    for item in query.split('&').filter(|i| !i.is_empty()) {
        let (key, value) = item.split_once('=').ok_or_else(|| bad(format!("'{item}' is not KEY=VALUE")))?;
        let number = |v: &str| v.trim().parse::<f64>().map_err(|_| bad(format!("{key}={value}: not a number")));
        match key.trim() {
            "dim" => dim = Some(value.trim().parse::<usize>().ok().filter(|&d| d > 0).ok_or_else(|| bad(format!("dim={value}: not a positive integer")))?),
            "temperature" => temperature = number(value)?,
            "scale" => scale = Some(value.split(',').map(number).collect::<fm_dist::Result<Vec<f64>>>()?),
            other => return Err(bad(format!("unknown setting '{other}' (dim, temperature, scale)"))),
        }
    }
    let dim = dim.ok_or_else(|| bad("no dim=D: the module does not say how many coordinates a point has".into()))?;
    if !(temperature.is_finite() && temperature > 0.0) {
        return Err(bad(format!("temperature={temperature}: not a positive number")));
    }
    let mut energy = ScriptedEnergy::load(Path::new(file), dim, temperature).map_err(|e| {
        // Named by the file once, as fm-dist names files.
        let message = e.to_string();
        let msg = message.split_once(&format!("energy {file}: ")).map_or(message.as_str(), |(_, m)| m).to_string();
        fm_dist::Error::File { path: file.into(), msg }
    })?;
    if let Some(scale) = scale {
        if !scale.iter().all(|s: &f64| s.is_finite() && *s > 0.0) {
            return Err(bad(format!(
                "scale must be positive finite numbers, got {}",
                query.split('&').find(|i| i.trim_start().starts_with("scale=")).unwrap_or("")
            )));
        }
        let scale = match scale.len() {
            1 => vec![scale[0]; dim],
            n if n == dim => scale,
            n => return Err(bad(format!("scale has {n} numbers for {dim} coordinates (give one, or {dim})"))),
        };
        energy.scale = Some(scale);
    }
    Ok(Box::new(fm_dist::DensityTarget::new(Box::new(energy))))
}

impl ScriptedEnergy {
    /// Loads the module at `path` for `dim`-D points at temperature `temperature`, and checks it
    /// on two points: it must return one finite-or-infinite energy per point.
    ///
    /// # Errors
    /// [`Error::Config`], one line naming the file: not a TorchScript module, a `forward` that fails
    /// on `[2, dim]` points or returns another shape, a dimension of 0, a temperature that is not a
    /// positive finite number.
    pub fn load(path: &Path, dim: usize, temperature: f64) -> Result<Self> {
        let bad = |m: String| Error::Config(format!("energy {}: {m}", path.display()));
        if dim == 0 || !(temperature.is_finite() && temperature > 0.0) {
            return Err(bad(format!("needs a dimension ≥ 1 and a positive temperature, got {dim} and {temperature}")));
        }
        if let Err(e) = std::fs::metadata(path) {
            return Err(bad(format!("cannot read it ({e})")));
        }
        let mut module = CModule::load_on_device(path, Device::Cpu).map_err(|e| bad(format!("not a TorchScript module ({})", first_line(&e.to_string()))))?;
        module.set_eval();
        let name = format!("energy {}", path.file_name().map_or_else(|| path.display().to_string(), |n| n.to_string_lossy().into_owned()));
        let energy = Self { module, dim, temperature, name, scale: None };
        let _no_grad = tch::no_grad_guard();
        energy.energies(&Tensor::f_zeros([2, dim as i64], (Kind::Float, Device::Cpu))?).map(drop).map_err(|e| bad(e.to_string()))?;
        Ok(energy)
    }

    /// `E(x)` of each row of `x` (`[n, dim]` float32), as `[n]` float64.
    fn energies(&self, x: &Tensor) -> Result<Tensor> {
        let n = x.size()[0];
        let e = self
            .module
            .forward_ts(&[x])
            .map_err(|e| Error::Config(format!("its forward failed on [{n}, {}] points: {}", self.dim, first_line(&e.to_string()))))?;
        match e.size()[..] {
            [m] | [m, 1] if m == n => Ok(e.f_to_kind(Kind::Double)?.f_view([n])?),
            ref other => {
                Err(Error::Config(format!("its forward returned shape {other:?} for [{n}, {}] points: an energy is one value per point, [n]", self.dim)))
            }
        }
    }

    fn points(&self, x: ArrayView2<f64>) -> Result<Tensor> {
        if x.ncols() != self.dim {
            return Err(fm_dist::Error::Dim { expected: self.dim, got: x.ncols() }.into());
        }
        Ok(crate::array_to_tensor(x, Device::Cpu)?.f_to_kind(Kind::Float)?)
    }
}

/// What a torch error says in one line: the interpreter's own cause where it gives one (its last
/// `…Error: …` line, after the TorchScript traceback), else its first line, to the end of the
/// first sentence (torch appends paragraphs of advice).
fn first_line(s: &str) -> &str {
    let lines = || s.lines().map(str::trim).filter(|l| !l.is_empty());
    let line = lines().rfind(|l| l.contains("Error: ") && !l.starts_with("Internal torch error")).or_else(|| lines().next()).unwrap_or(s);
    line.split_once(". ").map_or(line, |(first, _)| first)
}

impl Density for ScriptedEnergy {
    fn density_name(&self) -> String {
        self.name.clone()
    }
    fn density_dim(&self) -> usize {
        self.dim
    }
    fn log_density(&self, x: ArrayView2<f64>) -> fm_dist::Result<Array1<f64>> {
        let run = || -> Result<Array1<f64>> {
            let _no_grad = tch::no_grad_guard();
            let e = self.energies(&self.points(x)?)?;
            Ok(Array1::from(Vec::<f64>::try_from(e.f_contiguous()?)?).mapv(|e| -e / self.temperature))
        };
        run().map_err(|e| fm_dist::Error::Invalid(e.to_string()))
    }
    fn log_normalizer(&self) -> Option<f64> {
        None
    }
    fn std_dev(&self) -> Option<Vec<f64>> {
        self.scale.clone()
    }
    fn grad_log_density(&self, x: ArrayView2<f64>) -> fm_dist::Result<Array2<f64>> {
        let run = || -> Result<Array2<f64>> {
            let points = self.points(x)?.f_set_requires_grad(true)?;
            let e = self.energies(&points)?;
            let grad = Tensor::f_run_backward(&[e.f_sum(Kind::Double)?], &[&points], false, false)?.remove(0);
            Ok(crate::tensor_to_array(&grad.f_to_kind(Kind::Double)?)?.mapv(|g| -g / self.temperature))
        };
        run().map_err(|e| fm_dist::Error::Invalid(e.to_string()))
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_torch_error_is_told_by_its_cause_in_one_sentence() {
        let interpreter = "The following operation failed in the TorchScript interpreter.\nTraceback of TorchScript:\n  File \"x.py\", line 3\n    return x[:, 1]\nRuntimeError: index 1 is out of bounds for dimension 1 with size 1\n";
        assert_eq!(super::first_line(interpreter), "RuntimeError: index 1 is out of bounds for dimension 1 with size 1");
        let miniz = "Internal torch error: PytorchStreamReader failed reading zip archive: failed finding central directory. This is an internal miniz error. If you are seeing this error";
        assert_eq!(super::first_line(miniz), "Internal torch error: PytorchStreamReader failed reading zip archive: failed finding central directory");
    }
}

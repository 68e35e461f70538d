//! What files and names hold, in lines for a person: `fm inspect` and `fm targets`.

use crate::parse_target;
use crate::{Error, Result, RunConfig};
use fm_dist::Target;
use fm_model::checkpoint::{self, Format, LoadOptions};
use std::path::Path;

/// What the checkpoint at `path` holds, one line each: its format and size, its network, its
/// condition, how it generates, then every metadata entry. A file that does not record its
/// network (a PyTorch state dict) is described from its shapes, with what it needs to be used.
///
/// # Errors
/// An unreadable file, or one that is no checkpoint.
pub fn inspect(path: &Path, foreign: &LoadOptions) -> Result<Vec<String>> {
    let bytes = std::fs::read(path).map_err(|source| Error::Io { what: "cannot read", path: path.into(), source })?;
    let head = format!("{} ({:?}, {} bytes)", path.display(), Format::detect(&bytes), bytes.len());
    let (model, meta) = match checkpoint::load_any_with(path, tch::Device::Cpu, foreign) {
        Ok(loaded) => loaded,
        Err(e) => match checkpoint::describe_unrecorded(&bytes) {
            // Inspecting needs no activation or layout: what the shapes allow is the answer.
            Ok(Some(shapes)) => return Ok(vec![head, format!("  model      {shapes}"), format!("  to use it  {e}")]),
            _ => return Err(e.into()),
        },
    };
    let c = fm_model::registry::config_of(&*model).ok_or_else(|| Error::Invalid(format!("{}: a network of no registered architecture", path.display())))?;
    let params: usize = model.named_parameters().iter().map(|(_, t)| t.numel()).sum();
    let time = match (c.sinusoidal_features(), c.time_inputs) {
        (0, 1) => "raw time".to_string(),
        (0, _) => "raw times (r, t) of an average velocity u(x, r, t)".to_string(),
        (k, 1) => format!("{k} time features"),
        (k, _) => format!("{k} time features for each of (r, t), an average velocity u(x, r, t)"),
    };
    let (title, depth) = fm_model::registry::find(&c.kind).map_or((c.kind.as_str(), "layers"), |k| (k.title, k.depth));
    let layers = format!("{title}: {} {depth}", c.hidden_layers);
    let mut lines = vec![head, format!("  model      {}-D {layers} of {} ({}), {time}, {params} parameters", c.dim, c.hidden_dim, c.activation)];
    let condition = c.condition_shape();
    if condition.is_conditional() {
        let how = if c.classes > 0 { "fm sample --class K (K, K,K or all)" } else { "fm sample --cond V,…" };
        lines.push(format!("  condition  {condition}, and the \"no condition\" entry of classifier-free guidance: {how} [--cfg-scale W]"));
    }
    let train = meta.get("train").map(|t| serde_json::from_str::<fm_train::TrainConfig>(t).map_err(|e| e.to_string())).transpose();
    let objective = match &train {
        Ok(Some(t)) => format!(" (objective {})", t.objective),
        // Said, not dropped: what the file claims about its training cannot be read.
        Err(e) => format!(" (its training record cannot be read: {e})"),
        Ok(None) => String::new(),
    };
    match crate::bundle::generator_of(&meta, &train, c.time_inputs) {
        Ok(generator) => lines.push(format!("  generates  {}{objective}", generator.how_to_sample())),
        Err(e) => lines.push(format!("  generates  unknown: {e}")),
    }
    // The config is shown above as the network.
    lines.extend(meta.iter().filter(|(k, _)| *k != "config").map(|(key, value)| format!("  {key:<10} {value}")));
    Ok(lines)
}

/// Every built-in target, one line each (name, classes, what it is); with a run file, then what
/// its target and source resolve to.
///
/// # Errors
/// A run file that does not read, or whose target or source does not parse.
pub fn targets(run_file: Option<&Path>) -> Result<Vec<String>> {
    let mut lines = Vec::new();
    crate::register_targets();
    for (name, what) in fm_dist::list_targets() {
        // The class labels of --condition labels (files and specs say theirs when read).
        let classes = match parse_target(name).map(|t| t.classes()) {
            Ok(0) => "no classes".to_string(),
            Ok(k) => format!("{k} classes"),
            Err(_) => String::new(),
        };
        lines.push(format!("{name:<14} {classes:<11} {what}"));
    }
    if let Some(path) = run_file {
        let run = RunConfig::read(path)?;
        lines.push(format!("\n{}:", path.display()));
        for (role, spec) in [("target", &run.target), ("source", &run.source)] {
            let dist = parse_target(spec).map_err(|e| Error::Invalid(format!("{}: {role}: {e}", path.display())))?;
            lines.push(format!("  {role}  {spec:<14} {}", summary(dist.as_ref())));
        }
    }
    Ok(lines)
}

/// "N(0, I2), 2-D, with a density", "moons, 2-D, no density (samples only)", or a user's
/// energy's "a density alone".
fn summary(t: &dyn Target) -> String {
    let density = match (t.has_sampler(), t.has_density()) {
        (false, false) => "a density alone (no sampler; log Z unknown)",
        (false, true) => "a normalised density alone (no sampler)",
        (true, true) => "with a density",
        (true, false) => "no density (samples only)",
    };
    let classes = match t.classes() {
        0 => String::new(),
        k => format!(", {k} classes"),
    };
    format!("{}, {}-D, {density}{classes}", t.name(), t.dim())
}

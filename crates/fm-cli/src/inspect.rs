//! `fm inspect`: what a checkpoint holds.

use crate::config::checkpoint_or_run;
use anyhow::Result;
use fm_model::checkpoint::{self, Format};
use std::path::PathBuf;

#[derive(clap::Args, Debug)]
pub struct InspectArgs {
    /// The checkpoint (.safetensors from fm or PyTorch, or a PyTorch .pth) [default: the run's, with --config].
    checkpoint: Option<PathBuf>,
    /// The checkpoint, as the other commands take it (the same as giving it plainly).
    #[arg(long = "checkpoint", value_name = "CHECKPOINT", conflicts_with = "checkpoint")]
    checkpoint_flag: Option<PathBuf>,
    /// A run folder's config.toml: inspect that run's model.safetensors.
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
    #[command(flatten)]
    foreign: crate::config::ForeignModelArgs,
}

pub fn inspect(args: InspectArgs) -> Result<()> {
    let path = checkpoint_or_run(args.checkpoint.as_deref().or(args.checkpoint_flag.as_deref()), args.config.as_deref(), "a CHECKPOINT")?;
    let run = args.config.as_deref().map(crate::config::RunConfig::read).transpose()?;
    let bytes = std::fs::read(&path).map_err(|e| anyhow::anyhow!("cannot read {}: {e}", path.display()))?;
    let format = Format::detect(&bytes);
    let (mlp, meta) = match checkpoint::load_any_with(&path, tch::Device::Cpu, &args.foreign.options(run.as_ref())) {
        Ok(loaded) => loaded,
        Err(e) => match checkpoint::describe_unrecorded(&bytes) {
            // Inspecting needs no activation or layout: what the shapes allow is the answer.
            Ok(Some(shapes)) => {
                println!("{} ({:?}, {} bytes)\n  model      {shapes}", path.display(), format, bytes.len());
                println!("  to use it  {}", format!("{e:#}").replace('\n', " "));
                return Ok(());
            }
            _ => return Err(e.into()),
        },
    };
    let c = fm_model::registry::config_of(&*mlp).ok_or_else(|| anyhow::anyhow!("{}: a network of no registered architecture", path.display()))?;
    let params: i64 = mlp.named_parameters().iter().map(|(_, t)| t.numel() as i64).sum();
    println!("{} ({:?}, {} bytes)", path.display(), format, bytes.len());
    let time = match (c.sinusoidal_features(), c.time_inputs) {
        (0, 1) => "raw time".to_string(),
        (0, _) => "raw times (r, t) of an average velocity u(x, r, t)".to_string(),
        (k, 1) => format!("{k} time features"),
        (k, _) => format!("{k} time features for each of (r, t), an average velocity u(x, r, t)"),
    };
    let layers = match c.kind.as_str() {
        fm_model::registry::MLP => format!("MLP: {} hidden layers", c.hidden_layers),
        kind => format!("{kind}: {} blocks", c.hidden_layers),
    };
    println!("  model      {}-D {layers} of {} ({}), {time}, {params} parameters", c.dim, c.hidden_dim, c.activation);
    let condition = c.condition_shape();
    if condition.is_conditional() {
        let how = if c.classes > 0 { "fm sample --class K (K, K,K or all)" } else { "fm sample --cond V,…" };
        println!("  condition  {condition}, and the \"no condition\" entry of classifier-free guidance: {how} [--cfg-scale W]");
    }
    match meta.get("train").map(|t| serde_json::from_str::<fm_train::TrainConfig>(t)) {
        Some(Ok(train)) => {
            println!("  generates  {} (objective {})", train.objective.generator().how_to_sample(), train.objective);
        }
        // Said, not dropped: what the file claims about its training cannot be read.
        Some(Err(e)) => println!("  generates  unknown: its training record cannot be read ({e})"),
        None => {}
    }
    for (key, value) in &meta {
        if key == "config" {
            continue; // shown above
        }
        println!("  {key:<10} {value}");
    }
    Ok(())
}

//! `fm sample`: new samples from a checkpoint.

use crate::config::{checkpoint_or_run, given, override_given, RunConfig};
use crate::train::print_written;
use anyhow::Result;
use clap::ArgMatches;
use fm_ode::Method;
use fm_train::SampleConfig;
use std::path::PathBuf;

#[derive(clap::Args, Debug)]
pub struct SampleArgs {
    #[command(flatten)]
    pub threads: crate::config::ThreadsFlag,
    /// A run file (e.g. a run's config.toml): its `[sample]` section, source and device are the defaults here,
    /// and the model.safetensors beside it is the checkpoint unless --checkpoint is given.
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
    /// Checkpoint: written by fm (.safetensors), or a PyTorch state dict (.pth or .safetensors) [default: the run's, with --config].
    #[arg(long)]
    checkpoint: Option<PathBuf>,
    /// Sample the exact flow of a Gaussian-mixture target instead of a model (no checkpoint): the field that
    /// flow matching learns, in closed form; with --target, --source and --path [default: the run file's].
    #[arg(long, conflicts_with = "checkpoint")]
    oracle: bool,
    /// With --oracle: the Gaussian-mixture target (gmm3, 8gaussians, 25gaussians, spec:FILE) [default: the run file's, else gmm3].
    #[arg(long, requires = "oracle", conflicts_with = "checkpoint")]
    target: Option<String>,
    /// With --oracle: the probability path (linear, icfm:σ, lipman:σ_min, vp) [default: the run file's, else linear].
    #[arg(long, requires = "oracle", conflicts_with = "checkpoint")]
    path: Option<fm_train::ProbabilityPath>,
    /// Output file, .npy or .csv [default: samples-METHOD-STEPS.npy beside the checkpoint; with --oracle, in the
    /// run file's folder, else here].
    #[arg(long)]
    out: Option<PathBuf>,
    /// Source to draw starting points from [default: the checkpoint's, else normal:D].
    #[arg(long)]
    source: Option<String>,
    /// Where to compute: auto (CUDA when available), cpu, cuda or cuda:N.
    #[arg(long, default_value = "auto")]
    device: String,
    /// Samples to generate.
    #[arg(long, default_value_t = SampleConfig::default().n_samples)]
    samples: usize,
    /// Integration steps from t = 0 to 1 (fixed-step methods); for a MeanFlow checkpoint, its jumps (1: one network
    /// evaluation per point); a distilled checkpoint takes 1, its default.
    #[arg(long, default_value_t = SampleConfig::default().steps)]
    steps: usize,
    /// Integration method: euler, midpoint, heun, rk4 or dopri5 (adaptive); distilled and MeanFlow checkpoints
    /// sample with euler only (their one step, their jumps).
    #[arg(long, default_value_t = SampleConfig::default().method)]
    method: Method,
    #[command(flatten)]
    sde: crate::config::SdeFlag,
    /// Relative tolerance of dopri5.
    #[arg(long, default_value_t = SampleConfig::default().rtol)]
    rtol: f64,
    /// Absolute tolerance of dopri5.
    #[arg(long, default_value_t = SampleConfig::default().atol)]
    atol: f64,
    /// Most attempted steps of dopri5 (accepted and rejected) before it gives up.
    #[arg(long, default_value_t = SampleConfig::default().max_steps)]
    max_steps: usize,
    #[command(flatten)]
    foreign: crate::config::ForeignModelArgs,
    /// Seed of the source draws.
    #[arg(long, default_value_t = SampleConfig::default().seed)]
    seed: u64,
    /// Also write each sample's exact log-density under the model, log q (natural log, in the samples' units), from
    /// the same forward solve of the divergence ODE, to OUT with .logq.npy (N×1): the importance weights of fm eval
    /// against a density. Needs a flow (not a distilled or MeanFlow model) and the ODE (not --sde); with dopri5 the
    /// step control weighs log q too, so the points differ from the plain solve's within its tolerance.
    #[arg(long, conflicts_with_all = ["oracle", "pairs"])]
    log_q: bool,
    /// Write pairs: each row the source point beside its image, [x0 | x1] (2·D columns), the training pairs of
    /// reflow and distillation (fm train --pairs FILE). Needs a flow trained in the data's units (not a
    /// standardised, distilled or MeanFlow model). Solve accurately for them, e.g. --method rk4 --steps 50.
    #[arg(long, conflicts_with = "oracle")]
    pairs: bool,
    /// A conditional checkpoint's class: K, several (0,2) or all; --samples of each (class K's source drawn with seed
    /// SEED + K), rows in a seeded random order, each row's class written beside the samples (OUT with .labels.npy).
    /// Without it a conditional model samples unconditionally.
    #[arg(long, value_name = "K|K,K|all", conflicts_with_all = ["oracle", "pairs"])]
    class: Option<String>,
    /// Classifier-free guidance scale w: v = v_∅ + w (v_c − v_∅); 1 the plain conditional field, 0 the unconditional.
    #[arg(long, value_name = "W", default_value_t = 1.0, conflicts_with_all = ["oracle", "pairs"], allow_hyphen_values = true)]
    cfg_scale: f64,
    /// A conditional checkpoint's condition vector (a model trained with --condition values): comma-separated numbers.
    #[arg(long, value_name = "V,V,…", conflicts_with_all = ["oracle", "pairs", "class"])]
    cond: Option<String>,
}

pub fn sample(args: SampleArgs, m: &ArgMatches) -> Result<()> {
    let run = args.config.as_deref().map(RunConfig::read).transpose()?;
    let checkpoint = if args.oracle { None } else { Some(checkpoint_or_run(args.checkpoint.as_deref(), args.config.as_deref(), "--checkpoint C")?) };
    let mut sample = run.as_ref().map_or_else(SampleConfig::default, |r| r.sample.clone());
    override_given!(m, args, samples => sample.n_samples, steps => sample.steps, method => sample.method,
        rtol => sample.rtol, atol => sample.atol, max_steps => sample.max_steps, seed => sample.seed);
    args.sde.apply(&mut sample);
    let job = fm_run::SampleJob {
        foreign: args.foreign.options(run.as_ref()),
        run,
        run_file: args.config.clone(),
        checkpoint,
        target: args.target,
        path: args.path,
        source: args.source,
        device: given(m, "device").then_some(args.device),
        sample,
        steps_given: given(m, "steps"),
        method_given: given(m, "method"),
        pairs: args.pairs,
        class: args.class,
        cond: args.cond,
        cfg_scale: args.cfg_scale,
        out: args.out,
        log_q: args.log_q,
    };
    let sampled = fm_run::sample(&job)?;
    let secs = sampled.seconds;
    sampled.warnings.iter().for_each(|w| eprintln!("warning: {w}"));
    let mut written = fm_run::write_sampled(&sampled)?;
    if job.pairs {
        written[0].0 = "pairs";
    }
    let of = &sampled.of;
    println!("sampled {} points {of}from {} with {} in {secs:.3} s", sampled.points.nrows(), sampled.source, fm_run::describe(&sampled.sample));
    let written: Vec<(&str, &std::path::Path)> = written.iter().map(|(k, p)| (*k, p.as_path())).collect();
    print_written(&written);
    Ok(())
}

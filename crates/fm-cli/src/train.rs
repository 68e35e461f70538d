//! `fm train`: a training run into a run folder (shared by `fm run`).

use crate::config::{given, ConfigArgs};
use crate::flags::{DataFlags, ModelFlags, TrainFlags};
use anyhow::Result;
use clap::ArgMatches;
use fm_run::{RunConfig, RunDir, TrainOptions, Trained};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::OnceLock;

/// The settings every training command shares: a config file or preset, and flags over it.
#[derive(clap::Args, Debug)]
pub struct TrainSetup {
    #[command(flatten)]
    pub threads: crate::config::ThreadsFlag,
    #[command(flatten)]
    pub config: ConfigArgs,
    #[command(flatten)]
    pub data: DataFlags,
    #[command(flatten)]
    pub model: ModelFlags,
    #[command(flatten)]
    pub train: TrainFlags,
    /// No progress bar.
    #[arg(long)]
    pub quiet: bool,
}

#[derive(clap::Args, Debug)]
pub struct TrainArgs {
    #[command(flatten)]
    pub setup: TrainSetup,
    /// Run folder (created if missing): config.toml, model.safetensors, train-state.safetensors, metrics.csv.
    #[arg(long, default_value = "runs/train")]
    pub out: PathBuf,
    /// Continue the run in DIR from its last checkpoint (DIR/config.toml and DIR/train-state.safetensors);
    /// only --steps (to extend the run), --device, --threads and --quiet may be given beside it.
    #[arg(long, value_name = "DIR", conflicts_with = "out")]
    pub resume: Option<PathBuf>,
}

/// The flags `--resume` accepts: they do not change what the run computes (`--steps` extends it).
const RESUME_FLAGS: [&str; 5] = ["resume", "steps", "device", "quiet", "threads"];

/// Set by SIGINT / SIGTERM; the training loop finishes its step, checkpoints and stops.
static STOP: AtomicBool = AtomicBool::new(false);

/// Installs the SIGINT / SIGTERM handler once per process; a second signal exits at once
/// (checkpoints are written atomically, so the run folder stays loadable).
fn catch_signals() -> Result<()> {
    static INSTALLED: OnceLock<std::result::Result<(), String>> = OnceLock::new();
    let installed = INSTALLED.get_or_init(|| {
        ctrlc::set_handler(|| {
            if STOP.swap(true, Ordering::SeqCst) {
                std::process::exit(130);
            }
        })
        .map_err(|e| e.to_string())
    });
    installed.clone().map_err(|e| anyhow::anyhow!("cannot catch Ctrl-C: {e}"))
}

impl TrainSetup {
    /// Defaults < preset < config file < flags given on the command line.
    pub fn resolve(&self, m: &ArgMatches) -> Result<RunConfig> {
        let objective = crate::config::given(m, "objective").then_some(&self.train.objective);
        let (mut cfg, chosen) = self.config.load(objective)?;
        if let Some(preset) = chosen {
            // Not hidden by --quiet: it says where settings the user did not give came from.
            eprintln!("fm: --objective {} takes its other settings from --preset {preset}, the ones it was measured with", self.train.objective);
        }
        self.data.apply(m, &mut cfg);
        self.model.apply(m, &mut cfg.model);
        self.train.apply(m, &mut cfg.train);
        if crate::config::given(m, "seed") {
            // A new seed draws new sampling noise too.
            cfg.sample.seed = fm_run::seeds::sampling(cfg.train.seed);
        }
        Ok(cfg)
    }
}

pub fn train(args: TrainArgs, m: &ArgMatches) -> Result<Trained> {
    let (cfg, out) = match &args.resume {
        Some(dir) => (resume_config(&args, dir, m)?, dir.clone()),
        None => (args.setup.resolve(m)?, args.out.clone()),
    };
    let dir = RunDir::new(out);
    let trained = train_into(&cfg, &dir, args.setup.quiet, args.resume.is_some())?;
    print_written(&[
        ("checkpoint", &dir.file(RunDir::MODEL)),
        ("state", &dir.file(RunDir::STATE)),
        ("config", &dir.file(RunDir::CONFIG)),
        ("losses", &dir.file(RunDir::METRICS)),
    ]);
    Ok(trained)
}

/// `DIR/config.toml`, with `--steps` and `--device` applied; any other flag is refused
/// (the ids of argument groups, the flattened structs' names, start with a capital and are skipped).
fn resume_config(args: &TrainArgs, dir: &Path, m: &ArgMatches) -> Result<RunConfig> {
    let refused: Vec<String> = m
        .ids()
        .map(|id| id.as_str())
        .filter(|id| !id.starts_with(char::is_uppercase) && !RESUME_FLAGS.contains(id) && given(m, id))
        .map(|id| format!("--{}", id.replace('_', "-")))
        .collect();
    anyhow::ensure!(
        refused.is_empty(),
        "--resume continues the run as configured in {}; {} would change it (only --steps, to extend the run, --device, --threads and --quiet may be given)",
        dir.join("config.toml").display(),
        refused.join(", ")
    );
    let path = dir.join("config.toml");
    anyhow::ensure!(path.is_file(), "{} has no config.toml: nothing to resume (start the run with fm train --out {})", dir.display(), dir.display());
    let mut cfg = RunConfig::read(&path)?;
    if given(m, "steps") {
        cfg.train.steps = args.setup.train.steps;
    }
    if given(m, "device") {
        cfg.device = args.setup.data.device.clone();
    }
    Ok(cfg)
}

/// [`fm_run::train_run`] into `dir`, printing its lines, stopped by SIGINT / SIGTERM.
pub fn train_into(cfg: &RunConfig, dir: &RunDir, quiet: bool, resume: bool) -> Result<Trained> {
    catch_signals()?;
    let opts = TrainOptions { resume, quiet, stop: Some(&STOP) };
    // Warnings go to stderr, where a script that keeps stdout still sees them.
    let mut log = |line: &str| if line.starts_with("warning:") { eprintln!("{line}") } else { println!("{line}") };
    Ok(fm_run::train_run(cfg, dir, &opts, &mut log)?)
}

/// The closing "wrote:" list every command prints.
pub fn print_written(files: &[(&str, &Path)]) {
    println!("wrote:");
    for (what, path) in files {
        println!("  {what:<10} {}", path.display());
    }
}

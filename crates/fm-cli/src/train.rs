//! `fm train`: a training run into a run folder (shared by `fm run`).

use crate::config::{given, ConfigArgs, DataFlags, ModelFlags, RunConfig, TrainFlags};
use anyhow::{Context, Result};
use clap::ArgMatches;
use fm_dist::{parse_target, Target};
use fm_model::{checkpoint, parse_device, Mlp};
use fm_train::{Checkpoint, Progress, ProgressBarReporter, Resume, TrainConfig, TrainHooks, TrainReport};
use std::cell::{Cell, RefCell};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::OnceLock;

/// The settings every training command shares: a config file or preset, and flags over it.
#[derive(clap::Args, Debug)]
pub struct TrainSetup {
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
    /// only --steps (to extend the run), --device and --quiet may be given beside it.
    #[arg(long, value_name = "DIR", conflicts_with = "out")]
    pub resume: Option<PathBuf>,
}

/// The flags `--resume` accepts: they do not change what the run computes (`--steps` extends it).
const RESUME_FLAGS: [&str; 4] = ["resume", "steps", "device", "quiet"];

/// A run stopped by SIGINT or SIGTERM after checkpointing; `main` prints it and exits with 130.
#[derive(Debug)]
pub struct Interrupted {
    pub step: usize,
    pub dir: PathBuf,
}

impl std::fmt::Display for Interrupted {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let dir = self.dir.display();
        write!(f, "interrupted at step {}; checkpoint in {dir}; continue with: fm train --resume {dir}", self.step)
    }
}

impl std::error::Error for Interrupted {}

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

/// `w2` and `kl` are empty except on the rows of tracked steps (`[eval] track_every`);
/// `loss_floor` is the part of the loss no model can remove, the same on every row (empty where
/// the exact flow does not cover the run: see `fm_train::exact`).
const METRICS_HEADER: &str = "step,loss,loss_floor,lr,w2,kl\n";

/// The rows of `path` (a metrics.csv) for steps up to `step`, each with its newline, in
/// [`METRICS_HEADER`]'s columns: a file written by an older fm (without `loss_floor`, say) has
/// each value moved under its own name, and a column it lacks left empty.
fn metrics_rows_up_to(path: &Path, step: usize) -> Vec<String> {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let mut lines = text.lines();
    let old: Vec<&str> = lines.next().unwrap_or_default().split(',').map(str::trim).collect();
    let new: Vec<&str> = METRICS_HEADER.trim_end().split(',').collect();
    lines
        .filter_map(|line| {
            let cells: Vec<&str> = line.split(',').collect();
            let row_step = cells.first()?.trim().parse::<usize>().ok()?;
            let moved: Vec<&str> = new.iter().map(|name| old.iter().position(|o| o == name).and_then(|j| cells.get(j).copied()).unwrap_or("")).collect();
            (row_step <= step).then(|| moved.join(",") + "\n")
        })
        .collect()
}

impl TrainSetup {
    /// Defaults < preset < config file < flags given on the command line.
    pub fn resolve(&self, m: &ArgMatches) -> Result<RunConfig> {
        let mut cfg = self.config.load()?;
        self.data.apply(m, &mut cfg);
        self.model.apply(m, &mut cfg.model);
        self.train.apply(m, &mut cfg.train);
        if crate::config::given(m, "seed") {
            // A new seed draws new sampling noise too.
            cfg.sample.seed = cfg.train.seed.wrapping_add(1);
        }
        Ok(cfg)
    }
}

/// A finished training run.
pub struct Trained {
    /// Held until the caller has written everything into the run folder.
    pub _lock: RunLock,
    pub mlp: Mlp,
    pub target: Box<dyn Target>,
    pub source: Box<dyn Target>,
    pub report: TrainReport,
    /// The loss floor of the setting, where the exact flow covers it.
    pub loss_floor: Option<fm_dist::metrics::Estimate>,
    pub checkpoint: PathBuf,
}

pub fn train(args: TrainArgs, m: &ArgMatches) -> Result<Trained> {
    let (cfg, out) = match &args.resume {
        Some(dir) => (resume_config(&args, dir, m)?, dir.clone()),
        None => (args.setup.resolve(m)?, args.out.clone()),
    };
    let trained = train_in(&cfg, &out, args.setup.quiet, args.resume.is_some())?;
    print_written(&[
        ("checkpoint", &trained.checkpoint),
        ("state", &out.join(fm_train::STATE_FILE)),
        ("config", &out.join("config.toml")),
        ("losses", &out.join("metrics.csv")),
    ]);
    Ok(trained)
}

/// `DIR/config.toml`, with `--steps` and `--device` applied; any other flag is refused
/// (the ids of argument groups, the flattened structs' names, start with a capital and are skipped).
fn resume_config(args: &TrainArgs, dir: &Path, m: &ArgMatches) -> Result<RunConfig> {
    let refused: Vec<String> =
        m.ids().map(|id| id.as_str()).filter(|id| !id.starts_with(char::is_uppercase) && !RESUME_FLAGS.contains(id) && given(m, id)).map(|id| format!("--{}", id.replace('_', "-"))).collect();
    anyhow::ensure!(
        refused.is_empty(),
        "--resume continues the run as configured in {}; {} would change it (only --steps, to extend the run, --device and --quiet may be given)",
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

/// Builds target, source and model from `cfg` (checking everything before any work),
/// trains, and writes `config.toml`, `model.safetensors`, `train-state.safetensors` and
/// `metrics.csv` into `out`.
pub fn train_into(cfg: &RunConfig, out: &Path, quiet: bool) -> Result<Trained> {
    train_in(cfg, out, quiet, false)
}

/// [`train_into`]; with `resume`, continues from `out`'s checkpoint when there is one.
///
/// Checkpoints every `train.checkpoint_every` steps and at the end: `train-state.safetensors`
/// (everything to continue), `model.safetensors` (the weights to sample from: the EMA's when
/// there is one) and `metrics.csv`, each written atomically. SIGINT / SIGTERM finish the step,
/// checkpoint and return [`Interrupted`].
fn train_in(cfg: &RunConfig, out: &Path, quiet: bool, resume: bool) -> Result<Trained> {
    let device = parse_device(&cfg.device)?;
    let target = parse_target(&cfg.target).context("target")?;
    let source = parse_target(&cfg.source).context("source")?;
    anyhow::ensure!(source.dim() == target.dim(), "the source {} is {}-D but the target {} is {}-D", source.name(), source.dim(), target.name(), target.dim());
    let mut cfg = cfg.clone();
    cfg.model.dim = target.dim();
    cfg.model.validate()?;
    cfg.train.validate()?;
    cfg.sample.validate()?;
    let lock = prepare_out_dir(out)?;
    let state_path = out.join(fm_train::STATE_FILE);
    let metrics_path = out.join("metrics.csv");
    remove_stale_temporaries(out);

    let (mut mlp, start, rows) = if resume && state_path.exists() {
        let loaded = fm_train::load_state(&state_path, device).context("cannot resume")?;
        anyhow::ensure!(loaded.mlp.config() == &cfg.model, "cannot resume: the model in {} differs from the one in config.toml", state_path.display());
        anyhow::ensure!(
            TrainConfig { steps: cfg.train.steps, ..loaded.train.clone() } == cfg.train,
            "cannot resume: the training settings in {} differ from those in config.toml",
            state_path.display()
        );
        anyhow::ensure!(
            loaded.step <= cfg.train.steps,
            "cannot resume: {} is at step {}, past the {} steps asked for (give --steps {} or more)",
            out.display(),
            loaded.step,
            cfg.train.steps,
            loaded.step
        );
        println!("fm: resuming {} at step {} of {}", out.display(), loaded.step, cfg.train.steps);
        let rows = metrics_rows_up_to(&metrics_path, loaded.step);
        (loaded.mlp, Some(Resume { step: loaded.step, state: loaded.state }), rows)
    } else {
        if resume {
            println!("fm: {} holds no checkpoint yet; starting from step 0", out.display());
        }
        // A fresh run: an old run's state must not be resumed into it.
        match std::fs::remove_file(&state_path) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(e).with_context(|| format!("cannot remove {}", state_path.display())),
            _ => {}
        }
        (fm_model::with_torch_seed(cfg.train.seed, || Mlp::new(cfg.model.clone(), device))?, None, Vec::new())
    };
    fm_dist::io::write_atomic(&out.join("config.toml"), cfg.to_toml()?.as_bytes())?;
    fm_dist::io::write_atomic(&metrics_path, (METRICS_HEADER.to_string() + &rows.concat()).as_bytes())?;
    catch_signals()?;

    println!("fm: training {} → {} on {device:?}, {} steps of {}", source.name(), target.name(), cfg.train.steps, cfg.train.batch_size);
    // The EMA weights are written through a second model (built after the trained one, so
    // the initialisation is the seed's).
    let mut ema_mlp = if cfg.train.ema_decay.is_some() { Some(Mlp::new(cfg.model.clone(), device)?) } else { None };
    // Seeded apart from the training data, so tracking never changes what is trained.
    let tracker = match cfg.eval.track_every {
        0 => None,
        _ => Some(fm_train::Tracker::new(target.as_ref(), source.as_ref(), cfg.eval.track_points, cfg.train.seed ^ 0x7ac4, &cfg.sample, &cfg.eval.likelihood).context("[eval] tracking")?),
    };
    let loss_floor = fm_train::exact::training_floor(target.as_ref(), source.as_ref(), &cfg.train).context("loss floor")?;
    let floor_cell = loss_floor.map(|f| f.mean.to_string()).unwrap_or_default();
    let bar = ProgressBarReporter::new(cfg.train.steps, quiet).with_floor(loss_floor.map(|f| f.mean));
    let rows = RefCell::new(rows);
    let last_checkpoint = Cell::new(start.as_ref().map(|r| r.step));
    let meta: checkpoint::Metadata = [("target", cfg.target.clone()), ("source", cfg.source.clone())].into_iter().map(|(k, v)| (k.to_string(), v)).collect();
    let train_json = serde_json::to_string(&cfg.train)?;
    let mut on_progress = |p: &Progress| {
        bar.update(p);
        let row = format!("{},{},{floor_cell},{},,\n", p.step, p.loss, p.lr);
        // Best effort between checkpoints: each checkpoint rewrites the file atomically.
        let _ = std::fs::OpenOptions::new().append(true).open(&metrics_path).and_then(|mut f| std::io::Write::write_all(&mut f, row.as_bytes()));
        rows.borrow_mut().push(row);
    };
    let mut on_checkpoint = |c: &Checkpoint<'_>| -> fm_train::Result<()> {
        // No timings here: the same seed and settings must give the same checkpoint bytes.
        let summary = serde_json::json!({ "steps": c.step, "final_loss": c.loss, "loss_floor": loss_floor.map(|f| f.mean) });
        let mut model_meta = meta.clone();
        model_meta.insert("train".into(), train_json.clone());
        model_meta.insert("report".into(), summary.to_string());
        let model_path = crate::config::run_checkpoint(out);
        let model = match (&c.state.ema, ema_mlp.as_mut()) {
            (Some(ema), Some(m)) => {
                ema.copy_to(m)?;
                &*m
            }
            _ => c.mlp,
        };
        checkpoint::save(model, &model_path, &model_meta)?;
        // After the model: a kill between the two writes must not leave a training state
        // without a model beside it (the first checkpoint) or ahead of it.
        fm_train::save_state(&state_path, c, &meta)?;
        if let Some(tracker) = tracker.as_ref().filter(|_| c.step % cfg.eval.track_every == 0 || c.step == cfg.train.steps) {
            let f = tracker.measure(model, source.as_ref())?;
            let mut rows = rows.borrow_mut();
            let prefix = format!("{},", c.step);
            if let Some(row) = rows.last_mut().filter(|r| r.starts_with(&prefix)) {
                *row = format!("{},{},{}\n", row.trim_end().trim_end_matches(','), f.w2, f.kl.map(|k| k.to_string()).unwrap_or_default());
            }
        }
        fm_dist::io::write_atomic(&metrics_path, (METRICS_HEADER.to_string() + &rows.borrow().concat()).as_bytes())?;
        last_checkpoint.set(Some(c.step));
        Ok(())
    };
    let hooks = TrainHooks { on_progress: &mut on_progress, on_checkpoint: Some(&mut on_checkpoint), stop: Some(&STOP) };
    let outcome = fm_train::train_resumable(&mut mlp, target.as_ref(), source.as_ref(), &cfg.train, start, hooks).map_err(|e| {
        let kept = match last_checkpoint.get() {
            Some(step) => format!("the last good checkpoint (step {step}) is kept in {}", out.display()),
            None => "no checkpoint was written".to_string(),
        };
        anyhow::Error::from(e).context(format!("training stopped; {kept}"))
    })?;
    bar.finish();
    if outcome.stopped {
        return Err(Interrupted { step: outcome.step, dir: out.to_path_buf() }.into());
    }
    let report = outcome.report;
    let floor_note = loss_floor.map(|f| format!(" (floor {:.4} ± {:.4}: the part no model can remove)", f.mean, f.se)).unwrap_or_default();
    println!("trained {} steps in {:.1} s ({:.0} steps/s), final loss {:.4}{floor_note}", report.steps, report.seconds, report.steps_per_s, report.final_loss);
    outcome.state.apply_ema(&mut mlp)?;
    Ok(Trained { _lock: lock, mlp, target, source, report, loss_floor, checkpoint: crate::config::run_checkpoint(out) })
}

/// Removes the temporary files of atomic writes a killed process left in `out` (we hold its lock).
fn remove_stale_temporaries(out: &Path) {
    let ours = [".config.toml.", ".metrics.csv.", ".model.safetensors.", ".train-state.safetensors."];
    for entry in std::fs::read_dir(out).into_iter().flatten().flatten() {
        let name = entry.file_name().to_string_lossy().to_string();
        if ours.iter().any(|p| name.starts_with(p)) && name.contains(".tmp") {
            let _ = std::fs::remove_file(entry.path());
        }
    }
}

/// Creates the output folder, proves it writable and locks it before any work starts.
pub fn prepare_out_dir(out: &Path) -> Result<RunLock> {
    std::fs::create_dir_all(out).with_context(|| format!("cannot create output folder {}", out.display()))?;
    RunLock::acquire(out)
}

/// `DIR/.fm.lock`, holding the owner's PID while a command writes into the run folder, so a
/// second command pointed at the same folder refuses instead of interleaving its writes.
/// A lock left by a process that no longer runs (killed, crashed) is taken over.
pub struct RunLock(PathBuf);

impl RunLock {
    pub fn acquire(dir: &Path) -> Result<Self> {
        let path = dir.join(".fm.lock");
        for _ in 0..2 {
            match std::fs::OpenOptions::new().write(true).create_new(true).open(&path) {
                Ok(mut f) => {
                    use std::io::Write;
                    writeln!(f, "{}", std::process::id()).with_context(|| format!("output folder {} is not writable", dir.display()))?;
                    return Ok(Self(path));
                }
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                    let owner = std::fs::read_to_string(&path).unwrap_or_default().trim().parse::<u32>().ok();
                    match owner {
                        Some(pid) if Path::new(&format!("/proc/{pid}")).exists() => anyhow::bail!(
                            "{} is in use by another fm process (PID {pid}); wait for it to finish or choose another --out",
                            dir.display()
                        ),
                        // Stale: its owner is gone.
                        _ => std::fs::remove_file(&path).with_context(|| format!("cannot remove the stale lock {}", path.display()))?,
                    }
                }
                Err(e) => return Err(e).with_context(|| format!("output folder {} is not writable", dir.display())),
            }
        }
        anyhow::bail!("cannot lock {}: another process keeps taking it", dir.display())
    }
}

impl Drop for RunLock {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// The closing "wrote:" list every command prints.
pub fn print_written(files: &[(&str, &Path)]) {
    println!("wrote:");
    for (what, path) in files {
        println!("  {what:<10} {}", path.display());
    }
}

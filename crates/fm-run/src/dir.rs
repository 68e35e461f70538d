//! The run folder: its layout, its lock, `metrics.csv` and `report.json`.

use crate::{Error, Result};
use fm_dist::metrics::{Estimate, SampleQuality};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

/// A run folder, as `fm run` and `fm train` write it (see the file-name constants).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunDir {
    path: PathBuf,
}

impl RunDir {
    /// The resolved run file: `fm train --config DIR/config.toml` repeats the run.
    pub const CONFIG: &'static str = "config.toml";
    /// The model to sample from (the EMA's weights when the run keeps an average).
    pub const MODEL: &'static str = "model.safetensors";
    /// Everything to continue the run: [`fm_train::STATE_FILE`].
    pub const STATE: &'static str = fm_train::STATE_FILE;
    /// One [`MetricsRow`] per reporting window.
    pub const METRICS: &'static str = "metrics.csv";
    /// `fm run`'s [`Report`].
    pub const REPORT: &'static str = "report.json";
    /// `fm run`'s samples (`.npy`, float32 `[n, d]`).
    pub const SAMPLES: &'static str = "samples.npy";
    /// The class of each of `fm run`'s samples, for a class-conditional run (`.npy`, int64 `[n, 1]`).
    pub const LABELS: &'static str = "samples.labels.npy";
    /// `fm run`'s figure of the samples beside the target.
    pub const COMPARE: &'static str = "compare.png";
    /// The lock file (see [`RunLock`]).
    pub const LOCK: &'static str = ".fm.lock";
    /// A staged recipe's `[reflow]` as it started (JSON): what a resume must find unchanged.
    pub const RECIPE: &'static str = "recipe.json";

    /// The run folder at `path` (nothing is created or read).
    pub fn new(path: impl Into<PathBuf>) -> Self {
        Self { path: path.into() }
    }

    /// The folder a run file belongs to: its own (`runs/x/config.toml` → `runs/x`).
    pub fn of_run_file(config: &Path) -> Self {
        Self::new(config.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new(".")))
    }

    /// The folder.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The file `name` of the folder (one of the constants, or a figure's name).
    pub fn file(&self, name: &str) -> PathBuf {
        self.path.join(name)
    }

    /// Creates the folder (and its parents) and takes its lock, before any work starts.
    ///
    /// # Errors
    /// [`Error::Io`] when the folder cannot be created or written, [`Error::Locked`] when
    /// another process holds it.
    pub fn create_and_lock(&self) -> Result<RunLock> {
        std::fs::create_dir_all(&self.path).map_err(|source| Error::Io { what: "cannot create output folder", path: self.path.clone(), source })?;
        RunLock::acquire(self)
    }

    /// Removes the temporary files of atomic writes a killed process left (hold the lock).
    pub fn remove_stale_temporaries(&self) {
        let ours = [Self::CONFIG, Self::METRICS, Self::MODEL, Self::STATE, Self::REPORT, Self::SAMPLES, Self::LABELS].map(|f| format!(".{f}."));
        for entry in std::fs::read_dir(&self.path).into_iter().flatten().flatten() {
            let name = entry.file_name().to_string_lossy().to_string();
            if ours.iter().any(|p| name.starts_with(p.as_str())) && name.contains(".tmp") {
                let _ = std::fs::remove_file(entry.path());
            }
        }
    }

    /// The rows of `metrics.csv` (none when there is no file), in [`MetricsRow`]'s columns:
    /// a file of an older fm (without `loss_floor`, say) has each value read under its own name.
    ///
    /// # Errors
    /// [`Error::Metrics`] for a file that is not a metrics table.
    pub fn read_metrics(&self) -> Result<Vec<MetricsRow>> {
        let path = self.file(Self::METRICS);
        let fail = |source| Error::Metrics { path: path.clone(), source };
        self.metrics_reader(false).map_err(fail)?.deserialize().collect::<std::result::Result<_, _>>().map_err(fail)
    }

    /// A reader of `metrics.csv` by column name; `flexible`: rows of any length (a torn row).
    fn metrics_reader(&self, flexible: bool) -> csv::Result<csv::Reader<std::fs::File>> {
        csv::ReaderBuilder::new().trim(csv::Trim::All).flexible(flexible).from_path(self.file(Self::METRICS))
    }

    /// The rows of `metrics.csv` for steps up to `step`, to continue a run from its checkpoint
    /// at `step`: none when there is no file. Only the last row may fail to parse (the rows
    /// appended between checkpoints are written best effort, and a kill can tear the last one):
    /// it is skipped. The file is rewritten from these rows, so anything else that does not
    /// read is an error, not history lost without a word.
    ///
    /// # Errors
    /// [`Error::Metrics`] for a header without the `step`, `loss` and `lr` columns, or a row
    /// other than the last that does not parse.
    pub fn metrics_up_to(&self, step: usize) -> Result<Vec<MetricsRow>> {
        let path = self.file(Self::METRICS);
        if !path.exists() {
            return Ok(Vec::new());
        }
        let fail = |source| Error::Metrics { path: path.clone(), source };
        let mut reader = self.metrics_reader(true).map_err(fail)?;
        let header = reader.headers().map_err(fail)?.clone();
        if let Some(missing) = ["step", "loss", "lr"].into_iter().find(|c| !header.iter().any(|h| h == *c)) {
            let why = format!("its header ({}) has no '{missing}' column", header.iter().collect::<Vec<_>>().join(","));
            return Err(fail(csv::Error::from(std::io::Error::new(std::io::ErrorKind::InvalidData, why))));
        }
        let mut rows = Vec::new();
        let mut records = reader.deserialize::<MetricsRow>().peekable();
        while let Some(row) = records.next() {
            match row {
                Ok(row) => rows.push(row),
                Err(_) if records.peek().is_none() => {} // a torn last row
                Err(e) => return Err(fail(e)),
            }
        }
        Ok(rows.into_iter().filter(|row| row.step <= step).collect())
    }

    /// Writes `rows` as `metrics.csv` (the header even when there are none), atomically.
    ///
    /// # Errors
    /// [`Error::Dist`] when the file cannot be written (the previous one is kept).
    pub fn write_metrics(&self, rows: &[MetricsRow]) -> Result<()> {
        let mut bytes = MetricsRow::HEADER.as_bytes().to_vec();
        for row in rows {
            bytes.extend(row.to_csv_line());
        }
        Ok(fm_dist::io::write_atomic(&self.file(Self::METRICS), &bytes)?)
    }

    /// Appends `row` to `metrics.csv` (best effort: each checkpoint rewrites the file whole).
    pub fn append_metrics(&self, row: &MetricsRow) {
        let _ = std::fs::OpenOptions::new().append(true).open(self.file(Self::METRICS)).and_then(|mut f| std::io::Write::write_all(&mut f, &row.to_csv_line()));
    }

    /// Writes `report` as `report.json`, atomically.
    ///
    /// # Errors
    /// [`Error::Dist`] when the file cannot be written.
    pub fn write_report(&self, report: &Report) -> Result<()> {
        let json = serde_json::to_string_pretty(report).map_err(|e| Error::Invalid(format!("report.json: {e}")))?;
        Ok(fm_dist::io::write_atomic(&self.file(Self::REPORT), json.as_bytes())?)
    }

    /// Reads `report.json`.
    ///
    /// # Errors
    /// [`Error::Io`] for a missing file, [`Error::Invalid`] for one that is not a report.
    pub fn read_report(&self) -> Result<Report> {
        let path = self.file(Self::REPORT);
        let text = std::fs::read_to_string(&path).map_err(|source| Error::Io { what: "cannot read", path: path.clone(), source })?;
        serde_json::from_str(&text).map_err(|e| Error::Invalid(format!("{}: {e}", path.display())))
    }
}

/// One row of `metrics.csv`: a reporting window of training.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct MetricsRow {
    /// The step that closed the window.
    pub step: usize,
    /// Mean training loss over the window (per coordinate).
    pub loss: f64,
    /// The part of the loss no model can remove, the same on every row (empty where the exact
    /// flow does not cover the run: see `fm_train::exact`).
    #[serde(default)]
    pub loss_floor: Option<f64>,
    /// The learning rate of the window's last step.
    pub lr: f64,
    /// W2 to the tracking holdout, at tracked steps (`[eval] track_every`) only.
    #[serde(default)]
    pub w2: Option<f64>,
    /// KL(target ‖ model) in nats, at tracked steps of targets with a density only.
    #[serde(default)]
    pub kl: Option<f64>,
    /// Energy-only training: energy evaluations so far.
    #[serde(default)]
    pub evaluations: Option<u64>,
    /// Energy-only training: the temperature of the current proposal's weights.
    #[serde(default)]
    pub temperature: Option<f64>,
    /// Energy-only training: the current proposal's effective sample size over its size.
    #[serde(default)]
    pub ess: Option<f64>,
    /// Energy-only training: its estimate of `log Z` (of `p̃^{1/T}`), nats.
    #[serde(default)]
    pub log_z: Option<f64>,
    /// The standard error of `log_z`.
    #[serde(default)]
    pub log_z_se: Option<f64>,
}

impl MetricsRow {
    /// The header line of `metrics.csv`: the field names, in order.
    pub const HEADER: &'static str = "step,loss,loss_floor,lr,w2,kl,evaluations,temperature,ess,log_z,log_z_se\n";

    /// The row of a progress report, with the run's loss floor (where known).
    pub fn new(p: &fm_train::Progress, loss_floor: Option<f64>) -> Self {
        let e = p.energy.as_ref();
        Self {
            step: p.step,
            loss: p.loss,
            loss_floor,
            lr: p.lr,
            w2: None,
            kl: None,
            evaluations: e.map(|e| e.evaluations),
            temperature: e.map(|e| e.temperature),
            ess: e.map(|e| e.weights.ess),
            log_z: e.map(|e| e.weights.log_z),
            log_z_se: e.map(|e| e.weights.log_z_se),
        }
    }

    /// The row as one CSV line (an absent figure is an empty cell).
    fn to_csv_line(&self) -> Vec<u8> {
        let mut out = csv::WriterBuilder::new().has_headers(false).from_writer(Vec::new());
        // Numbers and empty cells into memory: neither can fail.
        let _ = out.serialize(self);
        out.into_inner().unwrap_or_default()
    }
}

/// Everything `fm run` measured, as `report.json`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Report {
    /// The training run.
    pub train: fm_train::TrainReport,
    /// The part of the training loss no model can remove (Gaussian-mixture targets with an
    /// affine path and independent pairs; null otherwise): `fm_train::exact::training_floor`.
    pub loss_floor: Option<Estimate>,
    /// Seconds spent sampling.
    pub sample_seconds: f64,
    /// The samples judged against the target's own samples; null for a target without a sampler.
    pub quality: Option<SampleQuality>,
    /// KL(target ‖ model) from the model's exact likelihood (targets with a density).
    pub kl: Option<fm_train::KlEstimate>,
    /// The largest error of a component's share (mixture targets), from `quality`.
    pub max_share_error: Option<f64>,
    /// Mean log-density of true samples minus the generated ones' (targets with a density).
    pub log_prob_gap: Option<f64>,
    /// W2 of the samples minus W2 between two true sets (null without a sampler).
    pub w2_excess: Option<f64>,
    /// An energy-weighted run's samples weighed against the target's density by their exact
    /// `log q` (written beside them): ESS and `log Z`. Absent for other runs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub weights: Option<fm_dist::importance::ImportanceSummary>,
    /// A class-conditional run's judgement class by class (at guidance scale 1); empty otherwise.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub per_class: Vec<fm_train::ClassQuality>,
}

/// The lock of a run folder ([`RunDir::LOCK`]): an OS file lock (`flock` / `LockFileEx`
/// through [`std::fs::File::try_lock`]), held while a command writes into the folder, so a
/// second command pointed at it refuses instead of interleaving its writes. The OS releases it
/// when its holder exits, however it exits: a killed run leaves no stale lock to take over.
/// The file itself stays (deleting it would let two processes lock two different files).
#[derive(Debug)]
pub struct RunLock {
    _file: std::fs::File,
}

impl RunLock {
    /// Takes the lock of `dir` (which must exist).
    ///
    /// # Errors
    /// [`Error::Locked`] when another process holds it, [`Error::Io`] when the folder is not writable.
    pub fn acquire(dir: &RunDir) -> Result<Self> {
        let path = dir.file(RunDir::LOCK);
        let io = |source| Error::Io { what: "the output folder is not writable:", path: path.clone(), source };
        // Opened for writing once and closed: proves the folder writable before any work.
        std::fs::OpenOptions::new().write(true).create(true).truncate(false).open(&path).map_err(io)?;
        // Locked through a read-only handle: flock and LockFileEx need no write access, and a
        // file held open for writing would keep the file system from being remounted read-only.
        let file = std::fs::File::open(&path).map_err(io)?;
        match file.try_lock() {
            Ok(()) => Ok(Self { _file: file }),
            Err(std::fs::TryLockError::WouldBlock) => Err(Error::Locked { dir: dir.path().to_path_buf() }),
            Err(std::fs::TryLockError::Error(e)) => Err(io(e)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn temp(name: &str) -> RunDir {
        let d = std::env::temp_dir().join(format!("fm-run-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        RunDir::new(d)
    }

    /// A second holder is refused while the first holds the lock, and gets it once the first
    /// lets go; a lock file an older fm left (a PID in it) is no obstacle.
    #[test]
    fn the_lock_admits_one_writer() {
        let dir = temp("lock");
        std::fs::create_dir_all(dir.path()).unwrap();
        std::fs::write(dir.file(RunDir::LOCK), "4194304\n").unwrap();
        let first = dir.create_and_lock().unwrap();
        assert!(matches!(dir.create_and_lock(), Err(Error::Locked { .. })));
        drop(first);
        let _again = dir.create_and_lock().unwrap();
    }

    /// The lock of a process that dies without letting go (killed) is released by the OS. The
    /// holder is this test binary run again, taking the lock through the library.
    #[test]
    fn the_lock_of_a_killed_process_is_released() {
        if let Some(held) = std::env::var_os("FM_RUN_HOLD_LOCK") {
            let _lock = RunDir::new(held).create_and_lock().unwrap();
            println!("holding");
            std::thread::sleep(std::time::Duration::from_secs(120));
            return;
        }
        let dir = temp("killed");
        std::fs::create_dir_all(dir.path()).unwrap();
        let mut holder = std::process::Command::new(std::env::current_exe().unwrap())
            .args(["--exact", "dir::tests::the_lock_of_a_killed_process_is_released", "--nocapture", "--test-threads=1"])
            .env("FM_RUN_HOLD_LOCK", dir.path())
            .stdout(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let mut out = std::io::BufReader::new(holder.stdout.take().unwrap());
        let mut line = String::new();
        while !line.contains("holding") {
            line.clear();
            assert!(std::io::BufRead::read_line(&mut out, &mut line).unwrap() > 0, "the holder ended before taking the lock");
        }
        assert!(matches!(dir.create_and_lock(), Err(Error::Locked { .. })));
        holder.kill().unwrap();
        holder.wait().unwrap();
        let _taken = dir.create_and_lock().expect("the lock outlived its killed holder");
    }

    /// Rows round-trip; a file of an older fm (no `loss_floor` column) reads by column name.
    #[test]
    fn metrics_round_trip_and_read_older_files() {
        let dir = temp("metrics");
        std::fs::create_dir_all(dir.path()).unwrap();
        assert!(matches!(dir.read_metrics(), Err(Error::Metrics { .. })), "no file is an error");
        assert_eq!(dir.metrics_up_to(10).unwrap(), vec![]);
        dir.write_metrics(&[]).unwrap();
        assert_eq!(std::fs::read_to_string(dir.file(RunDir::METRICS)).unwrap(), MetricsRow::HEADER);
        let rows = vec![
            MetricsRow { step: 100, loss: 3.25, loss_floor: Some(2.9835), lr: 1e-4, w2: None, kl: None, ..Default::default() },
            MetricsRow { step: 200, loss: 3.0, loss_floor: Some(2.9835), lr: 1e-4, w2: Some(0.12), kl: Some(0.04), ..Default::default() },
        ];
        dir.write_metrics(&rows).unwrap();
        let text = std::fs::read_to_string(dir.file(RunDir::METRICS)).unwrap();
        assert!(text.starts_with("step,loss,loss_floor,lr,w2,kl,evaluations,temperature,ess,log_z,log_z_se\n100,3.25,2.9835,0.0001,,,,,,,\n"), "{text}");
        assert_eq!(dir.read_metrics().unwrap(), rows);
        dir.append_metrics(&MetricsRow { step: 250, ..rows[0].clone() });
        assert_eq!(dir.read_metrics().unwrap().len(), 3);
        // A torn last row (a kill mid-append) is skipped when a run resumes, and so are later steps.
        std::fs::OpenOptions::new().append(true).open(dir.file(RunDir::METRICS)).and_then(|mut f| std::io::Write::write_all(&mut f, b"300,2.9")).unwrap();
        assert_eq!(dir.metrics_up_to(150).unwrap(), rows[..1].to_vec());
        assert_eq!(dir.metrics_up_to(1000).unwrap().len(), 3);
        // Issue 26, bug 2: a header edited by hand, or a bad row before the last, lost the
        // whole history without a word (the file was then rewritten from what was read).
        let text = std::fs::read_to_string(dir.file(RunDir::METRICS)).unwrap();
        std::fs::write(dir.file(RunDir::METRICS), text.replacen("step,", "Step,", 1)).unwrap();
        let e = dir.metrics_up_to(1000).unwrap_err();
        assert!(std::error::Error::source(&e).unwrap().to_string().contains("no 'step' column"), "{e:?}");
        std::fs::write(dir.file(RunDir::METRICS), text.replacen("\n100,3.25,", "\n100,oops,", 1)).unwrap();
        assert!(matches!(dir.metrics_up_to(1000), Err(Error::Metrics { .. })));
        std::fs::write(dir.file(RunDir::METRICS), "step,loss,lr,w2,kl\n10,4.5,0.001,,\n20,4.0,0.001,0.5,\n").unwrap();
        let old = dir.read_metrics().unwrap();
        assert_eq!(old[1], MetricsRow { step: 20, loss: 4.0, loss_floor: None, lr: 1e-3, w2: Some(0.5), kl: None, ..Default::default() });
        std::fs::write(dir.file(RunDir::METRICS), "step,loss,lr\n10,not a number,0.1\n").unwrap();
        assert!(matches!(dir.read_metrics(), Err(Error::Metrics { .. })));
    }
}

//! Robustness of `fm train` against real write faults: a disk that fills up during a run, and an
//! output folder that is (or turns) read-only. Each fault ends the run with exit status 1 and a
//! one-line error naming the fault and the path, no panic; the last checkpoint in the folder
//! still loads, and `--resume` continues from it once the fault is gone.
//!
//! Where mounting is permitted (root, or a user namespace), the folder is a small tmpfs mounted
//! in a private mount namespace (`unshare -m`), so nothing outlives the test: full means full,
//! and read-only is a remount. Elsewhere the full disk is `RLIMIT_FSIZE` (`ulimit -f`: writes
//! past the limit fail with EFBIG) and the read-only folder is `chmod 555` (skipped where chmod
//! binds no one, as for root without mount rights). `FM_DISK_TEST_FALLBACK=1` forces the
//! fallbacks.
//!
//! Also here, for the namespace: a machine without any installed font (the GPU machine was one)
//! draws the same figure, byte for byte.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

const FLAGS: [&str; 10] = ["train", "--device", "cpu", "--quiet", "--checkpoint-every", "10", "--batch-size", "32", "--hidden-dim", "32"];

fn temp(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("fm-disk-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn fm() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_fm"));
    // One torch thread: on a shared machine idle-spinning pool threads make the tiny steps 10× slower.
    c.env("OMP_NUM_THREADS", "1");
    c
}

fn text(o: &Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr))
}

fn fallback_forced() -> bool {
    std::env::var_os("FM_DISK_TEST_FALLBACK").is_some_and(|v| !v.is_empty() && v != "0")
}

/// Whether this process may mount a tmpfs in a private mount namespace.
fn can_mount() -> bool {
    if fallback_forced() {
        return false;
    }
    let dir = temp("probe");
    let ok = Command::new("unshare")
        .args(["-m", "sh", "-c", "mount -t tmpfs -o size=64k tmpfs \"$1\" && touch \"$1/x\"", "sh"])
        .arg(&dir)
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    let _ = std::fs::remove_dir_all(&dir);
    ok
}

/// Runs `script` (sh) in a private mount namespace, with `args` as `$1`…; its output.
fn in_namespace<S: AsRef<std::ffi::OsStr>>(script: &str, args: &[S]) -> Output {
    let o = Command::new("unshare").args(["-m", "sh", "-c", script, "sh"]).args(args).env("OMP_NUM_THREADS", "1").output().expect("unshare runs");
    assert!(o.status.success(), "the namespace script failed ({}): {}", o.status, text(&o));
    o
}

/// What one `fm` run left: its exit status and output, saved by the namespace scripts.
struct Logged {
    rc: i32,
    out: String,
    err: String,
}

impl Logged {
    fn of(o: &Output) -> Self {
        Logged { rc: o.status.code().unwrap_or(-1), out: String::from_utf8_lossy(&o.stdout).into(), err: String::from_utf8_lossy(&o.stderr).into() }
    }
}

fn logged(log: &Path, name: &str) -> Logged {
    let read = |ext: &str| std::fs::read_to_string(log.join(format!("{name}.{ext}"))).unwrap_or_default();
    Logged { rc: read("rc").trim().parse().unwrap_or(-1), out: read("out"), err: read("err") }
}

/// The run failed as it should: status 1, one error line naming `what` and a file in `dir`,
/// no panic.
fn assert_clean_failure(rc: i32, out: &str, err: &str, what: &[&str], dir: &Path) {
    let all = format!("{out}{err}");
    assert_eq!(rc, 1, "exit status {rc}: {all}");
    assert!(!all.contains("panicked") && !all.contains("internal error") && !all.contains("RUST_BACKTRACE"), "a panic: {all}");
    let lines: Vec<&str> = err.lines().filter(|l| !l.trim().is_empty()).collect();
    assert_eq!(lines.len(), 1, "the error is not one line: {err:?}");
    let line = lines[0];
    assert!(line.starts_with("error: "), "{line}");
    assert!(what.iter().any(|w| line.contains(w)), "the error does not say {what:?}: {line}");
    assert!(line.contains(&dir.display().to_string()), "the error does not name the folder {}: {line}", dir.display());
    println!("  {line}");
}

/// The checkpoint in `dir` loads: the training state (its step) and the model beside it.
fn checkpoint_step(dir: &Path) -> usize {
    let state = fm_train::load_state(&dir.join(fm_train::STATE_FILE), tch::Device::Cpu)
        .unwrap_or_else(|e| panic!("the checkpoint in {} does not load: {e}", dir.display()));
    fm_model::checkpoint::load_any(&dir.join("model.safetensors"), tch::Device::Cpu)
        .unwrap_or_else(|e| panic!("the model in {} does not load: {e}", dir.display()));
    state.step
}

/// No temporary file of an atomic write is left in `dir`. (A folder that turns unwritable
/// between the write of a temporary file and its rename keeps it: removing a file needs a
/// writable folder too. The next `fm train` in the folder removes it.)
fn assert_no_leftovers(dir: &Path) {
    let leftovers: Vec<_> = std::fs::read_dir(dir).unwrap().flatten().map(|e| e.file_name()).filter(|n| n.to_string_lossy().contains(".tmp")).collect();
    assert!(leftovers.is_empty(), "temporary files left in {}: {leftovers:?}", dir.display());
}

/// The weights of `dir/model.safetensors`.
fn weights(dir: &Path) -> Vec<Vec<f32>> {
    let (mlp, _) = fm_model::checkpoint::load(&dir.join("model.safetensors"), tch::Device::Cpu).unwrap();
    fm_model::checkpoint::state_dict(&*mlp).unwrap().into_iter().map(|(_, t)| t.values).collect()
}

/// A run of `steps` steps into `dir`, which must succeed.
fn train(dir: &Path, steps: &str) {
    let o = fm().args(FLAGS).args(["--steps", steps, "--out"]).arg(dir).output().unwrap();
    assert!(o.status.success(), "{}", text(&o));
}

fn pages(bytes: u64) -> u64 {
    bytes.div_ceil(4096)
}

#[test]
fn a_full_disk_stops_training_cleanly_and_resume_continues_once_space_is_back() {
    let t0 = Instant::now();
    // A run never disturbed: its files size the disk, its weights are what a resumed run must end with.
    let reference = temp("full-reference");
    train(&reference, "400");
    let straight = weights(&reference);
    if can_mount() {
        // Room for the first checkpoint but not for the second: an atomic write needs the old
        // file and the new one side by side. In 4 KiB pages: lock, config, metrics, the state and
        // the model (and a second metrics.csv while it is replaced); the second checkpoint needs
        // another state's worth.
        let size = |f: &str| pages(std::fs::metadata(reference.join(f)).unwrap().len());
        let (state, model) = (size(fm_train::STATE_FILE), size("model.safetensors"));
        let first = 3 + state + model + 1;
        let second = 3 + state + model + state;
        assert!(second > first + 1, "the state file is too small to tell the two checkpoints apart");
        let tmpfs = format!("{}k", 4 * (first + second) / 2);
        let (dir, snapshot, log) = (temp("full-run"), temp("full-snapshot"), temp("full-log"));
        let script = r#"
            dir=$1 snapshot=$2 log=$3 fm=$4 size=$5; shift 5
            mount -t tmpfs -o size=$size tmpfs "$dir" || exit 90
            "$fm" "$@" --out "$dir" >"$log/first.out" 2>"$log/first.err"; echo $? >"$log/first.rc"
            cp -a "$dir/." "$snapshot/" || exit 91
            mount -o remount,size=64m "$dir" || exit 92
            "$fm" train --quiet --resume "$dir" >"$log/resume.out" 2>"$log/resume.err"; echo $? >"$log/resume.rc"
            cp -a "$dir/." "$snapshot.final/" || exit 93
        "#;
        std::fs::create_dir_all(snapshot.with_extension("final")).unwrap();
        let mut args: Vec<std::ffi::OsString> =
            vec![dir.clone().into(), snapshot.clone().into(), log.clone().into(), env!("CARGO_BIN_EXE_fm").into(), tmpfs.clone().into()];
        args.extend(FLAGS.iter().chain(&["--steps", "400"]).map(Into::into));
        in_namespace(script, &args);
        println!("tmpfs of {tmpfs}: the first checkpoint fits ({first} pages), the second does not ({second})");
        let first_run = logged(&log, "first");
        assert_clean_failure(first_run.rc, &first_run.out, &first_run.err, &["No space left on device"], &dir);
        assert!(first_run.err.contains("the last good checkpoint (step 10) is kept in"), "{}", first_run.err);
        assert_eq!(checkpoint_step(&snapshot), 10, "the first checkpoint is the one kept");
        assert_no_leftovers(&snapshot);
        let resumed = logged(&log, "resume");
        assert_eq!(resumed.rc, 0, "{}{}", resumed.out, resumed.err);
        assert!(resumed.out.contains(&format!("resuming {} at step 10 of 400", dir.display())), "{}", resumed.out);
        let end = snapshot.with_extension("final");
        assert_eq!(checkpoint_step(&end), 400);
        assert_no_leftovers(&end);
        assert!(weights(&end) == straight, "the resumed run ended with other weights than one never disturbed");
        for d in [&dir, &snapshot, &end, &log] {
            let _ = std::fs::remove_dir_all(d);
        }
    } else {
        // Files may not grow past 16 blocks (8 KiB, or 16 KiB where a block is 1 KiB): the run's
        // config and metrics fit, a training state (about 30 KiB) does not. A run checkpointed
        // at step 10 is resumed under that limit: the next checkpoint fails.
        let dir = temp("full-fsize");
        train(&dir, "10");
        let limited = r#"trap '' XFSZ; ulimit -f 16 || exit 90; exec "$@""#;
        let o = Command::new("sh")
            .args(["-c", limited, "sh", env!("CARGO_BIN_EXE_fm"), "train", "--quiet", "--steps", "400", "--resume"])
            .arg(&dir)
            .env("OMP_NUM_THREADS", "1")
            .output()
            .unwrap();
        println!("RLIMIT_FSIZE of 16 blocks");
        let failed = Logged::of(&o);
        assert_clean_failure(failed.rc, &failed.out, &failed.err, &["File too large"], &dir);
        assert_eq!(checkpoint_step(&dir), 10, "the checkpoint before the fault is the one kept");
        assert_no_leftovers(&dir);
        let o = fm().args(["train", "--quiet", "--resume"]).arg(&dir).output().unwrap();
        assert!(o.status.success() && text(&o).contains("at step 10 of 400"), "{}", text(&o));
        assert_eq!(checkpoint_step(&dir), 400);
        assert_no_leftovers(&dir);
        let _ = std::fs::remove_dir_all(&dir);
    }
    let _ = std::fs::remove_dir_all(&reference);
    println!("full disk: {:.1} s", t0.elapsed().as_secs_f64());
}

/// Whether `chmod 555` keeps this process from creating files in a folder (not for root).
fn chmod_binds() -> bool {
    let dir = temp("chmod-probe");
    chmod(&dir, "555");
    let binds = std::fs::write(dir.join("x"), b"x").is_err();
    chmod(&dir, "755");
    let _ = std::fs::remove_dir_all(&dir);
    binds
}

fn chmod(dir: &Path, mode: &str) {
    assert!(Command::new("chmod").arg(mode).arg(dir).status().unwrap().success());
}

fn signal(pid: u32, sig: &str) {
    let _ = Command::new("kill").args([sig, &pid.to_string()]).status();
}

/// A read-only fault: the failed run, its folder and the step of the checkpoint it kept, then the
/// resumed run and the folder after it.
struct Case {
    failed: Logged,
    dir: PathBuf,
    kept: usize,
    resumed: Logged,
    end: PathBuf,
}

#[test]
fn a_read_only_folder_stops_training_cleanly_and_resume_continues_once_writable() {
    let t0 = Instant::now();
    let mut made = Vec::new();
    let (at_start, mid_run) = if can_mount() {
        // 1. A run checkpointed at step 10, resumed into its folder remounted read-only.
        // 2. A running fm train whose folder turns read-only between two checkpoints: it is
        //    stopped (SIGSTOP) once its first checkpoint exists, the tmpfs remounted read-only
        //    (retried while a file is open for writing), and it is let go.
        // Each time: a snapshot of the folder after the failure, then the folder writable again
        // and the run resumed.
        let (root, log) = (temp("ro-root"), temp("ro-log"));
        let script = r#"
            root=$1 log=$2 fm=$3; shift 3
            run() { name=$1; shift; "$fm" "$@" >"$log/$name.out" 2>"$log/$name.err"; echo $? >"$log/$name.rc"; }
            mkdir -p "$root/mnt" "$root/a-snapshot" "$root/b-snapshot" "$root/a-final" "$root/b-final"
            mount -t tmpfs -o size=16m tmpfs "$root/mnt" || exit 90
            a=$root/mnt/a b=$root/mnt/b
            run a-setup "$@" --steps 10 --out "$a"
            mount -o remount,ro "$root/mnt" || exit 91
            run a train --quiet --steps 40 --resume "$a"
            cp -a "$a/." "$root/a-snapshot/"
            mount -o remount,rw "$root/mnt" || exit 92
            run a-resume train --quiet --steps 40 --resume "$a"
            cp -a "$a/." "$root/a-final/"

            "$fm" "$@" --steps 2000 --out "$b" >"$log/b.out" 2>"$log/b.err" &
            pid=$!
            i=0
            while [ ! -e "$b/train-state.safetensors" ] && kill -0 $pid 2>/dev/null; do
                i=$((i+1)); [ $i -gt 6000 ] && exit 93
                sleep 0.01
            done
            kill -STOP $pid
            i=0
            until mount -o remount,ro "$root/mnt" 2>/dev/null; do
                kill -CONT $pid; sleep 0.01; kill -STOP $pid
                i=$((i+1)); [ $i -gt 500 ] && exit 94
            done
            kill -CONT $pid
            wait $pid; echo $? >"$log/b.rc"
            cp -a "$b/." "$root/b-snapshot/"
            mount -o remount,rw "$root/mnt" || exit 95
            run b-resume train --quiet --resume "$b"
            cp -a "$b/." "$root/b-final/"
        "#;
        let mut args: Vec<std::ffi::OsString> = vec![root.clone().into(), log.clone().into(), env!("CARGO_BIN_EXE_fm").into()];
        args.extend(FLAGS.iter().map(Into::into));
        in_namespace(script, &args);
        let setup = logged(&log, "a-setup");
        assert_eq!(setup.rc, 0, "{}", setup.err);
        let case = |name: &str| Case {
            failed: logged(&log, name),
            dir: root.join("mnt").join(name),
            kept: checkpoint_step(&root.join(format!("{name}-snapshot"))),
            resumed: logged(&log, &format!("{name}-resume")),
            end: root.join(format!("{name}-final")),
        };
        let cases = (case("a"), case("b"));
        made.extend([root, log]);
        println!("read-only tmpfs remounts");
        cases
    } else if chmod_binds() {
        // The same with chmod 555, on folders this process sees.
        let run = |c: &mut Command| Logged::of(&c.output().unwrap());
        let a = temp("ro-a");
        train(&a, "10");
        chmod(&a, "555");
        let failed = run(fm().args(["train", "--quiet", "--steps", "40", "--resume"]).arg(&a));
        let kept = checkpoint_step(&a);
        chmod(&a, "755");
        let resumed = run(fm().args(["train", "--quiet", "--steps", "40", "--resume"]).arg(&a));
        let at_start = Case { failed, dir: a.clone(), kept, resumed, end: a.clone() };

        let b = temp("ro-b");
        let child = fm().args(FLAGS).args(["--steps", "2000", "--out"]).arg(&b).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap();
        let t = Instant::now();
        while !b.join(fm_train::STATE_FILE).exists() {
            assert!(t.elapsed() < Duration::from_secs(60), "no checkpoint after 60 s");
            std::thread::sleep(Duration::from_millis(5));
        }
        signal(child.id(), "-STOP");
        chmod(&b, "555");
        signal(child.id(), "-CONT");
        let failed = Logged::of(&child.wait_with_output().unwrap());
        let kept = checkpoint_step(&b);
        chmod(&b, "755");
        let resumed = run(fm().args(["train", "--quiet", "--resume"]).arg(&b));
        made.extend([a, b.clone()]);
        println!("chmod 555");
        (at_start, Case { failed, dir: b.clone(), kept, resumed, end: b })
    } else {
        println!("skipped: neither can a tmpfs be mounted nor does chmod bind this user (root without mount rights)");
        return;
    };
    let what = ["Read-only file system", "Permission denied"];

    let Case { failed, dir, kept, resumed, end } = at_start;
    assert_clean_failure(failed.rc, &failed.out, &failed.err, &what, &dir);
    assert!(failed.err.contains("is not writable"), "{}", failed.err);
    assert_eq!(kept, 10, "the checkpoint is untouched");
    assert_eq!(resumed.rc, 0, "{}{}", resumed.out, resumed.err);
    assert!(resumed.out.contains("at step 10 of 40"), "{}", resumed.out);
    assert_eq!(checkpoint_step(&end), 40);
    assert_no_leftovers(&end);

    let Case { failed, dir, kept, resumed, end } = mid_run;
    assert_clean_failure(failed.rc, &failed.out, &failed.err, &what, &dir);
    assert!(failed.err.contains(&format!("the last good checkpoint (step {kept}) is kept in")), "{}", failed.err);
    assert!((10..2000).contains(&kept) && kept % 10 == 0, "checkpoint at step {kept}");
    assert_eq!(resumed.rc, 0, "{}{}", resumed.out, resumed.err);
    assert!(resumed.out.contains(&format!("at step {kept} of 2000")), "{}", resumed.out);
    assert_eq!(checkpoint_step(&end), 2000);
    assert_no_leftovers(&end);

    for d in made {
        let _ = std::fs::remove_dir_all(d);
    }
    println!("read-only folder: 2 fault cases, {:.1} s", t0.elapsed().as_secs_f64());
}

/// Figures need no installed font: with every system font folder hidden under an empty tmpfs,
/// `fm plot compare` draws the same PNG, byte for byte, as with them (the font is built in).
#[test]
fn figures_need_no_installed_fonts() {
    if !can_mount() {
        eprintln!("skipped: no private mount namespace here to hide the system fonts in");
        return;
    }
    let dir = temp("fonts");
    train(&dir, "20");
    let plot =
        |png: &str| vec!["plot".to_string(), "compare".into(), "--run".into(), dir.display().to_string(), "--out".into(), dir.join(png).display().to_string()];
    let o = fm().env_remove("FM_FONT").args(plot("with.png")).output().unwrap();
    assert!(o.status.success(), "{}", text(&o));
    let hide =
        "for d in /usr/share/fonts /usr/local/share/fonts /usr/share/X11/fonts; do [ -d $d ] && { mount -t tmpfs -o size=64k tmpfs $d || exit 91; }; done; \
                [ -z \"$(find /usr/share/fonts /usr/local/share/fonts -name '*.tt[fc]' 2>/dev/null)\" ] || exit 92; \
                unset FM_FONT; exec \"$@\"";
    let mut args = vec![env!("CARGO_BIN_EXE_fm").to_string()];
    args.extend(plot("without.png"));
    let o = in_namespace(hide, &args);
    assert!(text(&o).contains("without.png"), "{}", text(&o));
    let (with, without) = (std::fs::read(dir.join("with.png")).unwrap(), std::fs::read(dir.join("without.png")).unwrap());
    assert!(with.len() > 10_000 && with == without, "the figure drawn without system fonts differs ({} vs {} bytes)", with.len(), without.len());
    let _ = std::fs::remove_dir_all(&dir);
}

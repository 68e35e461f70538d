//! Robustness of `fm train`: SIGKILL at pseudo-random moments always leaves a loadable
//! checkpoint that `--resume` continues, to the same final weights as a run never killed;
//! SIGINT finishes the step, checkpoints and exits 130 with the command to resume.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

const FLAGS: [&str; 11] = ["train", "--device", "cpu", "--quiet", "--steps", "400", "--checkpoint-every", "10", "--batch-size", "32", "--hidden-dim"];

fn temp(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("fm-kill-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    d
}

fn fresh(out: &Path) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_fm"));
    // One torch thread: on a shared machine idle-spinning pool threads make the tiny steps 10× slower.
    c.env("OMP_NUM_THREADS", "1");
    c.args(FLAGS).args(["32", "--out", out.to_str().unwrap()]);
    c
}

fn resume(out: &Path) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_fm"));
    // One torch thread: on a shared machine idle-spinning pool threads make the tiny steps 10× slower.
    c.env("OMP_NUM_THREADS", "1");
    c.args(["train", "--quiet", "--resume", out.to_str().unwrap()]);
    c
}

/// `fm train --resume DIR` when the run folder holds its config, else the first command again
/// (a kill that early left nothing to resume).
fn next_attempt(out: &Path) -> Command {
    if out.join("config.toml").is_file() {
        resume(out)
    } else {
        fresh(out)
    }
}

fn spawn(mut c: Command) -> Child {
    c.stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().expect("fm starts")
}

fn run(mut c: Command) -> Output {
    c.output().expect("fm runs")
}

fn text(o: &Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr))
}

/// The weights of `out/model.safetensors` as raw tensor bytes, and the step of `out/train-state.safetensors`.
fn final_weights(out: &Path) -> Vec<Vec<f32>> {
    let (mlp, _) = fm_model::checkpoint::load(&out.join("model.safetensors"), tch::Device::Cpu).unwrap();
    fm_model::checkpoint::state_dict(&*mlp).unwrap().into_iter().map(|(_, t)| t.values).collect()
}

/// Every checkpoint file present loads; returns the step of the training state, if any.
fn check_loadable(out: &Path) -> Option<usize> {
    let model = out.join("model.safetensors");
    if model.exists() {
        fm_model::checkpoint::load_any(&model, tch::Device::Cpu).unwrap_or_else(|e| panic!("{} does not load: {e}", model.display()));
    }
    let state = out.join(fm_train::STATE_FILE);
    if state.exists() {
        let loaded = fm_train::load_state(&state, tch::Device::Cpu).unwrap_or_else(|e| panic!("{} does not load: {e}", state.display()));
        assert!(model.exists(), "a training state without a model checkpoint");
        return Some(loaded.step);
    }
    None
}

/// A small deterministic generator (xorshift64*).
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn millis(&mut self, lo: u64, hi: u64) -> Duration {
        Duration::from_millis(lo + self.next() % (hi - lo))
    }
}

#[test]
fn kill_9_at_random_moments_always_leaves_a_resumable_checkpoint() {
    let reference = temp("reference");
    let t0 = Instant::now();
    let o = run(fresh(&reference));
    assert!(o.status.success(), "{}", text(&o));
    let straight = final_weights(&reference);
    println!("uninterrupted run: {:.1} s", t0.elapsed().as_secs_f64());

    let mut rng = Rng(0x5eed_f00d_1234_5678);
    let (mut kills, mut completed_runs, mut resumed_from_checkpoint) = (0, 0, 0);
    let budget = Duration::from_secs(40);
    let start = Instant::now();
    let mut episode = 0;
    const TARGET: usize = 24;
    while kills < TARGET && start.elapsed() < budget {
        let out = temp(&format!("episode-{episode}"));
        episode += 1;
        let mut command = fresh(&out);
        let mut last_step = None;
        // Kill this run over and over until one attempt runs to the end.
        loop {
            let mut child = spawn(command);
            // Kill while under the target and the time budget; then let the attempt finish.
            let delay = rng.millis(100, 1600);
            let deadline = if kills < TARGET && start.elapsed() < budget { Instant::now() + delay } else { Instant::now() + Duration::from_secs(600) };
            let finished = loop {
                if let Some(status) = child.try_wait().unwrap() {
                    break Some(status);
                }
                if Instant::now() >= deadline {
                    break None;
                }
                std::thread::sleep(Duration::from_millis(5));
            };
            match finished {
                Some(status) => {
                    let o = child.wait_with_output().unwrap();
                    assert!(status.success(), "fm failed after {kills} kills: {}", text(&o));
                    break;
                }
                None => {
                    child.kill().unwrap(); // SIGKILL
                    child.wait().unwrap();
                    kills += 1;
                }
            }
            let step = check_loadable(&out);
            if let (Some(before), Some(now)) = (last_step, step) {
                assert!(now >= before, "the checkpoint went back from step {before} to {now}");
            }
            if step.is_some() {
                resumed_from_checkpoint += 1;
            }
            last_step = step.or(last_step);
            command = next_attempt(&out);
        }
        completed_runs += 1;
        assert_eq!(check_loadable(&out), Some(400));
        let leftovers: Vec<_> = std::fs::read_dir(&out).unwrap().flatten().map(|e| e.file_name()).filter(|n| n.to_string_lossy().contains(".tmp")).collect();
        assert!(leftovers.is_empty(), "temporary files left behind: {leftovers:?}");
        assert!(final_weights(&out) == straight, "a killed and resumed run ended with other weights than an uninterrupted one");
        let metrics = std::fs::read_to_string(out.join("metrics.csv")).unwrap();
        let steps: Vec<usize> = metrics.lines().skip(1).map(|l| l.split(',').next().unwrap().parse().unwrap()).collect();
        assert_eq!(steps, (1..=40).map(|k| 10 * k).collect::<Vec<_>>(), "metrics.csv rows");
        let _ = std::fs::remove_dir_all(&out);
    }
    println!(
        "kill -9 points tried: {kills} over {completed_runs} runs ({resumed_from_checkpoint} resumed from a checkpoint); every run folder loaded and every run ended bit-identical to the uninterrupted one ({:.1} s)",
        start.elapsed().as_secs_f64()
    );
    assert!(kills >= 20, "only {kills} kill points");
    let _ = std::fs::remove_dir_all(&reference);
}

#[test]
fn sigint_checkpoints_and_says_how_to_resume() {
    let out = temp("sigint");
    let child = spawn(fresh(&out));
    // Wait until training is under way (the first checkpoint exists), then interrupt.
    let t0 = Instant::now();
    while !out.join(fm_train::STATE_FILE).exists() {
        assert!(t0.elapsed() < Duration::from_secs(30), "no checkpoint after 30 s");
        std::thread::sleep(Duration::from_millis(10));
    }
    let pid = child.id().to_string();
    assert!(Command::new("kill").args(["-INT", &pid]).status().unwrap().success());
    let o = child.wait_with_output().unwrap();
    let all = text(&o);
    if o.status.success() {
        // The run finished before the signal landed: nothing to check but the files.
        assert_eq!(check_loadable(&out), Some(400));
        return;
    }
    assert_eq!(o.status.code(), Some(130), "{all}");
    let dir = out.display().to_string();
    let step = check_loadable(&out).expect("a checkpoint");
    assert!(all.contains(&format!("interrupted at step {step}; checkpoint in {dir}; continue with: fm train --resume {dir}")), "{all}");

    // Flags that would change the run are refused; the resume finishes it.
    let o = run({
        let mut c = resume(&out);
        c.args(["--lr", "0.5"]);
        c
    });
    assert!(!o.status.success() && text(&o).contains("--lr would change it"), "{}", text(&o));
    let o = run(resume(&out));
    assert!(o.status.success(), "{}", text(&o));
    assert!(text(&o).contains(&format!("resuming {dir} at step {step} of 400")), "{}", text(&o));
    assert_eq!(check_loadable(&out), Some(400));
    let reference = temp("sigint-reference");
    assert!(run(fresh(&reference)).status.success());
    assert!(final_weights(&out) == final_weights(&reference), "the interrupted run ended with other weights");
    let _ = std::fs::remove_dir_all(&out);
    let _ = std::fs::remove_dir_all(&reference);
}

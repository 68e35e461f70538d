//! The run layer on its own: one tiny trained run, then everything a command asks of it —
//! finishing the run, sampling requests and their refusals, judging, figures' refusals, the one
//! rule for the target, what a checkpoint holds.

use fm_run::{Figure, Finding, PlotJob, RunConfig, RunDir, SampleJob, TrainOptions};
use std::path::PathBuf;
use std::sync::OnceLock;

/// One 30-step run of a small network, shared by the tests (its folder and config).
fn run() -> &'static (PathBuf, RunConfig) {
    static RUN: OnceLock<(PathBuf, RunConfig)> = OnceLock::new();
    RUN.get_or_init(|| {
        let out = std::env::temp_dir().join(format!("fm-run-tests-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&out);
        let mut cfg = RunConfig { device: "cpu".into(), ..RunConfig::default() };
        cfg.model.hidden_dim = 16;
        (cfg.train.steps, cfg.train.batch_size, cfg.sample.n_samples, cfg.sample.steps) = (30, 64, 300, 10);
        (cfg.eval.w2_points, cfg.eval.w2_draws, cfg.eval.kl_points) = (200, 1, 100);
        fm_run::prepare(&mut cfg, false, false).unwrap();
        let dir = RunDir::new(&out);
        let trained = fm_run::train_run(&cfg, &dir, &TrainOptions { quiet: true, ..Default::default() }, &mut |_| {}).unwrap();
        let mut lines = Vec::new();
        let (done, beside) = fm_run::finish_run(&cfg, &dir, &trained, &mut |l| lines.push(l.to_string()), |x, labels| (x.nrows(), labels.is_some())).unwrap();
        assert!(lines[0].starts_with("sampled 300 points") && lines.iter().any(|l| l.starts_with("likelihood of the model")), "{lines:?}");
        assert_eq!(beside, (300, false), "the caller's work sees the samples");
        assert!(done.report.kl.is_some() && done.labels.is_none());
        assert_eq!(fm_dist::io::read_npy(&dir.file(RunDir::SAMPLES)).unwrap().dim(), (300, 2));
        assert_eq!(dir.read_report().unwrap().w2_excess, done.report.w2_excess);
        (out, cfg)
    })
}

fn model() -> PathBuf {
    RunDir::new(&run().0).file(RunDir::MODEL)
}

#[test]
fn prepare_refuses_before_training_what_sampling_would() {
    let mut cfg = RunConfig::default();
    cfg.train.objective = "meanflow".parse().unwrap();
    cfg.sample.method = fm_ode::Method::Rk4;
    let err = fm_run::prepare(&mut cfg, false, true).unwrap_err().to_string();
    assert!(err.contains("--method rk4 does not apply"), "{err}");
    // Not given, the kind of model chooses: Euler's jumps.
    fm_run::prepare(&mut cfg, false, false).unwrap();
    assert_eq!(cfg.sample.method, fm_ode::Method::Euler);
    cfg.eval.w2_points = cfg.sample.n_samples + 1;
    assert!(fm_run::prepare(&mut cfg, false, false).unwrap_err().to_string().contains("w2_points"));
}

#[test]
fn the_target_comes_from_the_flag_the_run_file_the_checkpoint_then_the_seed() {
    let file = RunConfig { target: "moons".into(), ..RunConfig::default() };
    assert_eq!(fm_run::resolve_target(Some("8gaussians"), Some(&file), Some("circles")), "8gaussians");
    assert_eq!(fm_run::resolve_target(None, Some(&file), Some("circles")), "moons");
    assert_eq!(fm_run::resolve_target(None, None, Some("circles")), "circles");
    assert_eq!(fm_run::resolve_target(None, None, None), "gmm3");
}

#[test]
fn a_run_starts_from_the_preset_named_else_the_one_its_objective_was_measured_with() {
    let ewfm: fm_train::ObjectiveChoice = "ewfm".parse().unwrap();
    let fm: fm_train::ObjectiveChoice = "flow-matching".parse().unwrap();
    let file = std::path::Path::new("run.toml");
    assert_eq!(RunConfig::starting_preset(None, None, Some(&ewfm)), Some("energy"));
    assert_eq!(RunConfig::starting_preset(None, Some("fast"), Some(&ewfm)), Some("fast"));
    assert_eq!(RunConfig::starting_preset(Some(file), None, Some(&ewfm)), None, "a run file holds the whole training section");
    assert_eq!(RunConfig::starting_preset(None, None, Some(&fm)), None);
    assert_eq!(RunConfig::starting_preset(None, None, None), None);
    // The energy preset's settings, the objective given then replacing its ewfm:4.
    let energy = RunConfig::load(None, RunConfig::starting_preset(None, None, Some(&ewfm))).unwrap();
    assert_eq!((energy.train.batch_size, energy.train.lr), (1024, 8e-3));
}

#[test]
fn a_sample_job_checks_its_condition_and_writes_what_it_says() {
    let job = |f: &dyn Fn(&mut SampleJob)| {
        let mut job = SampleJob { checkpoint: Some(model()), device: Some("cpu".into()), cfg_scale: 1.0, ..Default::default() };
        job.sample.n_samples = 50;
        f(&mut job);
        fm_run::sample(&job)
    };
    for (set, needle) in [
        (&(|j: &mut SampleJob| j.cfg_scale = 2.0) as &dyn Fn(&mut SampleJob), "--cfg-scale guides a condition"),
        (&|j: &mut SampleJob| j.class = Some("0".into()), "not conditioned on classes"),
        (&|j: &mut SampleJob| j.cond = Some("1,x".into()), "'x' is not a number"),
        (&|j: &mut SampleJob| j.sample.steps = 0, "steps"),
    ] {
        let err = job(set).err().expect("refused").to_string();
        assert!(err.contains(needle), "expected '{needle}': {err}");
    }
    let out = run().0.join("s.npy");
    let sampled = job(&|j| (j.log_q, j.out) = (true, Some(out.clone()))).unwrap();
    assert_eq!((sampled.points.nrows(), sampled.log_q.as_ref().map(|l| l.len())), (50, Some(50)));
    let written = fm_run::write_sampled(&sampled).unwrap();
    assert_eq!(written.iter().map(|w| w.0).collect::<Vec<_>>(), ["samples", "log q"]);
    assert_eq!(fm_dist::io::read_npy(&fm_run::log_q_path(&out)).unwrap().dim(), (50, 1));
    // Sampled again without it: the stale log q beside the new samples is removed.
    fm_run::write_sampled(&job(&|j| j.out = Some(out.clone())).unwrap()).unwrap();
    assert!(!fm_run::log_q_path(&out).exists());
}

#[test]
fn judging_a_model_and_its_weighed_samples() {
    let out = run().0.join("w.npy");
    let mut job =
        SampleJob { checkpoint: Some(model()), device: Some("cpu".into()), cfg_scale: 1.0, log_q: true, out: Some(out.clone()), ..Default::default() };
    job.sample.n_samples = 400;
    fm_run::write_sampled(&fm_run::sample(&job).unwrap()).unwrap();
    let mut eval = fm_run::EvalJob { checkpoint: Some(model()), samples: Some(out), cfg_scale: 1.0, ..Default::default() };
    (eval.eval.w2_points, eval.eval.kl_points) = (200, 100);
    let mut findings = Vec::new();
    fm_run::evaluate(&eval, &mut |f: Finding| findings.push(f.to_string())).unwrap();
    let all = findings.join("\n");
    for needle in ["quality of", "importance weights of the samples", "ESS", "log Z", "likelihood of", "against the exact flow"] {
        assert!(all.contains(needle), "no '{needle}' in:\n{all}");
    }
    eval.cfg_scale = 2.0;
    assert!(fm_run::evaluate(&eval, &mut |_| {}).err().unwrap().to_string().contains("give --class K"));
}

#[test]
fn figures_refuse_what_does_not_apply_before_any_work() {
    let job = |figure: Figure, f: &dyn Fn(&mut PlotJob)| {
        let mut job = PlotJob {
            figure,
            config: None,
            run: Some(run().0.clone()),
            checkpoint: None,
            target: None,
            out: None,
            points: None,
            steps: None,
            method: None,
            sde: None,
            coords: vec![0, 1],
            device: "cpu".into(),
            exact: false,
            path: None,
            foreign: Default::default(),
            class: None,
            cfg_scale: 1.0,
            scales: vec![0.0, 1.0],
        };
        f(&mut job);
        fm_run::prepare_plot(&job)
    };
    let sde = "sigma".parse().ok();
    for (figure, set, needle) in [
        (Figure::Compare, &(|j: &mut PlotJob| j.exact = true) as &dyn Fn(&mut PlotJob), "--exact draws the exact field"),
        (Figure::Field, &|j: &mut PlotJob| j.sde = Some(sde), "--sde samples"),
        (Figure::Density, &|j: &mut PlotJob| j.class = Some("0".into()), "--class draws"),
        (Figure::Guidance, &|_: &mut PlotJob| {}, "needs a class-conditional checkpoint"),
        (Figure::Compare, &|j: &mut PlotJob| j.coords = vec![0], "--coords takes two"),
    ] {
        let err = job(figure, set).err().expect("refused").to_string();
        assert!(err.contains(needle), "{figure:?}: expected '{needle}': {err}");
    }
    let plot = job(Figure::Compare, &|j| j.points = Some(100)).unwrap();
    assert_eq!(plot.out, run().0.join("compare.png"));
    assert_eq!(plot.samples().unwrap().points.nrows(), 100);
    assert_eq!(plot.paths(7).unwrap().paths.shape()[1], 7);
}

#[test]
fn inspect_says_the_network_and_its_output() {
    let lines = fm_run::inspect(&model(), &Default::default()).unwrap().join("\n");
    assert!(lines.contains("2-D MLP: 3 hidden layers of 16 (relu)") && lines.contains("output     velocity"), "{lines}");
    let targets = fm_run::targets(None).unwrap().join("\n");
    for name in ["gmm40", "manywell:D", "funnel:D"] {
        assert!(targets.contains(name), "{name} missing from {targets}");
    }
}

#[test]
fn an_energy_run_trains_from_the_density_alone_records_its_evaluations_and_resumes_bit_for_bit() {
    // GMM-40 by its density (fm run --target gmm40 --objective ewfm), the default plan: one
    // refresh of 4,096 points covers these 60 steps.
    let base = std::env::temp_dir().join(format!("fm-run-energy-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&base);
    let mut cfg = RunConfig { device: "cpu".into(), target: "gmm40".into(), ..RunConfig::default() };
    cfg.model.hidden_dim = 16;
    cfg.train.objective = "ewfm".parse().unwrap();
    (cfg.train.steps, cfg.train.batch_size, cfg.train.report_every, cfg.train.checkpoint_every) = (60, 64, 20, 20);
    fm_run::prepare(&mut cfg, false, false).unwrap();
    let with_pairs = RunConfig { pairs: Some("pairs.npy".into()), ..cfg.clone() };
    let err = fm_run::train_run(&with_pairs, &RunDir::new(base.join("pairs")), &TrainOptions::default(), &mut |_| {}).err().expect("refused").to_string();
    assert!(err.contains("trains from the target's density alone: it takes no --pairs"), "{err}");
    let train = |dir: &RunDir, cfg: &RunConfig, resume: bool| {
        fm_run::train_run(cfg, dir, &TrainOptions { quiet: true, resume, ..Default::default() }, &mut |_| {}).unwrap()
    };
    let straight = RunDir::new(base.join("straight"));
    let trained = train(&straight, &cfg, false);
    // It learnt in units of the density's stated scale, which the checkpoint keeps.
    let map = trained.data_map.clone().expect("an energy run trains in the density's units");
    assert_eq!(map.scale, fm_dist::density_of(trained.target.as_ref()).unwrap().std_dev().unwrap());
    drop(trained);
    let rows = straight.read_metrics().unwrap();
    assert_eq!(rows.iter().map(|r| r.evaluations).collect::<Vec<_>>(), vec![Some(4096); 3], "one refresh, counted on every row");
    assert!(rows.iter().all(|r| r.ess.is_some_and(|e| e > 0.0 && e <= 1.0) && r.log_z.is_some_and(f64::is_finite) && r.temperature == Some(1.0)));
    // Stopped at step 20, resumed to 60 from the folder's state (its proposal included).
    let resumed = RunDir::new(base.join("resumed"));
    drop(train(&resumed, &RunConfig { train: fm_train::TrainConfig { steps: 20, ..cfg.train.clone() }, ..cfg.clone() }, false));
    drop(train(&resumed, &cfg, true));
    let read = |dir: &RunDir| std::fs::read(dir.file(RunDir::MODEL)).unwrap();
    assert!(read(&resumed) == read(&straight), "the resumed run's checkpoint differs from the uninterrupted run's");
    // The same rows, but for W2 and KL, tracked at the first run's last step (20) as well.
    let untracked = |rows: Vec<fm_run::MetricsRow>| rows.into_iter().map(|r| fm_run::MetricsRow { w2: None, kl: None, ..r }).collect::<Vec<_>>();
    assert_eq!(untracked(resumed.read_metrics().unwrap()), untracked(rows));
    let _ = std::fs::remove_dir_all(&base);
}

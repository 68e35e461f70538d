//! `fm run`: train, sample, draw and judge in one go.

use crate::config::SampleFlags;
use crate::quality::EvalFlags;
use crate::train::{print_written, train_into, TrainSetup};
use anyhow::Result;
use clap::ArgMatches;
use fm_run::{RunConfig, RunDir};
use ndarray::ArrayView2;
use std::path::PathBuf;

#[derive(clap::Args, Debug)]
pub struct RunArgs {
    #[command(flatten)]
    setup: TrainSetup,
    #[command(flatten)]
    sample: SampleFlags,
    #[command(flatten)]
    eval: EvalFlags,
    /// Run folder (created if missing).
    #[arg(long, default_value = "runs/seed")]
    out: PathBuf,
}

pub fn run(args: RunArgs, m: &ArgMatches) -> Result<()> {
    let mut cfg = args.setup.resolve(m)?;
    args.sample.apply(m, &mut cfg.sample);
    args.eval.apply(m, &mut cfg.eval);
    fm_run::prepare(&mut cfg, crate::config::given(m, "sample_steps"), crate::config::given(m, "method"))?;
    let dir = RunDir::new(&args.out);
    let trained = train_into(&cfg, &dir, args.setup.quiet, false)?;
    let dim = trained.target.dim();
    // The seed's own figure keeps the seed's axes; any other target gets axes fitted to it.
    let figure = |samples: ArrayView2<f64>, labels: Option<&[usize]>| -> Result<()> {
        let fig = match cfg.target == RunConfig::default().target {
            true => fm_viz::CompareFigure::seed(),
            false => fm_viz::CompareFigure { target_title: format!("Target: {}", trained.target.name()), ..fm_viz::CompareFigure::fitted() },
        };
        let fig = fm_viz::CompareFigure { labels: labels.map(<[usize]>::to_vec), ..fig };
        Ok(fm_viz::compare(&dir.file(RunDir::COMPARE), trained.target.as_ref(), samples, &fig)?)
    };
    let mut print = |line: &str| println!("{line}");
    let (done, figure) = fm_run::finish_run(&cfg, &dir, &trained, &mut print, |x, labels| if dim >= 2 { figure(x, labels) } else { Ok(()) })?;
    figure?;
    match dim {
        2 => {}
        1 => println!("note: {} skipped: figures draw two coordinates and the data are {dim}-D; the samples and report are complete", RunDir::COMPARE),
        _ => println!(
            "note: {} shows x1 and x2 of x1…x{dim} (`fm plot compare --run DIR --coords I,J` draws others, counted from 0: --coords 0,1 is x1 and x2)",
            RunDir::COMPARE
        ),
    }
    let files = [RunDir::MODEL, RunDir::SAMPLES, RunDir::LABELS, RunDir::COMPARE, RunDir::REPORT, RunDir::CONFIG, RunDir::METRICS].map(|f| dir.file(f));
    let names = ["checkpoint", "samples", "labels", "figure", "report", "config", "losses"];
    let shown = |n: &str| (n != "figure" || dim >= 2) && (n != "labels" || done.by_class());
    let mut written: Vec<(&str, &std::path::Path)> = names.iter().zip(&files).filter(|(n, _)| shown(n)).map(|(n, f)| (*n, f.as_path())).collect();
    let log_q = fm_run::log_q_path(&files[1]);
    if done.report.weights.is_some() {
        written.insert(2, ("log q", &log_q));
    }
    print_written(&written);
    Ok(())
}

//! `fm plot KIND`: figures straight from a checkpoint (or a run's loss log).

use crate::config::given;
use crate::train::print_written;
use anyhow::{Context, Result};
use fm_ode::Method;
use fm_run::{Figure, MetricsRow, RunDir};
use fm_train::{GeneratedPaths, SampleConfig};
use ndarray::{Array1, Array2, ArrayView2};
use std::path::{Path, PathBuf};

/// A figure as clap reads it: the names and help are [`Figure`]'s own.
#[derive(Clone, Copy, Debug)]
pub struct Kind(Figure);

impl clap::ValueEnum for Kind {
    fn value_variants<'a>() -> &'a [Self] {
        static ALL: std::sync::OnceLock<Vec<Kind>> = std::sync::OnceLock::new();
        ALL.get_or_init(|| Figure::ALL.into_iter().map(Kind).collect())
    }
    fn to_possible_value(&self) -> Option<clap::builder::PossibleValue> {
        Some(clap::builder::PossibleValue::new(self.0.name()).help(self.0.help()))
    }
}

#[derive(clap::Args, Debug)]
pub struct PlotArgs {
    #[command(flatten)]
    pub threads: crate::config::ThreadsFlag,
    /// What to draw.
    #[arg(value_enum)]
    kind: Kind,
    /// A run file: its target and `[sample]` section are the defaults here, and without --run its folder is
    /// the run folder (runs/x/config.toml: runs/x) [default: RUN/config.toml when it exists].
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
    /// Run folder holding model.safetensors and metrics.csv (written by fm run / fm train) [default: the
    /// folder of the --config file, else runs/seed].
    #[arg(long, value_name = "DIR")]
    run: Option<PathBuf>,
    /// Checkpoint to draw [default: RUN/model.safetensors]; .pth works too.
    #[arg(long)]
    checkpoint: Option<PathBuf>,
    /// Target to draw against [default: the checkpoint's].
    #[arg(long)]
    target: Option<String>,
    /// Output file, .png or .svg (.gif for animation) [default: RUN/KIND.png].
    #[arg(long)]
    out: Option<PathBuf>,
    /// Points to draw: samples for compare and energy (10,000), paths for trajectories (300) and
    /// animation (2,000), grid cells along x for density (120).
    #[arg(long)]
    points: Option<usize>,
    /// Integration steps of the paths.
    #[arg(long, default_value_t = SampleConfig::default().steps)]
    steps: usize,
    /// Integration method.
    #[arg(long, default_value_t = SampleConfig::default().method)]
    method: Method,
    #[command(flatten)]
    sde: crate::config::SdeFlag,
    /// For D > 2: the pair of coordinates to draw (0-based), e.g. 2,5.
    #[arg(long, value_delimiter = ',', default_values_t = [0, 1])]
    coords: Vec<usize>,
    /// Where to compute: auto, cpu, cuda or cuda:N.
    #[arg(long, default_value = "cpu")]
    device: String,
    /// For field: draw the exact field v* of the target (Gaussian mixtures, with the run's path) below the model's, on
    /// one scale (the exact field alone when there is no model) [default out: RUN/field-exact.png].
    #[arg(long)]
    exact: bool,
    /// With --exact: the probability path (linear, icfm:σ, lipman:σ_min, vp) [default: the run's, else linear].
    #[arg(long, requires = "exact")]
    path: Option<fm_train::ProbabilityPath>,
    #[command(flatten)]
    foreign: crate::config::ForeignModelArgs,
    /// A conditional checkpoint's classes for compare and trajectories (coloured by class), K, K,K or all [default:
    /// all]; the class of the guidance figure [default: 0].
    #[arg(long, value_name = "K|K,K|all")]
    class: Option<String>,
    /// The classifier-free guidance scale of compare and trajectories.
    #[arg(long, value_name = "W", default_value_t = 1.0, allow_hyphen_values = true)]
    cfg_scale: f64,
    /// The guidance figure's scales, one panel each.
    #[arg(long, value_name = "W,W,…", value_delimiter = ',', default_values_t = [0.0, 1.0, 2.0, 3.0, 5.0])]
    scales: Vec<f64>,
}

pub fn plot(args: PlotArgs, m: &clap::ArgMatches) -> Result<()> {
    let job = fm_run::PlotJob {
        figure: args.kind.0,
        config: args.config,
        run: args.run,
        checkpoint: args.checkpoint,
        target: args.target,
        out: args.out,
        points: args.points,
        steps: given(m, "steps").then_some(args.steps),
        method: given(m, "method").then_some(args.method),
        sde: args.sde.given(),
        coords: args.coords,
        device: args.device,
        exact: args.exact,
        path: args.path,
        foreign: args.foreign.options(None),
        class: args.class,
        cfg_scale: args.cfg_scale,
        scales: args.scales,
    };
    let plot = fm_run::prepare_plot(&job)?;
    plot.notes.iter().for_each(|n| eprintln!("note: {n}"));
    let (out, coords) = (&plot.out, plot.coords);
    if let (Figure::Field, Some(flow)) = (plot.figure, &plot.flow) {
        crate::plot_field::exact(out, flow, plot.bundle.as_ref().map(|b| &*b.model), coords)?;
        print_written(&[("figure", out)]);
        return Ok(());
    }
    let t = || plot.target();
    match plot.figure {
        Figure::Loss => plot_loss(&plot.dir, out)?,
        Figure::Compare => {
            let generated = plot.samples()?;
            let guided = if plot.classes.is_some() { format!(", by class, w = {}", plot.cfg_scale) } else { String::new() };
            let fig = fm_viz::CompareFigure {
                coords,
                samples_title: format!("Generated samples ({}{guided})", fm_run::describe(&plot.sample)),
                target_title: format!("Target: {}", t()?.name()),
                labels: generated.labels,
                ..fm_viz::CompareFigure::fitted()
            };
            fm_viz::compare(out, t()?, generated.points.view(), &fig)?;
        }
        Figure::Trajectories => {
            let GeneratedPaths { times, paths, labels } = plot.paths(job.points.unwrap_or(300))?;
            fm_viz::trajectories(out, paths.view(), &times, Some(t()?), &fm_viz::TrajectoryFigure { coords, labels, ..Default::default() })?;
        }
        Figure::Guidance => {
            let (class, samples) = plot.guidance(job.points.unwrap_or(2000))?;
            let panels: Vec<(f64, ArrayView2<f64>)> = samples.iter().map(|(w, s)| (*w, s.view())).collect();
            fm_viz::guidance(out, t()?, class, &panels, &fm_viz::GuidanceFigure::default())?;
        }
        Figure::Animation => {
            let GeneratedPaths { times, paths, .. } = plot.paths(job.points.unwrap_or(2000))?;
            fm_viz::animation(out, paths.view(), &times, Some(t()?), &fm_viz::AnimationFigure { coords, ..Default::default() })?;
        }
        Figure::Field => {
            let fig = match plot.data_frame() {
                Some((x, y, through)) => fm_viz::FieldFigure { coords, x_range: Some(x), y_range: Some(y), through, ..Default::default() },
                None => fm_viz::FieldFigure { coords, ..Default::default() },
            };
            let units = plot.model()?.units();
            fm_viz::field(out, |x: ArrayView2<f64>, time| -> Result<Array2<f64>> { Ok(units.velocity(x, time)?) }, Some(t()?), &fig)?;
        }
        Figure::FieldError => {
            let flow = plot.flow.as_ref().context("no exact flow")?;
            return crate::plot_field::field_error(out, flow, &*plot.model()?.model, coords);
        }
        Figure::Energy => plot_energy(&plot, out)?,
        Figure::Density => {
            // An exact likelihood per grid point: a coarser grid and 20 RK4 steps keep this to
            // seconds, and the picture does not change at that scale.
            let lik = fm_train::eval::LikelihoodConfig { steps: 20, ..Default::default() };
            let units = plot.model()?.units();
            let log_q = |x: ArrayView2<f64>| -> Result<Array1<f64>> { Ok(units.log_prob(x, &lik)?) };
            let resolution = job.points.unwrap_or(120);
            fm_viz::density(out, log_q, Some(t()?), &fm_viz::DensityFigure { coords, resolution, ..Default::default() })?;
        }
    }
    print_written(&[("figure", out)]);
    Ok(())
}

/// The energy histograms: the model's samples, the same reweighted by p̃/q, exact samples
/// (where the target has a sampler).
fn plot_energy(plot: &fm_run::Plot, out: &Path) -> Result<()> {
    let e = plot.energies()?;
    let left_out = if e.left_out > 0 { format!("; {} of zero density left out", e.left_out) } else { String::new() };
    let exact = e.log_z.map_or(String::new(), |z| format!(", exact {z:.3}"));
    let fig = fm_viz::HistogramFigure {
        title: format!(
            "Energy of the model's samples against {} (ESS {:.3}, log Z estimate {:.3} ± {:.3}{exact}{left_out})",
            plot.target()?.name(),
            e.summary.ess,
            e.summary.log_z,
            e.summary.log_z_se
        ),
        ..Default::default()
    };
    let mut series = vec![("model samples", e.samples.view(), None), ("reweighted by p/q", e.samples.view(), Some(e.weights.view()))];
    series.extend(e.reference.as_ref().map(|r| ("exact samples", r.view(), None)));
    fm_viz::histograms(out, &series, &fig)?;
    Ok(())
}

/// The loss curve of a run's metrics.csv, with the floor as a line across it and panels for
/// the learning rate and, at tracked steps, W2 and KL; an energy-only run's against its energy
/// evaluations, with its proposal's ESS and log Z estimate.
fn plot_loss(dir: &RunDir, out: &Path) -> Result<()> {
    let rows = dir.read_metrics()?;
    anyhow::ensure!(!rows.is_empty(), "{}: no rows yet (written by fm train and fm run)", dir.file(RunDir::METRICS).display());
    let floor = rows.iter().find_map(|r| r.loss_floor);
    let energy = rows.iter().all(|r| r.evaluations.is_some());
    // An energy-only run against its evaluations: one row per refresh (its last window), whose
    // evaluations all its windows share.
    let mut rows = rows;
    if energy {
        rows.reverse();
        rows.dedup_by_key(|r| r.evaluations);
        rows.reverse();
    }
    let x = |r: &MetricsRow| if energy { r.evaluations.unwrap_or_default() as f64 } else { r.step as f64 };
    let column = |value: &dyn Fn(&MetricsRow) -> Option<f64>| -> Array2<f64> {
        Array2::from(rows.iter().filter_map(|r| value(r).map(|v| [x(r), v])).collect::<Vec<_>>())
    };
    let loss = column(&|r| Some(r.loss));
    let series = [
        ("lr", column(&|r| Some(r.lr))),
        ("w2", column(&|r| r.w2)),
        ("kl", column(&|r| r.kl)),
        ("ESS (normalised)", column(&|r| r.ess)),
        ("log Z estimate", column(&|r| r.log_z)),
    ];
    let extra: Vec<(&str, ArrayView2<f64>)> = series.iter().filter(|(_, a)| a.nrows() > 0).map(|(name, a)| (*name, a.view())).collect();
    let x_name = if energy { "energy evaluations" } else { "step" }.to_string();
    fm_viz::loss(out, loss.view(), &extra, &fm_viz::LossFigure { floor, x_name, ..Default::default() })?;
    Ok(())
}

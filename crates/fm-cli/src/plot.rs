//! `fm plot KIND`: figures straight from a checkpoint (or a run's loss log).

use crate::config::checkpoint_or_run;
use crate::train::print_written;
use anyhow::{Context, Result};
use fm_dist::{parse_target, Target};
use fm_ode::Method;
use fm_run::{MetricsRow, ModelBundle, RunDir};
use fm_train::{Condition, Request, SampleConfig};
use ndarray::{Array1, Array2, ArrayView2};
use std::path::{Path, PathBuf};

#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// Target density beside generated samples (the seed's figure).
    Compare,
    /// Particles' paths from t = 0 to 1 over the target, coloured by time (by class for a conditional checkpoint).
    Trajectories,
    /// The learned velocity field at t = 0, 0.25, 0.5, 0.75, 1 (--exact: with the exact field of a Gaussian-mixture target below).
    Field,
    /// The model's distance to the exact field of a Gaussian-mixture target over t (FILE), and for 2-D where in
    /// space it sits (v − v* as arrows at five times, FILE-map.png).
    FieldError,
    /// The model's log-density (exact likelihood) beside the target's.
    Density,
    /// Training loss over steps, from a run's metrics.csv.
    Loss,
    /// Animated GIF of samples flowing from the source to the target.
    Animation,
    /// One class's samples at several classifier-free guidance scales (a conditional checkpoint; --class K, --scales).
    Guidance,
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
    /// Points to draw: samples for compare (10,000), paths for trajectories (300) and animation
    /// (2,000), grid cells along x for density (120).
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

/// `n` points split among `classes` in proportion to their weights in `target` (together they
/// follow the target; equal shares where it does not weigh its classes). A class the target
/// does not have is refused, not given 0 points.
fn split(n: usize, classes: &[usize], target: &dyn Target) -> Result<Vec<(usize, usize)>> {
    let all = target.class_weights();
    let weights: Vec<f64> = if all.is_empty() {
        vec![1.0; classes.len()]
    } else {
        let weight =
            |&c: &usize| all.get(c).copied().ok_or_else(|| anyhow::anyhow!("class {c} is not a class of the target {} (it has {})", target.name(), all.len()));
        classes.iter().map(weight).collect::<Result<_>>()?
    };
    Ok(fm_train::counts_by_weight(n, &weights).into_iter().map(|(i, k)| (classes[i], k)).collect())
}

pub fn plot(args: PlotArgs, m: &clap::ArgMatches) -> Result<()> {
    // The run folder: --run, else the run file's own folder (as for fm inspect/export), else runs/seed.
    let from_file = args.config.as_deref().filter(|_| args.run.is_none());
    let dir = match (&args.run, from_file) {
        (Some(run), _) => run.clone(),
        (None, Some(config)) => RunDir::of_run_file(config).path().to_path_buf(),
        (None, None) => PathBuf::from("runs/seed"),
    };
    let config = args.config.clone().or_else(|| Some(dir.join("config.toml")).filter(|p| p.exists()));
    let run = config.as_deref().map(crate::config::RunConfig::read).transpose()?;
    let foreign = args.foreign.options(run.as_ref());
    let ext = if args.kind == Kind::Animation { "gif" } else { "png" };
    let name = match args.kind {
        Kind::FieldError => "field-error".to_string(),
        Kind::Field if args.exact => "field-exact".to_string(),
        kind => format!("{kind:?}").to_ascii_lowercase(),
    };
    anyhow::ensure!(!args.exact || args.kind == Kind::Field, "--exact draws the exact field: it goes with fm plot field");
    let out = args.out.clone().unwrap_or_else(|| dir.join(format!("{name}.{ext}")));
    let coords = match args.coords[..] {
        [i, j] => (i, j),
        _ => anyhow::bail!("--coords takes two coordinates, e.g. 0,1 (got {:?})", args.coords),
    };
    if args.kind == Kind::Loss {
        plot_loss(&RunDir::new(&dir), &out)?;
        print_written(&[("figure", &out)]);
        return Ok(());
    }
    let ckpt = match from_file {
        Some(config) => checkpoint_or_run(args.checkpoint.as_deref(), Some(config), "--checkpoint C or --run DIR")?,
        None => args.checkpoint.clone().unwrap_or_else(|| RunDir::new(&dir).file(RunDir::MODEL)),
    };
    if args.exact {
        let model = if ckpt.exists() || args.checkpoint.is_some() { Some(ModelBundle::load(&ckpt, &args.device, None, &foreign)?) } else { None };
        anyhow::ensure!(
            model.as_ref().is_none_or(|m| m.data_map.is_none()),
            "the model was trained on standardised file data: there is no exact field to draw beside it"
        );
        let flow = crate::resolve_exact(args.target.as_deref(), None, args.path, run.as_ref(), model.as_ref())?.flow;
        crate::plot_field::exact(&out, &flow, model.as_ref().map(|m| &*m.model), coords)?;
        print_written(&[("figure", &out)]);
        return Ok(());
    }
    let bundle = ModelBundle::load(&ckpt, &args.device, None, &foreign)?;
    let (mlp, source) = (&*bundle.model, &bundle.source);
    let spec = args
        .target
        .clone()
        .or_else(|| run.as_ref().map(|r| r.target.clone()))
        .or_else(|| bundle.target.clone())
        .context("the checkpoint names no target: give --target")?;
    let target = parse_target(&spec).context("target")?;
    anyhow::ensure!(target.dim() == mlp.dim(), "the target {} is {}-D but the model is {}-D", target.name(), target.dim(), mlp.dim());
    let mut cfg = run.as_ref().map_or_else(SampleConfig::default, |r| r.sample.clone());
    crate::config::override_given!(m, args, steps => cfg.steps, method => cfg.method);
    args.sde.apply(&mut cfg);
    anyhow::ensure!(
        cfg.sde.is_none() || matches!(args.kind, Kind::Compare | Kind::Trajectories | Kind::Animation | Kind::Guidance),
        "--sde samples: it goes with fm plot compare, trajectories, animation or guidance, not {}",
        clap::ValueEnum::to_possible_value(&args.kind).map_or_else(String::new, |v| v.get_name().to_string())
    );
    if let Some(sde) = &cfg.sde {
        bundle.check_sde(sde)?;
    }
    bundle.default_steps(&mut cfg, crate::config::given(m, "steps"), crate::config::given(m, "method"));
    let generator = bundle.generator();
    if matches!(args.kind, Kind::Field | Kind::FieldError | Kind::Density | Kind::Animation) {
        // These draw the model without a condition: a conditional model's "no condition" entry.
        bundle.require_null_entry()?;
    }
    if matches!(args.kind, Kind::Field | Kind::FieldError | Kind::Density) {
        bundle.require_flow("the field, field-error and density figures")?;
    }
    cfg.n_samples = args.points.unwrap_or(10_000);
    let t: &dyn Target = target.as_ref();
    fm_train::conditional::check_guidance_scale(args.cfg_scale).map_err(|e| anyhow::anyhow!("--cfg-scale: {e}"))?;
    anyhow::ensure!(args.scales.iter().all(|w| w.is_finite()), "--scales must be finite numbers, got {:?}", args.scales);
    anyhow::ensure!(
        args.class.is_none() || matches!(args.kind, Kind::Compare | Kind::Trajectories | Kind::Guidance),
        "--class draws a conditional checkpoint's classes in the compare, trajectories and guidance figures, not in {:?}",
        args.kind
    );
    let shape = fm_model::VelocityModel::condition_shape(mlp);
    // A class-conditional model's figures are drawn class by class.
    let classes = match (&args.class, shape.classes) {
        (Some(spec), k) => Some(fm_run::parse_classes(spec, k)?),
        (None, 0) => None,
        (None, k) => Some((0..k).collect::<Vec<_>>()),
    };
    anyhow::ensure!(args.kind != Kind::Guidance || shape.classes > 0, "the guidance figure needs a class-conditional checkpoint (fm train --condition labels)");
    anyhow::ensure!(args.cfg_scale == 1.0 || shape.classes > 0, "--cfg-scale guides a class-conditional checkpoint's classes; this one is unconditional");
    if args.cfg_scale != 1.0 || (args.kind == Kind::Guidance && args.scales.iter().any(|&w| w != 1.0)) {
        bundle.require_null_entry()?;
    }
    anyhow::ensure!(t.dim() >= 2, "figures draw two coordinates and the data are {}-D (fm sample and fm eval work in any dimension)", t.dim());
    // A standardised model's field is drawn around its data (its standard-normal source box
    // would be far from them), through their mean for the coordinates not drawn.
    let data_frame = bundle.data_map.as_ref().map(|m| {
        let range = |i: usize| m.shift[i] - 3.0 * m.scale[i]..m.shift[i] + 3.0 * m.scale[i];
        (range(coords.0), range(coords.1), m.shift.clone())
    });
    match args.kind {
        Kind::Compare => {
            let (x, labels) = match &classes {
                None => (bundle.units().generate(&Request::new(generator, &cfg))?.points, None),
                Some(classes) => {
                    let counts = split(cfg.n_samples, classes, t)?;
                    let g = bundle.units().generate(&Request::new(generator, &cfg).given(Condition::Classes(&counts)).guided(args.cfg_scale))?;
                    (g.points, g.labels)
                }
            };
            let guided = if classes.is_some() { format!(", by class, w = {}", args.cfg_scale) } else { String::new() };
            let fig = fm_viz::CompareFigure {
                coords,
                samples_title: format!("Generated samples ({}{guided})", fm_run::describe(&cfg)),
                target_title: format!("Target: {}", t.name()),
                labels,
                ..fm_viz::CompareFigure::fitted()
            };
            fm_viz::compare(&out, t, x.view(), &fig)?;
        }
        Kind::Trajectories => {
            let n = args.points.unwrap_or(300);
            let counts = classes.as_ref().map(|c| split(n, c, t)).transpose()?;
            let request = match &counts {
                None => Request::new(generator, &cfg),
                Some(counts) => Request::new(generator, &cfg).given(Condition::Classes(counts)).guided(args.cfg_scale),
            };
            let fm_train::GeneratedPaths { times, paths, labels } = bundle.units().generate_paths(&request, n)?;
            fm_viz::trajectories(&out, paths.view(), &times, Some(t), &fm_viz::TrajectoryFigure { coords, labels, ..Default::default() })?;
        }
        Kind::Guidance => {
            let class = match args.class.as_deref() {
                None => 0,
                Some(spec) => match fm_run::parse_classes(spec, shape.classes)?[..] {
                    [c] => c,
                    _ => anyhow::bail!("the guidance figure draws one class: give --class K"),
                },
            };
            let cfg = SampleConfig { n_samples: args.points.unwrap_or(2000), ..cfg };
            let samples = args
                .scales
                .iter()
                .map(|&w| bundle.units().generate(&Request::new(generator, &cfg).given(Condition::Class(class)).guided(w)).map(|g| g.points))
                .collect::<Result<Vec<_>, _>>()?;
            let panels: Vec<(f64, ArrayView2<f64>)> = args.scales.iter().copied().zip(samples.iter().map(|s| s.view())).collect();
            fm_viz::guidance(&out, t, class, &panels, &fm_viz::GuidanceFigure::default())?;
        }
        Kind::Animation => {
            let fm_train::GeneratedPaths { times, paths, .. } = bundle.units().generate_paths(&Request::new(generator, &cfg), args.points.unwrap_or(2000))?;
            fm_viz::animation(&out, paths.view(), &times, Some(t), &fm_viz::AnimationFigure { coords, ..Default::default() })?;
        }
        Kind::Field => fm_viz::field(
            &out,
            |x: ArrayView2<f64>, time| -> Result<Array2<f64>> { Ok(bundle.units().velocity(x, time)?) },
            Some(t),
            &match data_frame {
                Some((x_range, y_range, through)) => {
                    fm_viz::FieldFigure { coords, x_range: Some(x_range), y_range: Some(y_range), through, ..Default::default() }
                }
                None => fm_viz::FieldFigure { coords, ..Default::default() },
            },
        )?,
        Kind::FieldError => {
            anyhow::ensure!(bundle.data_map.is_none(), "the model was trained on standardised file data: there is no exact field to compare it with");
            anyhow::ensure!(!bundle.trained_on_pairs(), "the model learnt a teacher's pairs (reflow): its flow is not the exact flow of independent pairs");
            let train = match run.as_ref() {
                Some(r) => r.train.clone(),
                None => bundle.train_or_seed()?.0,
            };
            let flow = fm_train::ExactFlow::for_training(t, source.as_ref(), train.path, train.coupling)?;
            crate::plot_field::field_error(&out, &flow, mlp, coords)?;
            return Ok(());
        }
        Kind::Density => {
            // An exact likelihood per grid point: a coarser grid and 20 RK4 steps keep this to
            // seconds, and the picture does not change at that scale.
            let lik = fm_train::eval::LikelihoodConfig { steps: 20, ..Default::default() };
            let log_q = |x: ArrayView2<f64>| -> Result<Array1<f64>> { Ok(bundle.units().log_prob(x, &lik)?) };
            fm_viz::density(&out, log_q, Some(t), &fm_viz::DensityFigure { coords, resolution: args.points.unwrap_or(120), ..Default::default() })?;
        }
        Kind::Loss => unreachable!("handled above"),
    }
    print_written(&[("figure", &out)]);
    Ok(())
}

/// The loss curve of a run's metrics.csv, with the floor as a line across it and panels for
/// the learning rate and, at tracked steps, W2 and KL.
fn plot_loss(dir: &RunDir, out: &Path) -> Result<()> {
    let rows = dir.read_metrics()?;
    anyhow::ensure!(!rows.is_empty(), "{}: no rows yet (written by fm train and fm run)", dir.file(RunDir::METRICS).display());
    let floor = rows.iter().find_map(|r| r.loss_floor);
    let column = |value: &dyn Fn(&MetricsRow) -> Option<f64>| -> Array2<f64> {
        Array2::from(rows.iter().filter_map(|r| value(r).map(|v| [r.step as f64, v])).collect::<Vec<_>>())
    };
    let loss = column(&|r| Some(r.loss));
    let series = [("lr", column(&|r| Some(r.lr))), ("w2", column(&|r| r.w2)), ("kl", column(&|r| r.kl))];
    let extra: Vec<(&str, ArrayView2<f64>)> = series.iter().filter(|(_, a)| a.nrows() > 0).map(|(name, a)| (*name, a.view())).collect();
    fm_viz::loss(out, loss.view(), &extra, &fm_viz::LossFigure { floor, ..Default::default() })?;
    Ok(())
}

//! `fm plot KIND`: figures straight from a checkpoint (or a run's loss log).

use crate::config::{checkpoint_or_run, run_checkpoint, run_dir};
use crate::sample::load_model;
use crate::train::print_written;
use anyhow::{Context, Result};
use fm_dist::{parse_target, Target};
use fm_ode::{Method, VectorField};
use fm_train::{array_to_tensor, tensor_to_array, SampleConfig};
use ndarray::{s, Array1, Array2, ArrayView2};
use std::path::{Path, PathBuf};

#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// Target density beside generated samples (the seed's figure).
    Compare,
    /// Particles' paths from t = 0 to 1 over the target, coloured by time.
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
}

#[derive(clap::Args, Debug)]
pub struct PlotArgs {
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
}

pub fn plot(args: PlotArgs, m: &clap::ArgMatches) -> Result<()> {
    // The run folder: --run, else the run file's own folder (as for fm inspect/export), else runs/seed.
    let from_file = args.config.as_deref().filter(|_| args.run.is_none());
    let dir = match (&args.run, from_file) {
        (Some(run), _) => run.clone(),
        (None, Some(config)) => run_dir(config).to_path_buf(),
        (None, None) => PathBuf::from("runs/seed"),
    };
    let config = args.config.clone().or_else(|| Some(dir.join("config.toml")).filter(|p| p.exists()));
    let run = config.as_deref().map(crate::config::RunConfig::read).transpose()?;
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
        plot_loss(&dir.join("metrics.csv"), &out)?;
        print_written(&[("figure", &out)]);
        return Ok(());
    }
    let ckpt = match from_file {
        Some(config) => checkpoint_or_run(args.checkpoint.as_deref(), Some(config), "--checkpoint C or --run DIR")?,
        None => args.checkpoint.clone().unwrap_or_else(|| run_checkpoint(&dir)),
    };
    if args.exact {
        // The exact field needs no model; where there is one, it is drawn above the exact field.
        let model = if ckpt.exists() || args.checkpoint.is_some() { Some(load_model(&ckpt, &args.device, None)?) } else { None };
        let flow = crate::oracle::resolve(args.target.as_deref(), None, args.path, run.as_ref(), model.as_ref().map(|m| &m.2))?.0;
        let target: &dyn Target = flow.target();
        let exact = |x: ArrayView2<f64>, time| velocity(&flow, x, time);
        match &model {
            Some((mlp, _, _)) => {
                anyhow::ensure!(mlp.config().dim == flow.dim(), "the target {} is {}-D but the model is {}-D", target.name(), flow.dim(), mlp.config().dim);
                let title = Some(format!("Velocity field: the model above, the exact v* below ({} path)", flow.path()));
                let fig = fm_viz::FieldFigure { coords, title, height: 1000, ..Default::default() };
                fm_viz::field_beside(&out, ("model", |x: ArrayView2<f64>, time| velocity(mlp, x, time)), ("exact v*", exact), Some(target), &fig)?;
            }
            None => {
                let title = Some(format!("Exact velocity field v* ({} path)", flow.path()));
                fm_viz::field(&out, exact, Some(target), &fm_viz::FieldFigure { coords, title, ..Default::default() })?;
            }
        }
        print_written(&[("figure", &out)]);
        return Ok(());
    }
    let (mlp, source, meta) = load_model(&ckpt, &args.device, None)?;
    let spec = args.target.clone().or_else(|| run.as_ref().map(|r| r.target.clone())).or_else(|| meta.get("target").cloned()).context("the checkpoint names no target: give --target")?;
    let target = parse_target(&spec).context("target")?;
    anyhow::ensure!(target.dim() == mlp.config().dim, "the target {} is {}-D but the model is {}-D", target.name(), target.dim(), mlp.config().dim);
    let mut cfg = run.as_ref().map_or_else(SampleConfig::default, |r| r.sample.clone());
    crate::config::override_given!(m, args, steps => cfg.steps, method => cfg.method);
    cfg.n_samples = args.points.unwrap_or(10_000);
    let t: &dyn Target = target.as_ref();
    match args.kind {
        Kind::Compare => {
            let x = fm_train::sample(&mlp, source.as_ref(), &cfg)?;
            let fig = fm_viz::CompareFigure { coords, samples_title: format!("Generated samples ({})", crate::sample::describe(&cfg)), ..fm_viz::CompareFigure::fitted() };
            fm_viz::compare(&out, t, x.view(), &fig)?;
        }
        Kind::Trajectories => {
            let (times, paths) = fm_train::sample_paths(&mlp, source.as_ref(), &cfg, args.points.unwrap_or(300))?;
            fm_viz::trajectories(&out, paths.view(), &times, Some(t), &fm_viz::TrajectoryFigure { coords, ..Default::default() })?;
        }
        Kind::Animation => {
            let (times, paths) = fm_train::sample_paths(&mlp, source.as_ref(), &cfg, args.points.unwrap_or(2000))?;
            fm_viz::animation(&out, paths.view(), &times, Some(t), &fm_viz::AnimationFigure { coords, ..Default::default() })?;
        }
        Kind::Field => fm_viz::field(&out, |x: ArrayView2<f64>, time| velocity(&mlp, x, time), Some(t), &fm_viz::FieldFigure { coords, ..Default::default() })?,
        Kind::FieldError => {
            let train = match run.as_ref() {
                Some(r) => r.train.clone(),
                None => crate::oracle::trained_with_or_seed(&meta)?,
            };
            let flow = fm_train::ExactFlow::for_training(t, source.as_ref(), train.path, train.coupling)?;
            let times: Vec<f64> = (0..=40).map(|k| k as f64 / 40.0).collect();
            let curve = flow.field_error_curve(&mlp, &times, 2048, &mut <rand::rngs::StdRng as rand::SeedableRng>::seed_from_u64(0))?;
            let rows = Array2::from_shape_fn((times.len(), 2), |(i, j)| if j == 0 { times[i] } else { curve[i].mean });
            let fig = fm_viz::LossFigure { title: format!("Field error against the exact flow ({} path)", flow.path()), x_name: "t".into(), loss_name: "E‖v − v*‖² per coordinate".into(), smooth: Some(1), ..Default::default() };
            fm_viz::loss(&out, rows.view(), &[], &fig)?;
            if t.dim() == 2 {
                // Beside the curve, in its format: FILE.png → FILE-map.png, FILE.svg → FILE-map.svg.
                let ext = out.extension().map_or("png".into(), |e| e.to_string_lossy().to_string());
                let map = out.with_file_name(format!("{}-map.{ext}", out.file_stem().unwrap_or_default().to_string_lossy()));
                let diff = |x: ArrayView2<f64>, time: f64| -> Result<Array2<f64>> { Ok(velocity(&mlp, x, time)? - velocity(&flow, x, time)?) };
                let title = Some("Where the model is off: v − v*".to_string());
                let fig = fm_viz::FieldFigure { coords, title, colour_label: "|v − v*|".into(), ..Default::default() };
                fm_viz::field(&map, diff, Some(t), &fig)?;
                print_written(&[("figure", &out), ("map", &map)]);
                return Ok(());
            }
            eprintln!("note: no map of where the error sits: the target is {}-D, and the map is drawn for 2-D only", t.dim());
        }
        Kind::Density => {
            // An exact likelihood per grid point: a coarser grid and 20 RK4 steps keep this to
            // seconds, and the picture does not change at that scale.
            let lik = fm_train::eval::LikelihoodConfig { steps: 20, ..Default::default() };
            let log_q = |x: ArrayView2<f64>| -> Result<Array1<f64>> { Ok(fm_train::eval::model_log_prob(&mlp, source.as_ref(), x, &lik)?) };
            fm_viz::density(&out, log_q, Some(t), &fm_viz::DensityFigure { coords, resolution: args.points.unwrap_or(120), ..Default::default() })?;
        }
        Kind::Loss => unreachable!("handled above"),
    }
    print_written(&[("figure", &out)]);
    Ok(())
}

/// A field's velocity at `x` and time `t`, as an array.
fn velocity(field: &(impl VectorField + fm_train::HasDevice), x: ArrayView2<f64>, t: f64) -> Result<Array2<f64>> {
    let _guard = tch::no_grad_guard();
    let v = field.velocity(&array_to_tensor(x, field.device())?, t)?;
    Ok(tensor_to_array(&v)?)
}

/// The loss curve of a run's metrics.csv (its first column is the step, its second the loss;
/// further columns become further panels, each with the rows that have a value: evaluation
/// figures exist only at tracked steps).
fn plot_loss(metrics: &Path, out: &Path) -> Result<()> {
    let text = std::fs::read_to_string(metrics).with_context(|| format!("cannot read {} (written by fm train and fm run)", metrics.display()))?;
    let (names, table) = read_metrics(&text).map_err(|e| anyhow::anyhow!("{}: {e}", metrics.display()))?;
    // The floor is one level, drawn across the loss panel rather than as a panel of its own.
    let floor_col = names.iter().position(|n| n == "loss_floor");
    let floor = floor_col.and_then(|j| table.column(j).iter().copied().find(|v| v.is_finite()));
    let series: Vec<(&str, Array2<f64>)> = (2..table.ncols())
        .filter(|&j| Some(j) != floor_col)
        .map(|j| {
            let rows: Vec<[f64; 2]> = table.rows().into_iter().filter(|r| r[j].is_finite()).map(|r| [r[0], r[j]]).collect();
            (names[j].as_str(), Array2::from(rows))
        })
        .filter(|(_, a)| a.nrows() > 0)
        .collect();
    let extra: Vec<(&str, ArrayView2<f64>)> = series.iter().map(|(name, a)| (*name, a.view())).collect();
    fm_viz::loss(out, table.slice(s![.., 0..2]), &extra, &fm_viz::LossFigure { floor, ..Default::default() })?;
    Ok(())
}

/// A metrics.csv: its header's names, and its rows (an empty cell is NaN: no figure that step).
fn read_metrics(text: &str) -> Result<(Vec<String>, Array2<f64>)> {
    let mut lines = text.lines().enumerate().filter(|(_, l)| !l.trim().is_empty());
    let names: Vec<String> = lines.next().map(|(_, h)| h.split(',').map(|s| s.trim().to_string()).collect()).unwrap_or_default();
    anyhow::ensure!(names.len() >= 2 && names[0] == "step", "expected a header step,loss,…");
    let mut values = Vec::new();
    for (i, line) in lines {
        let cells: Vec<&str> = line.split(',').map(str::trim).collect();
        anyhow::ensure!(cells.len() == names.len(), "line {}: {} fields, the header has {}", i + 1, cells.len(), names.len());
        for (j, cell) in cells.iter().enumerate() {
            let v = if cell.is_empty() && j >= 2 { f64::NAN } else { cell.parse::<f64>().map_err(|_| anyhow::anyhow!("line {} field {}: '{cell}' is not a number", i + 1, j + 1))? };
            values.push(v);
        }
    }
    anyhow::ensure!(!values.is_empty(), "no rows yet");
    Ok((names.clone(), Array2::from_shape_vec((values.len() / names.len(), names.len()), values)?))
}

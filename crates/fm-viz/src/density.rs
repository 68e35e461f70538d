//! The model's log-density beside the target's, on one grid and one colour scale.

use crate::colour::viridis;
use crate::figure::{self, Area, ColourBar, DrawResult, Grid, Projection, Scene, Style};
use crate::{Error, Result};
use fm_dist::Target;
use ndarray::{Array1, ArrayView2};
use plotters::prelude::*;
use std::ops::Range;
use std::path::Path;

/// Settings of [`density`].
#[derive(Debug, Clone)]
pub struct DensityFigure {
    /// The figure's title; `None` is "Log-density: model vs target" (or "Model log-density").
    pub title: Option<String>,
    /// The model panel's title.
    pub model_title: String,
    /// The target panel's title; `None` is "Target: NAME".
    pub target_title: Option<String>,
    /// The x axis; `None` fits it to target samples (5% margin), or [-4, 4] without a target.
    pub x_range: Option<Range<f64>>,
    /// The y axis; `None` fits it like `x_range`.
    pub y_range: Option<Range<f64>>,
    /// The two coordinates drawn (0-based; named 1-based, "x1"). Beyond 2-D both densities
    /// are drawn on the plane of these two coordinates through `through` (a slice, not a
    /// marginal).
    pub coords: (usize, usize),
    /// The other coordinates of the drawn plane (`D` values; empty for the origin).
    pub through: Vec<f64>,
    /// The colour scale spans `[max - clip, max]` nats, `max` the highest log-density on the
    /// grid (of both panels); lower values get the lowest colour.
    pub clip: f64,
    /// Filled levels over that span (12 levels over 12 nats: one per nat).
    pub levels: usize,
    /// Grid cells along x.
    pub resolution: usize,
    /// Width of the whole figure in pixels (320 to 8192).
    pub width: u32,
    /// Height of the whole figure in pixels (200 to 8192).
    pub height: u32,
    /// Target samples used to fit the axes.
    pub target_samples: usize,
    /// Seed of the random generator drawing those target samples.
    pub rng_seed: u64,
}

impl Default for DensityFigure {
    fn default() -> Self {
        Self {
            title: None,
            model_title: "Model log q(x)".into(),
            target_title: None,
            x_range: None,
            y_range: None,
            coords: (0, 1),
            through: Vec::new(),
            clip: 12.0,
            levels: 12,
            resolution: 200,
            width: 1500,
            height: 640,
            target_samples: 2000,
            rng_seed: 0,
        }
    }
}

/// Draws the model's log-density beside the target's into `path`, on the same grid and the
/// same colour scale (filled levels of viridis, with a colour bar in nats); the model alone
/// when there is no target or it has no density.
///
/// `log_q(x)` gets the grid points `x` as an `[M, D]` array (`D` is the target's dimension, or
/// 2 without a target; beyond the drawn pair the coordinates are `fig.through`) and returns
/// the `M` log-densities; it is where a caller runs its model (e.g. the likelihood ODE). Its
/// error is returned as [`Error::Callback`]. `-∞` is allowed (drawn in the lowest colour),
/// NaN is an error.
///
/// PNG, or SVG when `path` ends in `.svg`; written atomically.
///
/// # Errors
/// [`Error::Callback`] when `log_q` fails; [`Error::Invalid`] for bad settings, a wrong count
/// of values, NaN or `+∞`, or `-∞` everywhere; [`Error::Font`]; [`Error::Dist`] when the
/// target's log-density or writing the file fails.
pub fn density<F, E>(path: &Path, log_q: F, target: Option<&dyn Target>, fig: &DensityFigure) -> Result<()>
where
    F: Fn(ArrayView2<f64>) -> std::result::Result<Array1<f64>, E>,
    E: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    figure::check_size("density", (fig.width, fig.height), (320, 200))?;
    let dim = target.map_or(2, |t| t.dim());
    let proj = Projection::new(fig.coords, dim)?;
    figure::check_through(&fig.through, dim)?;
    let settings_ok = fig.clip.is_finite() && fig.clip > 0.0 && (1..=256).contains(&fig.levels) && (2..=2048).contains(&fig.resolution);
    if !settings_ok {
        return Err(Error::Invalid(format!(
            "bad density settings: clip {} (> 0), levels {} (1–256), resolution {} (2–2048)",
            fig.clip, fig.levels, fig.resolution
        )));
    }
    let target_points = target.map(|tg| figure::target_points(tg, fig.target_samples, fig.rng_seed, &proj)).unwrap_or_default();
    let x_range = figure::axis("x", &fig.x_range, figure::fit(target_points.iter().map(|p| p.0)), -4.0..4.0)?;
    let y_range = figure::axis("y", &fig.y_range, figure::fit(target_points.iter().map(|p| p.1)), -4.0..4.0)?;

    let with_target = target.filter(|t| t.has_density());
    let panels = if with_target.is_some() { 2 } else { 1 };
    let st = Style::for_panel_height(fig.height);
    let panel_w = (fig.width.saturating_sub(figure::colour_bar_width(&st)) / panels).saturating_sub(st.px(90)).max(1) as f64;
    let panel_h = fig.height.saturating_sub(st.px(160)).max(1) as f64;
    let grid = Grid::new(x_range.clone(), y_range.clone(), fig.resolution, panel_h / panel_w);
    let points = proj.embed(&grid, &fig.through);

    let check = |what: &str, v: &Array1<f64>| -> Result<()> {
        if v.len() != grid.len() {
            return Err(Error::Invalid(format!("{what} returned {} values for {} points", v.len(), grid.len())));
        }
        match v.iter().position(|x| x.is_nan() || *x == f64::INFINITY) {
            Some(k) => Err(Error::Invalid(format!("{what} is {} at {:?}", v[k], grid.centre(k)))),
            None => Ok(()),
        }
    };
    let q = log_q(points.view()).map_err(|e| Error::Callback(e.into()))?;
    check("the model's log-density", &q)?;
    let mut values = vec![("model", q)];
    if let Some(tg) = with_target {
        let p = tg.log_prob(points.view())?;
        check("the target's log-density", &p)?;
        values.push(("target", p));
    }
    let max = values.iter().flat_map(|(_, v)| v.iter()).cloned().filter(|v| v.is_finite()).fold(f64::NEG_INFINITY, f64::max);
    if !max.is_finite() {
        return Err(Error::Invalid("the log-densities are -∞ everywhere on the grid; choose axes where the model has mass".into()));
    }
    let low = max - fig.clip;
    let n = fig.levels;
    let levels: Vec<Vec<Option<usize>>> = values
        .iter()
        .map(|(_, v)| v.iter().map(|&x| Some(if x > low { (((x - low) / fig.clip * n as f64).floor() as usize).min(n - 1) } else { 0 })).collect())
        .collect();

    let slice = match (proj.dim, &fig.through[..]) {
        (2, _) => String::new(),
        (_, []) => " on the plane through the origin".into(),
        _ => " on the plane through the given point".into(),
    };
    let default_title = if with_target.is_some() { "Log-density: model vs target" } else { "Model log-density" };
    let title = format!("{}{slice}", proj.titled(fig.title.as_deref().unwrap_or(default_title)));
    let mut captions = vec![fig.model_title.clone()];
    if let Some(tg) = with_target {
        captions.push(fig.target_title.clone().unwrap_or_else(|| format!("Target log p(x): {}", tg.name())));
    }
    let scene = DensityScene { st, proj, title, captions, x_range, y_range, grid, levels, range: low..max, n_levels: n };
    figure::write_figure(path, (fig.width, fig.height), &scene)
}

struct DensityScene {
    st: Style,
    proj: Projection,
    title: String,
    captions: Vec<String>,
    x_range: Range<f64>,
    y_range: Range<f64>,
    grid: Grid,
    levels: Vec<Vec<Option<usize>>>,
    range: Range<f64>,
    n_levels: usize,
}

impl Scene for DensityScene {
    fn draw<DB: DrawingBackend>(&self, root: &Area<DB>) -> DrawResult {
        let st = &self.st;
        let root = figure::titled(root, &self.title, st)?;
        let (body, bar) = root.split_horizontally(root.dim_in_pixel().0 - figure::colour_bar_width(st));
        let areas = body.split_evenly((1, self.levels.len()));
        let n = self.n_levels as f64;
        let colour = |l: usize| viridis((l as f64 + 0.5) / n);
        let mut plot = (0..0, 0..0);
        for ((area, level), caption) in areas.iter().zip(&self.levels).zip(&self.captions) {
            let mut chart = figure::panel(area, Some(caption), self.x_range.clone(), self.y_range.clone(), st)?;
            figure::draw_levels(&mut chart, &self.grid, level, &colour)?;
            figure::axes(&mut chart, &self.proj.x_name(), &self.proj.y_name(), st)?;
            plot = chart.plotting_area().get_pixel_range();
        }
        let format = |v: &f64| format!("{v:.1}");
        let ticks = (self.n_levels / 2 + 1).min(9);
        let bar_spec = ColourBar {
            range: self.range.clone(),
            colour: &viridis,
            levels: Some(self.n_levels),
            label: "log-density (nats)",
            ticks,
            format: &format,
            under: Some(format!("≤ {:.1}", self.range.start)),
        };
        figure::colour_bar(&bar, &plot, &bar_spec, st)
    }
}

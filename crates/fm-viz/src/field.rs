//! The learned velocity field as arrows, one panel per time, coloured by speed.

use crate::colour::plasma;
use crate::figure::{self, draw_err, Area, ColourBar, DrawResult, Grid, Projection, Scene, Style};
use crate::trajectories::num;
use crate::{Error, Result};
use fm_dist::Target;
use ndarray::{Array2, ArrayView2};
use plotters::prelude::*;
use std::ops::Range;
use std::path::Path;

/// Settings of [`field`].
#[derive(Debug, Clone)]
pub struct FieldFigure {
    /// The figure's title; `None` is "Velocity field".
    pub title: Option<String>,
    /// One panel per time, in this order.
    pub times: Vec<f64>,
    /// The x axis; `None` fits it to the source N(0, I)'s ±3 box and target samples (5% margin).
    pub x_range: Option<Range<f64>>,
    /// The y axis; `None` fits it like `x_range`.
    pub y_range: Option<Range<f64>>,
    /// The two coordinates drawn (0-based; named 1-based, "x1"). Beyond 2-D the field is
    /// drawn on the plane of these two coordinates through `through`.
    pub coords: (usize, usize),
    /// The other coordinates of the drawn plane (`D` values; empty for the origin).
    pub through: Vec<f64>,
    /// Arrows along x (along y as many as keep the grid about square).
    pub arrows: usize,
    /// Panels per row; 0 puts up to 5 in a row.
    pub columns: usize,
    /// The colour bar's label (what the arrows' colour and length measure): "speed |v|".
    pub colour_label: String,
    /// Width of the whole figure in pixels (320 to 8192).
    pub width: u32,
    /// Height of the whole figure in pixels (200 to 8192), shared by the rows of panels.
    pub height: u32,
    /// Target samples used to fit the axes.
    pub target_samples: usize,
    /// Seed of the random generator drawing those target samples.
    pub rng_seed: u64,
}

impl Default for FieldFigure {
    fn default() -> Self {
        Self {
            title: None,
            times: vec![0.0, 0.25, 0.5, 0.75, 1.0],
            x_range: None,
            y_range: None,
            coords: (0, 1),
            through: Vec::new(),
            arrows: 13,
            columns: 0,
            colour_label: "speed |v|".into(),
            width: 2200,
            height: 540,
            target_samples: 2000,
            rng_seed: 0,
        }
    }
}

/// Draws a velocity field into `path` as arrows on a grid, one panel per time of
/// `fig.times`, arrows coloured by speed with a shared colour bar (lengths share one scale
/// too: the 90th-percentile speed spans 0.8 grid cells, and faster arrows are capped at one
/// cell, so the colour tells their speed).
///
/// `velocity(x, t)` gets grid points `x` as an `[M, D]` array (`D` is the target's dimension,
/// or 2 without a target; beyond the drawn pair the coordinates are `fig.through`) and returns
/// the `[M, D]` velocities at time `t`; it is where a caller runs its model. Its error is
/// returned as [`Error::Callback`]. The target only sets `D` and helps fit the axes.
///
/// PNG, or SVG when `path` ends in `.svg`; written atomically.
///
/// # Errors
/// [`Error::Callback`] when `velocity` fails; [`Error::Invalid`] for bad settings or a
/// velocity of the wrong shape or not finite; [`Error::Font`]; [`Error::Dist`] when writing fails.
pub fn field<F, E>(path: &Path, velocity: F, target: Option<&dyn Target>, fig: &FieldFigure) -> Result<()>
where
    F: Fn(ArrayView2<f64>, f64) -> std::result::Result<Array2<f64>, E>,
    E: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let v = |x: ArrayView2<f64>, t: f64| velocity(x, t).map_err(Into::into);
    fields(path, &[("", &v)], target, fig)
}

/// Two velocity fields one above the other, on the same grid, times, axes, arrow lengths and
/// colour bar, so that they compare at a glance: `(name, velocity)` on the top row (e.g. a
/// trained model), `(reference_name, reference)` below (e.g. the exact field). Each panel is
/// titled with its row's name and its time; `fig.columns` is ignored (one column per time).
/// Otherwise as [`field`].
///
/// # Errors
/// As [`field`], for either field.
pub fn field_beside<F, G, E1, E2>(
    path: &Path,
    (name, velocity): (&str, F),
    (reference_name, reference): (&str, G),
    target: Option<&dyn Target>,
    fig: &FieldFigure,
) -> Result<()>
where
    F: Fn(ArrayView2<f64>, f64) -> std::result::Result<Array2<f64>, E1>,
    G: Fn(ArrayView2<f64>, f64) -> std::result::Result<Array2<f64>, E2>,
    E1: Into<Box<dyn std::error::Error + Send + Sync>>,
    E2: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let v = |x: ArrayView2<f64>, t: f64| velocity(x, t).map_err(Into::into);
    let r = |x: ArrayView2<f64>, t: f64| reference(x, t).map_err(Into::into);
    fields(path, &[(name, &v), (reference_name, &r)], target, fig)
}

type Callback<'a> = &'a dyn Fn(ArrayView2<f64>, f64) -> std::result::Result<Array2<f64>, Box<dyn std::error::Error + Send + Sync>>;

/// One row of panels per field (one field: `fig.columns` per row), all on one scale.
fn fields(path: &Path, fields: &[(&str, Callback<'_>)], target: Option<&dyn Target>, fig: &FieldFigure) -> Result<()> {
    figure::check_size("field", (fig.width, fig.height), (320, 200))?;
    let dim = target.map_or(2, |t| t.dim());
    let proj = Projection::new(fig.coords, dim)?;
    figure::check_through(&fig.through, dim)?;
    if fig.times.is_empty() || fig.times.len() > 64 || fig.times.iter().any(|t| !t.is_finite()) {
        return Err(Error::Invalid(format!("the field figure needs 1 to 64 finite times; got {:?}", fig.times)));
    }
    if !(2..=200).contains(&fig.arrows) {
        return Err(Error::Invalid(format!("{} arrows along x; use 2 to 200", fig.arrows)));
    }
    let target_points = target.map(|tg| figure::target_points(tg, fig.target_samples, fig.rng_seed, &proj)).unwrap_or_default();
    let xs = [-3.0, 3.0].into_iter().chain(target_points.iter().map(|p| p.0));
    let ys = [-3.0, 3.0].into_iter().chain(target_points.iter().map(|p| p.1));
    let x_range = figure::axis("x", &fig.x_range, figure::fit(xs), -1.0..1.0)?;
    let y_range = figure::axis("y", &fig.y_range, figure::fit(ys), -1.0..1.0)?;

    let n = fig.times.len() * fields.len();
    let cols = match (fields.len(), fig.columns) {
        (1, 0) => n.min(5),
        (1, c) => c.min(n),
        _ => fig.times.len(),
    };
    let rows = n.div_ceil(cols);
    let st = Style::for_panel_height(fig.height / rows as u32);
    let panel_w = (fig.width.saturating_sub(figure::colour_bar_width(&st)) / cols as u32).saturating_sub(st.px(90)).max(1) as f64;
    let panel_h = (fig.height.saturating_sub(st.px(50)) / rows as u32).saturating_sub(st.px(110)).max(1) as f64;
    let grid = Grid::new(x_range.clone(), y_range.clone(), fig.arrows, panel_h / panel_w);
    let points = proj.embed(&grid, &fig.through);

    let mut panels = Vec::with_capacity(n);
    let mut titles = Vec::with_capacity(n);
    for ((name, velocity), &t) in fields.iter().flat_map(|f| fig.times.iter().map(move |t| (f, t))) {
        titles.push(if name.is_empty() { format!("t = {}", num(t)) } else { format!("{name}, t = {}", num(t)) });
        let v = velocity(points.view(), t).map_err(Error::Callback)?;
        figure::check_output(&format!("the velocity at t = {}", num(t)), v.view(), grid.len(), dim)?;
        panels.push((0..grid.len()).map(|k| (v[[k, proj.i]], v[[k, proj.j]])).collect::<Vec<_>>());
    }
    let max_speed = panels.iter().flatten().map(|v| v.0.hypot(v.1)).fold(0.0, f64::max);
    let title = proj.titled(fig.title.as_deref().unwrap_or("Velocity field"));
    let title = match (&fig.through[..], proj.dim) {
        (_, 2) => title,
        ([], _) => format!("{title}, other coordinates 0"),
        _ => format!("{title}, other coordinates fixed"),
    };
    let scene = FieldScene { st, proj, title, x_range, y_range, grid, titles, panels, max_speed, colour_label: &fig.colour_label, cols, rows };
    figure::write_figure(path, (fig.width, fig.height), &scene)
}

struct FieldScene<'a> {
    st: Style,
    proj: Projection,
    title: String,
    x_range: Range<f64>,
    y_range: Range<f64>,
    grid: Grid,
    titles: Vec<String>,
    panels: Vec<Vec<(f64, f64)>>,
    max_speed: f64,
    colour_label: &'a str,
    cols: usize,
    rows: usize,
}

/// The speed range the colours span (a zero field still gets a valid bar).
fn speed_range(max: f64) -> Range<f64> {
    0.0..if max > 0.0 { max } else { 1.0 }
}

/// The part of "plasma" used: its lightest yellow is hard to see on white.
fn speed_colour(f: f64) -> RGBColor {
    plasma(0.88 * f)
}

impl Scene for FieldScene<'_> {
    fn draw<DB: DrawingBackend>(&self, root: &Area<DB>) -> DrawResult {
        let st = &self.st;
        let root = figure::titled(root, &self.title, st)?;
        let (body, bar) = root.split_horizontally(root.dim_in_pixel().0 - figure::colour_bar_width(st));
        let areas = body.split_evenly((self.rows, self.cols));
        let speeds = speed_range(self.max_speed);
        let (mut top, mut bottom) = (i32::MAX, i32::MIN);
        let mut arrows = Vec::new();
        for (k, (area, v)) in areas.iter().zip(&self.panels).enumerate() {
            let mut chart = figure::panel(area, Some(&self.titles[k]), self.x_range.clone(), self.y_range.clone(), st)?;
            figure::axes(&mut chart, &self.proj.x_name(), &self.proj.y_name(), st)?;
            let (px, py) = chart.plotting_area().get_pixel_range();
            top = top.min(py.start);
            bottom = bottom.max(py.end);
            // Pixels per data unit and the cell size in pixels; lengths share one scale across
            // panels: the 90th-percentile arrow spans 0.8 cells, none more than one cell.
            let sx = (px.end - px.start) as f64 / (self.x_range.end - self.x_range.start);
            let sy = (py.end - py.start) as f64 / (self.y_range.end - self.y_range.start);
            let cell = (self.grid.dx() * sx).min(self.grid.dy() * sy);
            let mut lengths: Vec<f64> = self.panels.iter().flatten().map(|v| (v.0 * sx).hypot(v.1 * sy)).collect();
            lengths.sort_by(f64::total_cmp);
            let typical = lengths[(lengths.len() * 9 / 10).min(lengths.len() - 1)];
            let scale = if typical > 0.0 { 0.8 * cell / typical } else { 0.0 };
            let head_max = st.px(8) as f64;
            arrows.clear();
            for (c, &(vx, vy)) in v.iter().enumerate() {
                let (bx, by) = chart.backend_coord(&self.grid.centre(c));
                let (mut ux, mut uy) = (vx * sx * scale, -vy * sy * scale);
                let len = ux.hypot(uy);
                if len > cell {
                    (ux, uy) = (ux * cell / len, uy * cell / len);
                }
                let colour = speed_colour((vx.hypot(vy) - speeds.start) / (speeds.end - speeds.start));
                arrows.push(((bx as f64, by as f64), (ux, uy), colour));
            }
            let screen = chart.plotting_area().use_screen_coord();
            for &((bx, by), (ux, uy), colour) in &arrows {
                let len = ux.hypot(uy);
                if len < 1.5 {
                    screen.draw(&Circle::new((bx.round() as i32, by.round() as i32), 1, colour.filled())).map_err(draw_err)?;
                    continue;
                }
                // Centred on the grid point (matplotlib's pivot="middle"), so arrows stay inside.
                let (tail, tip) = ((bx - ux / 2.0, by - uy / 2.0), (bx + ux / 2.0, by + uy / 2.0));
                let head = (0.35 * len).clamp(3.0_f64.min(len), head_max);
                let shaft = if st.px(10) >= 14 { 2 } else { 1 };
                let (dx, dy) = (ux / len, uy / len);
                let base = (tip.0 - dx * head, tip.1 - dy * head);
                let half = 0.45 * head;
                let p = |x: f64, y: f64| (x.round() as i32, y.round() as i32);
                screen.draw(&PathElement::new(vec![p(tail.0, tail.1), p(base.0, base.1)], colour.stroke_width(shaft))).map_err(draw_err)?;
                screen
                    .draw(&Polygon::new(
                        vec![p(tip.0, tip.1), p(base.0 - dy * half, base.1 + dx * half), p(base.0 + dy * half, base.1 - dx * half)],
                        colour.filled(),
                    ))
                    .map_err(draw_err)?;
            }
        }
        let plot = (0..0, top..bottom);
        let format = figure::tick_format(&speeds);
        figure::colour_bar(
            &bar,
            &plot,
            &ColourBar { range: speeds.clone(), colour: &speed_colour, levels: None, label: self.colour_label, ticks: 6, format: &format, under: None },
            st,
        )
    }
}

//! Particles' paths from the source to the target, coloured by time, over the target.

use crate::colour::viridis;
use crate::figure::{self, draw_err, Area, Backdrop, ColourBar, DrawResult, Grid, Projection, Scene, Style};
use crate::Result;
use fm_dist::Target;
use ndarray::ArrayView3;
use plotters::prelude::*;
use std::ops::Range;
use std::path::Path;

/// Settings of [`trajectories`].
#[derive(Debug, Clone)]
pub struct TrajectoryFigure {
    /// The figure's title; `None` says how many paths are drawn over which times.
    pub title: Option<String>,
    /// The x axis; `None` fits it to all states and to target samples (5% margin).
    pub x_range: Option<Range<f64>>,
    /// The y axis; `None` fits it like `x_range`.
    pub y_range: Option<Range<f64>>,
    /// The two coordinates drawn (0-based; axes and title name them 1-based, "x1").
    pub coords: (usize, usize),
    /// Width of the whole figure in pixels (320 to 8192).
    pub width: u32,
    /// Height of the whole figure in pixels (240 to 8192).
    pub height: u32,
    /// At most this many paths are drawn (evenly spaced among the particles).
    pub max_paths: usize,
    /// Width of the path lines in pixels.
    pub line_width: u32,
    /// Opacity of the path lines (0–1): overlapping paths stay distinguishable.
    pub opacity: f64,
    /// Filled levels of the target's density under the paths.
    pub levels: usize,
    /// Density grid cells along x.
    pub resolution: usize,
    /// Target samples used to fit the axes, and drawn (lightly) where the target has no
    /// density or the data is more than 2-D.
    pub target_samples: usize,
    /// Seed of the random generator drawing those target samples.
    pub rng_seed: u64,
    /// The class of each particle (a conditional model's): paths are then coloured by class
    /// (tab10) instead of by time, with a legend. `None`: by time.
    pub labels: Option<Vec<usize>>,
}

impl Default for TrajectoryFigure {
    fn default() -> Self {
        Self {
            title: None,
            x_range: None,
            y_range: None,
            coords: (0, 1),
            width: 1100,
            height: 900,
            max_paths: 300,
            line_width: 1,
            opacity: 0.6,
            levels: 10,
            resolution: 220,
            target_samples: 3000,
            rng_seed: 0,
            labels: None,
        }
    }
}

/// Draws particles' paths into `path`: `states` is `[T, N, D]`, the states of `N` particles
/// at the `T` strictly increasing `times` (usually from t = 0 to t = 1). Each path's
/// segments are coloured by time (viridis, with a colour bar), start and end points are
/// marked, over the target's density in filled levels (2-D targets with a density) or a light
/// scatter of its samples (otherwise); `target` may be `None`.
///
/// PNG, or SVG when `path` ends in `.svg`; written atomically.
///
/// # Errors
/// [`crate::Error::Invalid`] for bad states, times or settings, or a target of another
/// dimension; [`crate::Error::Font`]; [`crate::Error::Dist`] when the target's log-density or
/// writing the file fails.
pub fn trajectories(path: &Path, states: ArrayView3<f64>, times: &[f64], target: Option<&dyn Target>, fig: &TrajectoryFigure) -> Result<()> {
    figure::check_size("trajectory", (fig.width, fig.height), (320, 240))?;
    figure::check_states(&states, times)?;
    let (t, n, d) = states.dim();
    figure::check_target(target, d)?;
    let proj = Projection::new(fig.coords, d)?;
    if fig.max_paths == 0 || fig.line_width == 0 || !(fig.opacity > 0.0 && fig.opacity <= 1.0) || fig.levels == 0 || !(2..=2048).contains(&fig.resolution) {
        return Err(crate::Error::Invalid(format!(
            "bad trajectory settings: max_paths {}, line_width {}, opacity {}, levels {}, resolution {} (2–2048)",
            fig.max_paths, fig.line_width, fig.opacity, fig.levels, fig.resolution
        )));
    }
    if fig.labels.as_ref().is_some_and(|l| l.len() != n) {
        return Err(crate::Error::Invalid(format!("{} labels for {n} paths", fig.labels.as_ref().map_or(0, Vec::len))));
    }
    let drawn: Vec<usize> = if n <= fig.max_paths { (0..n).collect() } else { (0..fig.max_paths).map(|k| k * n / fig.max_paths).collect() };
    let classes: Option<Vec<usize>> = fig.labels.as_ref().map(|l| drawn.iter().map(|&p| l[p]).collect());
    let paths: Vec<Vec<(f64, f64)>> = drawn.iter().map(|&p| (0..t).map(|k| (states[[k, p, proj.i]], states[[k, p, proj.j]])).collect()).collect();

    let target_points = target.map(|tg| figure::target_points(tg, fig.target_samples, fig.rng_seed, &proj)).unwrap_or_default();
    let (x_range, y_range) = figure::fit_paths(states, &target_points, &proj, &fig.x_range, &fig.y_range)?;

    let st = Style::for_panel_height(fig.height);
    let plot_w = fig.width.saturating_sub(figure::colour_bar_width(&st) + st.px(90)).max(1) as f64;
    let plot_h = fig.height.saturating_sub(st.px(150)).max(1) as f64;
    let backdrop = match target {
        Some(tg) => figure::backdrop(tg, &proj, Grid::new(x_range.clone(), y_range.clone(), fig.resolution, plot_h / plot_w), fig.levels, target_points)?,
        None => Backdrop::None,
    };
    let (t0, t1) = (times[0], times[t - 1]);
    let title = fig.title.clone().unwrap_or_else(|| {
        let what = if drawn.len() < n { format!("{} of {n} paths", drawn.len()) } else { format!("{n} paths") };
        let to = target.map(|tg| format!(" to {}", tg.name())).unwrap_or_default();
        format!("Flow{to}: {what}, t = {} → {}", num(t0), num(t1))
    });
    let scene =
        TrajectoryScene { fig, st, proj, title: proj.titled(&title), x_range, y_range, times, paths, classes, backdrop, target_shown: target.is_some() };
    figure::write_figure(path, (fig.width, fig.height), &scene)
}

/// A time for a title: "0", "0.25", "1".
pub(crate) fn num(v: f64) -> String {
    let s = format!("{v:.3}");
    let s = s.trim_end_matches('0').trim_end_matches('.');
    if s == "-0" {
        "0".into()
    } else {
        s.into()
    }
}

struct TrajectoryScene<'a> {
    fig: &'a TrajectoryFigure,
    st: Style,
    proj: Projection,
    title: String,
    x_range: Range<f64>,
    y_range: Range<f64>,
    times: &'a [f64],
    paths: Vec<Vec<(f64, f64)>>,
    /// Each drawn path's class, when coloured by class.
    classes: Option<Vec<usize>>,
    backdrop: Backdrop,
    target_shown: bool,
}

/// A one-line legend of markers drawn in pixels, centred in `area`.
pub(crate) fn marker_legend<DB: DrawingBackend>(area: &Area<DB>, entries: &[(&str, ShapeStyle, ShapeStyle)], st: &Style) -> DrawResult {
    let font = st.label();
    let gap = st.px(34) as i32;
    let r = st.px(5) as i32;
    let widths: Vec<i32> = entries
        .iter()
        .map(|(text, ..)| area.estimate_text_size(text, &font.into_text_style(area)).map(|s| s.0 as i32).map_err(draw_err))
        .collect::<DrawResult<_>>()?;
    let total: i32 = widths.iter().map(|w| w + 3 * r).sum::<i32>() + gap * (entries.len() as i32 - 1);
    let (w, h) = area.dim_in_pixel();
    let (mut x, y) = ((w as i32 - total) / 2, h as i32 / 2);
    for ((text, fill, edge), tw) in entries.iter().zip(widths) {
        area.draw(&Circle::new((x + r, y), r, *fill)).map_err(draw_err)?;
        area.draw(&Circle::new((x + r, y), r, *edge)).map_err(draw_err)?;
        area.draw(&Text::new(
            text.to_string(),
            (x + 3 * r, y),
            font.into_text_style(area)
                .pos(plotters::style::text_anchor::Pos::new(plotters::style::text_anchor::HPos::Left, plotters::style::text_anchor::VPos::Center)),
        ))
        .map_err(draw_err)?;
        x += tw + 3 * r + gap;
    }
    Ok(())
}

impl Scene for TrajectoryScene<'_> {
    fn draw<DB: DrawingBackend>(&self, root: &Area<DB>) -> DrawResult {
        let (fig, st) = (self.fig, &self.st);
        let root = figure::titled(root, &self.title, st)?;
        let (legend, body) = root.split_vertically(st.px(30));
        let (main, bar) = body.split_horizontally(body.dim_in_pixel().0 - figure::colour_bar_width(st));
        let mut chart = figure::panel(&main, None, self.x_range.clone(), self.y_range.clone(), st)?;
        self.backdrop.draw(&mut chart, 1)?;

        // Segments in time order, so later times lie on top; each clipped to the axes.
        let (t0, t1) = (self.times[0], self.times[self.times.len() - 1]);
        let frac = |t: f64| (t - t0) / (t1 - t0);
        let (x, y) = (&self.x_range, &self.y_range);
        for k in 0..self.times.len() - 1 {
            let colour = viridis(frac(0.5 * (self.times[k] + self.times[k + 1])));
            let style = |i: usize| {
                let c = self.classes.as_ref().map_or(colour, |l| crate::colour::category(l[i]));
                c.mix(fig.opacity).stroke_width(fig.line_width)
            };
            chart
                .draw_series(
                    self.paths
                        .iter()
                        .enumerate()
                        .filter_map(|(i, p)| figure::clip_segment(p[k], p[k + 1], x, y).map(|s| (i, s)))
                        .map(|(i, (a, b))| PathElement::new(vec![a, b], style(i))),
                )
                .map_err(draw_err)?;
        }
        let r = st.px(2);
        let start = (viridis(0.0).mix(0.9).filled(), viridis(0.0).mix(0.9).stroke_width(1));
        let end = (viridis(1.0).filled(), BLACK.mix(0.7).stroke_width(1));
        for (k, (fill, edge)) in [(0, start), (self.times.len() - 1, end)] {
            let pts: Vec<(f64, f64)> = self.paths.iter().map(|p| p[k]).filter(|p| figure::inside(*p, x, y)).collect();
            chart.draw_series(pts.iter().map(|&p| Circle::new(p, r, fill))).map_err(draw_err)?;
            chart.draw_series(pts.iter().map(|&p| Circle::new(p, r, edge))).map_err(draw_err)?;
        }
        figure::axes(&mut chart, &self.proj.x_name(), &self.proj.y_name(), st)?;

        let start_label = format!("start (t = {})", num(t0));
        let end_label = format!("end (t = {})", num(t1));
        let mut entries = vec![(start_label.as_str(), start.0, start.1), (end_label.as_str(), end.0, end.1)];
        let backdrop_label = match &self.backdrop {
            Backdrop::Density { .. } => Some(("target density (shaded)", crate::colour::blues(0.45).filled())),
            Backdrop::Samples(_) if self.target_shown => Some(("target samples", RGBColor(90, 120, 170).mix(0.5).filled())),
            _ => None,
        };
        if let Some((label, fill)) = backdrop_label {
            entries.push((label, fill, TRANSPARENT.stroke_width(0)));
        }
        let mut present = self.classes.clone().unwrap_or_default();
        present.sort_unstable();
        present.dedup();
        // One entry per class while they fit on the legend's line; beyond, one for all.
        let class_labels: Vec<(usize, String)> = match present.len() {
            0 => Vec::new(),
            1..=4 => present.into_iter().map(|c| (c, format!("class {c}"))).collect(),
            k => vec![(present[0], format!("{k} classes (tab10 colours)"))],
        };
        for (c, label) in &class_labels {
            let colour = crate::colour::category(*c);
            entries.push((label.as_str(), colour.filled(), colour.stroke_width(1)));
        }
        marker_legend(&legend, &entries, st)?;
        if self.classes.is_some() {
            return Ok(()); // coloured by class: no time colour bar
        }

        let plot = chart.plotting_area().get_pixel_range();
        let format = figure::tick_format(&(t0..t1));
        figure::colour_bar(
            &bar,
            &plot,
            &ColourBar { range: t0..t1, colour: &viridis, levels: None, label: "time t", ticks: 6, format: &format, under: None },
            st,
        )
    }
}

//! An animated GIF of samples flowing from the source to the target.

use crate::figure::{self, draw_err, Area, Backdrop, DrawResult, Grid, Projection, Style};
use crate::{Error, Result};
use fm_dist::Target;
use ndarray::ArrayView3;
use plotters::prelude::*;
use std::ops::Range;
use std::path::Path;

/// Settings of [`animation`].
#[derive(Debug, Clone)]
pub struct AnimationFigure {
    /// The frames' title, followed by ", t = …"; `None` names the target.
    pub title: Option<String>,
    /// The x axis, fixed over all frames; `None` fits it to all states and target samples.
    pub x_range: Option<Range<f64>>,
    /// The y axis; `None` fits it like `x_range`.
    pub y_range: Option<Range<f64>>,
    /// The two coordinates drawn (0-based; named 1-based, "x1").
    pub coords: (usize, usize),
    /// Width of each frame in pixels (240 to 4096).
    pub width: u32,
    /// Height of each frame in pixels (200 to 4096).
    pub height: u32,
    /// Time each frame shows, in milliseconds (GIF counts hundredths of a second; 20 to 10 000).
    pub frame_delay_ms: u32,
    /// Extra copies of the last frame, so the animation rests on the result before it loops.
    pub hold_frames: usize,
    /// At most this many time steps become frames (evenly spaced, first and last kept).
    pub max_frames: usize,
    /// At most this many particles are drawn (evenly spaced among them).
    pub max_points: usize,
    /// Radius of the sample points in pixels.
    pub point_size: u32,
    /// Filled levels of the target's density under the samples.
    pub levels: usize,
    /// Density grid cells along x.
    pub resolution: usize,
    /// Target samples used to fit the axes, and drawn lightly where the target has no density
    /// or the data is more than 2-D.
    pub target_samples: usize,
    /// Seed of the random generator drawing those target samples.
    pub rng_seed: u64,
}

impl Default for AnimationFigure {
    fn default() -> Self {
        Self {
            title: None,
            x_range: None,
            y_range: None,
            coords: (0, 1),
            width: 720,
            height: 640,
            frame_delay_ms: 80,
            hold_frames: 15,
            max_frames: 120,
            max_points: 3000,
            point_size: 2,
            levels: 10,
            resolution: 160,
            target_samples: 2000,
            rng_seed: 0,
        }
    }
}

/// Writes an animated GIF of samples flowing over time into `path`: `states` is `[T, N, D]`,
/// the states of `N` particles at the `T` strictly increasing `times`; one frame per time (at
/// most `max_frames`), on axes fixed over all frames, each titled with its time, over the
/// target's density (or a light scatter of its samples; `target` may be `None`).
///
/// Always a GIF (a path ending in `.svg` is an error); written atomically.
///
/// # Errors
/// [`Error::Invalid`] for an `.svg` path, bad states, times or settings, or a target of another
/// dimension; [`Error::Font`] without a usable font; [`Error::Dist`] when the target's
/// log-density or writing the file fails.
pub fn animation(path: &Path, states: ArrayView3<f64>, times: &[f64], target: Option<&dyn Target>, fig: &AnimationFigure) -> Result<()> {
    if figure::is_svg(path) {
        return Err(Error::Invalid("animations are GIF files; SVG cannot hold one".into()));
    }
    figure::check_size("animation", (fig.width, fig.height), (240, 200))?;
    if fig.width > 4096 || fig.height > 4096 {
        return Err(Error::Invalid(format!("the animation is {}×{} px; GIF frames here are at most 4096×4096", fig.width, fig.height)));
    }
    figure::check_states(&states, times)?;
    let (t, n, d) = states.dim();
    figure::check_target(target, d)?;
    let proj = Projection::new(fig.coords, d)?;
    if !(20..=10_000).contains(&fig.frame_delay_ms)
        || fig.max_frames < 2
        || fig.max_points == 0
        || fig.point_size == 0
        || fig.levels == 0
        || !(2..=2048).contains(&fig.resolution)
        || fig.hold_frames > 1000
    {
        return Err(Error::Invalid(format!(
            "bad animation settings: frame_delay_ms {} (20–10000), max_frames {} (≥ 2), max_points {}, point_size {}, levels {}, resolution {} (2–2048), hold_frames {} (≤ 1000)",
            fig.frame_delay_ms, fig.max_frames, fig.max_points, fig.point_size, fig.levels, fig.resolution, fig.hold_frames
        )));
    }
    let frames: Vec<usize> = if t <= fig.max_frames { (0..t).collect() } else { (0..fig.max_frames).map(|k| k * (t - 1) / (fig.max_frames - 1)).collect() };
    let particles: Vec<usize> = if n <= fig.max_points { (0..n).collect() } else { (0..fig.max_points).map(|k| k * n / fig.max_points).collect() };

    let target_points = target.map(|tg| figure::target_points(tg, fig.target_samples, fig.rng_seed, &proj)).unwrap_or_default();
    let (x_range, y_range) = figure::fit_paths(states, &target_points, &proj, &fig.x_range, &fig.y_range)?;
    let st = Style::for_panel_height(fig.height);
    let aspect = fig.height.saturating_sub(st.px(130)).max(1) as f64 / fig.width.saturating_sub(st.px(100)).max(1) as f64;
    let backdrop = match target {
        Some(tg) => figure::backdrop(tg, &proj, Grid::new(x_range.clone(), y_range.clone(), fig.resolution, aspect), fig.levels, target_points)?,
        None => Backdrop::None,
    };
    let title = proj.titled(&fig.title.clone().unwrap_or_else(|| match target {
        Some(tg) => format!("Samples flowing to {}", tg.name()),
        None => "Samples flowing".into(),
    }));

    fm_dist::io::replace_atomically(path, |tmp| -> DrawResult {
        let root = BitMapBackend::gif(tmp, (fig.width, fig.height), fig.frame_delay_ms).map_err(|e| format!("cannot start the GIF: {e}"))?.into_drawing_area();
        let last = frames.len() - 1;
        for (f, &k) in frames.iter().chain(std::iter::repeat_n(&frames[last], fig.hold_frames)).enumerate() {
            root.fill(&WHITE).map_err(draw_err)?;
            let points: Vec<(f64, f64)> = particles.iter().map(|&p| (states[[k, p, proj.i]], states[[k, p, proj.j]])).collect();
            draw_frame(&root, &st, &format!("{title}, t = {}", num_fixed(times[k], times)), &x_range, &y_range, &proj, &backdrop, &points, fig.point_size)?;
            root.present().map_err(|e| format!("frame {f}: {}", draw_err(e)))?;
        }
        Ok(())
    })?;
    Ok(())
}

/// The time with as many decimals as the time steps need, so titles don't jitter.
fn num_fixed(t: f64, times: &[f64]) -> String {
    let step = times.windows(2).map(|w| w[1] - w[0]).fold(f64::INFINITY, f64::min);
    let decimals = if step >= 1.0 { 0 } else { ((-step.log10()).ceil() as usize).clamp(1, 4) };
    format!("{t:.decimals$}")
}

#[allow(clippy::too_many_arguments)]
fn draw_frame<DB: DrawingBackend>(
    root: &Area<DB>,
    st: &Style,
    title: &str,
    x: &Range<f64>,
    y: &Range<f64>,
    proj: &Projection,
    backdrop: &Backdrop,
    points: &[(f64, f64)],
    r: u32,
) -> DrawResult {
    let area = figure::titled(root, title, st)?;
    let mut chart = figure::panel(&area, None, x.clone(), y.clone(), st)?;
    backdrop.draw(&mut chart, 1)?;
    let style = RGBColor(255, 140, 0).mix(0.7).filled();
    chart.draw_series(points.iter().filter(|p| figure::inside(**p, x, y)).map(|&p| Circle::new(p, r, style))).map_err(draw_err)?;
    figure::axes(&mut chart, &proj.x_name(), &proj.y_name(), st)
}

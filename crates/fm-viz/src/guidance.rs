//! Classifier-free guidance in one figure: one class's samples at several guidance scales,
//! side by side over the target.

use crate::figure::{self, draw_err, Area, Backdrop, DrawResult, Grid, Projection, Scene, Style};
use crate::{Error, Result};
use fm_dist::Target;
use ndarray::ArrayView2;
use plotters::prelude::*;
use std::ops::Range;
use std::path::Path;

/// Settings of [`guidance`].
#[derive(Debug, Clone)]
pub struct GuidanceFigure {
    /// The figure's title; `None`: "Classifier-free guidance: class C of TARGET".
    pub title: Option<String>,
    /// Height of the figure in pixels (each panel is about square; 200 to 8192).
    pub height: u32,
    /// Filled density levels of the backdrop.
    pub levels: usize,
    /// Target samples drawn where the target has no density.
    pub target_samples: usize,
}

impl Default for GuidanceFigure {
    fn default() -> Self {
        Self { title: None, height: 520, levels: 10, target_samples: 3000 }
    }
}

/// Draws class `class`'s samples at each guidance scale `w` of `panels` (`(w, [N, 2] samples)`),
/// one panel per scale on shared axes, over the target's density (or its samples). PNG, or SVG
/// when `path` ends in `.svg`; written atomically.
///
/// # Errors
/// [`Error::Invalid`] for no panels, samples that are not 2-D like the target or not finite,
/// or bad settings; [`Error::Font`]; [`Error::Dist`] when the density or the write fails.
pub fn guidance(path: &Path, target: &dyn Target, class: usize, panels: &[(f64, ArrayView2<f64>)], fig: &GuidanceFigure) -> Result<()> {
    crate::font::ensure()?;
    let proj = Projection::new((0, 1), target.dim())?;
    if panels.is_empty() || target.dim() != 2 || panels.iter().any(|(_, x)| x.ncols() != 2) {
        return Err(Error::Invalid("a guidance figure needs at least one panel of 2-D samples of a 2-D target".into()));
    }
    if panels.iter().any(|(w, x)| !w.is_finite() || x.iter().any(|v| !v.is_finite())) {
        return Err(Error::Invalid("a guidance scale or a sample is not finite".into()));
    }
    let width = fig.height.saturating_mul(panels.len() as u32).saturating_mul(9) / 10 + 40;
    figure::check_size("guidance", (width, fig.height), (200, 200))?;
    if fig.levels == 0 {
        return Err(Error::Invalid("levels must be at least 1".into()));
    }
    let target_points = figure::target_points(target, fig.target_samples, 0, &proj);
    let points: Vec<Vec<(f64, f64)>> = panels.iter().map(|(_, x)| x.rows().into_iter().map(|r| proj.pick(r)).collect()).collect();
    let all = || points.iter().flatten().chain(&target_points);
    let x_range = figure::axis("x", &None, figure::fit(all().map(|p| p.0)), -1.0..1.0)?;
    let y_range = figure::axis("y", &None, figure::fit(all().map(|p| p.1)), -1.0..1.0)?;
    let backdrop = figure::backdrop(target, &proj, Grid::new(x_range.clone(), y_range.clone(), 160, 1.0), fig.levels, target_points)?;
    let title = fig.title.clone().unwrap_or_else(|| format!("Classifier-free guidance: class {class} of {}", target.name()));
    let scene =
        GuidanceScene { st: Style::for_panel_height(fig.height), title, scales: panels.iter().map(|p| p.0).collect(), points, x_range, y_range, backdrop };
    figure::write_figure(path, (width, fig.height), &scene)
}

struct GuidanceScene {
    st: Style,
    title: String,
    scales: Vec<f64>,
    points: Vec<Vec<(f64, f64)>>,
    x_range: Range<f64>,
    y_range: Range<f64>,
    backdrop: Backdrop,
}

impl Scene for GuidanceScene {
    fn draw<DB: DrawingBackend>(&self, root: &Area<DB>) -> DrawResult {
        let st = &self.st;
        let root = figure::titled(root, &self.title, st)?;
        // Orange over the blue density, as the compare figure's samples.
        let colour = RGBColor(255, 140, 0);
        for (area, (w, points)) in root.split_evenly((1, self.scales.len())).iter().zip(self.scales.iter().zip(&self.points)) {
            let caption = if *w == 1.0 {
                "w = 1 (conditional)".to_string()
            } else if *w == 0.0 {
                "w = 0 (unconditional)".to_string()
            } else {
                format!("w = {w}")
            };
            let mut chart = figure::panel(area, Some(&caption), self.x_range.clone(), self.y_range.clone(), st)?;
            self.backdrop.draw(&mut chart, 1)?;
            let (x, y) = (&self.x_range, &self.y_range);
            chart.draw_series(points.iter().filter(|p| figure::inside(**p, x, y)).map(|&p| Circle::new(p, 1, colour.mix(0.5).filled()))).map_err(draw_err)?;
            figure::axes(&mut chart, "x1", "x2", st)?;
        }
        Ok(())
    }
}

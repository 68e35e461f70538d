//! The seed's figure: the target's density beside generated samples, on the same axes.

use crate::{colour::blues, font, Error, Result};
use fm_dist::Target;
use ndarray::{Array2, ArrayView2};
use plotters::prelude::*;
use std::ops::Range;
use std::path::Path;

/// Settings of [`compare`]; `Default` is the seed's figure.
#[derive(Debug, Clone)]
pub struct CompareFigure {
    pub x_range: Range<f64>,
    pub y_range: Range<f64>,
    /// Size in pixels.
    pub width: u32,
    pub height: u32,
    /// Number of filled density levels (as in matplotlib's `contourf`).
    pub levels: usize,
    /// Density grid cells along x (y follows the aspect of the axes).
    pub resolution: usize,
    pub target_title: String,
    pub samples_title: String,
}

impl Default for CompareFigure {
    fn default() -> Self {
        Self {
            x_range: -6.0..8.0,
            y_range: -5.0..6.0,
            width: 1800,
            height: 760,
            levels: 10,
            resolution: 280,
            target_title: "Target Gaussian Mixture Distribution".into(),
            samples_title: "Generated Samples (Flow Match)".into(),
        }
    }
}

fn draw_err<E: std::error::Error + Send + Sync>(e: DrawingAreaErrorKind<E>) -> String {
    format!("drawing failed: {e}")
}

type Chart<'a, 'b> = ChartContext<'a, BitMapBackend<'b>, Cartesian2d<plotters::coord::types::RangedCoordf64, plotters::coord::types::RangedCoordf64>>;

/// A titled panel with room for axis labels, spanning the figure's axes.
fn chart<'a, 'b>(area: &'a DrawingArea<BitMapBackend<'b>, plotters::coord::Shift>, title: &str, fig: &CompareFigure) -> std::result::Result<Chart<'a, 'b>, String> {
    ChartBuilder::on(area)
        .caption(title, (font::FAMILY, 26))
        .margin(16)
        .x_label_area_size(50)
        .y_label_area_size(56)
        .build_cartesian_2d(fig.x_range.clone(), fig.y_range.clone())
        .map_err(draw_err)
}

/// Draws the figure into `path` (PNG; written atomically).
pub fn compare(path: &Path, target: &dyn Target, samples: ArrayView2<f64>, fig: &CompareFigure) -> Result<()> {
    font::ensure()?;
    if target.dim() != 2 || samples.ncols() != 2 {
        return Err(Error::Invalid(format!("the compare figure draws 2-D data; target is {}-D, samples {}-D", target.dim(), samples.ncols())));
    }
    let valid = |r: &Range<f64>| r.start.is_finite() && r.end.is_finite() && r.start < r.end;
    if !valid(&fig.x_range) || !valid(&fig.y_range) || fig.width < 200 || fig.height < 150 || fig.levels == 0 || fig.resolution < 2 {
        return Err(Error::Invalid(format!("bad axes or size: x {:?}, y {:?}, {}×{} px", fig.x_range, fig.y_range, fig.width, fig.height)));
    }
    // Density on the cell centres of a grid over the axes.
    let nx = fig.resolution;
    let ny = ((nx as f64) * (fig.y_range.end - fig.y_range.start) / (fig.x_range.end - fig.x_range.start)).ceil().max(2.0) as usize;
    let (dx, dy) = ((fig.x_range.end - fig.x_range.start) / nx as f64, (fig.y_range.end - fig.y_range.start) / ny as f64);
    let centres = Array2::from_shape_fn((nx * ny, 2), |(k, c)| {
        if c == 0 {
            fig.x_range.start + (k % nx) as f64 * dx + dx / 2.0
        } else {
            fig.y_range.start + (k / nx) as f64 * dy + dy / 2.0
        }
    });
    let density = target.log_prob(centres.view())?.mapv(f64::exp);
    let max = density.iter().cloned().fold(0.0, f64::max).max(f64::MIN_POSITIVE);
    let level_of = |p: f64| ((p / max * fig.levels as f64).floor() as usize).min(fig.levels - 1);
    let level_colour = |l: usize| blues((l as f64 + 0.5) / fig.levels as f64);

    fm_dist::io::replace_atomically(path, |tmp| -> std::result::Result<(), String> {
        let root = BitMapBackend::new(tmp, (fig.width, fig.height)).into_drawing_area();
        root.fill(&WHITE).map_err(draw_err)?;
        let w = fig.width as i32;
        let (left, rest) = root.split_horizontally(w * 45 / 100);
        let (bar, right) = rest.split_horizontally(w * 9 / 100);
        let mut left_chart = chart(&left, &fig.target_title, fig)?;
        left_chart.plotting_area().draw(&Rectangle::new([(fig.x_range.start, fig.y_range.start), (fig.x_range.end, fig.y_range.end)], level_colour(0).filled())).map_err(draw_err)?;
        left_chart
            .draw_series(density.iter().enumerate().filter(|(_, &p)| level_of(p) > 0).map(|(k, &p)| {
                let (x, y) = (centres[[k, 0]] - dx / 2.0, centres[[k, 1]] - dy / 2.0);
                Rectangle::new([(x, y), (x + dx, y + dy)], level_colour(level_of(p)).filled())
            }))
            .map_err(draw_err)?;
        left_chart.configure_mesh().disable_mesh().x_desc("x1").y_desc("x2").label_style((font::FAMILY, 18)).axis_desc_style((font::FAMILY, 20)).draw().map_err(draw_err)?;

        // Colour bar: one box per level, labelled with the density at its lower edge.
        let mut bar_chart = ChartBuilder::on(&bar)
            .margin_top(58)
            .margin_bottom(66)
            .margin_left(8)
            .margin_right(48)
            .y_label_area_size(0)
            .right_y_label_area_size(56)
            .build_cartesian_2d(0.0..1.0, 0.0..max)
            .map_err(draw_err)?;
        bar_chart
            .draw_series((0..fig.levels).map(|l| {
                let lo = max * l as f64 / fig.levels as f64;
                Rectangle::new([(0.0, lo), (1.0, lo + max / fig.levels as f64)], level_colour(l).filled())
            }))
            .map_err(draw_err)?;
        bar_chart
            .configure_mesh()
            .disable_mesh()
            .disable_x_axis()
            .y_labels(fig.levels / 2 + 1)
            .y_label_formatter(&|v| format!("{v:.3}"))
            .y_desc("density")
            .label_style((font::FAMILY, 16))
            .axis_desc_style((font::FAMILY, 18))
            .draw()
            .map_err(draw_err)?;

        let mut right_chart = chart(&right, &fig.samples_title, fig)?;
        right_chart.configure_mesh().disable_mesh().x_desc("x1").y_desc("x2").label_style((font::FAMILY, 18)).axis_desc_style((font::FAMILY, 20)).draw().map_err(draw_err)?;
        let orange = RGBColor(255, 140, 0).mix(0.6).filled();
        right_chart
            .draw_series(
                samples
                    .rows()
                    .into_iter()
                    .filter(|r| fig.x_range.contains(&r[0]) && fig.y_range.contains(&r[1]))
                    .map(|r| Circle::new((r[0], r[1]), 1, orange)),
            )
            .map_err(draw_err)?;
        root.present().map_err(draw_err)?;
        Ok(())
    })?;
    Ok(())
}

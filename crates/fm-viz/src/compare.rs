//! The seed's figure: the target's density beside generated samples, on the same axes.

use crate::colour::blues;
use crate::figure::{self, draw_err, Area, Chart2d, DrawResult, Grid, Projection, Scene};
use crate::{font, Error, Result};
use fm_dist::Target;
use ndarray::ArrayView2;
use plotters::prelude::*;
use std::ops::Range;
use std::path::Path;

/// Settings of [`compare`].
///
/// `Default` is the seed's figure, pixel for pixel: fixed axes x ∈ [-6, 8], y ∈ [-5, 6],
/// 1800 × 760 px (also [`CompareFigure::seed`]). The seed's axes stay the default so that the
/// CLI's figure stays reproducible; [`CompareFigure::fitted`] (or `x_range: None,
/// y_range: None`) fits the axes to the samples and the target instead, like the other figures.
#[derive(Debug, Clone)]
pub struct CompareFigure {
    /// The x axis; `None` fits it to the samples and target samples (5% margin).
    pub x_range: Option<Range<f64>>,
    /// The y axis; `None` fits it like `x_range`.
    pub y_range: Option<Range<f64>>,
    /// The two coordinates drawn (0-based), for data of more than two dimensions; axes are
    /// named 1-based ("x1", "x2") as in the seed. Beyond 2-D, or with another pair than
    /// (0, 1), the figure's title says which ("coordinates 3 and 7 of 16").
    pub coords: (usize, usize),
    /// Width of the whole figure in pixels (200 to 8192).
    pub width: u32,
    /// Height of the whole figure in pixels (150 to 8192).
    pub height: u32,
    /// Number of filled density levels (as in matplotlib's `contourf`).
    pub levels: usize,
    /// Density grid cells along x (y follows the aspect of the axes).
    pub resolution: usize,
    /// Title of the target's panel (with " (samples)" appended where its samples are drawn).
    pub target_title: String,
    /// Title of the generated samples' panel.
    pub samples_title: String,
    /// Target samples used to fit the axes, and drawn instead of the density where the target
    /// has none or the data is more than 2-D.
    pub target_samples: usize,
    /// Seed of the random generator drawing those target samples.
    pub rng_seed: u64,
    /// The class of each sample (a conditional model's, `fm sample --class all`): the samples
    /// are then coloured by class (tab10), with a legend. `None`: all orange.
    pub labels: Option<Vec<usize>>,
}

impl CompareFigure {
    /// The seed's figure (the same as `Default`).
    pub fn seed() -> Self {
        Self {
            x_range: Some(-6.0..8.0),
            y_range: Some(-5.0..6.0),
            coords: (0, 1),
            width: 1800,
            height: 760,
            levels: 10,
            resolution: 280,
            target_title: "Target Gaussian Mixture Distribution".into(),
            samples_title: "Generated Samples (Flow Match)".into(),
            target_samples: 2000,
            rng_seed: 0,
            labels: None,
        }
    }

    /// The seed's figure with axes fitted to the data.
    pub fn fitted() -> Self {
        Self { x_range: None, y_range: None, ..Self::seed() }
    }
}

impl Default for CompareFigure {
    fn default() -> Self {
        Self::seed()
    }
}

/// Draws the target beside generated samples into `path`: the target's density in filled
/// levels with a colour bar (or, without a density or beyond 2-D, a scatter of its samples),
/// and the samples in orange, on the same axes.
///
/// PNG, or SVG when `path` ends in `.svg`; written atomically. `samples` is `[N, D]` with
/// `D` the target's dimension.
///
/// # Errors
/// [`Error::Invalid`] for samples of another dimension or with non-finite drawn coordinates,
/// or bad settings; [`Error::Font`] without a usable font; [`Error::Dist`] when the target's
/// log-density or writing the file fails.
pub fn compare(path: &Path, target: &dyn Target, samples: ArrayView2<f64>, fig: &CompareFigure) -> Result<()> {
    font::ensure()?;
    if target.dim() != samples.ncols() {
        return Err(Error::Invalid(format!("the target is {}-D, the samples {}-D", target.dim(), samples.ncols())));
    }
    let proj = Projection::new(fig.coords, target.dim())?;
    if fig.width < 200
        || fig.height < 150
        || fig.width > figure::MAX_SIDE
        || fig.height > figure::MAX_SIDE
        || fig.levels == 0
        || fig.resolution < 2
        || fig.resolution > 4096
    {
        return Err(Error::Invalid(format!("bad size or grid: {}×{} px, {} levels, resolution {}", fig.width, fig.height, fig.levels, fig.resolution)));
    }
    let points: Vec<(f64, f64)> = samples.rows().into_iter().map(|r| proj.pick(r)).collect();
    if fig.labels.as_ref().is_some_and(|l| l.len() != points.len()) {
        return Err(Error::Invalid(format!("{} labels for {} samples", fig.labels.as_ref().map_or(0, Vec::len), points.len())));
    }
    if points.iter().any(|p| !p.0.is_finite() || !p.1.is_finite()) {
        return Err(Error::Invalid("a sample has a non-finite coordinate".into()));
    }
    let has_density = proj.dim == 2 && fm_dist::density_of(target).is_some();
    let needs_target_points = fig.x_range.is_none() || fig.y_range.is_none() || !has_density;
    let target_points = if needs_target_points { figure::target_points(target, fig.target_samples, fig.rng_seed, &proj) } else { Vec::new() };
    let all = || points.iter().chain(&target_points);
    let x_range = figure::axis("x", &fig.x_range, figure::fit(all().map(|p| p.0)), -1.0..1.0)?;
    let y_range = figure::axis("y", &fig.y_range, figure::fit(all().map(|p| p.1)), -1.0..1.0)?;

    // Density on the cell centres of a grid over the axes (cells about square in data units).
    let grid = {
        let nx = fig.resolution;
        let ny = ((nx as f64) * (y_range.end - y_range.start) / (x_range.end - x_range.start)).ceil().clamp(2.0, 4096.0) as usize;
        Grid { x: x_range.clone(), y: y_range.clone(), nx, ny }
    };
    let (density, density_label) = match figure::grid_density(target, &proj, &grid)? {
        Some((density, normalised)) => {
            let max = density.iter().cloned().filter(|v| v.is_finite()).fold(0.0, f64::max).max(f64::MIN_POSITIVE);
            let level = density
                .iter()
                .map(|&p| Some(((p / max * fig.levels as f64).floor() as usize).min(fig.levels - 1)).filter(|&l| l > 0 && p.is_finite()))
                .collect();
            (Some((grid, level, max)), if normalised { "density" } else { "density / its largest" })
        }
        None => (None, "density"),
    };
    // Without a sampler the target's points are only the axes' frame: not drawn.
    let target_points = if target.has_sampler() { target_points } else { Vec::new() };
    let scene = CompareScene { fig, proj, x_range, y_range, points, target_points, density, density_label, sampled: target.has_sampler() };
    figure::write_figure(path, (fig.width, fig.height), &scene)
}

struct CompareScene<'a> {
    fig: &'a CompareFigure,
    proj: Projection,
    x_range: Range<f64>,
    y_range: Range<f64>,
    points: Vec<(f64, f64)>,
    target_points: Vec<(f64, f64)>,
    density: Option<(Grid, Vec<Option<usize>>, f64)>,
    density_label: &'static str,
    sampled: bool,
}

impl CompareScene<'_> {
    /// A titled panel with room for axis labels, spanning the figure's axes (the seed's layout).
    fn chart<'b, DB: DrawingBackend>(&self, area: &'b Area<DB>, title: &str) -> DrawResult<Chart2d<'b, DB>> {
        ChartBuilder::on(area)
            .caption(title, (font::FAMILY, 26))
            .margin(16)
            .x_label_area_size(50)
            .y_label_area_size(56)
            .build_cartesian_2d(self.x_range.clone(), self.y_range.clone())
            .map_err(draw_err)
    }

    fn axes<DB: DrawingBackend>(&self, chart: &mut Chart2d<DB>) -> DrawResult {
        chart
            .configure_mesh()
            .disable_mesh()
            .x_desc(self.proj.x_name())
            .y_desc(self.proj.y_name())
            .x_label_formatter(&crate::figure::tick)
            .y_label_formatter(&crate::figure::tick)
            .label_style((font::FAMILY, 18))
            .axis_desc_style((font::FAMILY, 20))
            .draw()
            .map_err(draw_err)
    }

    fn scatter<DB: DrawingBackend>(&self, chart: &mut Chart2d<DB>, points: &[(f64, f64)], style: ShapeStyle) -> DrawResult {
        chart
            .draw_series(points.iter().filter(|p| self.x_range.contains(&p.0) && self.y_range.contains(&p.1)).map(|&p| Circle::new(p, 1, style)))
            .map_err(draw_err)?;
        Ok(())
    }
}

impl Scene for CompareScene<'_> {
    fn draw<DB: DrawingBackend>(&self, root: &Area<DB>) -> DrawResult {
        let fig = self.fig;
        let root = match self.proj.note() {
            Some(note) => root.titled(&note, (font::FAMILY, 22)).map_err(draw_err)?,
            None => root.clone(),
        };
        let w = root.dim_in_pixel().0 as i32;
        let right = match &self.density {
            Some((grid, level, max)) => {
                let (left, rest) = root.split_horizontally(w * 45 / 100);
                let (bar, right) = rest.split_horizontally(w * 9 / 100);
                let mut left_chart = self.chart(&left, &fig.target_title)?;
                let level_colour = |l: usize| blues((l as f64 + 0.5) / fig.levels as f64);
                left_chart
                    .plotting_area()
                    .draw(&Rectangle::new([(self.x_range.start, self.y_range.start), (self.x_range.end, self.y_range.end)], level_colour(0).filled()))
                    .map_err(draw_err)?;
                figure::draw_levels(&mut left_chart, grid, level, &level_colour)?;
                self.axes(&mut left_chart)?;

                // Colour bar: one box per level, labelled with the density at its lower edge.
                let max = *max;
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
                    .y_desc(self.density_label)
                    .label_style((font::FAMILY, 16))
                    .axis_desc_style((font::FAMILY, 18))
                    .draw()
                    .map_err(draw_err)?;
                right
            }
            None => {
                let (left, right) = root.split_horizontally(w / 2);
                // A target without a sampler has nothing to draw here beyond 2-D.
                let what = if self.sampled { "samples" } else { "no sampler: nothing to draw" };
                let mut left_chart = self.chart(&left, &format!("{} ({what})", fig.target_title))?;
                self.axes(&mut left_chart)?;
                self.scatter(&mut left_chart, &self.target_points, RGBColor(33, 113, 181).mix(0.5).filled())?;
                right
            }
        };
        let mut right_chart = self.chart(&right, &fig.samples_title)?;
        self.axes(&mut right_chart)?;
        match &fig.labels {
            None => self.scatter(&mut right_chart, &self.points, RGBColor(255, 140, 0).mix(0.6).filled())?,
            Some(labels) => {
                let mut classes = labels.clone();
                classes.sort_unstable();
                classes.dedup();
                // A legend entry per class, up to 10 (tab10's colours; beyond, they repeat).
                let legend = classes.len() <= 10;
                for c in classes {
                    let points: Vec<(f64, f64)> = self.points.iter().zip(labels).filter(|(_, &l)| l == c).map(|(p, _)| *p).collect();
                    self.scatter(&mut right_chart, &points, crate::colour::category(c).mix(0.6).filled())?;
                    let colour = crate::colour::category(c);
                    if legend {
                        right_chart
                            .draw_series(std::iter::empty::<Circle<(f64, f64), u32>>())
                            .map_err(draw_err)?
                            .label(format!("class {c}"))
                            .legend(move |(x, y)| Circle::new((x, y), 4, colour.filled()));
                    }
                }
                if !legend {
                    return Ok(());
                }
                right_chart
                    .configure_series_labels()
                    .position(SeriesLabelPosition::UpperLeft)
                    .background_style(WHITE.mix(0.8))
                    .border_style(BLACK.mix(0.3))
                    .label_font((font::FAMILY, 16))
                    .draw()
                    .map_err(draw_err)?;
            }
        }
        Ok(())
    }
}

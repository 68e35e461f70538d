//! What every figure shares: writing PNG or SVG atomically from one backend-generic drawing
//! code path, sizes and styles, axes that fit the data, coordinate pairs of D-dimensional data,
//! density grids drawn as filled levels, colour bars.

use crate::{font, Error, Result};
use fm_dist::Target;
use ndarray::{Array2, ArrayView2, ArrayView3};
use plotters::coord::types::RangedCoordf64;
use plotters::coord::Shift;
use plotters::prelude::*;
use rand::SeedableRng;
use std::ops::Range;
use std::path::Path;

pub(crate) type Area<DB> = DrawingArea<DB, Shift>;
pub(crate) type Chart2d<'a, DB> = ChartContext<'a, DB, Cartesian2d<RangedCoordf64, RangedCoordf64>>;
/// Drawing fails with a message; [`write_figure`] turns it into the crate's error.
pub(crate) type DrawResult<T = ()> = std::result::Result<T, String>;

/// Fraction of the data's range added on each side when axes are fitted to the data.
pub(crate) const FIT_MARGIN: f64 = 0.05;
/// The largest width or height of a figure, in pixels.
pub(crate) const MAX_SIDE: u32 = 8192;

/// The message of a failed plotters drawing operation.
pub(crate) fn draw_err<E: std::error::Error + Send + Sync>(e: DrawingAreaErrorKind<E>) -> String {
    format!("drawing failed: {e}")
}

/// A figure ready to draw: every fallible computation on the user's data is done before.
pub(crate) trait Scene {
    /// Draws the figure on `root` (already filled white).
    fn draw<DB: DrawingBackend>(&self, root: &Area<DB>) -> DrawResult;
}

/// Whether `path` asks for SVG (it ends in `.svg`, any case); everything else is PNG.
pub(crate) fn is_svg(path: &Path) -> bool {
    path.extension().is_some_and(|e| e.eq_ignore_ascii_case("svg"))
}

/// Draws `scene` into `path` atomically: SVG when the path ends in `.svg`, PNG otherwise
/// (whatever the extension). On error nothing is left behind and `path` is untouched.
pub(crate) fn write_figure(path: &Path, (w, h): (u32, u32), scene: &impl Scene) -> Result<()> {
    let svg = is_svg(path);
    fm_dist::io::replace_atomically(path, |tmp| -> DrawResult {
        if svg {
            let mut text = String::new();
            {
                let root = SVGBackend::with_string(&mut text, (w, h)).into_drawing_area();
                root.fill(&WHITE).map_err(draw_err)?;
                scene.draw(&root)?;
                root.present().map_err(draw_err)?;
            }
            std::fs::write(tmp, text).map_err(|e| e.to_string())
        } else {
            let mut pixels = vec![0u8; w as usize * h as usize * 3];
            {
                let root = BitMapBackend::with_buffer(&mut pixels, (w, h)).into_drawing_area();
                root.fill(&WHITE).map_err(draw_err)?;
                scene.draw(&root)?;
                root.present().map_err(draw_err)?;
            }
            image::save_buffer_with_format(tmp, &pixels, w, h, image::ColorType::Rgb8, image::ImageFormat::Png).map_err(|e| e.to_string())
        }
    })?;
    Ok(())
}

/// Checks a figure's size against `min` and [`MAX_SIDE`]; also makes sure a font is there.
pub(crate) fn check_size(what: &str, (w, h): (u32, u32), (min_w, min_h): (u32, u32)) -> Result<()> {
    if w < min_w || h < min_h || w > MAX_SIDE || h > MAX_SIDE {
        return Err(Error::Invalid(format!("the {what} figure is {w}×{h} px; it needs at least {min_w}×{min_h} and at most {MAX_SIDE}×{MAX_SIDE}")));
    }
    font::ensure()
}

/// Font sizes and spacing, scaled with the figure.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Style {
    scale: f64,
}

impl Style {
    /// Scaled by the height of one panel (640 px is scale 1).
    pub fn for_panel_height(h: u32) -> Self {
        Self { scale: (h as f64 / 640.0).clamp(0.75, 2.0) }
    }
    /// `v` pixels at scale 1, scaled and rounded.
    pub fn px(&self, v: u32) -> u32 {
        (v as f64 * self.scale).round() as u32
    }
    /// Font of figure titles (28 px at scale 1).
    pub fn title(&self) -> (&'static str, f64) {
        (font::FAMILY, 28.0 * self.scale)
    }
    /// Font of panel captions (23 px at scale 1).
    pub fn caption(&self) -> (&'static str, f64) {
        (font::FAMILY, 23.0 * self.scale)
    }
    /// Font of tick labels and legends (15 px at scale 1).
    pub fn label(&self) -> (&'static str, f64) {
        (font::FAMILY, 15.0 * self.scale)
    }
    /// Font of axis names (18 px at scale 1).
    pub fn desc(&self) -> (&'static str, f64) {
        (font::FAMILY, 18.0 * self.scale)
    }
}

/// The pair of coordinates a figure shows, checked against the data's dimension.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Projection {
    /// The coordinate drawn along x (0-based).
    pub i: usize,
    /// The coordinate drawn along y (0-based).
    pub j: usize,
    /// The data's dimension `D`.
    pub dim: usize,
}

impl Projection {
    /// Coordinates `i` and `j` of `dim`-dimensional data; [`Error::Invalid`] unless `dim ≥ 2`
    /// and `i`, `j` are two different coordinates below `dim`.
    pub fn new((i, j): (usize, usize), dim: usize) -> Result<Self> {
        if dim < 2 {
            return Err(Error::Invalid(format!("figures draw two coordinates; the data is {dim}-D")));
        }
        if i >= dim || j >= dim || i == j {
            return Err(Error::Invalid(format!("coordinates ({i}, {j}) are not two different coordinates of {dim}-D data (0-based, each below {dim})")));
        }
        Ok(Self { i, j, dim })
    }
    /// "coordinates 3 and 7 of 16" (1-based, like the axis names) unless the data is simply 2-D.
    pub fn note(&self) -> Option<String> {
        (self.dim != 2 || (self.i, self.j) != (0, 1)).then(|| format!("coordinates {} and {} of {}", self.i + 1, self.j + 1, self.dim))
    }
    /// Appends [`Projection::note`] to a title.
    pub fn titled(&self, title: &str) -> String {
        match self.note() {
            Some(n) => format!("{title} ({n})"),
            None => title.to_string(),
        }
    }
    /// Name of the x axis, 1-based like the seed's "x1".
    pub fn x_name(&self) -> String {
        format!("x{}", self.i + 1)
    }
    /// Name of the y axis, 1-based like the seed's "x2".
    pub fn y_name(&self) -> String {
        format!("x{}", self.j + 1)
    }
    /// The drawn pair of a D-dimensional row.
    pub fn pick(&self, row: ndarray::ArrayView1<f64>) -> (f64, f64) {
        (row[self.i], row[self.j])
    }
    /// Points of `grid` as D-dimensional rows: the drawn pair varies, the other coordinates
    /// equal `through` (zero where `through` is empty).
    pub fn embed(&self, grid: &Grid, through: &[f64]) -> Array2<f64> {
        let mut pts = Array2::zeros((grid.len(), self.dim));
        if !through.is_empty() {
            for mut row in pts.rows_mut() {
                row.assign(&ndarray::ArrayView1::from(through));
            }
        }
        for k in 0..grid.len() {
            let (x, y) = grid.centre(k);
            pts[[k, self.i]] = x;
            pts[[k, self.j]] = y;
        }
        pts
    }
}

/// Checks a point of a plane's other coordinates (`through`, empty for the origin).
pub(crate) fn check_through(through: &[f64], dim: usize) -> Result<()> {
    if !through.is_empty() && through.len() != dim {
        return Err(Error::Invalid(format!("the plane goes through a point with {} coordinates; the data is {dim}-D", through.len())));
    }
    if through.iter().any(|v| !v.is_finite()) {
        return Err(Error::Invalid("the plane's point has a non-finite coordinate".into()));
    }
    Ok(())
}

/// The range of the finite values, widened by [`FIT_MARGIN`] on each side (by ±0.5 where
/// all values are equal); `None` without finite values.
pub(crate) fn fit(values: impl IntoIterator<Item = f64>) -> Option<Range<f64>> {
    let (lo, hi) = values.into_iter().filter(|v| v.is_finite()).fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), v| (lo.min(v), hi.max(v)));
    if lo > hi {
        return None;
    }
    let pad = if hi > lo { (hi - lo) * FIT_MARGIN } else { 0.5 * lo.abs().max(1.0) };
    let r = (lo - pad)..(hi + pad);
    valid_range(&r).then_some(r)
}

/// Finite, increasing, and wide enough to tell its ends apart.
pub(crate) fn valid_range(r: &Range<f64>) -> bool {
    let w = r.end - r.start;
    r.start.is_finite() && r.end.is_finite() && w.is_finite() && w > 1e-12 * r.start.abs().max(r.end.abs()).max(1e-300)
}

/// The axis range a figure uses: `given` when set (checked), else the fitted one, else `fallback`.
pub(crate) fn axis(name: &str, given: &Option<Range<f64>>, fitted: Option<Range<f64>>, fallback: Range<f64>) -> Result<Range<f64>> {
    match given {
        Some(r) if valid_range(r) => Ok(r.clone()),
        Some(r) => {
            Err(Error::Invalid(format!("bad {name} range {r:?}: it needs finite ends, start below end, and a width above 1e-12 of its ends' magnitude")))
        }
        None => Ok(fitted.unwrap_or(fallback)),
    }
}

/// Checks that every value of an array is finite; names it in the error.
pub(crate) fn check_finite<'a>(what: &str, values: impl IntoIterator<Item = &'a f64>) -> Result<()> {
    match values.into_iter().position(|v| !v.is_finite()) {
        Some(k) => Err(Error::Invalid(format!("{what} holds a non-finite value (element {k} in memory order)"))),
        None => Ok(()),
    }
}

/// A grid of `nx × ny` cells over the axes; cell `k` is column `k % nx`, row `k / nx`.
#[derive(Debug, Clone)]
pub(crate) struct Grid {
    /// The x range the cells cover.
    pub x: Range<f64>,
    /// The y range the cells cover.
    pub y: Range<f64>,
    /// Cells along x.
    pub nx: usize,
    /// Cells along y.
    pub ny: usize,
}

impl Grid {
    /// `nx` cells along x, and along y as many as keep the cells about square on a panel of
    /// `aspect` = height / width pixels.
    pub fn new(x: Range<f64>, y: Range<f64>, nx: usize, aspect: f64) -> Self {
        let ny = ((nx as f64) * aspect).round().clamp(2.0, 4.0 * nx as f64) as usize;
        Self { x, y, nx, ny }
    }
    /// Number of cells, `nx · ny`.
    pub fn len(&self) -> usize {
        self.nx * self.ny
    }
    /// Width of a cell in data units.
    pub fn dx(&self) -> f64 {
        (self.x.end - self.x.start) / self.nx as f64
    }
    /// Height of a cell in data units.
    pub fn dy(&self) -> f64 {
        (self.y.end - self.y.start) / self.ny as f64
    }
    /// Centre of cell `k` in data units.
    pub fn centre(&self, k: usize) -> (f64, f64) {
        (self.x.start + (k % self.nx) as f64 * self.dx() + self.dx() / 2.0, self.y.start + (k / self.nx) as f64 * self.dy() + self.dy() / 2.0)
    }
}

/// Draws the cells of `grid` with a level as filled rectangles, one per run of equal levels
/// along a row (few elements, so SVG files stay small); cells without a level are not drawn.
pub(crate) fn draw_levels<DB: DrawingBackend>(chart: &mut Chart2d<DB>, grid: &Grid, level: &[Option<usize>], colour: &dyn Fn(usize) -> RGBColor) -> DrawResult {
    let (dx, dy) = (grid.dx(), grid.dy());
    let mut runs = Vec::new();
    for row in 0..grid.ny {
        let cells = &level[row * grid.nx..(row + 1) * grid.nx];
        let mut start = 0;
        while start < grid.nx {
            let mut end = start + 1;
            while end < grid.nx && cells[end] == cells[start] {
                end += 1;
            }
            if let Some(l) = cells[start] {
                let (x0, y0) = (grid.x.start + start as f64 * dx, grid.y.start + row as f64 * dy);
                runs.push(Rectangle::new([(x0, y0), (grid.x.start + end as f64 * dx, y0 + dy)], colour(l).filled()));
            }
            start = end;
        }
    }
    chart.draw_series(runs).map_err(draw_err)?;
    Ok(())
}

/// The part of segment `a`–`b` inside the axes (Liang–Barsky); `None` when it misses them.
pub(crate) fn clip_segment(a: (f64, f64), b: (f64, f64), x: &Range<f64>, y: &Range<f64>) -> Option<((f64, f64), (f64, f64))> {
    let (dx, dy) = (b.0 - a.0, b.1 - a.1);
    let (mut t0, mut t1) = (0.0f64, 1.0f64);
    for (p, q) in [(-dx, a.0 - x.start), (dx, x.end - a.0), (-dy, a.1 - y.start), (dy, y.end - a.1)] {
        if p == 0.0 {
            if q < 0.0 {
                return None;
            }
        } else {
            let r = q / p;
            if p < 0.0 {
                t0 = t0.max(r);
            } else {
                t1 = t1.min(r);
            }
        }
    }
    (t0 <= t1).then_some(((a.0 + t0 * dx, a.1 + t0 * dy), (a.0 + t1 * dx, a.1 + t1 * dy)))
}

/// Whether a point lies on the axes.
pub(crate) fn inside(p: (f64, f64), x: &Range<f64>, y: &Range<f64>) -> bool {
    p.0 >= x.start && p.0 <= x.end && p.1 >= y.start && p.1 <= y.end
}

/// Draws `title` at the top of `area`, shrunk (down to 55%) to fit its width, and returns
/// the area below it.
pub(crate) fn titled<DB: DrawingBackend>(area: &Area<DB>, title: &str, st: &Style) -> DrawResult<Area<DB>> {
    let (family, mut size) = st.title();
    let room = area.dim_in_pixel().0 as f64 * 0.96;
    let width = area.estimate_text_size(title, &(family, size).into_text_style(area)).map_err(draw_err)?.0 as f64;
    if width > room {
        size = (size * room / width).max(size * 0.55);
    }
    area.titled(title, (family, size)).map_err(draw_err)
}

/// The series' legend in the upper right corner, on a light box.
pub(crate) fn legend<'a, DB: DrawingBackend + 'a, X: Ranged, Y: Ranged>(chart: &mut ChartContext<'a, DB, Cartesian2d<X, Y>>, st: &Style) -> DrawResult {
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperRight)
        .background_style(WHITE.mix(0.85))
        .border_style(RGBColor(200, 200, 200))
        .label_font(st.label())
        .draw()
        .map_err(draw_err)
}

/// A titled panel with room for axis labels.
pub(crate) fn panel<'a, DB: DrawingBackend>(
    area: &'a Area<DB>,
    caption: Option<&str>,
    x: Range<f64>,
    y: Range<f64>,
    st: &Style,
) -> DrawResult<Chart2d<'a, DB>> {
    let mut b = ChartBuilder::on(area);
    if let Some(c) = caption {
        b.caption(c, st.caption());
    }
    b.margin(st.px(12)).margin_right(st.px(18)).x_label_area_size(st.px(48)).y_label_area_size(st.px(62)).build_cartesian_2d(x, y).map_err(draw_err)
}

/// A tick label: plain for `1e-3 ≤ |v| < 1e5` (up to 4 decimals, trailing zeros dropped),
/// else scientific with up to 4 significant digits (`4.65e6`). plotters' own labels print a
/// tick's float noise in full (`4600000.4`), which overlaps on axes of data far from unit scale.
pub(crate) fn tick(v: &f64) -> String {
    let trim = |s: String| if s.contains('.') { s.trim_end_matches('0').trim_end_matches('.').to_string() } else { s };
    let a = v.abs();
    if a == 0.0 {
        "0".into()
    } else if (1e-3..1e5).contains(&a) {
        trim(format!("{v:.4}"))
    } else {
        let s = format!("{v:.3e}");
        let (mantissa, exponent) = s.split_once('e').unwrap_or((&s, "0"));
        format!("{}e{exponent}", trim(mantissa.to_string()))
    }
}

/// Axes with tick labels and names, no grid lines.
pub(crate) fn axes<DB: DrawingBackend>(chart: &mut Chart2d<DB>, x_name: &str, y_name: &str, st: &Style) -> DrawResult {
    chart
        .configure_mesh()
        .disable_mesh()
        .x_desc(x_name)
        .y_desc(y_name)
        .x_labels(7)
        .y_labels(7)
        .x_label_formatter(&tick)
        .y_label_formatter(&tick)
        .label_style(st.label())
        .axis_desc_style(st.desc())
        .draw()
        .map_err(draw_err)
}

/// A vertical colour bar beside a panel whose plotting area covers `plot` (pixels of the
/// root), spanning the same height.
pub(crate) struct ColourBar<'a> {
    /// The values the bar spans, bottom to top.
    pub range: Range<f64>,
    /// Colour at a fraction of the range.
    pub colour: &'a dyn Fn(f64) -> RGBColor,
    /// Filled levels (boxes), or `None` for a continuous bar.
    pub levels: Option<usize>,
    /// The bar's axis name.
    pub label: &'a str,
    /// About how many tick labels to draw.
    pub ticks: usize,
    /// Formats a tick label.
    pub format: &'a dyn Fn(&f64) -> String,
    /// A note under the bar (e.g. what the lowest colour also covers).
    pub under: Option<String>,
}

/// Width of the area [`colour_bar`] needs.
pub(crate) fn colour_bar_width(st: &Style) -> u32 {
    st.px(118)
}

/// Draws `bar` into `area`, level with the panel's plotting area `plot` (see [`ColourBar`]).
pub(crate) fn colour_bar<DB: DrawingBackend>(area: &Area<DB>, plot: &(Range<i32>, Range<i32>), bar: &ColourBar, st: &Style) -> DrawResult {
    let (_, ay) = area.get_pixel_range();
    let top = (plot.1.start - ay.start).max(0) as u32;
    let bottom = (ay.end - plot.1.end).max(0) as u32;
    let mut c = ChartBuilder::on(area)
        .margin_top(top)
        .margin_bottom(bottom)
        .margin_left(st.px(10))
        .margin_right(st.px(4))
        .y_label_area_size(0)
        .right_y_label_area_size(st.px(72))
        .build_cartesian_2d(0.0..1.0, bar.range.clone())
        .map_err(draw_err)?;
    let (lo, w) = (bar.range.start, bar.range.end - bar.range.start);
    let n = bar.levels.unwrap_or(128).max(1);
    c.draw_series((0..n).map(|l| {
        let (a, b) = (lo + w * l as f64 / n as f64, lo + w * (l + 1) as f64 / n as f64);
        let f = if bar.levels.is_some() { (l as f64 + 0.5) / n as f64 } else { l as f64 / (n - 1).max(1) as f64 };
        Rectangle::new([(0.0, a), (1.0, b)], (bar.colour)(f).filled())
    }))
    .map_err(draw_err)?;
    c.draw_series(std::iter::once(Rectangle::new([(0.0, bar.range.start), (1.0, bar.range.end)], BLACK.mix(0.6).stroke_width(1)))).map_err(draw_err)?;
    c.configure_mesh()
        .disable_mesh()
        .disable_x_axis()
        .set_all_tick_mark_size(st.px(6))
        .y_labels(bar.ticks)
        .y_label_formatter(bar.format)
        .y_desc(bar.label)
        .label_style(st.label())
        .axis_desc_style(st.desc())
        .draw()
        .map_err(draw_err)?;
    if let Some(note) = &bar.under {
        let (x, y) = c.backend_coord(&(0.0, bar.range.start));
        let screen = c.plotting_area().use_screen_coord();
        screen.draw(&Text::new(note.clone(), (x, y + st.px(8) as i32), st.label())).map_err(draw_err)?;
    }
    Ok(())
}

/// Tick labels with as many decimals as the range needs.
pub(crate) fn tick_format(range: &Range<f64>) -> impl Fn(&f64) -> String {
    let w = (range.end - range.start).abs();
    let decimals = if w >= 50.0 {
        0
    } else if w >= 5.0 {
        1
    } else if w >= 0.5 {
        2
    } else {
        3
    };
    move |v: &f64| {
        let s = format!("{v:.decimals$}");
        // "-0.0" reads oddly on an axis.
        if s.trim_start_matches('-').chars().all(|c| c == '0' || c == '.') {
            s.trim_start_matches('-').to_string()
        } else {
            s
        }
    }
}

/// What is drawn under samples to show the target.
pub(crate) enum Backdrop {
    /// Nothing (no target).
    None,
    /// Filled levels of the density; level 0 (the lowest) is left white.
    Density {
        /// The grid the density was evaluated on.
        grid: Grid,
        /// Each cell's level; `None` (level 0 or a non-finite density) is not drawn.
        level: Vec<Option<usize>>,
        /// The number of levels.
        levels: usize,
    },
    /// A light scatter of target samples (the drawn pair).
    Samples(Vec<(f64, f64)>),
}

/// `n` target samples drawn with a fixed seed, projected on the drawn pair (finite ones only).
pub(crate) fn target_points(target: &dyn Target, n: usize, seed: u64, proj: &Projection) -> Vec<(f64, f64)> {
    if !target.has_sampler() {
        return frame(target, proj);
    }
    if n == 0 {
        return Vec::new();
    }
    let s = target.sample(n, &mut rand::rngs::StdRng::seed_from_u64(seed));
    if s.ncols() != proj.dim {
        return Vec::new();
    }
    s.rows().into_iter().map(|r| proj.pick(r)).filter(|p| p.0.is_finite() && p.1.is_finite()).collect()
}

/// The target's density at `grid`'s cells where it is 2-D and has one ([`fm_dist::density_of`]):
/// normalised where its `log Z` is known, else relative to its largest value on the grid (a
/// density alone, such as a user's energy), with whether it is normalised.
pub(crate) fn grid_density(target: &dyn Target, proj: &Projection, grid: &Grid) -> Result<Option<(ndarray::Array1<f64>, bool)>> {
    let Some(own) = fm_dist::density_of(target).filter(|_| proj.dim == 2) else { return Ok(None) };
    let log_p = own.log_density(proj.embed(grid, &[]).view())?;
    let known = own.log_normalizer();
    let log_z = known.unwrap_or_else(|| log_p.iter().cloned().filter(|v| v.is_finite()).fold(f64::NEG_INFINITY, f64::max));
    Ok(Some((log_p.mapv(|l| (l - log_z).exp()), known.is_some())))
}

/// What a target without a sampler offers fitted axes instead of its samples: two corners at ±3
/// of its density's stated standard deviations in the drawn coordinates (1 where it states
/// none), so that a mode the model missed is still on the figure. Never drawn as points.
fn frame(target: &dyn Target, proj: &Projection) -> Vec<(f64, f64)> {
    let sd = fm_dist::density_of(target).and_then(|d| d.std_dev()).unwrap_or_default();
    let (a, b) = (3.0 * sd.get(proj.i).copied().unwrap_or(1.0), 3.0 * sd.get(proj.j).copied().unwrap_or(1.0));
    vec![(-a, -b), (a, b)]
}

/// The target's density in filled levels when it is 2-D with a density; its samples otherwise.
pub(crate) fn backdrop(target: &dyn Target, proj: &Projection, grid: Grid, levels: usize, points: Vec<(f64, f64)>) -> Result<Backdrop> {
    let Some((density, _)) = grid_density(target, proj, &grid)? else {
        // Without a sampler its points are only the axes' frame.
        return Ok(if target.has_sampler() { Backdrop::Samples(points) } else { Backdrop::None });
    };
    let max = density.iter().cloned().filter(|v| v.is_finite()).fold(0.0, f64::max);
    if max <= 0.0 {
        return Ok(Backdrop::Samples(points));
    }
    let level = density
        .iter()
        .map(|&p| if p.is_finite() { Some(((p / max * levels as f64).floor() as usize).min(levels - 1)).filter(|&l| l > 0) } else { None })
        .collect();
    Ok(Backdrop::Density { grid, level, levels })
}

impl Backdrop {
    /// Draws it with light colours (it sits under the figure's data).
    pub fn draw<DB: DrawingBackend>(&self, chart: &mut Chart2d<DB>, point_size: u32) -> DrawResult {
        match self {
            Backdrop::None => Ok(()),
            Backdrop::Density { grid, level, levels } => {
                // The lighter two thirds of "Blues": the data drawn over it stays legible.
                let n = *levels as f64;
                draw_levels(chart, grid, level, &|l| crate::colour::blues(0.7 * (l as f64 + 0.5) / n))
            }
            Backdrop::Samples(points) => {
                let (x, y) = (chart.x_range(), chart.y_range());
                let style = RGBColor(90, 120, 170).mix(0.25).filled();
                chart.draw_series(points.iter().filter(|p| inside(**p, &x, &y)).map(|&p| Circle::new(p, point_size, style))).map_err(draw_err)?;
                Ok(())
            }
        }
    }
}

/// Checks `[T, N, D]` states against `T` times: at least two strictly increasing finite times,
/// at least one particle, finite states.
pub(crate) fn check_states(states: &ndarray::ArrayView3<f64>, times: &[f64]) -> Result<()> {
    let (t, n, d) = states.dim();
    if t < 2 || n == 0 || d < 2 {
        return Err(Error::Invalid(format!("states have shape [{t}, {n}, {d}]; they need [T ≥ 2 times, N ≥ 1 particles, D ≥ 2 coordinates]")));
    }
    if times.len() != t {
        return Err(Error::Invalid(format!("{} times for {t} states", times.len())));
    }
    if times.iter().any(|v| !v.is_finite()) || times.windows(2).any(|w| w[1] <= w[0]) {
        return Err(Error::Invalid("times must be finite and strictly increasing".into()));
    }
    if let Some(((k, p, c), _)) = states.indexed_iter().find(|(_, v)| !v.is_finite()) {
        return Err(Error::Invalid(format!("state of particle {p} at time index {k} has a non-finite coordinate {c}")));
    }
    Ok(())
}

/// Checks that a target, when given, has the data's dimension.
pub(crate) fn check_target(target: Option<&dyn Target>, dim: usize) -> Result<()> {
    match target {
        Some(t) if t.dim() != dim => Err(Error::Invalid(format!("the target {} is {}-D, the data {dim}-D", t.name(), t.dim()))),
        _ => Ok(()),
    }
}

/// Checks a closure's output: `rows × cols`, finite.
pub(crate) fn check_output(what: &str, a: ArrayView2<f64>, rows: usize, cols: usize) -> Result<()> {
    if a.dim() != (rows, cols) {
        return Err(Error::Invalid(format!("{what} returned shape {:?} for {rows} points; expected [{rows}, {cols}]", a.dim())));
    }
    check_finite(what, a.iter())
}

/// Axes fitted to paths `states` (`[T, N, D]`, drawn on `proj`) and the `extra` points already
/// projected, unless the figure sets them.
pub(crate) fn fit_paths(
    states: ArrayView3<f64>,
    extra: &[(f64, f64)],
    proj: &Projection,
    x_range: &Option<Range<f64>>,
    y_range: &Option<Range<f64>>,
) -> Result<(Range<f64>, Range<f64>)> {
    let coord =
        |k: usize, pick: fn(&(f64, f64)) -> f64| states.index_axis(ndarray::Axis(2), k).iter().copied().chain(extra.iter().map(pick)).collect::<Vec<_>>();
    Ok((axis("x", x_range, fit(coord(proj.i, |p| p.0)), -1.0..1.0)?, axis("y", y_range, fit(coord(proj.j, |p| p.1)), -1.0..1.0)?))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A density alone: `log p̃ = −(x₁² − 4)²/4 − x₂²/2`, two wells at x₁ = ±2, its scale stated
    /// as 2 and 1.
    struct Wells;

    impl fm_dist::Density for Wells {
        fn density_name(&self) -> String {
            "wells".into()
        }
        fn density_dim(&self) -> usize {
            2
        }
        fn log_density(&self, x: ndarray::ArrayView2<f64>) -> fm_dist::Result<ndarray::Array1<f64>> {
            Ok(x.rows().into_iter().map(|r| -(r[0] * r[0] - 4.0).powi(2) / 4.0 - r[1] * r[1] / 2.0).collect())
        }
        fn log_normalizer(&self) -> Option<f64> {
            None
        }
        fn grad_log_density(&self, x: ndarray::ArrayView2<f64>) -> fm_dist::Result<ndarray::Array2<f64>> {
            Err(fm_dist::Error::NoDensity(format!("{} rows", x.nrows())))
        }
        fn std_dev(&self) -> Option<Vec<f64>> {
            Some(vec![2.0, 1.0])
        }
    }

    #[test]
    fn a_density_alone_frames_the_axes_and_is_drawn_relative_to_its_largest_value() {
        let target = fm_dist::DensityTarget::new(Box::new(Wells));
        let proj = Projection::new((0, 1), 2).unwrap();
        // No samples: the frame at ±3 stated standard deviations, which takes in both wells.
        assert_eq!(target_points(&target, 100, 0, &proj), vec![(-6.0, -3.0), (6.0, 3.0)]);
        let grid = Grid { x: -3.0..3.0, y: -1.0..1.0, nx: 30, ny: 2 };
        let (density, normalised) = grid_density(&target, &proj, &grid).unwrap().unwrap();
        let max = density.iter().cloned().fold(0.0, f64::max);
        assert!(!normalised && (max - 1.0).abs() < 1e-12, "{max}");
        // Both wells are on the grid, with the same height.
        let row: Vec<f64> = density.iter().take(30).copied().collect();
        assert!((row[4] - row[25]).abs() < 1e-9 && row[4] > 10.0 * row[15], "{row:?}");
        // Nothing to scatter as the target's points without its density either.
        assert!(matches!(backdrop(&target, &Projection::new((0, 1), 2).unwrap(), grid, 5, Vec::new()).unwrap(), Backdrop::Density { .. }));
    }

    #[test]
    fn tick_labels_are_short_at_every_scale() {
        assert_eq!(tick(&4600000.4), "4.6e6");
        assert_eq!(tick(&4650000.0), "4.65e6");
        assert_eq!(tick(&-2.5e-6), "-2.5e-6");
        assert_eq!(tick(&0.30000000000000004), "0.3");
        assert_eq!(tick(&1500.0), "1500");
        assert_eq!(tick(&-3.0), "-3");
        assert_eq!(tick(&0.0), "0");
    }

    #[test]
    fn clipping_keeps_the_inside_part() {
        let (x, y) = (0.0..1.0, 0.0..1.0);
        assert_eq!(clip_segment((0.5, 0.5), (0.6, 0.6), &x, &y), Some(((0.5, 0.5), (0.6, 0.6))));
        assert_eq!(clip_segment((-1.0, 0.5), (2.0, 0.5), &x, &y), Some(((0.0, 0.5), (1.0, 0.5))));
        assert_eq!(clip_segment((-1.0, -1.0), (-0.5, 2.0), &x, &y), None);
        assert_eq!(clip_segment((2.0, 0.5), (2.0, 0.6), &x, &y), None);
    }

    #[test]
    fn fitting_pads_and_survives_constant_and_missing_values() {
        let r = fit([0.0, 10.0, f64::NAN]).unwrap();
        assert!((r.start + 0.5).abs() < 1e-12 && (r.end - 10.5).abs() < 1e-12);
        assert_eq!(fit([3.0, 3.0]).unwrap(), 1.5..4.5);
        assert!(fit([f64::NAN]).is_none());
        assert!(!valid_range(&(1.0..1.0)) && !valid_range(&(f64::MIN..f64::MAX)));
    }

    #[test]
    fn projections_name_their_coordinates_one_based() {
        let p = Projection::new((2, 6), 16).unwrap();
        assert_eq!(p.note().unwrap(), "coordinates 3 and 7 of 16");
        assert_eq!((p.x_name(), p.y_name()), ("x3".to_string(), "x7".to_string()));
        assert!(Projection::new((0, 1), 2).unwrap().note().is_none());
        assert!(Projection::new((0, 2), 2).is_err() && Projection::new((1, 1), 3).is_err());
    }
}

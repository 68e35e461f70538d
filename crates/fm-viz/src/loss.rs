//! Training curves: the loss over steps, and any other named series (W2, KL, …) beside it.

use crate::figure::{self, draw_err, Area, DrawResult, Scene, Style};
use crate::{Error, Result};
use ndarray::ArrayView2;
use plotters::coord::combinators::IntoLogRange;
use plotters::coord::ranged1d::{Ranged, ValueFormatter};
use plotters::coord::types::RangedCoordf64;
use plotters::prelude::*;
use std::ops::Range;
use std::path::Path;

/// Settings of [`loss`].
#[derive(Debug, Clone)]
pub struct LossFigure {
    /// The figure's title, above all panels.
    pub title: String,
    /// Name of the x axis.
    pub x_name: String,
    /// Name of the loss series (its panel's title and y axis).
    pub loss_name: String,
    /// Log-scaled y axes: `None` decides per series (log where all values are positive and
    /// span more than one decade); `Some(true)` requires positive values.
    pub log_y: Option<bool>,
    /// Moving-average window drawn over the raw values: `None` picks one (about 1/40 of the
    /// points, from 50 points on), `Some(1)` draws the raw values only.
    pub smooth: Option<usize>,
    /// Panels per row; 0 puts up to 3 in a row.
    pub columns: usize,
    /// A level drawn as a dashed line across the loss panel, named in its legend: the loss
    /// floor of the exact flow (the part of the loss no model can remove), where known.
    pub floor: Option<f64>,
    /// Width of the whole figure in pixels (320 to 8192).
    pub width: u32,
    /// Height of the whole figure in pixels (200 to 8192), shared by the rows of panels.
    pub height: u32,
}

impl Default for LossFigure {
    fn default() -> Self {
        Self {
            title: "Training".into(),
            x_name: "step".into(),
            loss_name: "loss".into(),
            log_y: None,
            smooth: None,
            columns: 0,
            floor: None,
            width: 1100,
            height: 560,
        }
    }
}

/// Matplotlib's "tab10" colours, one per series.
const TAB10: [RGBColor; 6] =
    [RGBColor(31, 119, 180), RGBColor(255, 127, 14), RGBColor(44, 160, 44), RGBColor(214, 39, 40), RGBColor(148, 103, 189), RGBColor(140, 86, 75)];

/// Draws training curves into `path`: `loss` has rows (step, loss); `extra` holds other named
/// series with rows (step, value), e.g. `("W2", w2.view())`, each in its own panel (their units
/// differ). Rows are drawn in step order; non-finite values are left out (the panel says how
/// many), non-finite steps are an error. Noisy series get a moving average over the raw values.
///
/// PNG, or SVG when `path` ends in `.svg`; written atomically.
///
/// # Errors
/// [`Error::Invalid`] for bad settings, over 15 extra series, or a series that is not
/// `[K ≥ 1, 2]` or cannot be drawn (a non-finite step, no finite value, a value ≤ 0 on a log
/// axis); [`Error::Font`]; [`Error::Dist`] when writing fails.
pub fn loss(path: &Path, loss: ArrayView2<f64>, extra: &[(&str, ArrayView2<f64>)], fig: &LossFigure) -> Result<()> {
    figure::check_size("loss", (fig.width, fig.height), (320, 200))?;
    if extra.len() > 15 {
        return Err(Error::Invalid(format!("{} extra series; at most 15 fit", extra.len())));
    }
    if fig.smooth == Some(0) {
        return Err(Error::Invalid("a moving average over 0 points; use Some(1) for none".into()));
    }
    let mut series = Vec::with_capacity(1 + extra.len());
    for (k, (name, rows)) in std::iter::once((fig.loss_name.as_str(), loss)).chain(extra.iter().map(|(n, r)| (*n, r.view()))).enumerate() {
        let reference = if k == 0 { fig.floor } else { None };
        series.push(Series::new(name, rows, fig, reference, TAB10[k % TAB10.len()])?);
    }
    let n = series.len();
    let cols = if fig.columns == 0 { n.min(3) } else { fig.columns.min(n) };
    let rows = n.div_ceil(cols);
    let st = Style::for_panel_height((fig.height / rows as u32).max(fig.height.min(560)));
    figure::write_figure(path, (fig.width, fig.height), &LossScene { fig, st, series, cols, rows })
}

struct Series {
    name: String,
    /// The floor's level, drawn dashed (the loss panel only).
    reference: Option<f64>,
    points: Vec<(f64, f64)>,
    smooth: Option<(usize, Vec<(f64, f64)>)>,
    dropped: usize,
    log: bool,
    x: Range<f64>,
    y: Range<f64>,
    colour: RGBColor,
}

impl Series {
    fn new(name: &str, rows: ArrayView2<f64>, fig: &LossFigure, reference: Option<f64>, colour: RGBColor) -> Result<Self> {
        if rows.ncols() != 2 || rows.nrows() == 0 {
            return Err(Error::Invalid(format!("series {name:?} has shape {:?}; it needs rows (step, value): [K ≥ 1, 2]", rows.dim())));
        }
        if rows.column(0).iter().any(|s| !s.is_finite()) {
            return Err(Error::Invalid(format!("series {name:?} has a non-finite step")));
        }
        let mut points: Vec<(f64, f64)> = rows.rows().into_iter().map(|r| (r[0], r[1])).collect();
        points.sort_by(|a, b| a.0.total_cmp(&b.0));
        let total = points.len();
        points.retain(|p| p.1.is_finite());
        let dropped = total - points.len();
        if points.is_empty() {
            return Err(Error::Invalid(format!("series {name:?} has no finite value")));
        }
        if reference.is_some_and(|r| !r.is_finite()) {
            return Err(Error::Invalid(format!("series {name:?}: the floor {reference:?} is not finite")));
        }
        let values = || points.iter().map(|p| p.1).chain(reference);
        let positive = values().all(|v| v > 0.0);
        let (lo, hi) = values().fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), v| (lo.min(v), hi.max(v)));
        let log = match fig.log_y {
            Some(true) if !positive => return Err(Error::Invalid(format!("series {name:?} has values ≤ 0; it cannot be log-scaled"))),
            Some(l) => l,
            None => positive && hi / lo > 10.0,
        };
        let y = if log {
            let pad = (hi / lo).max(1.5).powf(figure::FIT_MARGIN);
            (lo / pad)..(hi * pad)
        } else {
            figure::fit([lo, hi]).ok_or_else(|| Error::Invalid(format!("series {name:?} spans too wide a range to draw")))?
        };
        let (x0, x1) = (points[0].0, points[points.len() - 1].0);
        let x = if x1 > x0 { x0..x1 } else { figure::fit([x0]).unwrap_or(-1.0..1.0) };
        if !figure::valid_range(&x) || !figure::valid_range(&y) {
            return Err(Error::Invalid(format!("series {name:?} spans too wide a range to draw")));
        }
        let window = fig.smooth.unwrap_or(if points.len() >= 50 { (points.len() / 40).max(3) } else { 1 });
        let smooth = (window > 1 && window < points.len()).then(|| (window, moving_average(&points, window)));
        Ok(Self { name: name.to_string(), reference, points, smooth, dropped, log, x, y, colour })
    }
}

/// Centred moving average over `w` points (fewer at the ends).
fn moving_average(p: &[(f64, f64)], w: usize) -> Vec<(f64, f64)> {
    let mut prefix = vec![0.0; p.len() + 1];
    for (k, q) in p.iter().enumerate() {
        prefix[k + 1] = prefix[k] + q.1;
    }
    (0..p.len())
        .map(|k| {
            let (a, b) = (k.saturating_sub(w / 2), (k + w - w / 2).min(p.len()));
            (p[k].0, (prefix[b] - prefix[a]) / (b - a) as f64)
        })
        .collect()
}

struct LossScene<'a> {
    fig: &'a LossFigure,
    st: Style,
    series: Vec<Series>,
    cols: usize,
    rows: usize,
}

impl LossScene<'_> {
    fn panel<'a, DB: DrawingBackend + 'a, Y: Ranged<ValueType = f64> + ValueFormatter<f64>>(
        &self,
        mut chart: ChartContext<'a, DB, Cartesian2d<RangedCoordf64, Y>>,
        s: &Series,
    ) -> DrawResult {
        let st = &self.st;
        let y_fmt = |v: &f64| short(*v);
        chart
            .configure_mesh()
            .light_line_style(RGBColor(235, 235, 235))
            .bold_line_style(RGBColor(215, 215, 215))
            .max_light_lines(4)
            .x_desc(&self.fig.x_name)
            .y_desc(&s.name)
            .x_labels(6)
            .y_labels(8)
            .x_label_formatter(&|v| short(*v))
            .y_label_formatter(&y_fmt)
            .label_style(st.label())
            .axis_desc_style(st.desc())
            .draw()
            .map_err(draw_err)?;
        let raw = if s.smooth.is_some() { s.colour.mix(0.3).stroke_width(1) } else { s.colour.stroke_width(st.px(2).max(1)) };
        chart
            .draw_series(LineSeries::new(s.points.iter().copied(), raw))
            .map_err(draw_err)?
            .label("raw")
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], raw));
        if s.points.len() <= 40 {
            let r = st.px(3);
            chart.draw_series(s.points.iter().map(|&p| Circle::new(p, r, s.colour.filled()))).map_err(draw_err)?;
        }
        if let Some(level) = s.reference {
            let grey = RGBColor(90, 90, 90).stroke_width(st.px(2).max(1));
            let ends = [(s.x.start, level), (s.x.end, level)];
            chart
                .draw_series(DashedLineSeries::new(ends, st.px(8), st.px(5), grey))
                .map_err(draw_err)?
                .label(format!("loss floor {} (exact flow)", short(level)))
                .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], grey));
        }
        if let Some((w, avg)) = &s.smooth {
            let bold = s.colour.stroke_width(st.px(2).max(2));
            chart
                .draw_series(LineSeries::new(avg.iter().copied(), bold))
                .map_err(draw_err)?
                .label(format!("moving average of {w}"))
                .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], bold));
        }
        if s.smooth.is_some() || s.reference.is_some() {
            figure::legend(&mut chart, st)?;
        }
        Ok(())
    }
}

/// A compact tick label: 1500 → "1500", 12000 → "12k", 0.0123 → "0.0123", 1e-5 → "1e-5".
fn short(v: f64) -> String {
    let a = v.abs();
    if a == 0.0 {
        "0".into()
    } else if !(1e-3..1e6).contains(&a) {
        let s = format!("{v:.1e}");
        s.replace(".0e", "e")
    } else if a >= 1e4 {
        let s = format!("{:.1}", v / 1e3);
        format!("{}k", s.trim_end_matches('0').trim_end_matches('.'))
    } else {
        let s = format!("{v:.4}");
        let s = if s.contains('.') { s.trim_end_matches('0').trim_end_matches('.').to_string() } else { s };
        if a >= 100.0 {
            format!("{v:.0}")
        } else {
            s
        }
    }
}

impl Scene for LossScene<'_> {
    fn draw<DB: DrawingBackend>(&self, root: &Area<DB>) -> DrawResult {
        let st = &self.st;
        let root = figure::titled(root, &self.fig.title, st)?;
        let areas = root.split_evenly((self.rows, self.cols));
        for (area, s) in areas.iter().zip(&self.series) {
            let mut caption = s.name.clone();
            if s.log {
                caption.push_str(" (log scale)");
            }
            if s.dropped > 0 {
                caption.push_str(&format!(" — {} non-finite not drawn", s.dropped));
            }
            let mut b = ChartBuilder::on(area);
            b.caption(caption, st.caption()).margin(st.px(12)).margin_right(st.px(24)).x_label_area_size(st.px(48)).y_label_area_size(st.px(70));
            if s.log {
                self.panel(b.build_cartesian_2d(s.x.clone(), s.y.clone().log_scale()).map_err(draw_err)?, s)?;
            } else {
                self.panel(b.build_cartesian_2d(s.x.clone(), s.y.clone()).map_err(draw_err)?, s)?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn moving_average_is_centred_and_keeps_length() {
        let p: Vec<(f64, f64)> = (0..5).map(|k| (k as f64, k as f64)).collect();
        let m = moving_average(&p, 3);
        assert_eq!(m.len(), 5);
        assert!((m[2].1 - 2.0).abs() < 1e-12 && (m[0].1 - 0.5).abs() < 1e-12);
    }

    #[test]
    fn short_labels() {
        assert_eq!(short(1500.0), "1500");
        assert_eq!(short(12000.0), "12k");
        assert_eq!(short(0.25), "0.25");
        assert_eq!(short(2.0), "2");
        assert_eq!(short(1e-5), "1e-5");
    }
}

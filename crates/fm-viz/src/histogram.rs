//! Overlaid histograms of one quantity from several sets of (possibly weighted) values: the
//! energy histograms of a Boltzmann sampler (its samples, the same samples reweighted by `p̃/q`,
//! exact samples), the benchmarks' standard picture of what a sampler gets right and wrong.

use crate::figure::{self, draw_err, Area, DrawResult, Scene, Style};
use crate::{Error, Result};
use ndarray::ArrayView1;
use plotters::prelude::*;
use std::path::Path;

/// Settings of [`histograms`].
#[derive(Debug, Clone)]
pub struct HistogramFigure {
    /// The title above the panel.
    pub title: String,
    /// Name of the x axis (the quantity).
    pub x_name: String,
    /// Bins across the drawn range (5 to 1,000).
    pub bins: usize,
    /// Width and height in pixels (320 × 200 to 8192 × 8192).
    pub size: (u32, u32),
}

impl Default for HistogramFigure {
    fn default() -> Self {
        Self { title: "Energy histograms".into(), x_name: "energy E(x) = −log of the unnormalised density".into(), bins: 60, size: (900, 560) }
    }
}

/// One set of values: its name, the values, and their weights (`None`: equal).
pub type HistogramSeries<'a> = (&'a str, ArrayView1<'a, f64>, Option<ArrayView1<'a, f64>>);

/// Draws the normalised histograms (densities: each integrates to 1 over the drawn range) of
/// `series` as step lines over shared bins into `path`. The range runs from the 0.5th to the
/// 99.5th weighted percentile of all values pooled, so that a few far outliers do not squash
/// the picture; each series' legend says which share of its weight falls outside.
///
/// PNG, or SVG when `path` ends in `.svg`; written atomically.
///
/// # Errors
/// [`Error::Invalid`] for no series or over 6, a series with no values, non-finite values or
/// weights, negative weights or weights summing to 0, or bad settings; [`Error::Font`];
/// [`Error::Dist`] when writing fails.
pub fn histograms(path: &Path, series: &[HistogramSeries<'_>], fig: &HistogramFigure) -> Result<()> {
    figure::check_size("histograms", fig.size, (320, 200))?;
    if series.is_empty() || series.len() > COLOURS.len() {
        return Err(Error::Invalid(format!("{} series; 1 to {} fit", series.len(), COLOURS.len())));
    }
    if !(5..=1000).contains(&fig.bins) {
        return Err(Error::Invalid(format!("{} bins; 5 to 1,000 draw", fig.bins)));
    }
    let mut pooled = Vec::new();
    for (name, values, weights) in series {
        if values.is_empty() {
            return Err(Error::Invalid(format!("series {name:?} has no values")));
        }
        figure::check_finite(name, values.iter())?;
        let w = normalised(name, values.len(), *weights)?;
        pooled.extend(values.iter().zip(w).map(|(v, w)| (*v, w / series.len() as f64)));
    }
    pooled.sort_by(|a, b| a.0.total_cmp(&b.0));
    let quantile = |q: f64| {
        let mut acc = 0.0;
        pooled.iter().find(|(_, w)| {
            acc += w;
            acc >= q
        })
    };
    let lo = quantile(0.005).map_or(pooled[0].0, |p| p.0);
    let hi = quantile(0.995).map_or(pooled[pooled.len() - 1].0, |p| p.0);
    let (lo, hi) = if hi > lo { (lo, hi) } else { (lo - 0.5, lo + 0.5) };
    let width = (hi - lo) / fig.bins as f64;
    let mut drawn = Vec::new();
    for (k, (name, values, weights)) in series.iter().enumerate() {
        let w = normalised(name, values.len(), *weights)?;
        let mut density = vec![0.0; fig.bins];
        let mut outside = 0.0;
        for (v, w) in values.iter().zip(w) {
            let bin = ((v - lo) / width).floor();
            if (0.0..fig.bins as f64).contains(&bin) || *v == hi {
                density[(bin as usize).min(fig.bins - 1)] += w / width;
            } else {
                outside += w;
            }
        }
        let label = if outside > 0.0 { format!("{name} ({:.1} % outside)", 100.0 * outside) } else { name.to_string() };
        drawn.push((label, density, COLOURS[k]));
    }
    let top = drawn.iter().flat_map(|(_, d, _)| d.iter().copied()).fold(0.0, f64::max).max(f64::MIN_POSITIVE) * 1.08;
    let st = Style::for_panel_height(fig.size.1);
    figure::write_figure(path, fig.size, &HistogramScene { fig, st, lo, width, top, drawn })
}

/// Weights summing to 1 (equal when none are given).
fn normalised(name: &str, n: usize, weights: Option<ArrayView1<f64>>) -> Result<Vec<f64>> {
    let Some(w) = weights else { return Ok(vec![1.0 / n as f64; n]) };
    if w.len() != n {
        return Err(Error::Invalid(format!("series {name:?} has {n} values but {} weights", w.len())));
    }
    figure::check_finite(name, w.iter())?;
    let total: f64 = w.sum();
    if w.iter().any(|w| *w < 0.0) || total <= 0.0 {
        return Err(Error::Invalid(format!("series {name:?}: weights must be ≥ 0 with a positive sum")));
    }
    Ok(w.iter().map(|w| w / total).collect())
}

/// Samples, reweighted samples, reference, then more.
const COLOURS: [RGBColor; 6] =
    [RGBColor(31, 119, 180), RGBColor(255, 127, 14), RGBColor(60, 60, 60), RGBColor(44, 160, 44), RGBColor(214, 39, 40), RGBColor(148, 103, 189)];

struct HistogramScene<'a> {
    fig: &'a HistogramFigure,
    st: Style,
    lo: f64,
    width: f64,
    top: f64,
    drawn: Vec<(String, Vec<f64>, RGBColor)>,
}

impl Scene for HistogramScene<'_> {
    fn draw<DB: DrawingBackend>(&self, root: &Area<DB>) -> DrawResult {
        let st = &self.st;
        let root = figure::titled(root, &self.fig.title, st)?;
        let hi = self.lo + self.width * self.fig.bins as f64;
        let mut chart = figure::panel(&root, None, self.lo..hi, 0.0..self.top, st)?;
        figure::axes(&mut chart, &self.fig.x_name, "density", st)?;
        for (label, density, colour) in &self.drawn {
            // A step line: each bin's level across its width.
            let steps = density.iter().enumerate().flat_map(|(b, d)| {
                let x0 = self.lo + b as f64 * self.width;
                [(x0, *d), (x0 + self.width, *d)]
            });
            let style = colour.stroke_width(st.px(2).max(2));
            chart
                .draw_series(LineSeries::new(steps, style))
                .map_err(draw_err)?
                .label(label.as_str())
                .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], style));
        }
        figure::legend(&mut chart, st)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::array;

    #[test]
    fn bad_series_are_refused_and_a_figure_is_written() {
        let dir = std::env::temp_dir().join(format!("fm-viz-hist-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let out = dir.join("h.png");
        let v = array![1.0, 2.0, 2.5, 3.0];
        let w = array![1.0, 0.0, 2.0, 1.0];
        let fig = HistogramFigure::default();
        assert!(histograms(&out, &[], &fig).is_err());
        assert!(histograms(&out, &[("x", v.view(), Some(array![1.0].view()))], &fig).unwrap_err().to_string().contains("4 values but 1 weights"));
        assert!(histograms(&out, &[("x", v.view(), Some(array![1.0, -1.0, 1.0, 1.0].view()))], &fig).is_err());
        assert!(histograms(&out, &[("x", array![1.0, f64::NAN].view(), None)], &fig).is_err());
        assert!(!out.exists(), "nothing written for refused input");
        histograms(&out, &[("samples", v.view(), None), ("reweighted", v.view(), Some(w.view()))], &fig).unwrap();
        assert!(std::fs::metadata(&out).unwrap().len() > 1000);
        let _ = std::fs::remove_dir_all(&dir);
    }
}

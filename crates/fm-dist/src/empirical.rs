//! Empirical targets: a user's own point cloud, sampled with replacement.

use crate::{io, Error, Result, Target};
use ndarray::{Array1, Array2, ArrayView2, Axis};
use rand::{Rng, RngCore};
use std::path::Path;

/// The empirical distribution of `N` points in `D` dimensions (each point with mass `1/N`).
///
/// It has no density: [`Target::log_prob`] says so. Sampling draws rows uniformly with
/// replacement, so any batch size works whatever `N` is.
#[derive(Debug, Clone)]
pub struct PointCloud {
    points: Array2<f64>,
    name: String,
}

impl PointCloud {
    /// A cloud from an `N × D` array.
    ///
    /// # Errors
    /// [`Error::Invalid`] when `N` or `D` is 0 or a coordinate is NaN or infinite.
    pub fn new(points: Array2<f64>, name: impl Into<String>) -> Result<Self> {
        let (n, d) = points.dim();
        if n == 0 || d == 0 {
            return Err(Error::Invalid(format!("a point cloud needs at least one point and one column, got {n} × {d}")));
        }
        if let Some(((i, j), v)) = points.indexed_iter().find(|(_, v)| !v.is_finite()) {
            return Err(Error::Invalid(format!("row {} column {} holds {v}: every coordinate must be a finite number", i + 1, j + 1)));
        }
        Ok(Self { points, name: name.into() })
    }

    /// Reads a `.npy` (float32 or float64, shape `N × D`) or `.csv` file (see [`parse_csv`]),
    /// named after the file.
    ///
    /// # Errors
    /// [`Error::Io`] when the file cannot be read; [`Error::File`] for another extension,
    /// content that does not parse, or points [`PointCloud::new`] refuses.
    pub fn read(path: &Path) -> Result<Self> {
        let file_err = |msg: String| Error::File { path: path.display().to_string(), msg };
        let points = io::read_points(path)?;
        let name = path.file_name().map_or_else(|| path.display().to_string(), |n| n.to_string_lossy().into_owned());
        Self::new(points, name).map_err(|e| match e {
            Error::Invalid(msg) => file_err(msg),
            e => e,
        })
    }

    /// The points (`N × D`).
    pub fn points(&self) -> ArrayView2<'_, f64> {
        self.points.view()
    }
}

impl Target for PointCloud {
    fn name(&self) -> String {
        self.name.clone()
    }
    fn dim(&self) -> usize {
        self.points.ncols()
    }
    fn sample(&self, n: usize, rng: &mut dyn RngCore) -> Array2<f64> {
        let rows: Vec<usize> = (0..n).map(|_| rng.random_range(0..self.points.nrows())).collect();
        self.points.select(Axis(0), &rows)
    }
    fn log_prob(&self, _x: ArrayView2<f64>) -> Result<Array1<f64>> {
        Err(Error::NoDensity(format!("the point cloud {}", self.name)))
    }
    fn has_density(&self) -> bool {
        false
    }
}

/// Parses comma-separated numbers, one point per line, into an `N × D` array (read by the
/// `csv` crate: quoted fields, CRLF line ends and a UTF-8 byte-order mark are understood).
///
/// Blank lines and lines starting with `#` are skipped; a first line with no number at all
/// is taken as a header. Ragged rows, non-numbers, NaN and infinities are errors naming
/// the line; so is a file with no data.
///
/// # Errors
/// A message naming the line and field at fault, or saying that there is no data row.
pub fn parse_csv(text: &str) -> std::result::Result<Array2<f64>, String> {
    let mut reader = csv::ReaderBuilder::new()
        .has_headers(false) // a header is told apart below: a first line with no number
        .flexible(true) // ragged rows get our message, which names the line
        .comment(Some(b'#'))
        .trim(csv::Trim::All)
        .from_reader(text.as_bytes());
    let mut values = Vec::new();
    let mut width = None;
    let mut rows = 0;
    for record in reader.records() {
        let fields = record.map_err(|e| e.to_string())?;
        // The reader skips empty lines and comments at the very start of a line; these are
        // lines of blanks and comments after blanks.
        if (fields.len() <= 1 && fields.iter().all(str::is_empty)) || fields.get(0).is_some_and(|f| f.starts_with('#')) {
            continue;
        }
        if rows == 0 && width.is_none() && fields.iter().all(|f| f.parse::<f64>().is_err()) {
            width = Some(fields.len()); // a header names the columns
            continue;
        }
        let lineno = fields.position().map_or(0, |p| start_line(text.as_bytes(), p));
        match width {
            Some(w) if w != fields.len() => return Err(format!("line {lineno} has {} fields, expected {w}", fields.len())),
            _ => width = Some(fields.len()),
        }
        for (j, f) in fields.iter().enumerate() {
            let v: f64 = f.parse().map_err(|_| format!("line {lineno} field {}: '{f}' is not a number", j + 1))?;
            if !v.is_finite() {
                return Err(format!("line {lineno} field {}: {v} is not a finite number", j + 1));
            }
            values.push(v);
        }
        rows += 1;
    }
    if rows == 0 {
        return Err("the file holds no data rows".into());
    }
    Array2::from_shape_vec((rows, width.unwrap_or(0)), values).map_err(|e| e.to_string())
}

/// The line a record starts on. csv's position is where it began to look for the record,
/// before the empty lines and comments it skips (rust-csv issue #208), so these are stepped
/// over here as csv-core does: `\r` and `\n` at the start of a record, and a `#` there up to
/// the next `\n`; and the byte-order mark it strips.
fn start_line(text: &[u8], from: &csv::Position) -> u64 {
    let rest = text.get(from.byte() as usize..).unwrap_or_default();
    let mut rest = rest.strip_prefix(b"\xef\xbb\xbf").unwrap_or(rest);
    let mut line = from.line();
    loop {
        let skip = match rest.first() {
            Some(b'\r' | b'\n') => 1,
            Some(b'#') => rest.iter().position(|&b| b == b'\n').map_or(rest.len(), |i| i + 1),
            _ => return line,
        };
        line += rest[..skip].ends_with(b"\n") as u64;
        rest = &rest[skip..];
    }
}

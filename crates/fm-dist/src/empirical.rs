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
    /// What reading a `.csv` file learned of its first line, kept for [`PointCloud::describe`];
    /// `None` for points from memory or a `.npy` file, which have no header to misread.
    csv: Option<CsvLayout>,
    /// Each point's class and the number of classes (see [`PointCloud::with_labels`]).
    labels: Option<(Vec<usize>, usize)>,
    /// Each point's condition vector, `N × C` (see [`PointCloud::with_values`]).
    values: Option<Array2<f64>>,
}

/// The layout of a `.csv` file besides its points (see [`CsvPoints`]).
#[derive(Debug, Clone)]
struct CsvLayout {
    header: Option<Vec<String>>,
    index_column: bool,
}

/// The most classes a labelled point cloud may have: each class is a one-hot input column of the
/// conditional network, which takes at most 65,536 (`fm_model::MlpConfig::validate`; one
/// limit, so a file is refused when read, not after).
pub const MAX_CLASSES: usize = 65_536;

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
        Ok(Self { points, name: name.into(), csv: None, labels: None, values: None })
    }

    /// The cloud with a class label per point. Labels are given as numbers (as a file holds
    /// them) and must be whole, non-negative and below [`MAX_CLASSES`]; the classes are
    /// `0..=max`, and each must hold at least one point (a gap is an error, not an empty class
    /// to learn).
    ///
    /// # Errors
    /// [`Error::Invalid`] for a count other than the points', a label that is not a
    /// non-negative whole number or is [`MAX_CLASSES`] or more, or a class with no points.
    pub fn with_labels(self, labels: &[f64]) -> Result<Self> {
        let n = self.points.nrows();
        if labels.len() != n {
            return Err(Error::Invalid(format!("{} labels for {n} points: give one label per point", labels.len())));
        }
        let mut out = Vec::with_capacity(n);
        for (i, &l) in labels.iter().enumerate() {
            if !(l.is_finite() && l >= 0.0 && l.fract() == 0.0) {
                return Err(Error::Invalid(format!("label {l} of point {}: labels must be class numbers 0, 1, 2, … (whole, non-negative)", i + 1)));
            }
            if l >= MAX_CLASSES as f64 {
                return Err(Error::Invalid(format!(
                    "label {l} of point {}: at most {MAX_CLASSES} classes are taken (labels 0 to {}): each class is an input column of the network",
                    i + 1,
                    MAX_CLASSES - 1
                )));
            }
            out.push(l as usize);
        }
        let classes = out.iter().max().map_or(0, |m| m + 1);
        let counts = class_counts(&out, classes);
        if let Some(empty) = counts.iter().position(|&c| c == 0) {
            return Err(Error::Invalid(format!("class {empty} has no points (labels run 0 to {}): number the classes without gaps", classes - 1)));
        }
        Ok(Self { labels: Some((out, classes)), ..self })
    }

    /// The cloud with a condition vector per point (`N × C`, finite).
    ///
    /// # Errors
    /// [`Error::Invalid`] for another row count, no columns, or a value that is not finite.
    pub fn with_values(self, values: Array2<f64>) -> Result<Self> {
        let n = self.points.nrows();
        if values.nrows() != n || values.ncols() == 0 {
            return Err(Error::Invalid(format!("condition values of shape {:?} for {n} points: give one row per point", values.dim())));
        }
        if let Some(((i, j), v)) = values.indexed_iter().find(|(_, v)| !v.is_finite()) {
            return Err(Error::Invalid(format!("condition row {} column {} holds {v}: every value must be a finite number", i + 1, j + 1)));
        }
        Ok(Self { values: Some(values), ..self })
    }

    /// Each point's class (`None`: unlabelled).
    pub fn labels(&self) -> Option<&[usize]> {
        self.labels.as_ref().map(|(l, _)| l.as_slice())
    }

    /// Points per class (empty when unlabelled).
    pub fn class_counts(&self) -> Vec<usize> {
        self.labels.as_ref().map_or_else(Vec::new, |(l, k)| class_counts(l, *k))
    }

    /// Reads a `file:` target's argument: a `.npy` or `.csv` file ([`PointCloud::read`]),
    /// optionally followed by `?` and `&`-separated options that say where its conditions are:
    /// - `label=COL`: the column `COL` holds each point's class (taken out of the points);
    /// - `labels=FILE.npy`: a second `.npy` file holds them (`N` or `N × 1` numbers);
    /// - `cond=COL[,COL…]`: those columns are each point's condition vector (taken out);
    /// - `conds=FILE.npy`: a second `.npy` file holds the condition vectors (`N × C`).
    ///
    /// `COL` is a header's column name, `first`, `last`, or a column number counted from 1. For
    /// example `pts.csv?label=last`, `pts.csv?label=species`, `x.npy?labels=y.npy`.
    ///
    /// # Errors
    /// As [`PointCloud::read`]; [`Error::File`] for an unknown option, a column that does not
    /// exist, or conditions that [`PointCloud::with_labels`] or [`PointCloud::with_values`] refuse.
    pub fn open(spec: &str) -> Result<Self> {
        let (path, query) = split_conditions(spec);
        let path = Path::new(path);
        let file_err = |msg: String| Error::File { path: path.display().to_string(), msg };
        let cloud = Self::read(path)?;
        let Some(query) = query else { return Ok(cloud) };
        let header = cloud.csv.as_ref().and_then(|c| c.header.clone());
        let d = cloud.points.ncols();
        let column = |col: &str| -> Result<usize> {
            let col = col.trim();
            let found = match col {
                "first" => Some(0),
                "last" => Some(d - 1),
                _ => match col.parse::<usize>() {
                    Ok(k) if (1..=d).contains(&k) => Some(k - 1),
                    Ok(_) => None,
                    Err(_) => header.as_ref().and_then(|h| h.iter().position(|name| name == col)),
                },
            };
            found.ok_or_else(|| {
                let names = header.as_ref().map_or(String::new(), |h| format!(", or one of the header's names {}", name_list(h)));
                file_err(format!("no column '{col}': the file has {d} columns; name one as first, last, a number from 1 to {d}{names}"))
            })
        };
        let (mut label_cols, mut value_cols) = (Vec::new(), Vec::new());
        let (mut labels, mut values) = (None, None);
        for option in query.split('&').filter(|o| !o.trim().is_empty()) {
            let (key, value) = option
                .split_once('=')
                .ok_or_else(|| file_err(format!("option '{option}' needs a value: label=COL, labels=FILE.npy, cond=COL,… or conds=FILE.npy")))?;
            match key.trim() {
                "label" => label_cols.push(column(value)?),
                "labels" => labels = Some(crate::io::read_npy(Path::new(value.trim()))?),
                "cond" => value_cols.extend(value.split(',').map(column).collect::<Result<Vec<_>>>()?),
                "conds" => values = Some(crate::io::read_npy(Path::new(value.trim()))?),
                other => return Err(file_err(format!("unknown option '{other}' (valid: label=COL, labels=FILE.npy, cond=COL,…, conds=FILE.npy)"))),
            }
        }
        if label_cols.len() + usize::from(labels.is_some()) > 1 {
            return Err(file_err("give the labels once: one label=COL or one labels=FILE.npy".into()));
        }
        let taken: Vec<usize> = label_cols.iter().chain(&value_cols).copied().collect();
        if (1..taken.len()).any(|i| taken[..i].contains(&taken[i])) || taken.len() >= d {
            return Err(file_err(format!("the label and condition columns ({}) must be distinct and leave at least one coordinate", taken.len())));
        }
        let keep: Vec<usize> = (0..d).filter(|j| !taken.contains(j)).collect();
        let label_values: Option<Vec<f64>> = match (label_cols.first(), labels) {
            (Some(&j), _) => Some(cloud.points.column(j).to_vec()),
            (None, Some(file)) if file.ncols() == 1 => Some(file.column(0).to_vec()),
            (None, Some(file)) => return Err(file_err(format!("the labels file holds {} columns; it must hold one label per point", file.ncols()))),
            (None, None) => None,
        };
        let values = match values {
            Some(v) if !value_cols.is_empty() => {
                return Err(file_err(format!("give the conditions once: cond=COL,… or conds=FILE.npy, not both ({} columns and a file)", v.ncols())))
            }
            Some(v) => Some(v),
            None if value_cols.is_empty() => None,
            None => Some(cloud.points.select(Axis(1), &value_cols)),
        };
        let mut out = Self::new(cloud.points.select(Axis(1), &keep), cloud.name.clone()).map_err(|e| file_err(e.to_string()))?;
        out.csv = cloud.csv.map(|c| CsvLayout { header: c.header.map(|h| keep.iter().map(|&j| h[j].clone()).collect()), ..c });
        if let Some(l) = label_values {
            out = out.with_labels(&l).map_err(|e| file_err(e.to_string()))?;
        }
        if let Some(v) = values {
            out = out.with_values(v).map_err(|e| file_err(e.to_string()))?;
        }
        Ok(out)
    }

    /// Reads a `.npy` (float32 or float64, shape `N × D`) or `.csv` file (see [`parse_csv_table`]),
    /// named after the file. What the CSV parse took the first line as is kept for
    /// [`PointCloud::describe`].
    ///
    /// # Errors
    /// [`Error::Io`] when the file cannot be read; [`Error::File`] for another extension,
    /// content that does not parse, or points [`PointCloud::new`] refuses.
    pub fn read(path: &Path) -> Result<Self> {
        let file_err = |msg: String| Error::File { path: path.display().to_string(), msg };
        let (points, csv) = match io::read_points_file(path)? {
            io::PointsFile::Npy(points) => (points, None),
            io::PointsFile::Csv(t) => (t.points, Some(CsvLayout { header: t.header, index_column: t.index_column })),
        };
        let name = path.file_name().map_or_else(|| path.display().to_string(), |n| n.to_string_lossy().into_owned());
        let cloud = Self::new(points, name).map_err(|e| match e {
            Error::Invalid(msg) => file_err(msg),
            e => e,
        })?;
        Ok(Self { csv, ..cloud })
    }

    /// One line for logs and reports: how many points in how many dimensions, from where, and
    /// for a `.csv` file what its first line was taken as (a header, pandas' default column
    /// names, a dropped pandas index column), so that a reading the user did not expect shows
    /// at once. For example `1,000 points in 2 dimensions from pts.csv (header: x, y; pandas
    /// index column dropped)`.
    pub fn describe(&self) -> String {
        let (n, d) = self.points.dim();
        let plural = |k: usize, one: &str, many: &str| format!("{} {}", group_digits(k), if k == 1 { one } else { many });
        let mut out = format!("{} in {} from {}", plural(n, "point", "points"), plural(d, "dimension", "dimensions"), self.name);
        if let Some(counts) = self.labels.as_ref().map(|(l, k)| class_counts(l, *k)) {
            let list: Vec<String> = counts.iter().map(|&c| group_digits(c)).collect();
            out += &format!(", {} classes of {} points", counts.len(), list.join("/"));
        }
        if let Some(v) = &self.values {
            out += &format!(", a {}-D condition per point", v.ncols());
        }
        if let Some(csv) = &self.csv {
            let mut notes = vec![match &csv.header {
                None => "no header".to_string(),
                Some(names) if names.iter().enumerate().all(|(i, f)| is_count(f, i)) => {
                    format!("header: pandas' default column names {}", name_list(names))
                }
                Some(names) => format!("header: {}", name_list(names)),
            }];
            if csv.index_column {
                notes.push("pandas index column dropped".into());
            }
            out += &format!(" ({})", notes.join("; "));
        }
        out
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
        self.sample_conditioned(n, rng).points
    }
    /// The labels and condition vectors of the rows drawn.
    fn sample_conditioned(&self, n: usize, rng: &mut dyn RngCore) -> crate::Conditioned {
        let rows: Vec<usize> = (0..n).map(|_| rng.random_range(0..self.points.nrows())).collect();
        crate::Conditioned {
            points: self.points.select(Axis(0), &rows),
            labels: self.labels.as_ref().map(|(l, _)| rows.iter().map(|&i| l[i]).collect()),
            values: self.values.as_ref().map(|v| v.select(Axis(0), &rows)),
        }
    }
    fn classes(&self) -> usize {
        self.labels.as_ref().map_or(0, |(_, k)| *k)
    }
    fn condition_dim(&self) -> usize {
        self.values.as_ref().map_or(0, Array2::ncols)
    }
    fn class_weights(&self) -> Vec<f64> {
        let n = self.points.nrows() as f64;
        self.class_counts().into_iter().map(|c| c as f64 / n).collect()
    }
    fn log_prob(&self, _x: ArrayView2<f64>) -> Result<Array1<f64>> {
        Err(Error::NoDensity(format!("the point cloud {}", self.name)))
    }
    fn has_density(&self) -> bool {
        false
    }
    fn describe_data(&self) -> Option<String> {
        Some(self.describe())
    }
}

fn class_counts(labels: &[usize], classes: usize) -> Vec<usize> {
    let mut counts = vec![0; classes];
    for &l in labels {
        counts[l] += 1;
    }
    counts
}

/// A `file:` argument split at the `?` that starts its condition options ([`PointCloud::open`]):
/// the last `?` followed by options (`key=value`, or one of the option names alone, which
/// [`PointCloud::open`] then refuses for its missing value).
pub fn split_conditions(spec: &str) -> (&str, Option<&str>) {
    let is_option = |o: &str| o.contains('=') || CONDITION_OPTIONS.contains(&o.trim());
    match spec.rsplit_once('?') {
        Some((path, query)) if query.split('&').any(is_option) => (path, Some(query)),
        _ => (spec, None),
    }
}

/// The options of a `file:` target's conditions ([`PointCloud::open`]).
const CONDITION_OPTIONS: [&str; 4] = ["label", "labels", "cond", "conds"];

/// A `.csv` point cloud as [`parse_csv_table`] read it: the points, and what the first line
/// was taken as, so that a caller can say so (see [`PointCloud::describe`]) and a reading the
/// user did not expect shows at once instead of changing the data silently.
#[derive(Debug, Clone, PartialEq)]
pub struct CsvPoints {
    /// The points, `N × D` with `N` and `D` at least 1, every coordinate finite.
    pub points: Array2<f64>,
    /// The names of the `D` columns when the first line was a header (without the name of a
    /// dropped index column); `None` when the first line was a point.
    pub header: Option<Vec<String>>,
    /// Whether the header marked a pandas index column (its first name empty or `Unnamed: 0`),
    /// which was checked to hold integers and dropped. Only ever `true` with a header.
    pub index_column: bool,
}

/// Parses comma-separated numbers, one point per line, into an `N × D` array: the points of
/// [`parse_csv_table`], for callers that need nothing else.
///
/// # Errors
/// As [`parse_csv_table`].
pub fn parse_csv(text: &str) -> std::result::Result<Array2<f64>, String> {
    parse_csv_table(text).map(|t| t.points)
}

/// Parses comma-separated numbers, one point per line (read by the `csv` crate: quoted fields,
/// CRLF line ends and a UTF-8 byte-order mark are understood), and says what the first line was.
///
/// Blank lines and lines starting with `#` are skipped. The first line is
/// - a header when it holds no number at all;
/// - pandas' default column names when it is exactly `0,1,…,k-1` (integers as pandas writes
///   them, `df.to_csv(index=False)` of a frame made from a numpy array) and some value below is
///   not a whole number. When every value is a whole number the line could as well be a point,
///   so the file is refused rather than guessed at;
/// - a header over a pandas index column when its first name is empty (`df.to_csv()`: `,x,y`
///   or `,0,1`) or `Unnamed: 0` (such a file read and written again). That column must hold
///   integers and is dropped: it numbers the rows, it is no coordinate;
/// - otherwise a point: every field a number. A line mixing numbers and other text is an
///   error, never a header that would swallow a data row.
///
/// Without a header, a first column counting `0,1,2,…,n-1` (`n ≥ 3`) beside a column holding
/// fractions is what `df.to_csv(header=False)` writes, its index included, and is refused:
/// taken as a coordinate it would add a dimension the data does not have.
///
/// # Errors
/// A one-line message naming the line and field at fault (ragged rows, non-numbers, NaN and
/// infinities, a non-integer in an index column, a first line mixing numbers and text), saying
/// which of two readings a file allows and how to settle it (`0,1` over whole numbers, a
/// headerless index column), or that there is no data row.
pub fn parse_csv_table(text: &str) -> std::result::Result<CsvPoints, String> {
    let mut reader = csv::ReaderBuilder::new()
        .has_headers(false) // a header is told apart below, by what the first line holds
        .flexible(true) // ragged rows get our message, which names the line
        .comment(Some(b'#'))
        .trim(csv::Trim::All)
        .from_reader(text.as_bytes());
    let mut first: Option<FirstLine> = None;
    let mut index_name: Option<String> = None; // the header's name for a pandas index column
    let mut width = 0;
    let mut values = Vec::new();
    let mut rows = 0usize;
    let mut data_lines = (0, 0); // the first and last data line
    let mut all_whole = true; // every value is a whole number (index column aside)
    let mut whole_after_first_column = true;
    let mut counts_up = true; // data row i's first field is `i`, written as an integer
    for record in reader.records() {
        let fields = record.map_err(|e| e.to_string())?;
        // The reader skips empty lines and comments at the very start of a line; these are
        // lines of blanks and comments after blanks.
        if (fields.len() <= 1 && fields.iter().all(str::is_empty)) || fields.get(0).is_some_and(|f| f.starts_with('#')) {
            continue;
        }
        let lineno = fields.position().map_or(0, |p| start_line(text.as_bytes(), p));
        if first.is_none() {
            let line = first_line(&fields, lineno)?;
            width = fields.len();
            let is_data = matches!(line, FirstLine::Data);
            if let FirstLine::Header { index: Some(name), .. } = &line {
                index_name = Some(name.clone());
            }
            first = Some(line);
            if !is_data {
                continue;
            }
        }
        if fields.len() != width {
            return Err(format!("line {lineno} has {} fields, expected {width}", fields.len()));
        }
        for (j, f) in fields.iter().enumerate() {
            if j == 0 {
                counts_up &= is_count(f, rows);
                if let Some(name) = &index_name {
                    if !is_integer(f) {
                        let marker = if name.is_empty() { "empty first name".to_string() } else { format!("first name '{}'", shown(name)) };
                        return Err(format!(
                            "line {lineno} field 1: '{}' is not an integer, yet the header's {marker} marks column 1 as a pandas index (which is dropped): \
                             name that column in the header to keep it as data",
                            shown(f)
                        ));
                    }
                    continue;
                }
            }
            let v: f64 = f.parse().map_err(|_| format!("line {lineno} field {}: '{}' is not a number", j + 1, shown(f)))?;
            if !v.is_finite() {
                return Err(format!("line {lineno} field {}: {v} is not a finite number", j + 1));
            }
            if v.fract() != 0.0 {
                all_whole = false;
                whole_after_first_column &= j == 0;
            }
            values.push(v);
        }
        data_lines = (if rows == 0 { lineno } else { data_lines.0 }, lineno);
        rows += 1;
    }
    let (header, index_column) = match first {
        None => return Err("the file holds no data rows".into()),
        Some(FirstLine::Data) => {
            if rows >= 3 && width >= 2 && counts_up && !whole_after_first_column {
                return Err(format!(
                    "column 1 counts 0, 1, 2, …, {} (lines {}–{}) like the index pandas writes with header=False, beside fractions: \
                     write the file with index=False, or add a header line whose first name is empty (such as '{}') to drop that column, \
                     or one naming every column to keep it",
                    rows - 1,
                    data_lines.0,
                    data_lines.1,
                    example_header(width - 1, true)
                ));
            }
            (None, false)
        }
        Some(FirstLine::PandasNamesOrPoint { lineno, names }) => {
            if all_whole {
                return Err(format!(
                    "line {lineno} ({}) could be pandas' default column names or a data point, as every value is a whole number: \
                     if it is a point, add a header line such as '{ex}' above it; if it names the columns, replace it by such a line \
                     (or write the file with header=False)",
                    counting(names.len()),
                    ex = example_header(names.len(), false)
                ));
            }
            (Some(names), false)
        }
        Some(FirstLine::Header { names, index }) => (Some(names), index.is_some()),
    };
    if rows == 0 {
        return Err("the file holds no data rows".into());
    }
    let points = Array2::from_shape_vec((rows, width - index_column as usize), values).map_err(|e| e.to_string())?;
    Ok(CsvPoints { points, header, index_column })
}

/// What the first line of a `.csv` file is taken as (see [`parse_csv_table`]).
enum FirstLine {
    /// Column names; `index` is the name of a pandas index column before them (empty or
    /// `Unnamed: 0`), if there is one.
    Header { names: Vec<String>, index: Option<String> },
    /// `0,1,…,k-1` with no index column: pandas' default column names, or a point. The rows
    /// below decide.
    PandasNamesOrPoint { lineno: u64, names: Vec<String> },
    /// A point.
    Data,
}

/// Classifies the first line; a line mixing numbers and other text is an error naming its
/// first field that is not a number.
fn first_line(fields: &csv::StringRecord, lineno: u64) -> std::result::Result<FirstLine, String> {
    let is_number = |f: &str| f.parse::<f64>().is_ok();
    let index = matches!(fields.get(0), Some("" | "Unnamed: 0"));
    let names: Vec<String> = fields.iter().skip(index as usize).map(str::to_string).collect();
    if index && names.is_empty() {
        // A single empty field is a blank line, skipped before this.
        return Err(format!("line {lineno}: its only column, 'Unnamed: 0', is a pandas index: the file holds no data column"));
    }
    let index = index.then(|| fields[0].to_string());
    if names.iter().all(|f| !is_number(f)) {
        return Ok(FirstLine::Header { names, index });
    }
    if names.iter().enumerate().all(|(i, f)| is_count(f, i)) {
        return Ok(match index {
            Some(_) => FirstLine::Header { names, index }, // an empty field is no coordinate
            None => FirstLine::PandasNamesOrPoint { lineno, names },
        });
    }
    match fields.iter().enumerate().find(|(_, f)| !is_number(f)) {
        Some((j, f)) => Err(format!("line {lineno} field {}: '{}' is not a number (the line also holds numbers, so it is no header)", j + 1, shown(f))),
        None => Ok(FirstLine::Data),
    }
}

/// Whether `f` is `i` written as pandas writes an integer: decimal digits, no sign, no
/// leading zero.
fn is_count(f: &str, i: usize) -> bool {
    !f.is_empty() && f.bytes().all(|b| b.is_ascii_digit()) && (f == "0" || !f.starts_with('0')) && f.parse::<usize>() == Ok(i)
}

/// Whether `f` is an integer written as one (an optional sign, then decimal digits).
fn is_integer(f: &str) -> bool {
    let digits = f.strip_prefix(['-', '+']).unwrap_or(f);
    !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit())
}

/// `0,1,…,k-1`, shortened for many columns.
fn counting(k: usize) -> String {
    match k {
        0..=4 => (0..k).map(|i| i.to_string()).collect::<Vec<_>>().join(","),
        _ => format!("0,1,…,{}", k - 1),
    }
}

/// A header line naming `k` columns, after an empty name for an index column if `index`.
fn example_header(k: usize, index: bool) -> String {
    let names = match k {
        0..=3 => ["x", "y", "z"][..k].join(","),
        _ => format!("x0,x1,…,x{}", k - 1),
    };
    if index {
        format!(",{names}")
    } else {
        names
    }
}

/// A field as an error message or a description shows it: on one line, with invisible
/// characters (controls, a stray byte-order mark, zero-width spaces) escaped, and cut short
/// after 40 characters.
fn shown(f: &str) -> String {
    let mut out = String::new();
    for (i, c) in f.chars().enumerate() {
        if i == 40 {
            out.push('…');
            break;
        }
        if c.is_control() || matches!(c, '\u{feff}' | '\u{200b}'..='\u{200f}' | '\u{2028}' | '\u{2029}' | '\u{2060}') {
            out.extend(c.escape_default());
        } else {
            out.push(c);
        }
    }
    out
}

/// `n` with its digits in groups of three: `1,000`.
pub fn group_digits(n: usize) -> String {
    let digits = n.to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// Column names for a description: `x, y`, an empty name as `''`, the middle of a long list
/// left out.
fn name_list(names: &[String]) -> String {
    let show = |f: &String| if f.is_empty() { "''".to_string() } else { shown(f) };
    match names {
        [head @ .., last] if names.len() > 8 => format!("{}, …, {}", head[..6].iter().map(show).collect::<Vec<_>>().join(", "), show(last)),
        _ => names.iter().map(show).collect::<Vec<_>>().join(", "),
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_are_integers_as_pandas_writes_them() {
        assert!(is_count("0", 0) && is_count("12", 12));
        for (f, i) in [("00", 0), ("01", 1), ("+1", 1), ("1.0", 1), ("1e0", 1), ("", 0), ("2", 1)] {
            assert!(!is_count(f, i), "{f:?} counted as {i}");
        }
        assert!(is_integer("-3") && is_integer("+7") && is_integer("007") && !is_integer("1.0") && !is_integer("-") && !is_integer(""));
    }

    #[test]
    fn descriptions_group_digits_and_shorten_long_headers() {
        assert_eq!([0, 7, 999, 1000, 1_234_567].map(group_digits), ["0", "7", "999", "1,000", "1,234,567"]);
        let names: Vec<String> = (0..20).map(|j| format!("x{j}")).collect();
        assert_eq!(name_list(&names), "x0, x1, x2, x3, x4, x5, …, x19");
        assert_eq!(name_list(&["".to_string(), "b".to_string()]), "'', b");
        assert_eq!(shown("a\u{feff}\nb"), "a\\u{feff}\\nb");
    }
}

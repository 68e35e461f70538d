//! Files: atomic writes (nothing is ever left half-written) and `.npy` arrays.

use crate::{Error, Result};
use ndarray::{Array2, ArrayView2};
use std::path::{Path, PathBuf};

fn io_err(path: &Path, source: std::io::Error) -> Error {
    Error::Io { path: path.display().to_string(), cause: source }
}

/// Creates `path` through a temporary file in the same folder: `make` writes the
/// temporary file (whose name keeps `path`'s extension), then it is fsynced and
/// renamed over `path`. On any error the temporary file is removed and `path` is untouched.
///
/// # Errors
/// [`Error::File`] when `path` has no file name, or when `make`, the fsync or the rename
/// fails (the message gives `make`'s error or the system's reason).
pub fn replace_atomically<E: std::fmt::Display>(path: &Path, make: impl FnOnce(&Path) -> std::result::Result<(), E>) -> Result<()> {
    let dir = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let name = path.file_name().ok_or_else(|| Error::File { path: path.display().to_string(), msg: "not a file name".into() })?;
    let ext = path.extension().map(|e| format!(".{}", e.to_string_lossy())).unwrap_or_default();
    let tmp = dir.join(format!(".{}.{}.tmp{}", name.to_string_lossy(), std::process::id(), ext));
    // One message for every failure, naming the file and the system's reason (no space, read-only…).
    let cannot_write = |e: &dyn std::fmt::Display| Error::File { path: path.display().to_string(), msg: format!("cannot write: {e}") };
    let result = make(&tmp)
        .map_err(|e| cannot_write(&e))
        .and_then(|()| std::fs::File::open(&tmp).and_then(|f| f.sync_all()).map_err(|e| cannot_write(&e)))
        .and_then(|()| std::fs::rename(&tmp, path).map_err(|e| cannot_write(&e)));
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

/// Writes `bytes` to `path` atomically (see [`replace_atomically`]).
///
/// # Errors
/// [`Error::File`] when the file cannot be written; `path` is then untouched.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    replace_atomically(path, |tmp| std::fs::write(tmp, bytes))
}

// `.npy` is read and written here rather than through the `ndarray-npy` crate (0.10), tried and
// measured for this purpose: on a hostile file it allocates the header length (up to 4 GiB) and
// the size the shape claims before checking either against the file, and its header parser
// (pest, through py_literal) backtracks exponentially on nested brackets (0.3 s at 10, 19 s at 14);
// guarding it took the same checks this reader makes, and each decode became 30× slower (87 µs
// against 2.9 µs), which the fuzz harness's budget feels. The format we need is small: float32 or
// float64, 1-D or 2-D, C order, little endian; everything else is refused with a one-line error.

/// An element type `.npy` files can hold here.
pub trait NpyElement: Copy {
    /// The `descr` of the `.npy` header: `<f4` (little-endian float32) or `<f8` (float64).
    const DESCR: &'static str;
    /// Appends the value's little-endian bytes to `out`.
    fn to_le(self, out: &mut Vec<u8>);
}
impl NpyElement for f32 {
    const DESCR: &'static str = "<f4";
    fn to_le(self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.to_le_bytes());
    }
}
impl NpyElement for i64 {
    const DESCR: &'static str = "<i8";
    fn to_le(self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.to_le_bytes());
    }
}
impl NpyElement for f64 {
    const DESCR: &'static str = "<f8";
    fn to_le(self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.to_le_bytes());
    }
}

const NPY_MAGIC: &[u8] = b"\x93NUMPY";

/// Encodes a 2-D array in the `.npy` format (version 1.0, C order, little endian).
pub fn encode_npy<T: NpyElement>(a: ArrayView2<T>) -> Vec<u8> {
    let (n, d) = a.dim();
    let mut header = format!("{{'descr': '{}', 'fortran_order': False, 'shape': ({n}, {d}), }}", T::DESCR);
    // Magic (6) + version (2) + length (2) + header + '\n' is padded to a multiple of 64.
    let total = 10 + header.len() + 1;
    header.push_str(&" ".repeat((64 - total % 64) % 64));
    header.push('\n');
    let mut out = Vec::with_capacity(10 + header.len() + n * d * std::mem::size_of::<T>());
    out.extend_from_slice(NPY_MAGIC);
    out.extend_from_slice(&[1, 0]);
    out.extend_from_slice(&(header.len() as u16).to_le_bytes());
    out.extend_from_slice(header.as_bytes());
    for &v in a.iter() {
        v.to_le(&mut out);
    }
    out
}

/// Writes a 2-D array to a `.npy` file atomically.
///
/// # Errors
/// [`Error::File`] when the file cannot be written; `path` is then untouched.
pub fn write_npy<T: NpyElement>(path: &Path, a: ArrayView2<T>) -> Result<()> {
    write_atomic(path, &encode_npy(a))
}

/// Decodes a `.npy` file holding a float32, float64, int32 or int64 array of 1 or 2 dimensions
/// (C order, little endian) into an `n × d` array of `f64` (1-D arrays become `n × 1`).
///
/// # Errors
/// A message saying why the bytes are not such a file: a bad magic, version or header, another
/// dtype, Fortran order, not 1 or 2 dimensions, or data whose length does not match the shape.
pub fn decode_npy(bytes: &[u8]) -> std::result::Result<Array2<f64>, String> {
    if bytes.len() < 10 || &bytes[..6] != NPY_MAGIC {
        return Err("not a .npy file (bad magic)".into());
    }
    let (header_len, start): (usize, usize) = match bytes[6] {
        1 => (u16::from_le_bytes([bytes[8], bytes[9]]) as usize, 10),
        2 | 3 if bytes.len() >= 12 => (u32::from_le_bytes([bytes[8], bytes[9], bytes[10], bytes[11]]) as usize, 12),
        v => return Err(format!("unsupported .npy version {v}")),
    };
    let header = bytes.get(start..start.saturating_add(header_len)).ok_or("truncated .npy header")?;
    let header = std::str::from_utf8(header).map_err(|_| "the .npy header is not text")?;
    let field = |key: &str| -> std::result::Result<&str, String> {
        let at = header.find(&format!("'{key}'")).ok_or(format!("the .npy header has no '{key}'"))?;
        Ok(header[at + key.len() + 2..].trim_start().trim_start_matches(':').trim_start())
    };
    let descr = field("descr")?;
    // Floats for points; integers too, for a file of class labels (numpy's default int64).
    let (width, int) = match descr.get(..5) {
        Some("'<f4'") => (4, false),
        Some("'<f8'") => (8, false),
        Some("'<i4'") => (4, true),
        Some("'<i8'") => (8, true),
        _ => return Err(format!("unsupported dtype {}: expected little-endian float32, float64, int32 or int64", descr.split(',').next().unwrap_or(""))),
    };
    if !field("fortran_order")?.starts_with("False") {
        return Err("Fortran-ordered .npy arrays are not supported".into());
    }
    let shape = field("shape")?;
    let inner = shape.strip_prefix('(').and_then(|s| s.split(')').next()).ok_or("malformed shape in the .npy header")?;
    let dims: Vec<usize> = inner
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|s| s.parse::<usize>().map_err(|_| format!("malformed shape ({inner}) in the .npy header")))
        .collect::<std::result::Result<_, _>>()?;
    let (n, d) = match dims[..] {
        [n] => (n, 1),
        [n, d] => (n, d),
        _ => return Err(format!("expected a 1-D or 2-D array, got shape ({inner})")),
    };
    let data = &bytes[start + header_len..];
    let expected = n.checked_mul(d).and_then(|c| c.checked_mul(width)).ok_or("absurd shape in the .npy header")?;
    if data.len() != expected {
        return Err(format!("shape ({inner}) needs {expected} bytes of data, the file holds {}", data.len()));
    }
    let values: Vec<f64> = match (width, int) {
        (4, false) => data.chunks_exact(4).map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]) as f64).collect(),
        (4, true) => data.chunks_exact(4).map(|c| i32::from_le_bytes([c[0], c[1], c[2], c[3]]) as f64).collect(),
        (_, false) => data.chunks_exact(8).map(|c| f64::from_le_bytes(c.try_into().expect("chunk of 8"))).collect(),
        (_, true) => data.chunks_exact(8).map(|c| i64::from_le_bytes(c.try_into().expect("chunk of 8")) as f64).collect(),
    };
    Array2::from_shape_vec((n, d), values).map_err(|e| e.to_string())
}

/// Reads a `.npy` file (see [`decode_npy`]).
///
/// # Errors
/// [`Error::Io`] when the file cannot be read, [`Error::File`] when it does not decode.
pub fn read_npy(path: &Path) -> Result<Array2<f64>> {
    let bytes = std::fs::read(path).map_err(|e| io_err(path, e))?;
    decode_npy(&bytes).map_err(|msg| Error::File { path: path.display().to_string(), msg })
}

/// Encodes a 2-D array as CSV: a header `x0,x1,…` and one row per point, each number
/// printed with Rust's shortest round-trip form (reading it back gives the same value).
pub fn encode_csv(a: ArrayView2<f64>) -> String {
    let header: Vec<String> = (0..a.ncols()).map(|j| format!("x{j}")).collect();
    let mut out = header.join(",") + "\n";
    for row in a.rows() {
        out += &row.iter().map(f64::to_string).collect::<Vec<_>>().join(",");
        out.push('\n');
    }
    out
}

/// Reads an `N × D` array from a `.npy` or `.csv` file (by extension).
///
/// # Errors
/// [`Error::Io`] when the file cannot be read; [`Error::File`] for another extension or
/// content that does not parse ([`decode_npy`], [`crate::empirical::parse_csv_table`]).
pub fn read_points(path: &Path) -> Result<Array2<f64>> {
    Ok(match read_points_file(path)? {
        PointsFile::Npy(points) => points,
        PointsFile::Csv(table) => table.points,
    })
}

/// A point-cloud file as read: a `.csv` file keeps what its first line was taken as.
pub(crate) enum PointsFile {
    /// The array of a `.npy` file.
    Npy(Array2<f64>),
    /// The points and header of a `.csv` file.
    Csv(crate::empirical::CsvPoints),
}

/// Reads a `.npy` or `.csv` file (by extension): [`read_points`] and
/// [`crate::PointCloud::read`] share this one choice of reader.
pub(crate) fn read_points_file(path: &Path) -> Result<PointsFile> {
    // Another file fm writes (a checkpoint, a run file, a training log) is named for what it is.
    let named = |msg: String| {
        use crate::files::FileKind;
        let kind = std::fs::read(path).ok().and_then(|b| FileKind::detect(&b)).filter(|k| !matches!(k, FileKind::Npy | FileKind::PointsCsv));
        let msg = match kind {
            Some(kind) => format!("{msg}; {}", kind.advice()),
            None => msg,
        };
        Error::File { path: path.display().to_string(), msg }
    };
    match path.extension().and_then(|e| e.to_str()).map(str::to_ascii_lowercase).as_deref() {
        Some("npy") => read_npy(path).map(PointsFile::Npy),
        Some("csv") => {
            let text = std::fs::read_to_string(path).map_err(|e| io_err(path, e))?;
            crate::empirical::parse_csv_table(&text).map(PointsFile::Csv).map_err(named)
        }
        _ => Err(named("expected a .npy or .csv file of points".into())),
    }
}

/// Writes an `N × D` array to a `.npy` (float32) or `.csv` file (by extension), atomically.
///
/// # Errors
/// [`Error::File`] for another extension, or when the file cannot be written.
pub fn write_points(path: &Path, a: ArrayView2<f64>) -> Result<()> {
    match path.extension().and_then(|e| e.to_str()).map(str::to_ascii_lowercase).as_deref() {
        Some("npy") => write_npy(path, a.mapv(|v| v as f32).view()),
        Some("csv") => write_atomic(path, encode_csv(a).as_bytes()),
        _ => Err(Error::File {
            path: path.display().to_string(),
            msg: "samples are written as .npy or .csv; give a file name with one of those extensions".into(),
        }),
    }
}

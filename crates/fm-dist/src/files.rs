//! What a file that fm writes is, recognised by its content, so that one given to a command
//! that wants another kind is named for what it is, with the file or option to use instead.

/// The kinds of file fm writes (and the PyTorch state dict it also reads).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FileKind {
    /// An fm model checkpoint (`model.safetensors`, or a `.pth` export of one).
    ModelCheckpoint,
    /// A training state (`train-state.safetensors`: model, optimizer and EMA, for resuming).
    TrainState,
    /// A `.npy` array (samples, or a point cloud).
    Npy,
    /// A run file (`config.toml`).
    RunFile,
    /// A run's training log (`metrics.csv`).
    Metrics,
    /// Points as CSV, as `fm sample --out X.csv` writes them (header `x0,x1,…`).
    PointsCsv,
    /// A run's report (`report.json`), or other JSON.
    Json,
    /// A figure (`.png`, `.svg`, `.gif`).
    Figure,
}

impl FileKind {
    /// The kind of file `bytes` hold, when it is one fm writes; `None` otherwise.
    pub fn detect(bytes: &[u8]) -> Option<FileKind> {
        if bytes.starts_with(b"\x93NUMPY") {
            return Some(FileKind::Npy);
        }
        if bytes.starts_with(b"\x89PNG") || bytes.starts_with(b"GIF8") || bytes.starts_with(b"<svg") || bytes.starts_with(b"<?xml") {
            return Some(FileKind::Figure);
        }
        if bytes.starts_with(b"PK\x03\x04") {
            // Our `.pth` exports keep their metadata in the archive; its format names the model.
            return contains(bytes, b"fm-rs/mlp").then_some(FileKind::ModelCheckpoint);
        }
        if let Some(header) = safetensors_header(bytes) {
            return if contains(header, b"\"fm-rs/train-state\"") {
                Some(FileKind::TrainState)
            } else {
                contains(header, b"\"fm-rs/").then_some(FileKind::ModelCheckpoint)
            };
        }
        let text = std::str::from_utf8(&bytes[..bytes.len().min(4096)]).unwrap_or_default();
        if text.starts_with("step,") {
            return Some(FileKind::Metrics);
        }
        if text.starts_with("x0,") || text.starts_with("x0\n") {
            return Some(FileKind::PointsCsv);
        }
        if text.trim_start().starts_with('{') {
            return Some(FileKind::Json);
        }
        if text.lines().any(|l| matches!(l.trim(), "[train]" | "[model]" | "[sample]")) {
            return Some(FileKind::RunFile);
        }
        None
    }

    /// What the file is and where it belongs, as the end of an error message.
    pub fn advice(self) -> &'static str {
        match self {
            FileKind::ModelCheckpoint => "it is an fm model checkpoint: give it as --checkpoint",
            FileKind::TrainState => {
                "it is fm's training state (model, optimizer and EMA, read by `fm train --resume DIR`): give the model.safetensors beside it"
            }
            FileKind::Npy => {
                "it is a .npy array of points (samples or a point cloud): judge it with `fm eval --samples FILE`, or learn it with `--target file:FILE`"
            }
            FileKind::RunFile => "it is a run file: give it as --config",
            FileKind::Metrics => "it is a run's training log (metrics.csv); `fm plot loss --run DIR` draws it",
            FileKind::PointsCsv => {
                "it is a CSV of points (samples or a point cloud): judge it with `fm eval --samples FILE`, or learn it with `--target file:FILE`"
            }
            FileKind::Json => "it is a JSON file (a run's report.json?)",
            FileKind::Figure => "it is a figure",
        }
    }
}

/// The JSON header of safetensors bytes (8-byte little-endian length, then the header).
fn safetensors_header(bytes: &[u8]) -> Option<&[u8]> {
    let len = u64::from_le_bytes(bytes.get(..8)?.try_into().ok()?);
    let header = bytes.get(8..8usize.checked_add(usize::try_from(len).ok()?)?)?;
    header.starts_with(b"{").then_some(header)
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn safetensors(header: &str) -> Vec<u8> {
        let mut b = (header.len() as u64).to_le_bytes().to_vec();
        b.extend_from_slice(header.as_bytes());
        b
    }

    #[test]
    fn each_kind_is_recognised_and_others_are_not() {
        assert_eq!(FileKind::detect(&safetensors(r#"{"__metadata__":{"format":"fm-rs/train-state"}}"#)), Some(FileKind::TrainState));
        assert_eq!(FileKind::detect(&safetensors(r#"{"__metadata__":{"format":"fm-rs/mlp"}}"#)), Some(FileKind::ModelCheckpoint));
        assert_eq!(FileKind::detect(&safetensors(r#"{"__metadata__":{"format":"pt"}}"#)), None);
        assert_eq!(FileKind::detect(b"\x93NUMPY\x01\x00"), Some(FileKind::Npy));
        assert_eq!(FileKind::detect(b"step,loss,lr\n1,2,3\n"), Some(FileKind::Metrics));
        assert_eq!(FileKind::detect(b"target = \"gmm3\"\n\n[train]\nsteps = 3\n"), Some(FileKind::RunFile));
        assert_eq!(FileKind::detect(b"1.0,2.0\n"), None);
        assert_eq!(FileKind::detect(b"x0,x1\n1,2\n"), Some(FileKind::PointsCsv));
        assert_eq!(FileKind::detect(b"\x89PNG\r\n"), Some(FileKind::Figure));
        assert_eq!(FileKind::detect(b"{\"train\": {}}"), Some(FileKind::Json));
        assert_eq!(FileKind::detect(&[0xff; 3]), None);
        // A header length past the end of the bytes is not a safetensors file.
        assert_eq!(FileKind::detect(&u64::MAX.to_le_bytes()), None);
    }
}

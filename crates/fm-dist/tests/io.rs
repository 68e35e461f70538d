//! `.npy` files and atomic writes.

use fm_dist::io::{decode_npy, encode_npy, read_npy, write_atomic, write_npy};
use ndarray::{array, Array2};

fn temp_dir(name: &str) -> std::path::PathBuf {
    let d = std::env::temp_dir().join(format!("fm-dist-{name}-{}", std::process::id()));
    std::fs::create_dir_all(&d).unwrap();
    d
}

#[test]
fn npy_round_trips_f32_and_f64() {
    let a = array![[1.5f64, -2.0], [3.25, 4.0], [5.0, 6.0]];
    assert_eq!(decode_npy(&encode_npy(a.view())).unwrap(), a);
    let b = a.mapv(|v| v as f32);
    assert_eq!(decode_npy(&encode_npy(b.view())).unwrap(), a);
    let dir = temp_dir("npy");
    write_npy(&dir.join("a.npy"), a.view()).unwrap();
    assert_eq!(read_npy(&dir.join("a.npy")).unwrap(), a);
}

#[test]
fn npy_header_is_aligned_as_numpy_requires() {
    let bytes = encode_npy(Array2::<f32>::zeros((7, 2)).view());
    let header_len = u16::from_le_bytes([bytes[8], bytes[9]]) as usize;
    assert_eq!((10 + header_len) % 64, 0);
    assert_eq!(bytes[10 + header_len - 1], b'\n');
    assert_eq!(bytes.len(), 10 + header_len + 7 * 2 * 4);
}

#[test]
fn bad_npy_files_are_errors() {
    let good = encode_npy(array![[1.0f64, 2.0]].view());
    assert!(decode_npy(b"hello").unwrap_err().contains("bad magic"));
    assert!(decode_npy(&good[..good.len() - 1]).unwrap_err().contains("needs 16 bytes"));
    // Same-length edits keep the header's length field right.
    let lying = replace(&good, b"(1, 2)", b"(9, 9)");
    assert!(decode_npy(&lying).unwrap_err().contains("needs 648 bytes"));
    let unsigned = replace(&good, b"<f8", b"<u8");
    assert!(decode_npy(&unsigned).unwrap_err().contains("unsupported dtype"));
    // int64 (numpy's default integers, as class labels come) reads as whole numbers.
    let int = encode_npy(array![[3i64], [-1]].view());
    assert_eq!(decode_npy(&int).unwrap(), array![[3.0], [-1.0]]);
    for cut in 0..good.len() {
        assert!(decode_npy(&good[..cut]).is_err(), "truncated at {cut} accepted");
    }
}

#[test]
fn atomic_write_replaces_or_leaves_untouched() {
    let dir = temp_dir("atomic");
    let path = dir.join("f.txt");
    write_atomic(&path, b"first").unwrap();
    write_atomic(&path, b"second").unwrap();
    assert_eq!(std::fs::read(&path).unwrap(), b"second");
    let failed = fm_dist::io::replace_atomically(&path, |tmp| {
        std::fs::write(tmp, b"half").unwrap();
        Err("disk full")
    });
    assert!(failed.unwrap_err().to_string().contains("disk full"));
    assert_eq!(std::fs::read(&path).unwrap(), b"second");
    let leftovers: Vec<_> = std::fs::read_dir(&dir).unwrap().filter_map(|e| e.ok()).filter(|e| e.file_name() != "f.txt").collect();
    assert!(leftovers.is_empty(), "temporary files left: {leftovers:?}");
    assert!(write_atomic(&dir.join("missing-dir").join("f"), b"x").is_err());
}

/// A failed atomic write, at any stage (here the final rename, over a folder), is one message
/// naming the file and the system's reason once, and leaves no temporary file.
#[test]
fn failed_atomic_writes_say_which_file_and_why() {
    let dir = temp_dir("cannot-write");
    let target = dir.join("a-folder");
    std::fs::create_dir_all(target.join("inside")).unwrap();
    let err = write_atomic(&target, b"x").unwrap_err();
    let chain = format!("{err}{}", std::error::Error::source(&err).map(|s| format!(": {s}")).unwrap_or_default());
    assert!(chain.starts_with(&format!("{}: cannot write: ", target.display())) && chain.matches("os error").count() == 1, "{chain}");
    let leftovers: Vec<_> = std::fs::read_dir(&dir).unwrap().filter_map(|e| e.ok()).filter(|e| e.file_name() != "a-folder").collect();
    assert!(leftovers.is_empty(), "temporary files left: {leftovers:?}");
}

fn replace(bytes: &[u8], from: &[u8], to: &[u8]) -> Vec<u8> {
    let at = bytes.windows(from.len()).position(|w| w == from).expect("pattern present");
    [&bytes[..at], to, &bytes[at + from.len()..]].concat()
}

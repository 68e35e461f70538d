//! PyTorch `.pth` files, as `torch.save(net.state_dict(), path)` writes them, read and written
//! without Python and without running any code from the file.
//!
//! Such a file is a ZIP archive of uncompressed records under one folder: `data.pkl` (a pickle
//! of an `OrderedDict` of tensors), `data/<key>` (the raw bytes of each storage), `byteorder`
//! and `version`. The pickle is read by a restricted interpreter that accepts only the globals a
//! state dict needs; any other (`os.system`, `builtins.eval`, a pickled module class, …) is an
//! error naming it. Tensors are rebuilt from their storage bytes, offset, size and stride, after
//! checking that every size stays within the bytes the file really holds.
//!
//! ```
//! use fm_model::{checkpoint::{StateDict, TensorData}, pth};
//!
//! let state: StateDict = vec![("w".into(), TensorData { shape: vec![2, 2], values: vec![1.0, 2.0, 3.0, 4.0] })];
//! let bytes = pth::write_state_dict(&state, &Default::default()).unwrap();
//! assert_eq!(pth::read_state_dict(&bytes).unwrap(), state);
//!
//! let evil = b"PK\x03\x04 not really a zip";
//! assert!(pth::read_state_dict(evil).unwrap_err().to_string().contains("zip"));
//! ```

mod pickle;
mod zip;

use crate::checkpoint::{Metadata, StateDict, TensorData};
use crate::{Error, Result};
use pickle::{TensorRef, FLOAT32, FLOAT64};
use std::collections::HashMap;

/// Name of the folder inside archives written here (what `torch.save` uses for in-memory buffers).
const ARCHIVE: &str = "archive";
/// Record (under the archive folder) in which earlier fm versions kept their metadata as JSON; read
/// still, no longer written (the metadata is in the pickle now, see [`write_state_dict`]).
pub const METADATA_RECORD: &str = "extra/fm_metadata.json";

fn err(msg: impl Into<String>) -> Error {
    Error::Checkpoint { path: "<bytes>".into(), msg: msg.into() }
}

/// Whether `bytes` start like a ZIP archive (`PK\x03\x04`), as every `torch.save` file since
/// torch 1.6 does.
pub fn is_pth(bytes: &[u8]) -> bool {
    bytes.starts_with(b"PK\x03\x04")
}

/// The tensors of a `torch.save`d state dict, in the file's order, converted to `f32`.
///
/// Accepts float32 and float64 tensors, any storage location (`cpu`, `cuda:0`, …: only the bytes
/// are read), either byte order, and strided views. Anything else is an [`Error::Checkpoint`].
///
/// # Errors
/// As [`read`].
pub fn read_state_dict(bytes: &[u8]) -> Result<StateDict> {
    Ok(read(bytes)?.0)
}

/// The tensors (see [`read_state_dict`]) and the metadata that [`write_state_dict`] stored in
/// the archive (empty for files written by PyTorch).
///
/// # Errors
/// [`Error::Checkpoint`] (path `<bytes>`) for a legacy pre-zip pickle, a malformed archive,
/// pickle or metadata record, a global the restricted unpickler refuses, a dtype other than float32 and float64,
/// or sizes that reach past the bytes the file holds.
pub fn read(bytes: &[u8]) -> Result<(StateDict, Metadata)> {
    if bytes.first() == Some(&0x80) {
        return Err(err(
            "this is a pickle without a zip archive: the legacy torch.save format (torch < 1.6) is not supported; load and save it again with a recent torch",
        ));
    }
    if !is_pth(bytes) {
        return Err(err(format!("not a torch.save archive (a zip file starts with 50 4b 03 04, this one with {})", zip::describe_start(bytes))));
    }
    let entries = zip::read(bytes).map_err(|e| err(format!("not a readable torch.save archive: {e}")))?;
    let mut pickles = entries.iter().filter(|e| e.name.ends_with("/data.pkl") && e.name.matches('/').count() == 1);
    let pkl = pickles.next().ok_or_else(|| err("not a torch.save archive: it has no '<name>/data.pkl' record"))?;
    if pickles.next().is_some() {
        return Err(err("the archive holds more than one '<name>/data.pkl' record"));
    }
    let prefix = &pkl.name[..pkl.name.len() - "data.pkl".len()];
    let by_name: HashMap<&str, &zip::Entry> = entries.iter().filter_map(|e| Some((e.name.strip_prefix(prefix)?, e))).collect();
    let record = |name: &str| by_name.get(name).copied();
    let big_endian = match record("byteorder").map(|e| e.data()).transpose().map_err(err)? {
        None | Some(b"little") => false,
        Some(b"big") => true,
        Some(other) => return Err(err(format!("unknown byteorder record '{}'", String::from_utf8_lossy(other)))),
    };
    let (tensors, in_pickle) = pickle::load(pkl.data().map_err(err)?).map_err(err)?;
    // Ours is in the pickle (and survives a `torch.load`/`torch.save` round trip); files written by
    // earlier fm versions have it in a record of the archive only.
    let json = match (in_pickle, record(METADATA_RECORD)) {
        (Some(json), _) => Some(json.into_bytes()),
        (None, Some(e)) => Some(e.data().map_err(err)?.to_vec()),
        (None, None) => None,
    };
    let metadata = match json {
        None => Metadata::new(),
        Some(json) => serde_json::from_slice(&json).map_err(|e| err(format!("the fm metadata is not a JSON map of strings: {e}")))?,
    };
    // Tensors may not together hold more data than the file: a pickle cannot make us allocate
    // more than it could have stored (shared storages beyond that are refused).
    let mut budget = bytes.len() as u64;
    let mut storages: HashMap<&str, &[u8]> = HashMap::new();
    let mut state = StateDict::with_capacity(tensors.len());
    for (name, t) in &tensors {
        let key = t.storage.key.as_str();
        let data = match storages.get(key) {
            Some(d) => *d,
            None => {
                let e = record(&format!("data/{key}")).ok_or_else(|| err(format!("storage '{key}' of tensor '{name}' is missing from the archive")))?;
                let d = e.data().map_err(err)?;
                storages.insert(key, d);
                d
            }
        };
        state.push((name.clone(), materialize(name, t, data, big_endian, &mut budget).map_err(err)?));
    }
    Ok((state, metadata))
}

/// The values of one tensor, read from its storage's bytes.
fn materialize(name: &str, t: &TensorRef, data: &[u8], big_endian: bool, budget: &mut u64) -> std::result::Result<TensorData, String> {
    let s = &t.storage;
    let dtype = s.dtype;
    if dtype != FLOAT32 && dtype != FLOAT64 {
        return Err(format!("tensor '{name}' has dtype {} (torch.{}); only float32 and float64 tensors can be loaded", dtype.name, dtype.storage));
    }
    let elem = dtype.size as u64;
    let storage_bytes = s.numel.checked_mul(elem).filter(|&b| b <= data.len() as u64).ok_or_else(|| {
        format!("storage '{}' of tensor '{name}' claims {} {} elements, but its record holds only {} bytes", s.key, s.numel, dtype.name, data.len())
    })?;
    let too_big = || format!("tensor '{name}' of size {:?} has more elements than any file can hold", t.size);
    let numel = t.size.iter().try_fold(1u64, |a, &n| a.checked_mul(n)).ok_or_else(too_big)?;
    let needed = numel.checked_mul(elem).ok_or_else(too_big)?;
    *budget = budget.checked_sub(needed).ok_or_else(|| {
        format!("tensor '{name}' of size {:?} needs {needed} bytes, more than remain of the file ({} bytes): its sizes are inconsistent", t.size, *budget)
    })?;
    let mut values = Vec::with_capacity(numel as usize);
    if numel > 0 {
        // The last element the view reaches must lie inside the storage.
        let last = t.size.iter().zip(&t.stride).try_fold(t.offset, |a, (&n, &st)| a.checked_add((n - 1).checked_mul(st)?));
        if last.is_none_or(|l| l >= s.numel) {
            return Err(format!(
                "tensor '{name}' (size {:?}, stride {:?}, offset {}) reaches past the end of its storage '{}' of {} elements",
                t.size, t.stride, t.offset, s.key, s.numel
            ));
        }
        let bytes = &data[..storage_bytes as usize];
        let at = |i: u64| -> f32 {
            let b = &bytes[(i * elem) as usize..((i + 1) * elem) as usize];
            match (dtype == FLOAT32, big_endian) {
                (true, false) => f32::from_le_bytes([b[0], b[1], b[2], b[3]]),
                (true, true) => f32::from_be_bytes([b[0], b[1], b[2], b[3]]),
                (false, false) => f64::from_le_bytes([b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7]]) as f32,
                (false, true) => f64::from_be_bytes([b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7]]) as f32,
            }
        };
        // Walk the view in row-major order (an odometer over the indices).
        let mut index = vec![0u64; t.size.len()];
        let mut pos = t.offset;
        for _ in 0..numel {
            values.push(at(pos));
            for d in (0..index.len()).rev() {
                // Wrapping: the positions read are all checked above; the ones passed over at a
                // carry are not, and need not fit.
                index[d] += 1;
                pos = pos.wrapping_add(t.stride[d]);
                if index[d] < t.size[d] {
                    break;
                }
                pos = pos.wrapping_sub(t.stride[d].wrapping_mul(t.size[d]));
                index[d] = 0;
            }
        }
    }
    Ok(TensorData { shape: t.size.iter().map(|&n| n as usize).collect(), values })
}

/// A `torch.save`-compatible archive of `state` (float32, contiguous), which
/// `torch.load(path, weights_only=True)` reads as an `OrderedDict` of tensors. Non-empty
/// `metadata` is stored as JSON in the dict's `_metadata` attribute, under the root module's
/// entry (`sd._metadata[""]["fm_metadata"]`): `load_state_dict` ignores it, and PyTorch keeps it
/// when the loaded dict is saved again (`torch.save(torch.load(p), q)`), though not when a
/// module's `state_dict()` is saved after loading it.
///
/// # Errors
/// [`Error::Config`] when a tensor's values do not fill its shape, or the archive would exceed
/// what a non-ZIP64 archive holds (4 GiB, 65,535 entries).
pub fn write_state_dict(state: &StateDict, metadata: &Metadata) -> Result<Vec<u8>> {
    let mut shapes = Vec::with_capacity(state.len());
    for (name, t) in state {
        let numel: usize = t.shape.iter().product();
        if numel != t.values.len() {
            return Err(Error::Config(format!("tensor '{name}' has shape {:?} ({numel} elements) but {} values", t.shape, t.values.len())));
        }
        shapes.push(t.shape.iter().map(|&n| n as u64).collect::<Vec<u64>>());
    }
    let json = if metadata.is_empty() { None } else { Some(serde_json::to_string(metadata).map_err(|e| Error::Config(e.to_string()))?) };
    let pkl = pickle::Writer::state_dict(
        state.iter().zip(&shapes).enumerate().map(|(i, ((name, _), shape))| (name.as_str(), i.to_string(), &shape[..])),
        json.as_deref(),
    );
    let mut records = vec![
        (format!("{ARCHIVE}/data.pkl"), pkl),
        (format!("{ARCHIVE}/.format_version"), b"1".to_vec()),
        (format!("{ARCHIVE}/.storage_alignment"), zip::ALIGNMENT.to_string().into_bytes()),
        (format!("{ARCHIVE}/byteorder"), b"little".to_vec()),
    ];
    for (i, (_, t)) in state.iter().enumerate() {
        records.push((format!("{ARCHIVE}/data/{i}"), t.values.iter().flat_map(|v| v.to_le_bytes()).collect()));
    }
    records.push((format!("{ARCHIVE}/version"), b"3\n".to_vec()));
    zip::write(&records).map_err(Error::Config)
}

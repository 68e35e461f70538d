//! The subset of ZIP that `torch.save` writes and reads: stored (uncompressed) entries, found
//! through the central directory (ZIP64 records understood), each checked against its CRC-32.
//!
//! Every offset and size read from the file is checked against the file's length before use, so
//! a truncated or lying archive is an error, never a large allocation or an out-of-bounds read.

use std::fmt::Write as _;

const LOCAL: u32 = 0x0403_4b50;
const CENTRAL: u32 = 0x0201_4b50;
const END: u32 = 0x0605_4b50;
const END64: u32 = 0x0606_4b50;
const END64_LOCATOR: u32 = 0x0706_4b50;

/// Data records start at multiples of this, as torch aligns them (`.storage_alignment`).
pub(crate) const ALIGNMENT: usize = 64;

/// One entry of an archive, its data still unchecked against its CRC.
pub(crate) struct Entry<'a> {
    pub name: String,
    data: &'a [u8],
    crc: u32,
}

impl<'a> Entry<'a> {
    /// The entry's bytes, after checking their CRC-32.
    pub fn data(&self) -> Result<&'a [u8], String> {
        let crc = crc32(self.data);
        if crc != self.crc {
            return Err(format!("zip entry '{}' is corrupt (CRC-32 {crc:08x}, expected {:08x})", self.name, self.crc));
        }
        Ok(self.data)
    }
}

/// Little-endian reads at checked positions.
struct At<'a>(&'a [u8]);

impl<'a> At<'a> {
    fn bytes(&self, pos: u64, len: u64, what: &str) -> Result<&'a [u8], String> {
        let end = pos.checked_add(len).filter(|&e| e <= self.0.len() as u64);
        match end {
            Some(end) => Ok(&self.0[pos as usize..end as usize]),
            None => Err(format!("{what} at byte {pos} (+{len}) lies past the end of the file ({} bytes); is it truncated?", self.0.len())),
        }
    }
    fn u16(&self, pos: u64, what: &str) -> Result<u16, String> {
        Ok(u16::from_le_bytes(self.bytes(pos, 2, what)?.try_into().map_err(|_| "short read")?))
    }
    fn u32(&self, pos: u64, what: &str) -> Result<u32, String> {
        Ok(u32::from_le_bytes(self.bytes(pos, 4, what)?.try_into().map_err(|_| "short read")?))
    }
    fn u64(&self, pos: u64, what: &str) -> Result<u64, String> {
        Ok(u64::from_le_bytes(self.bytes(pos, 8, what)?.try_into().map_err(|_| "short read")?))
    }
}

/// The entries of a ZIP archive, in central-directory order.
pub(crate) fn read(bytes: &[u8]) -> Result<Vec<Entry<'_>>, String> {
    let at = At(bytes);
    // The end-of-central-directory record: 22 bytes, then a comment of up to 64 KiB.
    let min_end = bytes.len().saturating_sub(22 + 0xFFFF);
    let end = (min_end..=bytes.len().saturating_sub(22))
        .rev()
        .find(|&p| bytes.len() >= 22 && at.u32(p as u64, "").ok() == Some(END))
        .ok_or("not a complete zip archive (no end-of-central-directory record; is the file truncated?)")? as u64;
    let mut count = at.u16(end + 10, "entry count")? as u64;
    let mut cd_size = at.u32(end + 12, "central directory size")? as u64;
    let mut cd_offset = at.u32(end + 16, "central directory offset")? as u64;
    if count == 0xFFFF || cd_size == 0xFFFF_FFFF || cd_offset == 0xFFFF_FFFF {
        let locator = end.checked_sub(20).ok_or("zip64 end-of-central-directory locator is missing")?;
        if at.u32(locator, "zip64 locator")? != END64_LOCATOR {
            return Err("zip64 end-of-central-directory locator is missing".into());
        }
        let end64 = at.u64(locator + 8, "zip64 end record offset")?;
        if at.u32(end64, "zip64 end record")? != END64 {
            return Err(format!("no zip64 end-of-central-directory record at byte {end64}"));
        }
        count = at.u64(end64 + 32, "zip64 entry count")?;
        cd_size = at.u64(end64 + 40, "zip64 central directory size")?;
        cd_offset = at.u64(end64 + 48, "zip64 central directory offset")?;
    }
    at.bytes(cd_offset, cd_size, "central directory")?;
    // Each central entry takes at least 46 bytes: a count beyond that is a lie.
    if count > cd_size / 46 {
        return Err(format!("zip central directory of {cd_size} bytes cannot hold the {count} entries it claims"));
    }
    let mut entries = Vec::with_capacity(count as usize);
    let mut pos = cd_offset;
    for _ in 0..count {
        if at.u32(pos, "central directory entry")? != CENTRAL {
            return Err(format!("bad zip central directory entry at byte {pos}"));
        }
        let method = at.u16(pos + 10, "compression method")?;
        let crc = at.u32(pos + 16, "CRC-32")?;
        let mut csize = at.u32(pos + 20, "compressed size")? as u64;
        let mut usize_ = at.u32(pos + 24, "size")? as u64;
        let name_len = at.u16(pos + 28, "name length")? as u64;
        let extra_len = at.u16(pos + 30, "extra length")? as u64;
        let comment_len = at.u16(pos + 32, "comment length")? as u64;
        let mut offset = at.u32(pos + 42, "local header offset")? as u64;
        let name_bytes = at.bytes(pos + 46, name_len, "entry name")?;
        let name = String::from_utf8_lossy(name_bytes).into_owned();
        // ZIP64 extended information: the 64-bit values of the saturated 32-bit fields, in order.
        let extra = at.bytes(pos + 46 + name_len, extra_len, "extra field")?;
        let mut e = 0;
        while e + 4 <= extra.len() {
            let id = u16::from_le_bytes([extra[e], extra[e + 1]]);
            let len = u16::from_le_bytes([extra[e + 2], extra[e + 3]]) as usize;
            let body = extra.get(e + 4..e + 4 + len).ok_or_else(|| format!("zip entry '{name}' has a malformed extra field"))?;
            if id == 1 {
                let mut values = body.chunks_exact(8).map(|c| u64::from_le_bytes(c.try_into().unwrap_or([0; 8])));
                for field in [&mut usize_, &mut csize, &mut offset] {
                    if *field == 0xFFFF_FFFF {
                        *field = values.next().ok_or_else(|| format!("zip entry '{name}' lacks its zip64 sizes"))?;
                    }
                }
            }
            e += 4 + len;
        }
        if method != 0 {
            return Err(format!(
                "zip entry '{name}' is compressed (method {method}); torch.save writes uncompressed entries, so save it again with torch.save"
            ));
        }
        if csize != usize_ {
            return Err(format!("zip entry '{name}' is stored but its sizes differ ({csize} vs {usize_})"));
        }
        if at.u32(offset, "local header")? != LOCAL {
            return Err(format!("zip entry '{name}': no local header at byte {offset}"));
        }
        let local_name = at.u16(offset + 26, "local name length")? as u64;
        let local_extra = at.u16(offset + 28, "local extra length")? as u64;
        let data = at.bytes(offset + 30 + local_name + local_extra, csize, &format!("data of zip entry '{name}'"))?;
        entries.push(Entry { name, data, crc });
        pos += 46 + name_len + extra_len + comment_len;
    }
    Ok(entries)
}

/// A ZIP archive of stored entries, each entry's data aligned to [`ALIGNMENT`] bytes by padding
/// its local extra field (as torch does, id `FB`), without data descriptors.
pub(crate) fn write(entries: &[(String, Vec<u8>)]) -> Result<Vec<u8>, String> {
    let mut out = Vec::new();
    let mut central = Vec::new();
    let u32_of = |v: usize, what: &str| u32::try_from(v).map_err(|_| format!("{what} exceeds 4 GiB: writing zip64 archives is not supported"));
    for (name, data) in entries {
        let offset = out.len();
        let crc = crc32(data);
        let size = u32_of(data.len(), &format!("entry '{name}'"))?;
        let name_len = u16::try_from(name.len()).map_err(|_| format!("zip entry name '{name}' is too long"))?;
        let header_end = offset + 30 + name.len();
        let pad = (ALIGNMENT - (header_end + 4) % ALIGNMENT) % ALIGNMENT;
        let mut extra = b"FB".to_vec();
        extra.extend_from_slice(&(pad as u16).to_le_bytes());
        extra.resize(4 + pad, b'Z');
        for (v, n) in [(LOCAL, 4), (20, 2), (0, 2), (0, 2), (0, 2), (0, 2), (crc, 4), (size, 4), (size, 4)] {
            out.extend_from_slice(&v.to_le_bytes()[..n]);
        }
        out.extend_from_slice(&name_len.to_le_bytes());
        out.extend_from_slice(&(extra.len() as u16).to_le_bytes());
        out.extend_from_slice(name.as_bytes());
        out.extend_from_slice(&extra);
        out.extend_from_slice(data);
        let offset = u32_of(offset, "archive")?;
        for (v, n) in [(CENTRAL, 4), (20, 2), (20, 2), (0, 2), (0, 2), (0, 2), (0, 2), (crc, 4), (size, 4), (size, 4)] {
            central.extend_from_slice(&v.to_le_bytes()[..n]);
        }
        for (v, n) in [(name_len as u32, 2), (0, 2), (0, 2), (0, 2), (0, 2), (0, 4), (offset, 4)] {
            central.extend_from_slice(&v.to_le_bytes()[..n]);
        }
        central.extend_from_slice(name.as_bytes());
    }
    let count = u16::try_from(entries.len()).map_err(|_| "too many zip entries".to_string())? as u32;
    let cd_offset = u32_of(out.len(), "archive")?;
    let cd_size = u32_of(central.len(), "central directory")?;
    out.extend_from_slice(&central);
    for (v, n) in [(END, 4), (0, 2), (0, 2), (count, 2), (count, 2), (cd_size, 4), (cd_offset, 4), (0, 2)] {
        out.extend_from_slice(&v.to_le_bytes()[..n]);
    }
    Ok(out)
}

/// CRC-32 (IEEE, as ZIP uses), bytewise with a table built at compile time.
pub(crate) fn crc32(data: &[u8]) -> u32 {
    const TABLE: [u32; 256] = {
        let mut table = [0u32; 256];
        let mut i = 0;
        while i < 256 {
            let mut c = i as u32;
            let mut k = 0;
            while k < 8 {
                c = if c & 1 != 0 { 0xEDB8_8320 ^ (c >> 1) } else { c >> 1 };
                k += 1;
            }
            table[i] = c;
            i += 1;
        }
        table
    };
    !data.iter().fold(!0u32, |c, &b| TABLE[((c ^ b as u32) & 0xFF) as usize] ^ (c >> 8))
}

/// A short printable description of the first bytes of a file, for error messages.
pub(crate) fn describe_start(bytes: &[u8]) -> String {
    let mut s = String::new();
    for &b in bytes.iter().take(8) {
        let _ = write!(s, "{b:02x} ");
    }
    s.trim_end().to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crc32_matches_the_standard_check_value() {
        assert_eq!(crc32(b"123456789"), 0xCBF4_3926);
        assert_eq!(crc32(b""), 0);
    }

    #[test]
    fn written_archives_read_back_aligned() {
        let entries = vec![("a/data.pkl".to_string(), b"hello".to_vec()), ("a/data/0".to_string(), vec![7u8; 100])];
        let bytes = write(&entries).unwrap();
        let back = read(&bytes).unwrap();
        assert_eq!(back.len(), 2);
        for ((name, data), e) in entries.iter().zip(&back) {
            assert_eq!(&e.name, name);
            assert_eq!(e.data().unwrap(), &data[..]);
            assert_eq!((e.data.as_ptr() as usize - bytes.as_ptr() as usize) % ALIGNMENT, 0);
        }
        for cut in 0..bytes.len() {
            assert!(read(&bytes[..cut]).is_err(), "cut at {cut}");
        }
    }
}

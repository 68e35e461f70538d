//! Random edits of an input, from a seeded ChaCha stream: the same seed gives the same inputs.

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

/// Multi-byte values that break sizes and counts: written at a random offset, 1 to 8 bytes
/// wide, little or big endian.
const WORDS: [u64; 16] = [
    0,
    1,
    0x7f,
    0x80,
    0xff,
    0x7fff,
    0x8000,
    0xffff,
    0x7fff_ffff,
    0x8000_0000,
    0xffff_ffff,
    1 << 32,
    1 << 40,
    0x7fff_ffff_ffff_ffff,
    0x8000_0000_0000_0000,
    u64::MAX,
];

/// Single bytes that are special in binary headers or in the text formats.
const BYTES: [u8; 20] = [0, 1, 0x7f, 0x80, 0xfe, 0xff, b'0', b'9', b'-', b'.', b'e', b'"', b'\'', b'[', b']', b'{', b'}', b',', b'\n', b'='];

/// Numbers written over a number of a text input: huge, tiny, negative, not numbers at all.
const NUMBERS: [&str; 24] = [
    "0",
    "-0.0",
    "-1",
    "1e308",
    "1e309",
    "-1e309",
    "1e-400",
    "5e-324",
    "1.7976931348623157e308",
    "nan",
    "inf",
    "-inf",
    "255",
    "65536",
    "2147483648",
    "4294967296",
    "1099511627776",
    "9223372036854775807",
    "-9223372036854775808",
    "18446744073709551615",
    "18446744073709551616",
    "99999999999999999999999999999999",
    "0x10",
    "1_000",
];

/// Bits of syntax, inserted anywhere.
const TOKENS: [&str; 28] = [
    "\n",
    ",",
    "[",
    "]",
    "{",
    "}",
    "\"",
    "'",
    ":",
    "=",
    "#",
    " ",
    "\t",
    "\r\n",
    ".",
    "[[components]]\n",
    "[train]\n",
    "\"\"\"",
    "'''",
    "true",
    "null",
    "\\u0000",
    "\u{feff}",
    "é",
    "\0",
    "\u{1d11e}",
    "(",
    ")",
];

/// Mutates inputs with stacked random edits.
pub struct Mutator {
    rng: ChaCha8Rng,
    max_len: usize,
}

impl Mutator {
    /// A mutator whose inputs never exceed `max_len` bytes.
    pub fn new(seed: u64, max_len: usize) -> Self {
        Self { rng: ChaCha8Rng::seed_from_u64(seed), max_len }
    }

    /// The random stream (the fuzzer also picks its parents with it).
    pub fn rng(&mut self) -> &mut ChaCha8Rng {
        &mut self.rng
    }

    /// Applies 1 to 8 random edits to `data` (fewer more often); `donors` lend bytes to splices.
    pub fn mutate(&mut self, data: &mut Vec<u8>, donors: &[Vec<u8>]) {
        let edits = 1 + (self.rng.random::<u32>() | 0x80).trailing_zeros().min(7);
        for _ in 0..edits {
            self.edit(data, donors);
            data.truncate(self.max_len);
        }
    }

    fn edit(&mut self, data: &mut Vec<u8>, donors: &[Vec<u8>]) {
        let r = &mut self.rng;
        let len = data.len();
        let at = |r: &mut ChaCha8Rng| if len == 0 { 0 } else { r.random_range(0..len) };
        match r.random_range(0..16) {
            0 if len > 0 => {
                let i = at(r);
                data[i] ^= 1 << r.random_range(0..8);
            }
            1 if len > 0 => {
                let i = at(r);
                data[i] = r.random();
            }
            2 if len > 0 => {
                let i = at(r);
                data[i] = BYTES[r.random_range(0..BYTES.len())];
            }
            3 => {
                let word = WORDS[r.random_range(0..WORDS.len())];
                let width = [1, 2, 4, 8][r.random_range(0..4)];
                // The low `width` bytes, in either byte order.
                let (le, be) = (word.to_le_bytes(), word.to_be_bytes());
                let bytes = if r.random() { &le[..width] } else { &be[8 - width..] };
                let i = if len > width { r.random_range(0..=len - width) } else { 0 };
                splice_over(data, i, bytes);
            }
            4 => {
                let n = r.random_range(1..=8);
                let bytes: Vec<u8> = (0..n).map(|_| r.random()).collect();
                let i = if len == 0 { 0 } else { r.random_range(0..=len) };
                data.splice(i..i, bytes);
            }
            5 if len > 0 => {
                let i = at(r);
                let n = r.random_range(1..=(len - i).min(64));
                data.drain(i..i + n);
            }
            6 if len > 0 => {
                // A repeated chunk: long lists, deep nesting, many components.
                let i = at(r);
                let n = r.random_range(1..=(len - i).min(16));
                let times = 1 << r.random_range(0..8);
                let chunk = data[i..i + n].repeat(times);
                data.splice(i..i, chunk);
            }
            7 if !donors.is_empty() => {
                let donor = &donors[r.random_range(0..donors.len())];
                if !donor.is_empty() {
                    let s = r.random_range(0..donor.len());
                    let n = r.random_range(1..=(donor.len() - s).min(64));
                    let i = if len == 0 { 0 } else { r.random_range(0..=len) };
                    data.splice(i..i, donor[s..s + n].iter().copied());
                }
            }
            8 if !donors.is_empty() => {
                // Crossover: this input's head, another's tail.
                let donor = &donors[r.random_range(0..donors.len())];
                let cut = if len == 0 { 0 } else { r.random_range(0..=len) };
                let from = if donor.is_empty() { 0 } else { r.random_range(0..=donor.len()) };
                data.truncate(cut);
                data.extend_from_slice(&donor[from..]);
            }
            9 if len > 0 => data.truncate(at(r)),
            10 => {
                let number = match r.random_range(0..4) {
                    0 => r.random::<u64>().to_string(),
                    1 => r.random::<i32>().to_string(),
                    _ => NUMBERS[r.random_range(0..NUMBERS.len())].to_string(),
                };
                match number_near(data, at(r)) {
                    Some((s, e)) => drop(data.splice(s..e, number.into_bytes())),
                    None => drop(data.splice(len..len, number.into_bytes())),
                }
            }
            11 => {
                let token = TOKENS[r.random_range(0..TOKENS.len())];
                let i = if len == 0 { 0 } else { r.random_range(0..=len) };
                data.splice(i..i, token.bytes());
            }
            12 if len > 1 => {
                // A chunk copied over another place of the same input.
                let s = at(r);
                let n = r.random_range(1..=(len - s).min(32));
                let chunk = data[s..s + n].to_vec();
                let i = at(r);
                splice_over(data, i, &chunk);
            }
            13 if len > 1 => {
                // Two adjacent chunks swapped.
                let s = at(r);
                let m = r.random_range(s..len);
                let e = r.random_range(m..=len);
                data[s..e].rotate_left(m - s);
            }
            14 | 15 => self.edit_header(data),
            _ => {
                let i = at(r);
                if len > 0 {
                    data[i] = data[i].wrapping_add(r.random_range(1..=4)).wrapping_sub(2);
                }
            }
        }
    }
}

impl Mutator {
    /// Inside a length-prefixed text header (safetensors, `.npy`): a number or a token, with the
    /// prefix fixed up, so that the edit reaches the header's meaning instead of breaking its frame.
    fn edit_header(&mut self, data: &mut Vec<u8>) {
        let Some((start, end, prefix)) = text_header(data) else { return };
        let r = &mut self.rng;
        let before = data.len();
        let i = r.random_range(start..end);
        let number = NUMBERS[r.random_range(0..NUMBERS.len())];
        match number_near(&data[start..end], i - start) {
            Some((s, e)) if r.random_range(0..4) != 0 => drop(data.splice(start + s..start + e, number.bytes())),
            _ => drop(data.splice(i..i, TOKENS[r.random_range(0..TOKENS.len())].bytes())),
        }
        let header_len = (end - start + data.len()) as u64 - before as u64;
        prefix.write(data, header_len);
    }
}

/// Where a format keeps the length of its text header.
enum Prefix {
    /// safetensors: a little-endian u64 at byte 0.
    U64At0,
    /// `.npy` version 1: a little-endian u16 at byte 8.
    U16At8,
}

impl Prefix {
    fn write(&self, data: &mut [u8], len: u64) {
        match self {
            Prefix::U64At0 => data[..8].copy_from_slice(&len.to_le_bytes()),
            Prefix::U16At8 => data[8..10].copy_from_slice(&(len.min(u16::MAX as u64) as u16).to_le_bytes()),
        }
    }
}

/// The byte range of a length-prefixed text header of `data`, if it has one (non-empty).
fn text_header(data: &[u8]) -> Option<(usize, usize, Prefix)> {
    if data.len() > 10 && data.starts_with(b"\x93NUMPY") && data[6] == 1 {
        let n = u16::from_le_bytes([data[8], data[9]]) as usize;
        return (n > 0 && 10 + n <= data.len()).then_some((10, 10 + n, Prefix::U16At8));
    }
    if data.len() > 9 && data[8] == b'{' {
        let n = u64::from_le_bytes(data[..8].try_into().ok()?);
        return (n > 0 && n <= (data.len() - 8) as u64).then_some((8, 8 + n as usize, Prefix::U64At0));
    }
    None
}

/// Writes `bytes` over `data` from `i`, growing it where they run past the end.
fn splice_over(data: &mut Vec<u8>, i: usize, bytes: &[u8]) {
    let end = (i + bytes.len()).min(data.len());
    data.splice(i..end, bytes.iter().copied());
}

/// The byte range of the first number (digits, with sign, point and exponent) at or after
/// `from`, wrapping around to the start.
fn number_near(data: &[u8], from: usize) -> Option<(usize, usize)> {
    let start = (from..data.len()).chain(0..from).find(|&i| data[i].is_ascii_digit())?;
    let part = |b: u8| b.is_ascii_digit() || matches!(b, b'.' | b'e' | b'E' | b'_' | b'+' | b'-');
    let mut s = start;
    while s > 0 && part(data[s - 1]) {
        s -= 1;
    }
    let mut e = start;
    while e < data.len() && part(data[e]) {
        e += 1;
    }
    Some((s, e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_same_seed_gives_the_same_inputs_and_lengths_stay_bounded() {
        let seed = b"[[components]]\nmean = [0.0, 1.5]\nvar = 2.0\n".to_vec();
        let run = |s: u64| {
            let mut m = Mutator::new(s, 100);
            (0..500)
                .map(|_| {
                    let mut d = seed.clone();
                    m.mutate(&mut d, std::slice::from_ref(&seed));
                    assert!(d.len() <= 100);
                    d
                })
                .collect::<Vec<_>>()
        };
        assert_eq!(run(1), run(1));
        assert_ne!(run(1), run(2));
        assert!(run(3).iter().filter(|d| **d != seed).count() > 450, "most mutants differ from their parent");
    }

    #[test]
    fn header_edits_keep_the_length_prefix_true() {
        let mut st = 20u64.to_le_bytes().to_vec();
        st.extend_from_slice(br#"{"a":{"shape":[4]}} "#);
        st.extend_from_slice(&[0; 16]);
        let mut m = Mutator::new(5, 1 << 16);
        for _ in 0..200 {
            let mut d = st.clone();
            m.edit_header(&mut d);
            let n = u64::from_le_bytes(d[..8].try_into().unwrap()) as usize;
            assert_eq!(d.len() - n, st.len() - 20, "the prefix still ends the header where the data begins");
        }
    }

    #[test]
    fn numbers_are_found_whole() {
        assert_eq!(number_near(b"a = -1.5e3, b", 0), Some((4, 10)));
        assert_eq!(number_near(b"x 12 y", 5), Some((2, 4)));
        assert_eq!(number_near(b"none", 0), None);
    }
}

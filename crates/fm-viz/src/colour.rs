//! Colour maps (matplotlib's, from their anchor colours, linearly interpolated).

use plotters::style::RGBColor;

/// Matplotlib's sequential "Blues" (the seed's contour colours), from its 9 anchor colours.
const BLUES: [(u8, u8, u8); 9] =
    [(247, 251, 255), (222, 235, 247), (198, 219, 239), (158, 202, 225), (107, 174, 214), (66, 146, 198), (33, 113, 181), (8, 81, 156), (8, 48, 107)];

/// Matplotlib's "viridis" at 0, 0.1, …, 1.
const VIRIDIS: [(u8, u8, u8); 11] = [
    (0x44, 0x01, 0x54),
    (0x48, 0x24, 0x75),
    (0x41, 0x44, 0x87),
    (0x35, 0x5f, 0x8d),
    (0x2a, 0x78, 0x8e),
    (0x21, 0x91, 0x8c),
    (0x22, 0xa8, 0x84),
    (0x44, 0xbf, 0x70),
    (0x7a, 0xd1, 0x51),
    (0xbd, 0xdf, 0x26),
    (0xfd, 0xe7, 0x25),
];

/// Matplotlib's "plasma" at 0, 0.1, …, 1.
const PLASMA: [(u8, u8, u8); 11] = [
    (0x0d, 0x08, 0x87),
    (0x41, 0x04, 0x9d),
    (0x6a, 0x00, 0xa8),
    (0x8f, 0x0d, 0xa4),
    (0xb1, 0x2a, 0x90),
    (0xcc, 0x47, 0x78),
    (0xe1, 0x64, 0x62),
    (0xf2, 0x84, 0x4b),
    (0xfc, 0xa6, 0x36),
    (0xfc, 0xce, 0x25),
    (0xf0, 0xf9, 0x21),
];

fn interpolate(anchors: &[(u8, u8, u8)], v: f64) -> RGBColor {
    let v = if v.is_finite() { v.clamp(0.0, 1.0) } else { 0.0 };
    let x = v * (anchors.len() - 1) as f64;
    let i = (x.floor() as usize).min(anchors.len() - 2);
    let f = x - i as f64;
    let lerp = |a: u8, b: u8| (a as f64 + (b as f64 - a as f64) * f).round() as u8;
    let (a, b) = (anchors[i], anchors[i + 1]);
    RGBColor(lerp(a.0, b.0), lerp(a.1, b.1), lerp(a.2, b.2))
}

/// "Blues" at `v ∈ [0, 1]` (clamped).
pub fn blues(v: f64) -> RGBColor {
    interpolate(&BLUES, v)
}

/// "viridis" at `v ∈ [0, 1]` (clamped).
pub fn viridis(v: f64) -> RGBColor {
    interpolate(&VIRIDIS, v)
}

/// "plasma" at `v ∈ [0, 1]` (clamped).
pub fn plasma(v: f64) -> RGBColor {
    interpolate(&PLASMA, v)
}

/// Matplotlib's "tab10" categorical colours, for class `k` (cycling after 10).
pub fn category(k: usize) -> RGBColor {
    const TAB10: [(u8, u8, u8); 10] = [
        (31, 119, 180),
        (255, 127, 14),
        (44, 160, 44),
        (214, 39, 40),
        (148, 103, 189),
        (140, 86, 75),
        (227, 119, 194),
        (127, 127, 127),
        (188, 189, 34),
        (23, 190, 207),
    ];
    let (r, g, b) = TAB10[k % TAB10.len()];
    RGBColor(r, g, b)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn maps_hit_their_ends_and_clamp() {
        assert_eq!(blues(0.0), RGBColor(247, 251, 255));
        assert_eq!(blues(1.0), RGBColor(8, 48, 107));
        assert_eq!(viridis(-1.0), RGBColor(0x44, 0x01, 0x54));
        assert_eq!(viridis(2.0), RGBColor(0xfd, 0xe7, 0x25));
        assert_eq!(plasma(f64::NAN), RGBColor(0x0d, 0x08, 0x87));
    }
}

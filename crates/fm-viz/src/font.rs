//! Text needs a TrueType font: found once on the system (or `FM_FONT`), registered with plotters.

use crate::{Error, Result};
use plotters::style::FontStyle;
use std::sync::OnceLock;

/// Where common Linux and macOS installations keep a plain sans-serif font.
const CANDIDATES: &[&str] = &[
    "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf",
    "/usr/share/fonts/dejavu/DejaVuSans.ttf",
    "/usr/share/fonts/TTF/DejaVuSans.ttf",
    "/usr/share/fonts/dejavu-sans-fonts/DejaVuSans.ttf",
    "/usr/share/fonts/truetype/liberation/LiberationSans-Regular.ttf",
    "/usr/share/fonts/liberation-sans/LiberationSans-Regular.ttf",
    "/Library/Fonts/Arial.ttf",
    "/System/Library/Fonts/Supplemental/Arial.ttf",
];

/// The family name figures use.
pub const FAMILY: &str = "sans-serif";

/// Registers the font the first time; afterwards returns the first outcome.
pub fn ensure() -> Result<()> {
    static REGISTERED: OnceLock<std::result::Result<(), String>> = OnceLock::new();
    REGISTERED.get_or_init(register).clone().map_err(Error::Font)
}

fn register() -> std::result::Result<(), String> {
    let chosen = std::env::var("FM_FONT").ok();
    let paths: Vec<&str> = chosen.as_deref().map_or_else(|| CANDIDATES.to_vec(), |p| vec![p]);
    let (path, bytes) = paths
        .iter()
        .find_map(|p| std::fs::read(p).ok().map(|b| (*p, b)))
        .ok_or_else(|| format!("no TrueType font found for figure text (tried {}); install fonts-dejavu-core or set FM_FONT=/path/to/font.ttf", paths.join(", ")))?;
    // plotters keeps fonts for the life of the process; this runs once.
    let bytes: &'static [u8] = Box::leak(bytes.into_boxed_slice());
    plotters::style::register_font(FAMILY, FontStyle::Normal, bytes).map_err(|_| format!("{path} is not a usable TrueType font"))
}

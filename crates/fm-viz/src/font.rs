//! Figure text is set in DejaVu Sans, built into the binary, so figures look the same on every
//! machine and need no fonts installed (a GPU machine without any was where this was found);
//! `FM_FONT=/path/to/font.ttf` picks another.

use crate::{Error, Result};
use plotters::style::FontStyle;
use std::sync::OnceLock;

/// DejaVu Sans (licence in `fonts/LICENSE`).
const BUILT_IN: &[u8] = include_bytes!("../fonts/DejaVuSans.ttf");

/// The family name figures use.
pub const FAMILY: &str = "sans-serif";

/// Registers the font the first time; afterwards returns the first outcome.
pub fn ensure() -> Result<()> {
    static REGISTERED: OnceLock<std::result::Result<(), String>> = OnceLock::new();
    REGISTERED.get_or_init(register).clone().map_err(Error::Font)
}

fn register() -> std::result::Result<(), String> {
    let (name, bytes): (String, &'static [u8]) = match std::env::var_os("FM_FONT") {
        Some(path) => {
            let name = format!("FM_FONT={}", path.to_string_lossy());
            let bytes = std::fs::read(&path).map_err(|e| format!("{name}: cannot read the font: {e}"))?;
            // plotters keeps fonts for the life of the process; this runs once.
            (name, Box::leak(bytes.into_boxed_slice()))
        }
        None => ("the built-in DejaVu Sans".into(), BUILT_IN),
    };
    plotters::style::register_font(FAMILY, FontStyle::Normal, bytes).map_err(|_| format!("{name} is not a usable TrueType font"))
}

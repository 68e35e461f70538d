//! One parser for a setting, on the command line and in a run file: a run file may spell a
//! setting as the command line does (`objective = "meanflow:0.5"`, `path = "icfm:0.1"`,
//! `coupling = "sinkhorn:0.05"`), or as fm writes it (a table: `objective = { meanflow = { ratio = 0.5 } }`).
//! Before, a run file refused `objective = "meanflow"` with serde's "invalid type: unit variant,
//! expected struct variant" while `--objective meanflow` worked.

use serde::{Deserialize, Deserializer};
use std::fmt::Display;
use std::str::FromStr;

/// Either spelling of a setting.
#[derive(Deserialize)]
#[serde(untagged)]
enum Spelling<T> {
    Text(String),
    Table(T),
}

/// Deserializes `T` from its command-line text (through its `FromStr`, whose error names the
/// valid spellings) or from the table fm writes.
///
/// # Errors
/// The text's parse error, or one line naming both spellings when neither fits.
pub(crate) fn text_or_table<'de, D, T>(d: D) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
    T: FromStr + Deserialize<'de>,
    T::Err: Display,
{
    match Spelling::<T>::deserialize(d) {
        Ok(Spelling::Text(text)) => text.parse().map_err(serde::de::Error::custom),
        Ok(Spelling::Table(value)) => Ok(value),
        Err(_) => {
            Err(serde::de::Error::custom("expected the setting spelled as on the command line, in quotes (fm train --help lists each), or the table fm writes"))
        }
    }
}

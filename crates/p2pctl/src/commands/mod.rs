//! One file per subcommand.

pub mod inbox;
pub mod list;
pub mod login;
pub mod logout;
pub mod peers;
pub mod send;
pub mod status;

use serde::de::DeserializeOwned;

use crate::client::unexpected;
use crate::Failure;

/// Prints the raw document with `--json`, otherwise decodes it for `human`.
pub fn print<T: DeserializeOwned>(
    doc: serde_json::Value,
    json: bool,
    human: impl FnOnce(T),
) -> Result<(), Failure> {
    if json {
        println!("{doc}");
        return Ok(());
    }
    human(serde_json::from_value(doc).map_err(unexpected)?);
    Ok(())
}

/// Prints rows under a header, every column but the last padded to its
/// widest cell, two spaces apart: aligned, and no colour needed.
pub fn table(header: &[&str], rows: &[Vec<String>]) {
    let widths: Vec<usize> = (0..header.len())
        .map(|i| {
            rows.iter()
                .map(|r| r[i].len())
                .chain([header[i].len()])
                .max()
                .unwrap_or(0)
        })
        .collect();
    let line = |cells: Vec<&str>| {
        let last = cells.len() - 1;
        let text: Vec<String> = cells
            .iter()
            .enumerate()
            .map(|(i, c)| {
                if i == last {
                    c.to_string()
                } else {
                    format!("{c:w$}", w = widths[i])
                }
            })
            .collect();
        println!("{}", text.join("  "));
    };
    line(header.to_vec());
    for r in rows {
        line(r.iter().map(String::as_str).collect());
    }
}

//! One file per subcommand.

pub(crate) mod chat;
mod chat_term;
pub(crate) mod contacts;
pub(crate) mod inbox;
pub(crate) mod list;
pub(crate) mod login;
pub(crate) mod logout;
pub(crate) mod netcheck;
pub(crate) mod outbox;
pub(crate) mod peers;
pub(crate) mod send;
pub(crate) mod status;

use serde::Serialize;

use crate::Failure;

/// Prints the result as its JSON document with `--json`, otherwise hands it
/// to `human`.
pub(crate) fn print<T: Serialize>(
    doc: T,
    json: bool,
    human: impl FnOnce(T),
) -> Result<(), Failure> {
    if json {
        print_json(&doc);
    } else {
        human(doc);
    }
    Ok(())
}

/// Prints one JSON document on one line, keys sorted (through
/// `serde_json::Value`, as p2pctl has always printed them).
pub(crate) fn print_json(doc: &impl Serialize) {
    // Our own types, with string keys only: serializing cannot fail.
    println!("{}", serde_json::to_value(doc).expect("serialises"));
}

/// Prints rows under a header, every column but the last padded to its
/// widest cell, two spaces apart: aligned, and no colour needed.
pub(crate) fn table(header: &[&str], rows: &[Vec<String>]) {
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

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

//! System helpers shared by the p2p-broadcast programs: durable private
//! file writes ([`fsutil`]), default paths ([`paths`]), and, behind
//! features, log setup and signal handling for the two services
//! (`service`) and password input for the commands that ask for one
//! (`prompt`).
//!
//! This is the I/O policy that `p2p-proto` (types, codecs, limits, names)
//! keeps out of itself.

pub mod dirlock;
pub mod fsutil;
pub mod localtime;
#[cfg(feature = "service")]
pub mod logging;
#[cfg(feature = "prompt")]
pub mod password;
pub mod paths;
#[cfg(feature = "service")]
pub mod signals;

//! The fuzz targets' code, shared with the stable replay tests (see
//! [`harness`]).

pub mod harness;

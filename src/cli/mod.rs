//! Subcommands of the `qgpu` binary.

pub mod calibrate;
pub mod embed;
pub mod eval;
pub mod info;
pub mod quantize;
pub mod run;

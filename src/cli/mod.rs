//! Subcommands of the `qgpu` binary.

pub mod calibrate;
pub mod info;
pub mod quantize;
pub mod run;

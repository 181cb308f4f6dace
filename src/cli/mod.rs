//! Subcommands of the `qgpu` binary.

pub mod info;
pub mod run;

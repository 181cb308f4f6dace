//! Subcommands of the `qgpu` binary.

pub mod embed;
pub mod info;
pub mod run;

//! Subcommands of the `qgpu` binary.

pub mod eval;
pub mod embed;
pub mod info;
pub mod run;

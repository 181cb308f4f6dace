//! Subcommands of the `qgpu` binary.

pub mod bench;
pub mod info;
pub mod run;

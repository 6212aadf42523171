//! `weftd` subcommands.

pub mod policy;
pub mod run;
pub mod simulate;

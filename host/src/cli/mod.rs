//! `weftd` subcommands.

pub mod install;
pub mod policy;
pub mod run;
pub mod status;

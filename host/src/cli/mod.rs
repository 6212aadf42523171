//! `weftd` subcommands.

mod live;
pub mod policy;
pub mod run;
pub mod status;

//! `weftd` subcommands.

pub mod install;
mod live;
pub mod policy;
pub mod policy_new;
pub mod run;
pub mod simulate;
pub mod status;
pub mod uninstall;

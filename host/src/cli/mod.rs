//! `weftd` subcommands.

pub(crate) mod install;
mod live;
pub(crate) mod policy;
pub(crate) mod policy_new;
pub(crate) mod run;
pub(crate) mod simulate;
pub(crate) mod status;
pub(crate) mod uninstall;

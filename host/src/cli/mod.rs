//! `weftd` subcommands.

pub mod policy;
pub mod policy_new;
pub mod run;

//! `weftd` subcommands.

pub mod policy;

//! Compatibility with the Amazon VPC CNI (`aws-node`): its environment
//! variables mapped onto Weft's configuration.

pub mod env;

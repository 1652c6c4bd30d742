//! Code generated from `proto/` by `build.rs`, included once.

#![allow(missing_docs, unreachable_pub, clippy::all, clippy::pedantic)]

tonic::include_proto!("creatorboost.v1");

/// Encoded descriptor set of `creatorboost.v1`, served by reflection.
pub const FILE_DESCRIPTOR_SET: &[u8] = tonic::include_file_descriptor_set!("creatorboost_descriptor");

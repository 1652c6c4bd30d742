//! The wire: the types generated from `proto/` by `build.rs`, included once.
//! [`crate::service::convert`] is the one place they become domain types and
//! back (used by the gRPC adapter and by the command-line client alike).

mod generated {
    #![allow(missing_docs, unreachable_pub, clippy::all, clippy::pedantic)]
    tonic::include_proto!("creatorboost.v1");
}

pub use generated::*;

/// Encoded descriptor set of `creatorboost.v1`, served by reflection.
pub const FILE_DESCRIPTOR_SET: &[u8] = tonic::include_file_descriptor_set!("creatorboost_descriptor");

//! The Raft transport between members: openraft's network over gRPC
//! (`sett.raft.v1.Raft`, see `proto/proto/sett/raft/v1/raft.proto`).
//!
//! - [`client`]: [`GrpcNetworkFactory`] / [`GrpcNetwork`], openraft's
//!   `RaftNetworkFactory` and `RaftNetwork` over lazily connected tonic
//!   channels, and [`GrpcNetworkFactory::forward`] for client writes sent to
//!   the leader, and [`GrpcNetworkFactory::read_index`] for linearizable
//!   reads served by a follower.
//! - [`service`]: [`RaftService`], the tonic server that hands decoded
//!   messages to the local `Raft`.
//! - [`codec`]: payload encoding (postcard) and the [`PeerHeader`] check.
//!
//! Every request carries a [`PeerHeader`]; the receiver refuses, with
//! `FAILED_PRECONDITION` and before decoding any payload, a message from
//! another cluster or meant for another member.
//!
//! [`PeerHeader`]: sett_proto::sett::raft::v1::PeerHeader

pub mod client;
pub mod codec;
pub mod service;

pub use client::{ForwardError, GrpcNetwork, GrpcNetworkFactory, ReadIndexError};
pub use codec::Identity;
pub use service::{publish_member, RaftService};

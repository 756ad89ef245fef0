//! Wire definitions for sett, generated at build time from the `.proto`
//! files under `proto/proto/` (compiled by protox, so no system `protoc`).
//!
//! | module | proto package | what |
//! |---|---|---|
//! | [`mvccpb`] | `mvccpb` | etcd key-value records and watch events |
//! | [`authpb`] | `authpb` | etcd users, roles, permissions |
//! | [`etcdserverpb`] | `etcdserverpb` | the etcd v3 services KV, Watch, Lease, Cluster, Maintenance, Auth |
//! | [`sett::raft::v1`] | `sett.raft.v1` | member-to-member Raft transport |
//! | [`sett::v1`] | `sett.v1` | the native `Sett` service (interactive transactions) |
//!
//! The etcd packages follow etcd 3.4's wire interface field for field (plus
//! 3.5's additions: `Auth/AuthStatus`, `Maintenance/Downgrade` and a few
//! fields), so etcd clients talk to sett unchanged. Field names keep etcd's
//! spelling in the `.proto` files; prost turns names into Rust case, which
//! gives a few odd ones: `Member::peer_ur_ls`, `Member::client_ur_ls`,
//! `HashKvRequest`, `kv_server::Kv`, `LeaseGrantRequest::ttl`.
//!
//! Every protobuf `bytes` field is a [`prost::bytes::Bytes`]. Each package
//! module holds the messages plus, per service `Foo`, a `foo_client` module
//! (`FooClient::new(channel)`) and a `foo_server` module (trait `Foo`,
//! `FooServer`). No transport is compiled in: the server and the client
//! crates enable tonic's `transport` feature themselves.

/// Generated code: the lints of the workspace do not apply to it.
macro_rules! generated {
    ($(#[$meta:meta])* $name:ident, $package:literal) => {
        $(#[$meta])*
        #[allow(
            missing_docs,
            missing_debug_implementations,
            clippy::all,
            clippy::pedantic,
            clippy::nursery,
            rustdoc::all
        )]
        pub mod $name {
            tonic::include_proto!($package);
        }
    };
}

generated!(
    /// etcd's `mvccpb` package: `KeyValue` and `Event`.
    mvccpb,
    "mvccpb"
);
generated!(
    /// etcd's `authpb` package: `User`, `Role`, `Permission`.
    authpb,
    "authpb"
);
generated!(
    /// etcd's `etcdserverpb` package: the v3 client services and their
    /// messages.
    etcdserverpb,
    "etcdserverpb"
);

/// sett's own packages.
pub mod sett {
    /// Raft transport between members.
    pub mod raft {
        generated!(
            /// Package `sett.raft.v1`: service `Raft` (AppendEntries, Vote,
            /// streamed InstallSnapshot, Forward) with openraft payloads as
            /// opaque bytes.
            v1,
            "sett.raft.v1"
        );
    }
    generated!(
        /// Package `sett.v1`: the native `Sett` service for interactive
        /// serializable transactions.
        v1,
        "sett.v1"
    );
}

/// The encoded `google.protobuf.FileDescriptorSet` of every `.proto` file of
/// this crate (with imports and source comments), for
/// `tonic_reflection::server::Builder::register_encoded_file_descriptor_set`.
pub const FILE_DESCRIPTOR_SET: &[u8] =
    include_bytes!(concat!(env!("OUT_DIR"), "/sett_descriptor.bin"));

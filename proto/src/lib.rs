//! Wire definitions for sett.
//!
//! This crate will hold the `.proto` files of the etcd v3 API, the Raft
//! transport and the native `sett.v1` service, and the code generated from
//! them. It is empty until the replicated server lands.

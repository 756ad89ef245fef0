//! Compiles the `.proto` files under `proto/` with protox (pure Rust, no
//! system `protoc`) and generates prost messages plus tonic clients and
//! servers. Also writes the encoded `FileDescriptorSet` to
//! `$OUT_DIR/sett_descriptor.bin` for gRPC reflection.

use std::path::PathBuf;

use prost::Message as _;

/// Every file compiled, relative to the include root `proto/`.
const PROTOS: &[&str] = &[
    "etcd/mvccpb/kv.proto",
    "etcd/authpb/auth.proto",
    "etcd/etcdserverpb/rpc.proto",
    "sett/raft/v1/raft.proto",
    "sett/v1/sett.proto",
];

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let out_dir = PathBuf::from(std::env::var("OUT_DIR")?);

    println!("cargo:rerun-if-changed=proto");
    for file in PROTOS {
        println!("cargo:rerun-if-changed=proto/{file}");
    }

    let fds = protox::compile(PROTOS, ["proto"])?;
    std::fs::write(out_dir.join("sett_descriptor.bin"), fds.encode_to_vec())?;

    tonic_prost_build::configure()
        .build_client(true)
        .build_server(true)
        // Keep this crate free of tonic's transport stack; clients are
        // built with `new(channel)` over whatever channel the caller has.
        .build_transport(false)
        // Keys and values are shared between watchers, caches and Raft
        // entries: `Bytes` makes those copies reference counts.
        .bytes(".")
        .emit_rerun_if_changed(false)
        .compile_fds(fds)?;
    Ok(())
}

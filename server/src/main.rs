//! The `sett` node binary.
//!
//! The replicated server (openraft + etcd v3 API) is not built yet; until it
//! is, this binary only reports that and exits with a failure status, so
//! nobody mistakes it for a working node.

fn main() {
    eprintln!("sett: the replicated server is not available in this build; see README.md");
    std::process::exit(2);
}

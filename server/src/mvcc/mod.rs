//! etcd MVCC semantics on sett-engine.

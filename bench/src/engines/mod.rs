//! One adapter per benchmarked engine, each behind [`crate::engine::Engine`].

pub mod fjall;
pub mod redb;
pub mod rocksdb;
#[cfg(feature = "sett")]
pub mod sett;

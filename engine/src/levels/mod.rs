//! The levels of the LSM tree and compaction between them.

mod compact;
mod version;

pub(crate) use compact::{compact_once, pick_bottom_rewrite, pick_compaction, table_meta};
pub(crate) use version::{Levels, Version};

//! The in-memory write buffer.

mod table;

pub(crate) use table::{Memtable, MemtableIter};

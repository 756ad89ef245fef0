//! The value log: the engine's write-ahead log and the home of large values.

mod entry;
mod log;

pub(crate) use entry::{encode_entry, WriteEntry};
pub(crate) use log::{begin_record, finish_record, ValueLog};

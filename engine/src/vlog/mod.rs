//! The value log: the engine's write-ahead log and the home of large values.

mod discard;
mod entry;
mod gc;
mod log;

pub(crate) use entry::{decode_entry, encode_entry, DecodedEntry, WriteEntry};
pub(crate) use log::{begin_record, finish_record, ValueLog, HEADER_LEN};

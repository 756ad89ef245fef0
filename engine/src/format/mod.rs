//! Byte-level formats shared by every on-disk structure: internal keys,
//! stored values, integer coding and checksums.

mod coding;
mod key;
mod value;

pub(crate) use coding::*;
pub(crate) use key::*;
pub(crate) use value::*;

//! Iteration: per-source cursors, the merging cursor over all sources, and
//! the user-facing snapshot iterator.

mod db_iter;
mod level;
mod merge;
mod source;

pub(crate) use db_iter::prefix_end;
pub use db_iter::{Iter, IterOptions};
pub(crate) use level::LevelIter;
pub(crate) use merge::MergeIter;
pub(crate) use source::{Source, VecIter};

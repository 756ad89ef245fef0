//! The manifest: the durable record of which table files form the LSM tree,
//! where value-log replay starts, the file-number counter and the largest
//! durable commit version. An append-only file of checksummed records, each
//! one atomic batch of [`ManifestEdit`]s, rewritten as a snapshot when it
//! grows. Byte layout: `docs/engine-format.md (Manifest format)`.

mod edit;
#[allow(clippy::module_inception)]
mod manifest;
mod record;
mod state;
#[cfg(test)]
mod tests;

pub(crate) use edit::{ManifestEdit, TableMeta};
pub(crate) use manifest::Manifest;
// For `crate::fuzzing` (replay of a whole manifest file's bytes).
pub(crate) use record::{encode_record, file_header, replay};
pub(crate) use state::ManifestState;

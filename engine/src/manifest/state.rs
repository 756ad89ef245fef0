//! The in-memory state a manifest describes, and the rules for applying
//! edits to it.
//!
//! Invariants (checked by [`ManifestState::check_invariants`] in debug
//! builds after every applied batch):
//! - every live table id is below `next_file_id` (unless it is `u64::MAX`);
//! - `max_version` is at least every live table's `max_version`.
//!
//! `NextFileId`, `MaxVersion` and `VlogHead` only ever raise their value
//! (`VlogHead` compares `(fid, offset)` lexicographically), so replaying a
//! stale or reordered edit can never move them backwards.

use super::edit::{ManifestEdit, TableMeta};
use std::collections::{BTreeMap, HashSet};

/// Which table files form the LSM tree and where value-log replay starts.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub(crate) struct ManifestState {
    /// Live tables by id.
    pub tables: BTreeMap<u64, TableMeta>,
    /// `(fid, offset)`: value-log position up to which all writes are in tables.
    pub vlog_head: (u32, u64),
    /// Lower bound for the next file number; above every id recorded here.
    pub next_file_id: u64,
    /// Largest commit version known to be durable in tables.
    pub max_version: u64,
}

impl ManifestState {
    /// Applies one edit. `Err` (with a reason) for an `AddTable` of a live
    /// id or a `DeleteTable` of an unknown one; the state is then unchanged.
    ///
    /// Side effects beyond the edit itself: `AddTable` raises `next_file_id`
    /// above the table id and `max_version` to the table's. (The vlog head's
    /// fid is not folded into `next_file_id`: the engine records
    /// `NextFileId` when it creates a vlog file.)
    pub(crate) fn apply_edit(&mut self, edit: &ManifestEdit) -> Result<(), String> {
        match edit {
            ManifestEdit::AddTable(t) => {
                if self.tables.contains_key(&t.id) {
                    return Err(format!("AddTable of table {} that is already live", t.id));
                }
                self.next_file_id = self.next_file_id.max(t.id.saturating_add(1));
                self.max_version = self.max_version.max(t.max_version);
                self.tables.insert(t.id, t.clone());
            }
            ManifestEdit::DeleteTable { id } => {
                if self.tables.remove(id).is_none() {
                    return Err(format!("DeleteTable of unknown table {id}"));
                }
            }
            ManifestEdit::VlogHead { fid, offset } => {
                self.vlog_head = self.vlog_head.max((*fid, *offset));
            }
            ManifestEdit::NextFileId(v) => self.next_file_id = self.next_file_id.max(*v),
            ManifestEdit::MaxVersion(v) => self.max_version = self.max_version.max(*v),
        }
        Ok(())
    }

    /// Checks, without changing anything, that `edits` applied in order
    /// would all succeed. Tables added and deleted inside the batch count.
    pub(crate) fn check_edits(&self, edits: &[ManifestEdit]) -> Result<(), String> {
        let mut added: HashSet<u64> = HashSet::new();
        let mut deleted: HashSet<u64> = HashSet::new();
        let live = |id: u64, added: &HashSet<u64>, deleted: &HashSet<u64>| {
            added.contains(&id) || (self.tables.contains_key(&id) && !deleted.contains(&id))
        };
        for (i, edit) in edits.iter().enumerate() {
            match edit {
                ManifestEdit::AddTable(t) => {
                    if live(t.id, &added, &deleted) {
                        return Err(format!(
                            "edit {i}: AddTable of table {} that is already live",
                            t.id
                        ));
                    }
                    added.insert(t.id);
                }
                ManifestEdit::DeleteTable { id } => {
                    if !live(*id, &added, &deleted) {
                        return Err(format!("edit {i}: DeleteTable of unknown table {id}"));
                    }
                    if !added.remove(id) {
                        deleted.insert(*id);
                    }
                }
                ManifestEdit::VlogHead { .. }
                | ManifestEdit::NextFileId(_)
                | ManifestEdit::MaxVersion(_) => {}
            }
        }
        Ok(())
    }

    /// The edits that rebuild this state from an empty one: the scalar
    /// values first, then every table in id order.
    pub(crate) fn snapshot_edits(&self) -> Vec<ManifestEdit> {
        let mut edits = Vec::with_capacity(self.tables.len() + 3);
        edits.push(ManifestEdit::NextFileId(self.next_file_id));
        edits.push(ManifestEdit::MaxVersion(self.max_version));
        edits.push(ManifestEdit::VlogHead {
            fid: self.vlog_head.0,
            offset: self.vlog_head.1,
        });
        edits.extend(self.tables.values().cloned().map(ManifestEdit::AddTable));
        edits
    }

    /// Asserts the invariants listed in the module documentation.
    pub(crate) fn check_invariants(&self) {
        for (id, t) in &self.tables {
            assert_eq!(*id, t.id, "table keyed under the wrong id");
            assert!(
                *id < self.next_file_id || *id == u64::MAX,
                "table {id} not below next_file_id"
            );
            assert!(
                t.max_version <= self.max_version,
                "table {id} above max_version"
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table(id: u64, max_version: u64) -> ManifestEdit {
        ManifestEdit::AddTable(TableMeta {
            id,
            level: 0,
            size: 10,
            smallest: b"a".to_vec(),
            largest: b"z".to_vec(),
            max_version,
        })
    }

    fn replay(edits: &[ManifestEdit]) -> ManifestState {
        let mut s = ManifestState::default();
        for e in edits {
            s.apply_edit(e).unwrap();
        }
        s.check_invariants();
        s
    }

    #[test]
    fn scalars_only_rise_and_tables_raise_them() {
        let s = replay(&[
            ManifestEdit::NextFileId(10),
            ManifestEdit::NextFileId(5),
            ManifestEdit::MaxVersion(7),
            ManifestEdit::MaxVersion(3),
            ManifestEdit::VlogHead {
                fid: 2,
                offset: 100,
            },
            ManifestEdit::VlogHead {
                fid: 1,
                offset: 500,
            },
            table(20, 9),
        ]);
        assert_eq!(s.next_file_id, 21);
        assert_eq!(s.max_version, 9);
        assert_eq!(s.vlog_head, (2, 100));
        assert_eq!(
            replay(&ManifestState::default().snapshot_edits()),
            ManifestState::default()
        );
    }

    #[test]
    fn add_and_delete_are_validated() {
        let mut s = replay(&[table(1, 0)]);
        assert!(s
            .apply_edit(&table(1, 0))
            .unwrap_err()
            .contains("already live"));
        assert!(s
            .apply_edit(&ManifestEdit::DeleteTable { id: 2 })
            .unwrap_err()
            .contains("unknown"));
        s.apply_edit(&ManifestEdit::DeleteTable { id: 1 }).unwrap();
        assert!(s.tables.is_empty());
    }

    #[test]
    fn check_edits_agrees_with_applying() {
        let s = replay(&[table(1, 0), table(2, 0)]);
        let cases: Vec<Vec<ManifestEdit>> = vec![
            vec![table(3, 0), ManifestEdit::DeleteTable { id: 3 }],
            vec![ManifestEdit::DeleteTable { id: 1 }, table(1, 0)],
            vec![
                ManifestEdit::DeleteTable { id: 1 },
                ManifestEdit::DeleteTable { id: 1 },
            ],
            vec![table(3, 0), table(3, 0)],
            vec![table(2, 0)],
            vec![ManifestEdit::DeleteTable { id: 9 }],
            vec![
                table(3, 0),
                ManifestEdit::DeleteTable { id: 3 },
                ManifestEdit::DeleteTable { id: 3 },
            ],
            vec![
                ManifestEdit::DeleteTable { id: 1 },
                table(1, 0),
                ManifestEdit::DeleteTable { id: 1 },
            ],
        ];
        for edits in cases {
            let mut t = s.clone();
            let applied = edits.iter().try_for_each(|e| t.apply_edit(e));
            assert_eq!(s.check_edits(&edits).is_ok(), applied.is_ok(), "{edits:?}");
        }
    }

    #[test]
    fn snapshot_rebuilds_state() {
        let s = replay(&[
            table(4, 8),
            table(9, 2),
            ManifestEdit::DeleteTable { id: 4 },
            ManifestEdit::VlogHead { fid: 3, offset: 77 },
            ManifestEdit::NextFileId(100),
        ]);
        assert_eq!(replay(&s.snapshot_edits()), s);
    }
}

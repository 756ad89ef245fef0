//! openraft's own storage test suite against the engine-backed log store
//! and state machine (each case on fresh temporary directories).

use openraft::testing::{StoreBuilder, Suite};
use sett_server::raft::types::StorageError;
use sett_server::raft::{KvApplier, LogStore, StateMachineStore, TypeConfig};
use tempfile::TempDir;

struct EngineStores;

impl StoreBuilder<TypeConfig, LogStore, StateMachineStore<KvApplier>, TempDir> for EngineStores {
    async fn build(
        &self,
    ) -> Result<(TempDir, LogStore, StateMachineStore<KvApplier>), StorageError> {
        let dir = tempfile::tempdir().expect("temp dir");
        let log = LogStore::open(dir.path().join("raft")).map_err(|e| e.read_logs())?;
        let applier = KvApplier::open(dir.path().join("sm")).map_err(|e| e.read_state_machine())?;
        let sm = StateMachineStore::open(applier, dir.path().join("snapshots"))
            .map_err(|e| e.read_snapshot())?;
        Ok((dir, log, sm))
    }
}

#[test]
fn openraft_storage_suite() {
    Suite::test_all(EngineStores).expect("openraft storage suite");
}

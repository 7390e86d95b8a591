//! openraft's own storage test suite against the coordinator's log store
//! (segment files, metadata in sled) and state machine: votes, log reads and purges, truncation,
//! membership from log and state machine, initial state, applying, and
//! snapshot build/install.

use openraft::StorageIOError;
use openraft::testing::{StoreBuilder, Suite};
use vantage_coordinator::raft::log_store::LogStore;
use vantage_coordinator::raft::state_machine::StateMachineStore;
use vantage_coordinator::raft::types::{StorageError, TypeConfig};

/// A fresh sled database in a temporary directory per test (the guard
/// removes it).
struct Sled;

impl StoreBuilder<TypeConfig, LogStore, StateMachineStore, tempfile::TempDir> for Sled {
    async fn build(
        &self,
    ) -> Result<(tempfile::TempDir, LogStore, StateMachineStore), StorageError> {
        let dir = tempfile::tempdir().map_err(|e| StorageIOError::write(&e))?;
        let db = sled::open(dir.path()).map_err(|e| StorageIOError::write(&e))?;
        let log = LogStore::open(&db, dir.path()).map_err(|e| StorageIOError::write(&e))?;
        let sm = StateMachineStore::open(&db, dir.path()).await?;
        Ok((dir, log, sm))
    }
}

#[test]
fn openraft_storage_suite() {
    if let Err(e) = Suite::test_all(Sled) {
        panic!("storage suite: {e}");
    }
}

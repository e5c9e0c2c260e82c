//! The store on SQLite, the embedded default.

use crate::store as scenario;

#[tokio::test]
async fn the_store_keeps_interactions_events_and_files_on_sqlite() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}/nested/tandem.db", dir.path().display());
    scenario::scenario(&url).await;
    assert!(dir.path().join("nested/tandem.db").exists());
}

//! The same store code on a real PostgreSQL server started for this test.

use crate::postgres;
use crate::store as scenario;

#[tokio::test]
async fn the_store_keeps_interactions_events_and_files_on_postgres() {
    let pg = postgres::Postgres::start();
    scenario::scenario(&pg.url()).await;
}

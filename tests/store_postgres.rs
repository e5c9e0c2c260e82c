//! The same store code on a real PostgreSQL server started for this test.

#[path = "common/postgres.rs"]
mod postgres;
#[path = "common/store.rs"]
mod scenario;

#[tokio::test]
async fn the_store_keeps_interactions_events_and_files_on_postgres() {
    let pg = postgres::Postgres::start();
    scenario::scenario(&pg.url()).await;
}

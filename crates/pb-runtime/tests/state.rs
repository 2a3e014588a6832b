//! A unit's record store against a real nats-server with JetStream: a write sent without
//! waiting ([`UnitStore::send`]) ends as [`UnitStore::save`] does.

use pb_runtime::Config;
use pb_runtime::kv::Buckets;
use pb_runtime::state::{Loaded, StateError, UnitStore};
use pb_testkit::NatsServer;

async fn store(server: &NatsServer) -> UnitStore<Vec<String>> {
    let config = Config::from_lookup(|_| None).unwrap();
    let buckets = Buckets::new(&server.client().await, &config);
    UnitStore::open(&buckets, pb_runtime::kv::buckets::CHANNELS, 1024)
        .await
        .unwrap()
}

/// `unit`'s record, saved once with one entry.
async fn saved(store: &UnitStore<Vec<String>>, unit: &str) -> Loaded<Vec<String>> {
    let mut loaded = store.load(unit).await.unwrap();
    loaded.value.push("created".into());
    store.save(unit, &mut loaded).await.unwrap();
    loaded
}

#[tokio::test]
async fn a_sent_write_is_the_record_once_written_and_the_next_save_follows_it() {
    let server = NatsServer::start();
    let store = store(&server).await;
    let mut loaded = saved(&store, "a-1").await;

    loaded.value.push("ready".into());
    let saving = store.send("a-1", &loaded).await;
    // Meanwhile the record in memory is the one sent.
    assert_eq!(store.load("a-1").await.unwrap().value, loaded.value);
    let revision = saving.written().await.unwrap();
    assert!(revision.is_some());

    // Another replica starting to own the unit reads what was sent.
    let other = self::store(&server).await;
    assert_eq!(other.take("a-1").await.unwrap().value, ["created", "ready"]);
}

#[tokio::test]
async fn a_sent_write_after_another_replica_took_the_unit_is_a_conflict_and_forgotten() {
    let server = NatsServer::start();
    let store = store(&server).await;
    let mut loaded = saved(&store, "a-2").await;

    // A peer takes the unit over: its take moves the record's revision on.
    let peer = self::store(&server).await;
    peer.take("a-2").await.unwrap();

    loaded.value.push("late".into());
    let written = store.send("a-2", &loaded).await.written().await;
    assert!(
        matches!(written, Err(StateError::Conflict(_))),
        "{written:?}"
    );
    // Forgotten here: read afresh, the record is the peer's, without the late change.
    assert_eq!(store.load("a-2").await.unwrap().value, ["created"]);
}

#[tokio::test]
async fn a_record_past_its_limit_is_not_sent() {
    let server = NatsServer::start();
    let store = store(&server).await;
    let mut loaded = saved(&store, "a-3").await;

    loaded.value.push("x".repeat(2048));
    let written = store.send("a-3", &loaded).await.written().await;
    assert!(
        matches!(written, Err(StateError::TooLarge { .. })),
        "{written:?}"
    );
    assert_eq!(store.load("a-3").await.unwrap().value, ["created"]);
}

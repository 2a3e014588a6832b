//! The reply cache against a real nats-server with JetStream.

use std::time::{Duration, Instant};

use pb_protocol::Target;
use pb_runtime::Config;
use pb_runtime::kv::Buckets;
use pb_runtime::reply_cache::{Claim, ReplyCache};
use pb_testkit::NatsServer;

async fn cache(server: &NatsServer) -> ReplyCache {
    let config = Config::from_lookup(|_| None).unwrap();
    let buckets = Buckets::new(&server.client().await, &config);
    ReplyCache::open(&buckets).await.unwrap()
}

fn target() -> Target {
    Target::new("Main PB.CONTROL").unwrap()
}

/// Claim `request_id` on `target`, with `deadline` for the first attempt and `wait` for
/// this one.
async fn claim(
    cache: &ReplyCache,
    target: &Target,
    request_id: &str,
    deadline: Duration,
    wait: Duration,
) -> Claim {
    let until = tokio::time::Instant::now() + wait;
    cache
        .claim(target, request_id, until, deadline)
        .await
        .unwrap()
}

const DEADLINE: Duration = Duration::from_secs(5);

#[tokio::test]
async fn first_claim_acts_and_a_repeat_gets_the_same_answer() {
    let server = NatsServer::start();
    let cache = cache(&server).await;
    let Claim::Fresh(slot) = claim(&cache, &target(), "{r-1}", DEADLINE, DEADLINE).await else {
        panic!("the first claim must be fresh");
    };
    cache.complete(&slot, "answer-1".into()).await.unwrap();
    match claim(&cache, &target(), "{r-1}", DEADLINE, DEADLINE).await {
        Claim::Answered(a) => assert_eq!(&a[..], b"answer-1"),
        other => panic!("a repeat must not be acted on: {other:?}"),
    }
    // Another requestId, or the same requestId on another target, is new.
    assert!(matches!(
        claim(&cache, &target(), "{r-2}", DEADLINE, DEADLINE).await,
        Claim::Fresh(_)
    ));
    let session = Target::new("s-1").unwrap();
    assert!(matches!(
        claim(&cache, &session, "{r-1}", DEADLINE, DEADLINE).await,
        Claim::Fresh(_)
    ));
}

#[tokio::test]
async fn a_retry_during_the_first_attempt_waits_for_its_answer() {
    let server = NatsServer::start();
    let cache = cache(&server).await;
    let Claim::Fresh(slot) = claim(&cache, &target(), "r", DEADLINE, DEADLINE).await else {
        panic!("fresh");
    };
    let other = cache.clone();
    let retry =
        tokio::spawn(async move { claim(&other, &target(), "r", DEADLINE, DEADLINE).await });
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(
        !retry.is_finished(),
        "the retry must wait while the first attempt runs"
    );
    cache.complete(&slot, "late answer".into()).await.unwrap();
    match retry.await.unwrap() {
        Claim::Answered(a) => assert_eq!(&a[..], b"late answer"),
        other => panic!("the retry must get the first answer: {other:?}"),
    }
}

#[tokio::test]
async fn a_retry_waits_no_longer_than_its_own_deadline() {
    let server = NatsServer::start();
    let cache = cache(&server).await;
    let deadline = Duration::from_millis(600);
    let Claim::Fresh(_running) = claim(&cache, &target(), "r", deadline, deadline).await else {
        panic!("fresh");
    };
    tokio::time::sleep(Duration::from_millis(200)).await;
    let started = Instant::now();
    let retry = claim(&cache, &target(), "r", deadline, deadline).await;
    assert!(
        matches!(retry, Claim::Running),
        "a first attempt that may still run is not redone: {retry:?}"
    );
    let waited = started.elapsed();
    assert!(
        (Duration::from_millis(500)..Duration::from_millis(900)).contains(&waited),
        "the retry waits for the answer until its own deadline: {waited:?}"
    );
}

#[tokio::test]
async fn a_retry_takes_over_when_the_first_attempt_died() {
    let server = NatsServer::start();
    let cache = cache(&server).await;
    let deadline = Duration::from_millis(400);
    let Claim::Fresh(abandoned) = claim(&cache, &target(), "r", deadline, deadline).await else {
        panic!("fresh");
    };
    let started = Instant::now();
    let Claim::Fresh(slot) = claim(&cache, &target(), "r", deadline, 4 * deadline).await else {
        panic!("the retry takes the request over");
    };
    assert!(
        started.elapsed() >= Duration::from_millis(700),
        "but only twice the deadline after the first claim: {:?}",
        started.elapsed()
    );
    cache
        .complete(&slot, "retry's answer".into())
        .await
        .unwrap();
    // The first attempt, had it lived on, cannot replace the answer of the one that ran.
    cache
        .complete(&abandoned, "stale answer".into())
        .await
        .unwrap();
    match claim(&cache, &target(), "r", deadline, deadline).await {
        Claim::Answered(a) => assert_eq!(&a[..], b"retry's answer"),
        other => panic!("{other:?}"),
    }
}

/// `PB_KV_REPLICAS` reaches the server: a single-node server cannot keep three copies and
/// says so, naming the bucket; with one replica the same bucket opens.
#[tokio::test]
async fn buckets_are_created_with_the_configured_replicas() {
    let server = NatsServer::start();
    let client = server.client().await;
    let three =
        Config::from_lookup(|var| (var == "PB_KV_REPLICAS").then(|| "3".to_owned())).unwrap();
    let e = ReplyCache::open(&Buckets::new(&client, &three))
        .await
        .unwrap_err()
        .to_string();
    assert!(e.contains("pb_replies"), "{e}");
    assert!(e.to_lowercase().contains("replicas"), "{e}");
    cache(&server).await;
}

/// An answer the bucket refused to record is tried again: once the bucket takes writes, a
/// repeat waiting on the claim gets it, and is not acted on.
#[tokio::test]
async fn an_answer_refused_by_the_bucket_is_recorded_once_it_takes_writes_again() {
    let server = NatsServer::start();
    let cache = cache(&server).await;
    let client = server.client().await;
    let Claim::Fresh(slot) = claim(&cache, &target(), "{r-late}", DEADLINE, DEADLINE).await else {
        panic!("the first claim must be fresh");
    };
    pb_testkit::fill_bucket(&client, "pb_replies", true).await;
    // Larger than the claim it replaces: no room for it.
    let answer = bytes::Bytes::from("the answer, longer than the claim's marker".repeat(4));
    assert!(cache.complete(&slot, answer.clone()).await.is_err());
    let later = tokio::spawn(cache.clone().complete_later(slot, answer.clone()));
    tokio::time::sleep(Duration::from_millis(300)).await;
    pb_testkit::fill_bucket(&client, "pb_replies", false).await;
    match claim(&cache, &target(), "{r-late}", DEADLINE, DEADLINE).await {
        Claim::Answered(a) => assert_eq!(a, answer),
        other => panic!("the repeat must get the answer once recorded: {other:?}"),
    }
    later.await.unwrap();
}

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

#[tokio::test]
async fn first_claim_acts_and_a_repeat_gets_the_same_answer() {
    let server = NatsServer::start();
    let cache = cache(&server).await;
    let Claim::Fresh(slot) = cache
        .claim(&target(), "{r-1}", Duration::from_secs(5))
        .await
        .unwrap()
    else {
        panic!("the first claim must be fresh");
    };
    cache.complete(slot, "answer-1".into()).await.unwrap();
    match cache
        .claim(&target(), "{r-1}", Duration::from_secs(5))
        .await
        .unwrap()
    {
        Claim::Answered(a) => assert_eq!(&a[..], b"answer-1"),
        Claim::Fresh(_) => panic!("a repeat must not be acted on"),
    }
    // Another requestId, or the same requestId on another target, is new.
    assert!(matches!(
        cache
            .claim(&target(), "{r-2}", Duration::from_secs(5))
            .await
            .unwrap(),
        Claim::Fresh(_)
    ));
    assert!(matches!(
        cache
            .claim(
                &Target::new("s-1").unwrap(),
                "{r-1}",
                Duration::from_secs(5)
            )
            .await
            .unwrap(),
        Claim::Fresh(_)
    ));
}

#[tokio::test]
async fn a_retry_during_the_first_attempt_waits_for_its_answer() {
    let server = NatsServer::start();
    let cache = cache(&server).await;
    let Claim::Fresh(slot) = cache
        .claim(&target(), "r", Duration::from_secs(5))
        .await
        .unwrap()
    else {
        panic!("fresh");
    };
    let other = cache.clone();
    let retry =
        tokio::spawn(async move { other.claim(&target(), "r", Duration::from_secs(5)).await });
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(
        !retry.is_finished(),
        "the retry must wait while the first attempt runs"
    );
    cache.complete(slot, "late answer".into()).await.unwrap();
    match retry.await.unwrap().unwrap() {
        Claim::Answered(a) => assert_eq!(&a[..], b"late answer"),
        Claim::Fresh(_) => panic!("the retry must get the first answer"),
    }
}

#[tokio::test]
async fn a_retry_takes_over_when_the_first_attempt_died() {
    let server = NatsServer::start();
    let cache = cache(&server).await;
    let deadline = Duration::from_millis(400);
    let Claim::Fresh(_abandoned) = cache.claim(&target(), "r", deadline).await.unwrap() else {
        panic!("fresh");
    };
    let started = Instant::now();
    let claim = cache.claim(&target(), "r", deadline).await.unwrap();
    assert!(
        matches!(claim, Claim::Fresh(_)),
        "the retry takes the request over"
    );
    assert!(
        started.elapsed() >= Duration::from_millis(300),
        "but only after the deadline"
    );
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

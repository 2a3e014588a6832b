//! The reply cache against a real nats-server with JetStream.

use std::time::{Duration, Instant};

use pb_protocol::Target;
use pb_runtime::Config;
use pb_runtime::kv::Buckets;
use pb_runtime::reply_cache::{Claim, ReplyCache};
use pb_testkit::NatsServer;

async fn cache(server: &NatsServer) -> ReplyCache {
    bounded(
        server,
        Config::from_lookup(|_| None).unwrap().replies_max_bytes,
    )
    .await
}

async fn bounded(server: &NatsServer, max_bytes: u64) -> ReplyCache {
    let config = Config::from_lookup(|_| None).unwrap();
    let buckets = Buckets::new(&server.client().await, &config);
    ReplyCache::open(&buckets, max_bytes).await.unwrap()
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
async fn an_answer_sent_without_waiting_is_what_a_repeat_gets_once_confirmed() {
    let server = NatsServer::start();
    let cache = cache(&server).await;
    let Claim::Fresh(slot) = claim(&cache, &target(), "{r-s}", DEADLINE, DEADLINE).await else {
        panic!("the first claim must be fresh");
    };
    let recording = cache.record(slot, "sent answer".into()).await;
    recording.confirmed(&cache).await;
    match claim(&cache, &target(), "{r-s}", DEADLINE, DEADLINE).await {
        Claim::Answered(a) => assert_eq!(&a[..], b"sent answer"),
        other => panic!("a repeat must get the recorded answer: {other:?}"),
    }
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
    let e = ReplyCache::open(&Buckets::new(&client, &three), three.replies_max_bytes)
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
    // Larger than the claim it replaces (its marker has 2 KiB): no room for it.
    let answer = bytes::Bytes::from("the answer, longer than the claim's marker".repeat(100));
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

/// A full bucket (`PB_REPLIES_MAX_BYTES`): new requests are refused, typed `Full`, with a
/// text that tells the bridge to retry as is; every request claimed before still records
/// its answer (the last eighth is kept for them), and a repeat of an answered one still
/// gets its answer.
#[tokio::test]
async fn a_full_bucket_refuses_new_requests_and_keeps_every_answer_it_promised() {
    use pb_runtime::reply_cache::CacheErrorKind;
    let server = NatsServer::start();
    let cache = bounded(&server, 64 * 1024).await;
    let answer = bytes::Bytes::from(vec![b'a'; 1000]);
    let mut answered = Vec::new();
    let mut claimed = Vec::new();
    let refused = 'fill: {
        for i in 0..1000 {
            let id = format!("{{r-{i}}}");
            let until = tokio::time::Instant::now() + DEADLINE;
            match cache.claim(&target(), &id, until, DEADLINE).await {
                Ok(Claim::Fresh(slot)) if i % 2 == 0 => {
                    cache.complete(&slot, answer.clone()).await.unwrap();
                    answered.push(id);
                }
                // Every other one is left running, as if its handler were still at work.
                Ok(Claim::Fresh(slot)) => claimed.push(slot),
                Ok(other) => panic!("{id} is new: {other:?}"),
                Err(e) => break 'fill e,
            }
            // Let the fill watcher read the bucket now and then.
            if i % 16 == 0 {
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
        panic!("64 KiB of answers of 1 KB never filled the bucket");
    };
    assert_eq!(refused.kind(), CacheErrorKind::Full);
    let text = refused.to_string();
    assert!(text.contains("PB_REPLIES_MAX_BYTES"), "{text}");
    assert!(text.ends_with(pb_runtime::serve::RETRY_SAME), "{text}");
    assert!(cache.filling());
    assert!(answered.len() > 10, "{}", answered.len());
    // Requests claimed before the bucket filled record their answers all the same.
    for slot in &claimed {
        cache.complete(slot, answer.clone()).await.unwrap();
    }
    // A repeat of any answered request is answered, not refused.
    for id in &answered {
        let until = tokio::time::Instant::now() + DEADLINE;
        match cache.claim(&target(), id, until, DEADLINE).await {
            Ok(Claim::Answered(a)) => assert_eq!(a, answer),
            other => panic!("{id}: {other:?}"),
        }
    }
    // Still refused: a new one.
    let until = tokio::time::Instant::now() + DEADLINE;
    let e = cache
        .claim(&target(), "{new}", until, DEADLINE)
        .await
        .unwrap_err();
    assert_eq!(e.kind(), CacheErrorKind::Full);
}

/// The longest key the default limits let input make fits a subject the real server takes,
/// for every operation the cache does with it; a key past that budget would not (the
/// server closes the connection of a client whose protocol line is too long), so the
/// budget is what keeps a hostile requestId answered.
#[tokio::test]
async fn the_longest_key_within_the_limits_is_accepted_by_the_server() {
    let server = NatsServer::start();
    let config = Config::from_lookup(|_| None).unwrap();
    let limits = config.limits;
    assert!(pb_runtime::kv::key_fits(&config.subjects, &limits));
    let cache = cache(&server).await;
    // Every byte escaped: `{` in the requestId, `%` in as many segments as fill the target.
    let segments = (limits.target + 1).div_ceil(limits.segment + 1);
    let segment = "%".repeat((limits.target + 1) / segments - 1);
    let target = Target::new(vec![segment; segments].join(".")).unwrap();
    limits.check_target(&target).unwrap();
    let request_id = "{".repeat(limits.request_id);
    let key_len = pb_runtime::kv::key(&[target.as_str(), &request_id]).len();
    assert!(
        key_len + 10 >= pb_runtime::kv::longest_reply_key(&limits),
        "{key_len}"
    );
    // Claim (create), wait on a running claim (watch), answer (update), read again (get).
    let until = tokio::time::Instant::now() + DEADLINE;
    let Claim::Fresh(slot) = cache
        .claim(&target, &request_id, until, DEADLINE)
        .await
        .unwrap()
    else {
        panic!("new");
    };
    let short = tokio::time::Instant::now() + Duration::from_millis(300);
    assert!(matches!(
        cache
            .claim(&target, &request_id, short, DEADLINE)
            .await
            .unwrap(),
        Claim::Running
    ));
    cache.complete(&slot, "answer".into()).await.unwrap();
    assert_eq!(
        cache
            .answered(&target, &request_id)
            .await
            .unwrap()
            .as_deref(),
        Some(&b"answer"[..])
    );
    // What the limits exclude: a key four times as long is refused by the server.
    let client = server.client().await;
    let js = async_nats::jetstream::new(client.clone());
    let store = js.get_key_value("pb_replies").await.unwrap();
    let too_long = "=7B".repeat(pb_runtime::kv::MAX_CONTROL_LINE / 3 + 10);
    assert!(store.put(&too_long, "x".into()).await.is_err());
}

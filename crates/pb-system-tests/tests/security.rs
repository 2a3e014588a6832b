//! NATS security: every process under its own user with the permissions of
//! `deploy/base/nats/auth.conf`, over TLS, and nothing outside those permissions.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_nats::{Event, ServerError};
use futures::StreamExt;
use pb_system_tests::{World, cli};
use pb_testkit::{NatsServer, Process};
use serde_json::json;

#[tokio::test]
async fn the_whole_system_runs_under_per_process_users_over_tls() {
    let World {
        stack, driver: d, ..
    } = World::builder().secured(true).start().await;
    assert!(stack.nats.url().starts_with("tls://"));
    let passwords = stack.passwords.clone().unwrap();
    let logged = d.login("1001", "pw-1001", "s-sec").await.unwrap();
    d.ok(
        "channel.request.notready",
        &logged.channels[0].target,
        json!({"reasonCode": "x"}),
    )
    .await
    .unwrap();
    d.logout(&logged).await.unwrap();
    // The CLI reaches the secured server with the same variables the services read.
    let out = cli()
        .arg("init")
        .env("NATS_URL", stack.nats.url())
        .env("NATS_USER", "pb-bridge")
        .env("NATS_PASSWORD", passwords.of("pb-bridge"))
        .env("NATS_TLS_CA", stack.nats.tls_ca().unwrap())
        .output()
        .await
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[tokio::test]
async fn a_wrong_password_or_a_missing_ca_fails_at_once_saying_what_to_check() {
    let (nats, _) = NatsServer::start_secured(true);
    let started = std::time::Instant::now();
    let mut wrong = Process::spawn(
        "pb-cti-sim",
        &[
            ("NATS_URL", nats.url()),
            ("NATS_USER", "pb-cti-sim".to_owned()),
            ("NATS_PASSWORD", "not-it".to_owned()),
            ("NATS_TLS_CA", nats.tls_ca().unwrap().display().to_string()),
        ],
    );
    let status = wrong.wait_exit(Duration::from_secs(10)).await;
    assert!(!status.success());
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "no 30 s of retries"
    );
    let logs = wrong.logs();
    assert!(logs.contains("check NATS_USER/NATS_PASSWORD"), "{logs}");
    assert!(!logs.contains("not-it"), "the password reached a log");
    let mut no_ca = Process::spawn(
        "pb-cti-sim",
        &[
            ("NATS_URL", nats.url()),
            ("PB_CONNECT_TIMEOUT_MS", "1500".to_owned()),
        ],
    );
    assert!(!no_ca.wait_exit(Duration::from_secs(10)).await.success());
}

/// Connect as `user` and record the server's errors (permission violations).
async fn watched(
    nats: &NatsServer,
    user: &str,
    password: &str,
) -> (async_nats::Client, Arc<Mutex<Vec<String>>>) {
    let errors = Arc::new(Mutex::new(Vec::new()));
    let sink = errors.clone();
    let client = nats
        .options_as(user, password)
        .event_callback(move |event| {
            let sink = sink.clone();
            async move {
                if let Event::ServerError(ServerError::Other(e)) = event {
                    sink.lock().unwrap().push(e);
                }
            }
        })
        .connect(nats.url())
        .await
        .unwrap();
    (client, errors)
}

#[tokio::test]
async fn no_process_can_publish_or_subscribe_outside_its_permissions() {
    let (nats, passwords) = NatsServer::start_secured(false);
    let bridge = nats
        .client_as("pb-bridge", &passwords.of("pb-bridge"))
        .await;
    let mut events = bridge.subscribe("pb.evt.>").await.unwrap();
    bridge.flush().await.unwrap();
    let forbidden = [
        ("pb-control", "pb.evt.channel.s.g.c"),
        ("pb-control", "$KV.pb_sessions.1001"),
        ("pb-session", "pb.evt.control.PB1.CONTROL"),
        ("pb-session", "pb.cti.evt.link"),
        ("pb-channel-group", "pb.evt.session.s"),
        ("pb-channel-group", "pb.int.session.create"),
        ("pb-cti-sim", "pb.evt.channel.s.g.c"),
        ("pb-cti-sim", "pb.control.PB1.CONTROL"),
        ("pb-bridge", "pb.evt.channel.s.g.c"),
        ("pb-bridge", "pb.cti.req.login"),
    ];
    for (user, subject) in forbidden {
        let (client, errors) = watched(&nats, user, &passwords.of(user)).await;
        client
            .publish(subject.to_owned(), "{}".into())
            .await
            .unwrap();
        client.flush().await.unwrap();
        tokio::time::sleep(Duration::from_millis(100)).await;
        let seen = errors.lock().unwrap().clone();
        assert!(
            seen.iter()
                .any(|e| e.contains("Permissions Violation for Publish") && e.contains(subject)),
            "{user} published to {subject}: {seen:?}"
        );
    }
    let (cti, errors) = watched(&nats, "pb-cti-sim", &passwords.of("pb-cti-sim")).await;
    let _sneak = cti.subscribe("pb.session.>").await.unwrap();
    cti.flush().await.unwrap();
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(
        errors
            .lock()
            .unwrap()
            .iter()
            .any(|e| e.contains("Permissions Violation for Subscription")),
        "the simulator subscribed to session commands"
    );
    // Nothing forbidden reached the bridge.
    let leaked = tokio::time::timeout(Duration::from_millis(300), events.next()).await;
    assert!(
        leaked.is_err(),
        "a forbidden event was delivered: {leaked:?}"
    );
    // And what is allowed goes through.
    let (control, errors) = watched(&nats, "pb-control", &passwords.of("pb-control")).await;
    control
        .publish("pb.evt.control.PB1.CONTROL", "{}".into())
        .await
        .unwrap();
    control.flush().await.unwrap();
    assert!(
        tokio::time::timeout(Duration::from_secs(2), events.next())
            .await
            .is_ok()
    );
    assert!(errors.lock().unwrap().is_empty());
}

#[tokio::test]
async fn an_nkey_identity_is_accepted() {
    let user = nkeys::KeyPair::new_user();
    let dir = pb_testkit::TempDir::new("nkey");
    let conf = dir.path().join("nkey.conf");
    std::fs::write(
        &conf,
        format!(
            "authorization {{ users = [ {{ nkey: \"{}\" }} ] }}\n",
            user.public_key()
        ),
    )
    .unwrap();
    let nats = NatsServer::start_with(&["-c", conf.to_str().unwrap()]);
    let sim = Process::spawn(
        "pb-cti-sim",
        &[
            ("NATS_URL", nats.url()),
            ("NATS_NKEY", user.seed().unwrap()),
        ],
    )
    .ready()
    .await;
    assert!(
        !sim.logs().contains(&user.seed().unwrap()),
        "the seed reached a log"
    );
}

//! Least privilege on NATS, against a real nats-server running the committed `auth.conf`
//! files (`pb_runtime::permissions`): no credential reads another process's replies while
//! each gets its own (the gateway's and forwarded internal requests' included), a bucket is
//! written only by the services that own it, and in production nobody drives a simulator. Refusals are seen as the client sees them: a server error event, a request
//! that the server never routed (timed out, where an allowed subject nobody serves answers
//! "no responders"), a message never delivered, a value unchanged.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use async_nats::jetstream::{self, kv};
use async_nats::{Client, Event, RequestErrorKind, ServerError};
use futures::StreamExt;
use pb_protocol::internal::{
    CHANNEL_GROUP_SERVICE, CREATE, GroupCreate, InternalReply, SYNC, UnitRef,
};
use pb_protocol::{Callee, Kind, MessageType, Response, Subjects, Target};
use pb_runtime::CtiClient;
use pb_runtime::permissions::{
    BRIDGE, CHANNEL_GROUP, CONTROL, CTI_SIM, Deployment, GATEWAY, SESSION, inbox_prefix,
};
use pb_testkit::{NatsServer, Passwords, Stack, http_get};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const WAIT: Duration = Duration::from_secs(10);

/// How long a refused request waits: the server never routes it, so nothing answers (an
/// allowed one nobody serves is answered "no responders" at once).
const REFUSED_WAIT: Duration = Duration::from_secs(2);

/// A client connected as `user`, and how many errors the server has sent it (each refused
/// publish or subscription is one).
async fn connect_as(
    nats: &NatsServer,
    passwords: &Passwords,
    user: &str,
) -> (Client, Arc<AtomicUsize>) {
    let refusals = Arc::new(AtomicUsize::new(0));
    let count = refusals.clone();
    let client = nats
        .options_as(user, &passwords.of(user))
        .event_callback(move |event| {
            let count = count.clone();
            async move {
                if let Event::ServerError(ServerError::Other(_)) = event {
                    count.fetch_add(1, Ordering::SeqCst);
                }
            }
        })
        .connect(nats.url())
        .await
        .unwrap_or_else(|e| panic!("connect as {user}: {e}"));
    (client, refusals)
}

/// Wait until `refusals` reaches `n` (the server's errors arrive after a flush's PONG at
/// the latest), then check that it stays there.
async fn refused(refusals: &AtomicUsize, n: usize, what: &str) {
    let started = Instant::now();
    while refusals.load(Ordering::SeqCst) < n && started.elapsed() < WAIT {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(refusals.load(Ordering::SeqCst), n, "{what}");
}

/// A request on `subject` with a short wait: the kind of error it ends with, if any.
async fn request_kind(client: &Client, subject: &str) -> Option<RequestErrorKind> {
    let request = async_nats::Request::new()
        .payload("{}".into())
        .timeout(Some(REFUSED_WAIT));
    client
        .send_request(subject.to_owned(), request)
        .await
        .err()
        .map(|e| e.kind())
}

/// Write one command frame to the gateway (a 4-byte big-endian length, then the JSON), and
/// read frames until its response.
async fn command_over_tcp(
    socket: &mut tokio::net::TcpStream,
    name: &str,
    target: &str,
) -> Response {
    let frame = pb_protocol::envelope::raw_command(name, target, "security-1", json!({}));
    let length = u32::try_from(frame.len()).unwrap().to_be_bytes();
    socket.write_all(&length).await.unwrap();
    socket.write_all(&frame).await.unwrap();
    loop {
        let mut length = [0u8; 4];
        socket.read_exact(&mut length).await.unwrap();
        let mut frame = vec![0u8; u32::from_be_bytes(length) as usize];
        socket.read_exact(&mut frame).await.unwrap();
        let json: Value = serde_json::from_slice(&frame).unwrap();
        if MessageType::parse(json["header"]["type"].as_str().unwrap_or_default())
            == Some(MessageType::Response)
        {
            return Response::decode(&frame).unwrap();
        }
    }
}

#[tokio::test]
async fn one_process_cannot_read_another_s_replies() {
    let mut stack = Stack::start_secured(false, 1, &[]).await;
    let passwords = stack.passwords.clone().unwrap();
    // A gateway connected to a bridge socket of the test's, to see its replies come back.
    let bridge_socket = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = bridge_socket.local_addr().unwrap().to_string();
    stack.gateway("gw-0", &addr, &[]).await;
    let (mut socket, _) = tokio::time::timeout(WAIT, bridge_socket.accept())
        .await
        .expect("the gateway connects")
        .unwrap();

    // The session service's credentials try to read everyone's replies.
    let (spy, refusals) = connect_as(&stack.nats, &passwords, SESSION).await;
    let patterns = [
        ">".to_owned(),
        "_INBOX.>".to_owned(),
        format!("{}.>", inbox_prefix(CONTROL)),
        format!("{}.>", inbox_prefix(BRIDGE)),
        format!("{}.>", inbox_prefix(GATEWAY)),
        Subjects::default().all_gateway_replies(),
    ];
    let mut stolen = Vec::new();
    for pattern in &patterns {
        stolen.push(spy.subscribe(pattern.clone()).await.unwrap());
    }
    spy.flush().await.unwrap();
    refused(&refusals, patterns.len(), "each subscription refused").await;

    // Meanwhile the control's credentials call the CTI, the bridge's and the gateway's
    // send commands, and each gets its own answer.
    let (control, control_refusals) = connect_as(&stack.nats, &passwords, CONTROL).await;
    let cti = CtiClient::new(control.clone(), Subjects::default());
    let link = cti.call(&pb_cti::GetLinkStatus {}, WAIT).await;
    assert!(link.is_ok(), "the control's CTI call is answered: {link:?}");
    let (bridge, bridge_refusals) = connect_as(&stack.nats, &passwords, BRIDGE).await;
    let answer = pb_testkit::Bridge::new(bridge)
        .send("cti.request.serverstatus", "PB1.CONTROL", json!({}))
        .await;
    assert!(answer.outcome.is_success(), "{answer:?}");
    let over_tcp = tokio::time::timeout(
        WAIT,
        command_over_tcp(&mut socket, "cti.request.serverstatus", "PB1.CONTROL"),
    )
    .await
    .expect("the gateway writes the response");
    assert!(
        over_tcp.request_id == "security-1" && over_tcp.outcome.is_success(),
        "{over_tcp:?}"
    );
    // The spy's own requests are answered: its connection works, only others' are closed.
    let mine = CtiClient::new(spy.clone(), Subjects::default())
        .call(&pb_cti::GetLinkStatus {}, WAIT)
        .await;
    assert!(mine.is_ok(), "{mine:?}");

    // None of those replies reached the spy, and nobody else was refused anything.
    let mut stolen = futures::stream::select_all(stolen);
    let leaked = tokio::time::timeout(Duration::from_millis(500), stolen.next()).await;
    assert!(leaked.is_err(), "a reply reached the spy: {leaked:?}");
    assert_eq!(refusals.load(Ordering::SeqCst), patterns.len());
    assert_eq!(control_refusals.load(Ordering::SeqCst), 0);
    assert_eq!(bridge_refusals.load(Ordering::SeqCst), 0);

    // Every process is ready under its own user: its JetStream requests come back on its
    // own inbox (readiness asks JetStream).
    for (name, process) in &stack.processes {
        let (status, body) = http_get(&process.ops_addr(), "/readyz").await;
        assert_eq!(status, 200, "{name}: {body}");
    }
}

/// One internal request from `client`, answered by the channel-group service.
async fn channel_group_request(
    client: &Client,
    op: &str,
    body: &impl serde::Serialize,
) -> InternalReply {
    let subject = Subjects::default().internal_request(CHANNEL_GROUP_SERVICE, op);
    let payload = serde_json::to_vec(body).unwrap();
    let reply = tokio::time::timeout(WAIT, client.request(subject.clone(), payload.into()))
        .await
        .unwrap_or_else(|_| panic!("no answer on {subject}"))
        .unwrap_or_else(|e| panic!("{subject}: {e}"));
    serde_json::from_slice(&reply.payload).unwrap()
}

#[tokio::test]
async fn a_forwarded_internal_request_is_answered_to_its_sender() {
    // Two channel-group replicas: an agent's requests reach either (queue group), and the
    // one that does not own the agent forwards them to the one that does, which answers
    // the session service's inbox itself.
    let stack = Stack::start_secured(false, 2, &[]).await;
    let passwords = stack.passwords.clone().unwrap();
    let (session, refusals) = connect_as(&stack.nats, &passwords, SESSION).await;
    let create = GroupCreate {
        target: Target::new("s-fwd.g1").unwrap(),
        agent_id: "1001".to_owned(),
        place: "p-1001".to_owned(),
    };
    assert_eq!(
        channel_group_request(&session, CREATE, &create).await,
        InternalReply::Ok
    );
    let agent = UnitRef {
        agent_id: create.agent_id.clone(),
    };
    // Half of them, on average, reach the replica that does not own the agent.
    for _ in 0..12 {
        assert_eq!(
            channel_group_request(&session, SYNC, &agent).await,
            InternalReply::Ok
        );
    }
    assert_eq!(refusals.load(Ordering::SeqCst), 0);
}

#[tokio::test]
async fn a_bucket_is_written_only_by_the_services_that_own_it() {
    let (nats, passwords) = NatsServer::start_secured(false);
    let subjects = Subjects::default();
    let bucket = |name: &str| pb_runtime::kv::bucket_name(&subjects, name);
    let (session, session_refusals) = connect_as(&nats, &passwords, SESSION).await;
    let owner = jetstream::new(session);
    let open = |name: String| kv::Config {
        bucket: name,
        history: 1,
        ..Default::default()
    };
    let sessions = owner
        .create_key_value(open(bucket(pb_runtime::kv::buckets::SESSIONS)))
        .await
        .expect("the session service creates its bucket");
    sessions.put("1001", "mine".into()).await.unwrap();
    let owners = owner
        .create_key_value(open(bucket(pb_runtime::kv::buckets::OWNERS)))
        .await
        .expect("the session service creates the owners bucket");
    owners.put("session.1001", "s-0".into()).await.unwrap();

    // Writers and stream administrators that do not own the bucket: the server routes none
    // of their messages (no JetStream acknowledgement ever comes).
    let intruders = [
        (CONTROL, format!("$KV.{}.1001", bucket("sessions"))),
        (CHANNEL_GROUP, format!("$KV.{}.1001", bucket("sessions"))),
        (GATEWAY, format!("$KV.{}.1001", bucket("sessions"))),
        (
            CHANNEL_GROUP,
            format!("$KV.{}.session.1001", bucket("owners")),
        ),
        (CONTROL, format!("$KV.{}.session.1001", bucket("owners"))),
    ];
    let stream = format!("KV_{}", bucket("sessions"));
    let attempts = intruders.iter().map(|(user, subject)| {
        let (nats, passwords, stream) = (&nats, &passwords, &stream);
        async move {
            let (client, refusals) = connect_as(nats, passwords, user).await;
            let js = jetstream::ContextBuilder::new()
                .timeout(REFUSED_WAIT)
                .build(client.clone());
            let write = async {
                match js.publish(subject.clone(), "forged".into()).await {
                    Ok(ack) => ack.await.map_err(|e| e.kind()).err(),
                    Err(e) => Some(e.kind()),
                }
            };
            let admin =
                ["DELETE", "PURGE", "UPDATE"].map(|op| format!("$JS.API.STREAM.{op}.{stream}"));
            let (write, admin) = futures::join!(
                write,
                futures::future::join_all(admin.iter().map(|s| request_kind(&client, s)))
            );
            assert_eq!(
                write,
                Some(jetstream::context::PublishErrorKind::TimedOut),
                "{user} wrote {subject}"
            );
            assert_eq!(
                admin,
                [Some(RequestErrorKind::TimedOut); 3],
                "{user} changed the stream"
            );
            refused(&refusals, 4, &format!("{user}: every write refused")).await;
        }
    });
    futures::future::join_all(attempts).await;
    // What the owner wrote is still there, unchanged.
    let value = sessions.get("1001").await.unwrap();
    assert_eq!(value.as_deref(), Some(&b"mine"[..]));
    let value = owners.get("session.1001").await.unwrap();
    assert_eq!(value.as_deref(), Some(&b"s-0"[..]));
    assert_eq!(session_refusals.load(Ordering::SeqCst), 0);

    // The channel-group service writes its own owner records, and reads the session's.
    let (channel_group, refusals) = connect_as(&nats, &passwords, CHANNEL_GROUP).await;
    let js = jetstream::new(channel_group);
    let shared = js.get_key_value(bucket("owners")).await.unwrap();
    shared
        .put("channelgroup.1001", "g-0".into())
        .await
        .expect("the channel-group service writes its own owner records");
    assert_eq!(
        shared.get("session.1001").await.unwrap().as_deref(),
        Some(&b"s-0"[..])
    );
    assert_eq!(refusals.load(Ordering::SeqCst), 0);
}

#[tokio::test]
async fn in_production_nobody_can_drive_a_simulator() {
    let subjects = Subjects::default();
    let status = subjects.call(Callee::Simulator, "status");
    let session_command = subjects.command(Kind::Session, &Target::new("s-nobody").unwrap());
    // In the lab, the bridge may drive the simulator: with none running, nobody answers.
    let (lab, lab_passwords) = NatsServer::start_as(Deployment::Lab, false);
    let (bridge, _) = connect_as(&lab, &lab_passwords, BRIDGE).await;
    assert_eq!(
        request_kind(&bridge, &status).await,
        Some(RequestErrorKind::NoResponders)
    );

    let (nats, passwords) = NatsServer::start_as(Deployment::Production, false);
    // The simulator has no user in production.
    let sim = nats
        .options_as(CTI_SIM, "any")
        .connect(nats.url())
        .await
        .err()
        .map(|e| e.kind());
    assert_eq!(
        sim,
        Some(async_nats::ConnectErrorKind::AuthorizationViolation)
    );
    // The bridge's commands go through (nobody serves this one), its simulator requests
    // are never routed, and nobody else may send them either.
    let (bridge, refusals) = connect_as(&nats, &passwords, BRIDGE).await;
    assert_eq!(
        request_kind(&bridge, &session_command).await,
        Some(RequestErrorKind::NoResponders)
    );
    assert_eq!(
        request_kind(&bridge, &status).await,
        Some(RequestErrorKind::TimedOut)
    );
    refused(&refusals, 1, "the bridge's simulator request refused").await;
    let others = pb_runtime::permissions::users(&subjects, Deployment::Production);
    let attempts = others
        .iter()
        .map(|u| u.name)
        .filter(|u| *u != BRIDGE)
        .map(|user| {
            let (nats, passwords, status) = (&nats, &passwords, &status);
            async move {
                let (client, refusals) = connect_as(nats, passwords, user).await;
                assert_eq!(
                    request_kind(&client, status).await,
                    Some(RequestErrorKind::TimedOut),
                    "{user}"
                );
                refused(&refusals, 1, user).await;
            }
        });
    futures::future::join_all(attempts).await;
}

use std::time::Duration;

use async_nats::Client;
use futures::StreamExt;
use pb_cti::{CtiError, CtiReply};
use pb_protocol::channel::ChannelType;
use pb_protocol::{Body, Call, Callee, Kind, Response, Subjects, Target};
use serde_json::Value;

/// The bridge side of the protocol, at the JSON level, so tests can send anything.
#[derive(Debug, Clone)]
pub struct Bridge {
    pub client: Client,
    pub subjects: Subjects,
    pub timeout: Duration,
}

/// An event as the bridge sees it.
#[derive(Debug, Clone, PartialEq)]
pub struct RawEvent {
    pub subject: String,
    pub name: String,
    pub target: String,
    pub body: Value,
}

impl Bridge {
    pub fn new(client: Client) -> Self {
        Self {
            client,
            subjects: Subjects::default(),
            timeout: Duration::from_secs(10),
        }
    }

    /// Send command `name` to `target` with `body` and a fresh requestId.
    pub async fn send(&self, name: &str, target: &str, body: Value) -> Response {
        self.send_with_id(name, target, body, &uuid::Uuid::new_v4().to_string())
            .await
    }

    /// Send command `name` to `target` with `body` and the given requestId.
    pub async fn send_with_id(
        &self,
        name: &str,
        target: &str,
        body: Value,
        request_id: &str,
    ) -> Response {
        let payload = pb_protocol::envelope::raw_command(name, target, request_id, body);
        self.send_raw(&self.subject_of(name, target), payload).await
    }

    /// The command subject for `name` on `target`.
    pub fn subject_of(&self, name: &str, target: &str) -> String {
        let kind = Kind::of_name(name).unwrap_or(Kind::Control);
        let target = Target::new(target).expect("a valid target");
        self.subjects.command(kind, &target)
    }

    /// Send any payload on any subject and decode the response.
    pub async fn send_raw(&self, subject: &str, payload: Vec<u8>) -> Response {
        let reply = tokio::time::timeout(
            self.timeout,
            self.client.request(subject.to_owned(), payload.into()),
        )
        .await
        .unwrap_or_else(|_| panic!("no response on {subject} within {:?}", self.timeout))
        .unwrap_or_else(|e| panic!("request on {subject} failed: {e}"));
        Response::decode(&reply.payload).expect("a decodable response")
    }

    /// Call the simulator's admin interface, `P.sim.<op>` (fault injection, changes made at
    /// the CTI): its answer, or its refusal.
    pub async fn admin<C, T>(&self, op: &C) -> Result<T, CtiError>
    where
        C: Call<Reply = CtiReply<T>>,
    {
        let sent = self
            .while_nobody_listens(
                || pb_runtime::call(&self.client, &self.subjects, op, self.timeout),
                |e| e.kind() == pb_runtime::CallErrorKind::NoResponders,
            )
            .await;
        match sent {
            Ok(reply) => reply.into(),
            Err(e) => panic!("{e}"),
        }
    }

    /// A customer calls agent `agent_id` (the simulator's `offer`); the interaction's name.
    pub async fn offer_call(&self, agent_id: &str) -> String {
        let offer = pb_sim_admin::Offer {
            media: ChannelType::Telephony,
            data: Body::new(),
            from: Some("+15550100".into()),
            agent_id: Some(agent_id.into()),
        };
        match self.admin(&offer).await {
            Ok(offered) => offered.name,
            Err(e) => panic!("offer refused: {e}"),
        }
    }

    /// Call the CTI adapter directly, `P.cti.req.<op>`, as another desktop or the phone
    /// would act at the CTI; its JSON reply.
    pub async fn cti(&self, op: &str, body: Value) -> Value {
        let subject = self.subjects.call(Callee::Cti, op);
        let request = || {
            self.client
                .request(subject.clone(), body.to_string().into())
        };
        match self
            .while_nobody_listens(request, |e| {
                e.kind() == async_nats::RequestErrorKind::NoResponders
            })
            .await
        {
            Ok(reply) => serde_json::from_slice(&reply.payload).expect("a JSON reply"),
            Err(e) => panic!("request on {subject} failed: {e}"),
        }
    }

    /// Make a request with `attempt`; made again, for up to [`Bridge::timeout`], while it
    /// finds nobody listening (`nobody`): a process moving to another node of a cluster
    /// (its node was lost) has a moment with no subscription anywhere.
    async fn while_nobody_listens<T, E>(
        &self,
        mut attempt: impl AsyncFnMut() -> Result<T, E>,
        nobody: impl Fn(&E) -> bool,
    ) -> Result<T, E> {
        let give_up = tokio::time::Instant::now() + self.timeout;
        loop {
            match attempt().await {
                Err(e) if nobody(&e) && tokio::time::Instant::now() < give_up => {
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                result => return result,
            }
        }
    }

    /// Start watching every event (`P.evt.>`).
    pub async fn events(&self) -> EventStream {
        let subscriber = self
            .client
            .subscribe(self.subjects.all_events())
            .await
            .expect("subscribe to events");
        self.client.flush().await.expect("flush");
        EventStream { subscriber }
    }
}

/// How many of `seen` are named `name` on `target`.
pub fn count(seen: &[RawEvent], name: &str, target: &str) -> usize {
    seen.iter()
        .filter(|e| e.name == name && e.target == target)
        .count()
}

/// `seen` holds one `channel.interaction.added` on `channel`, and it names `call`.
pub fn announced_once(seen: &[RawEvent], channel: &str, call: &str) {
    let added: Vec<_> = seen
        .iter()
        .filter(|e| e.name == "channel.interaction.added" && e.target == channel)
        .collect();
    assert_eq!(added.len(), 1, "{seen:#?}");
    assert_eq!(added[0].body["name"], call);
}

/// Events as they arrive.
#[derive(Debug)]
pub struct EventStream {
    subscriber: async_nats::Subscriber,
}

impl EventStream {
    /// The next event, or `None` if none arrives within `timeout`.
    pub async fn next(&mut self, timeout: Duration) -> Option<RawEvent> {
        let message = tokio::time::timeout(timeout, self.subscriber.next())
            .await
            .ok()??;
        let value: Value = serde_json::from_slice(&message.payload).expect("event JSON");
        Some(RawEvent {
            subject: message.subject.to_string(),
            name: value["header"]["name"]
                .as_str()
                .unwrap_or_default()
                .to_owned(),
            target: value["header"]["target"]
                .as_str()
                .unwrap_or_default()
                .to_owned(),
            body: value["body"].clone(),
        })
    }

    /// Wait for the next event named `name`, skipping others; panics after `timeout`.
    pub async fn expect(&mut self, name: &str, timeout: Duration) -> RawEvent {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            match self.next(left).await {
                Some(event) if event.name == name => return event,
                Some(_) => continue,
                None => panic!("no `{name}` event within {timeout:?}"),
            }
        }
    }

    /// Collect every event arriving within `window`.
    pub async fn collect(&mut self, window: Duration) -> Vec<RawEvent> {
        let deadline = tokio::time::Instant::now() + window;
        let mut events = Vec::new();
        loop {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            match self.next(left).await {
                Some(event) => events.push(event),
                None => return events,
            }
        }
    }
}

/// One message seen by a [`Tap`].
#[derive(Debug, Clone)]
pub struct Seen {
    pub subject: String,
    pub json: Value,
}

impl Seen {
    pub fn name(&self) -> &str {
        self.json["header"]["name"].as_str().unwrap_or_default()
    }

    pub fn kind(&self) -> &str {
        self.json["header"]["type"].as_str().unwrap_or_default()
    }
}

/// Everything the bridge receives, responses and events, on ONE subscription, so the order
/// of arrival is the order in which the client published (NATS keeps per-publisher order).
#[derive(Debug)]
pub struct Tap {
    subscriber: async_nats::Subscriber,
    inbox_prefix: String,
    events_prefix: String,
}

impl Bridge {
    /// Start a tap: subscribes to the bridge's reply inboxes and to every event.
    pub async fn tap(&self) -> Tap {
        let inbox_prefix = format!("tap.{}", uuid::Uuid::new_v4().simple());
        // One subscription covering both: the tap's inbox and the events.
        let subscriber = self.client.subscribe(">").await.expect("subscribe");
        self.client.flush().await.expect("flush");
        Tap {
            subscriber,
            inbox_prefix,
            events_prefix: self.subjects.all_events().trim_end_matches('>').to_owned(),
        }
    }

    /// Send a command whose response arrives on the tap.
    pub async fn send_tapped(
        &self,
        tap: &Tap,
        name: &str,
        target: &str,
        body: Value,
        request_id: &str,
    ) {
        let payload = pb_protocol::envelope::raw_command(name, target, request_id, body);
        let inbox = format!("{}.{}", tap.inbox_prefix, uuid::Uuid::new_v4().simple());
        self.client
            .publish_with_reply(self.subject_of(name, target), inbox, payload.into())
            .await
            .expect("publish");
        self.client.flush().await.expect("flush");
    }
}

impl Tap {
    /// Responses and events seen within `window` (commands and other traffic skipped).
    pub async fn collect(&mut self, window: Duration) -> Vec<Seen> {
        let deadline = tokio::time::Instant::now() + window;
        let mut seen = Vec::new();
        loop {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            let Ok(Some(message)) = tokio::time::timeout(left, self.subscriber.next()).await else {
                return seen;
            };
            let subject = message.subject.to_string();
            let ours =
                subject.starts_with(&self.inbox_prefix) || subject.starts_with(&self.events_prefix);
            if !ours {
                continue;
            }
            if let Ok(json) = serde_json::from_slice::<Value>(&message.payload) {
                seen.push(Seen { subject, json });
            }
        }
    }
}

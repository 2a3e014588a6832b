//! NATS service discovery, answered by the process itself (the micro protocol v1:
//! `$SRV.PING`, `$SRV.INFO` and `$SRV.STATS`, each also `.<name>` and `.<name>.<id>`), so that
//! `nats micro ls` and `nats micro info` see every replica and what it serves.
//!
//! The endpoints listed are the subscriptions the process made through [`Endpoints`]: the
//! function that subscribes lists what it subscribed. The services take their requests on
//! core subscriptions of their own (queue groups, an owner's exact subjects), so a
//! discovery endpoint of the client library, a second subscription on the same subject,
//! would answer each request twice; hence this responder. STATS lists the same endpoints
//! as INFO; it keeps no counts (zero): the numbers are on the operations port's `/metrics`.

use std::collections::{BTreeMap, HashMap};
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use async_nats::service::endpoint;
use async_nats::service::{Info, PingResponse, Stats};
use async_nats::{Client, Message, SubscribeError, Subscriber, UnsubscribeError};
use futures::{Stream, StreamExt};

use crate::Shutdown;

/// The prefix of the discovery subjects.
const PREFIX: &str = "$SRV";

/// The metadata key of a [`Listed`] endpoint's count of subscriptions.
const SUBSCRIPTIONS: &str = "subscriptions";

/// The metadata key of how a [`Listed`] endpoint's subscriptions are made.
const SUBSCRIBED: &str = "subscribed";

/// The endpoints of a process, by name: what it subscribed and serves. Cheap to clone;
/// clones share the list.
#[derive(Debug, Clone, Default)]
pub struct Endpoints(Arc<Mutex<BTreeMap<String, Entry>>>);

/// One endpoint, and how many [`Listed`] subscriptions it has (`None`: a subscription kept
/// to the process's end).
#[derive(Debug)]
struct Entry {
    info: endpoint::Info,
    live: Option<usize>,
}

impl Endpoints {
    /// Subscribe to `subject`, in the queue group `queue` when there is one, and list the
    /// subscription as the endpoint `name`, for as long as the process answers discovery:
    /// for the subscriptions a service keeps to its end.
    pub async fn subscribe(
        &self,
        client: &Client,
        name: &str,
        subject: String,
        queue: Option<&str>,
    ) -> Result<Subscriber, SubscribeError> {
        let subscriber = match queue {
            Some(queue) => {
                client
                    .queue_subscribe(subject.clone(), queue.to_owned())
                    .await?
            }
            None => client.subscribe(subject.clone()).await?,
        };
        self.keep(name, subject, queue);
        Ok(subscriber)
    }

    /// Subscribe to `subject` (no queue group), one of the subscriptions listed together as
    /// the endpoint `name` while they live: a unit's destinations, a subscription each while
    /// its agent is owned here (too many to list one by one), or the gateway's while it
    /// holds the link's lease. The endpoint's subject is `pattern()`, the subjects they
    /// cover; its metadata says how many there are and, with `how`, how they are made.
    /// Both are made only when the endpoint is, not for each subscription.
    pub async fn listed(
        &self,
        client: &Client,
        name: &'static str,
        subject: String,
        pattern: impl FnOnce() -> String,
        how: Option<&'static str>,
    ) -> Result<Listed, SubscribeError> {
        let subscriber = client.subscribe(subject).await?;
        Ok(Listed {
            subscriber,
            _counted: self.count(name, pattern, how),
        })
    }

    /// List the endpoint `name` to the process's end.
    fn keep(&self, name: &str, subject: String, queue: Option<&str>) {
        self.lock().entry(name.to_owned()).or_insert_with(|| Entry {
            info: info(name, subject, queue, HashMap::new()),
            live: None,
        });
    }

    /// Count one more subscription in the endpoint `name`, listed from now on.
    fn count(
        &self,
        name: &'static str,
        pattern: impl FnOnce() -> String,
        how: Option<&'static str>,
    ) -> Counted {
        let mut endpoints = self.lock();
        match endpoints.get_mut(name) {
            Some(entry) => entry.live = Some(entry.live.unwrap_or_default() + 1),
            None => {
                let metadata = how
                    .map(|how| (SUBSCRIBED.to_owned(), how.to_owned()))
                    .into_iter()
                    .collect();
                let entry = Entry {
                    info: info(name, pattern(), None, metadata),
                    live: Some(1),
                };
                endpoints.insert(name.to_owned(), entry);
            }
        }
        Counted {
            endpoints: self.clone(),
            name,
        }
    }

    /// A counted subscription of `name` ended: the endpoint goes with its last one.
    fn release(&self, name: &str) {
        let mut endpoints = self.lock();
        if let Some(entry) = endpoints.get_mut(name) {
            match entry.live {
                Some(1) => {
                    endpoints.remove(name);
                }
                Some(n) => entry.live = Some(n.saturating_sub(1)),
                None => {}
            }
        }
    }

    /// The endpoints now, by name.
    fn now(&self) -> Vec<endpoint::Info> {
        self.lock()
            .values()
            .map(|entry| {
                let mut info = entry.info.clone();
                if let Some(live) = entry.live {
                    info.metadata
                        .insert(SUBSCRIPTIONS.to_owned(), live.to_string());
                }
                info
            })
            .collect()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<String, Entry>> {
        self.0
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

fn info(
    name: &str,
    subject: String,
    queue: Option<&str>,
    metadata: HashMap<String, String>,
) -> endpoint::Info {
    endpoint::Info {
        name: name.to_owned(),
        subject,
        queue_group: queue.unwrap_or_default().to_owned(),
        metadata,
    }
}

/// A subscription counted in its endpoint ([`Endpoints::listed`]) until it is dropped.
#[derive(Debug)]
pub struct Listed {
    subscriber: Subscriber,
    _counted: Counted,
}

/// One subscription counted in the endpoint `name`, until dropped.
#[derive(Debug)]
struct Counted {
    endpoints: Endpoints,
    name: &'static str,
}

impl Drop for Counted {
    fn drop(&mut self) {
        self.endpoints.release(self.name);
    }
}

impl Listed {
    /// Unsubscribe; what the server had sent still arrives, then the stream ends
    /// ([`Subscriber::drain`]).
    pub async fn drain(&mut self) -> Result<(), UnsubscribeError> {
        self.subscriber.drain().await
    }
}

impl Stream for Listed {
    type Item = Message;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Message>> {
        self.subscriber.poll_next_unpin(cx)
    }
}

/// What the process says about itself.
#[derive(Debug)]
struct Service {
    name: String,
    id: String,
    version: String,
    metadata: HashMap<String, String>,
    started: async_nats::datetime::DateTime,
    endpoints: Endpoints,
}

impl Service {
    /// The answer to `verb`, if it is one this responder answers.
    fn answer(&self, verb: &str) -> Option<serde_json::Result<Vec<u8>>> {
        Some(match verb {
            "PING" => serde_json::to_vec(&PingResponse {
                kind: "io.nats.micro.v1.ping_response".into(),
                name: self.name.clone(),
                id: self.id.clone(),
                version: self.version.clone(),
                metadata: self.metadata.clone(),
            }),
            "INFO" => serde_json::to_vec(&Info {
                kind: "io.nats.micro.v1.info_response".into(),
                name: self.name.clone(),
                id: self.id.clone(),
                description: "Processor Bridge client".into(),
                version: self.version.clone(),
                metadata: self.metadata.clone(),
                endpoints: self.endpoints.now(),
            }),
            "STATS" => serde_json::to_vec(&Stats {
                kind: "io.nats.micro.v1.stats_response".into(),
                name: self.name.clone(),
                id: self.id.clone(),
                version: self.version.clone(),
                started: self.started,
                endpoints: self
                    .endpoints
                    .now()
                    .into_iter()
                    .map(|e| endpoint::Stats {
                        name: e.name,
                        subject: e.subject,
                        queue_group: e.queue_group,
                        ..Default::default()
                    })
                    .collect(),
            }),
            _ => return None,
        })
    }

    async fn respond(&self, client: &Client, request: Message) {
        let (Some(reply), Some(verb)) = (request.reply, request.subject.split('.').nth(1)) else {
            return;
        };
        match self.answer(verb) {
            Some(Ok(body)) => {
                if let Err(e) = client.publish(reply, body.into()).await {
                    tracing::debug!(error = %e, verb, "service discovery answer not sent");
                }
            }
            Some(Err(e)) => tracing::warn!(error = %e, verb, "service discovery answer not made"),
            None => {}
        }
    }
}

/// Answer discovery as the service `name`, replica `instance`, with `endpoints`, until
/// `shutdown`.
pub(crate) async fn answer(
    client: &Client,
    name: &str,
    instance: &str,
    endpoints: Endpoints,
    mut shutdown: Shutdown,
) -> Result<(), SubscribeError> {
    let service = Service {
        name: name.to_owned(),
        id: uuid::Uuid::new_v4().simple().to_string(),
        version: env!("CARGO_PKG_VERSION").to_owned(),
        metadata: [("instance".to_owned(), instance.to_owned())].into(),
        started: async_nats::datetime::now(),
        endpoints,
    };
    // Every verb (`$SRV.<verb>`), this service's (`.<name>`) and this replica's (`.<id>`).
    let mut requests = futures::stream::select_all([
        client.subscribe(format!("{PREFIX}.*")).await?,
        client.subscribe(format!("{PREFIX}.*.{name}")).await?,
        client
            .subscribe(format!("{PREFIX}.*.{name}.{}", service.id))
            .await?,
    ]);
    let client = client.clone();
    tokio::spawn(async move {
        loop {
            tokio::select! {
                Some(request) = requests.next() => service.respond(&client, request).await,
                _ = shutdown.requested() => break,
            }
        }
    });
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn service(endpoints: Endpoints) -> Service {
        Service {
            name: "pb-test".into(),
            id: "abc".into(),
            version: "0.1.0".into(),
            metadata: [("instance".to_owned(), "t-0".to_owned())].into(),
            started: async_nats::datetime::now(),
            endpoints,
        }
    }

    fn answer(service: &Service, verb: &str) -> serde_json::Value {
        serde_json::from_slice(&service.answer(verb).unwrap().unwrap()).unwrap()
    }

    #[test]
    fn info_and_stats_list_the_same_endpoints() {
        let endpoints = Endpoints::default();
        endpoints.keep(
            "commands",
            "pb.control.PB1.CONTROL".into(),
            Some("pb-control"),
        );
        let count =
            || endpoints.count("session", || "pb.session.>".into(), Some("per destination"));
        let (first, second) = (count(), count());
        let service = service(endpoints.clone());
        let info = answer(&service, "INFO");
        assert_eq!(info["type"], "io.nats.micro.v1.info_response");
        assert_eq!(info["metadata"]["instance"], "t-0");
        assert_eq!(
            info["endpoints"],
            serde_json::json!([
                {"name": "commands", "subject": "pb.control.PB1.CONTROL", "queue_group": "pb-control", "metadata": {}},
                {"name": "session", "subject": "pb.session.>", "queue_group": "", "metadata": {"subscribed": "per destination", "subscriptions": "2"}},
            ])
        );
        let stats = answer(&service, "STATS");
        assert_eq!(stats["type"], "io.nats.micro.v1.stats_response");
        assert!(stats["started"].is_string());
        let names = |v: &serde_json::Value| -> Vec<(String, String, String)> {
            v["endpoints"]
                .as_array()
                .unwrap()
                .iter()
                .map(|e| {
                    let s = |k: &str| e[k].as_str().unwrap().to_owned();
                    (s("name"), s("subject"), s("queue_group"))
                })
                .collect()
        };
        assert_eq!(names(&stats), names(&info));
        assert_eq!(stats["endpoints"][0]["num_requests"], 0);
        assert_eq!(
            answer(&service, "PING")["type"],
            "io.nats.micro.v1.ping_response"
        );
        assert!(service.answer("SCHEMA").is_none());

        // Counted while its subscriptions live; gone with the last.
        drop(first);
        assert_eq!(
            answer(&service, "INFO")["endpoints"][1]["metadata"]["subscriptions"],
            "1"
        );
        drop(second);
        let info = answer(&service, "INFO");
        assert_eq!(info["endpoints"].as_array().unwrap().len(), 1, "{info}");
    }
}

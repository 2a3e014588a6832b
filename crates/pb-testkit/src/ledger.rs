//! The bridge's side of a fault run: every response to a bridge client and every event,
//! on ONE subscription so that their order is the order the services published them in,
//! and the invariants of the contract checked over what was seen.

use std::collections::{HashMap, HashSet};

use async_nats::Client;
use futures::StreamExt;
use pb_protocol::Subjects;
use serde_json::Value;
use tokio::task::JoinHandle;

/// The name under which a [`Ledger`] watches a bridge client's responses.
const WATCHED: &str = "ledger";

/// The inbox prefix of a bridge client whose responses a [`Ledger`] records (give it to
/// `ConnectOptions::custom_inbox_prefix`): beside the events, like a gateway's (contract
/// §8), so that one subscription sees both in the order they were published, and nothing
/// else: a subscription to `>` would also answer for replicas that are gone, and hide
/// them from the peers' pings.
pub fn bridge_inbox(subjects: &Subjects) -> String {
    subjects.gateway_replies(WATCHED)
}

/// One response or event, in the order seen.
#[derive(Debug, Clone)]
pub struct Entry {
    pub subject: String,
    pub json: Value,
}

impl Entry {
    fn header(&self, field: &str) -> &str {
        self.json["header"][field].as_str().unwrap_or_default()
    }

    fn is_response(&self) -> bool {
        self.json["header"]["type"] == "cti.response"
    }
}

/// Records until [`Ledger::stop`].
#[derive(Debug)]
pub struct Ledger {
    task: JoinHandle<Vec<Entry>>,
    stop: tokio::sync::oneshot::Sender<()>,
}

impl Ledger {
    /// Start recording, on `client` (any client of the server): the events under
    /// `subjects` and the responses on [`bridge_inbox`].
    pub async fn start(client: &Client, subjects: &Subjects) -> Self {
        let mut all = client
            .subscribe(subjects.events_and_gateway_replies())
            .await
            .expect("subscribe");
        client.flush().await.expect("flush");
        let events = subjects.all_events().trim_end_matches('>').to_owned();
        let inbox = bridge_inbox(subjects);
        let (stop, mut stopped) = tokio::sync::oneshot::channel();
        let task = tokio::spawn(async move {
            let mut seen = Vec::new();
            loop {
                tokio::select! {
                    message = all.next() => {
                        let Some(message) = message else { break };
                        let subject = message.subject.to_string();
                        if !(subject.starts_with(&inbox) || subject.starts_with(&events)) {
                            continue;
                        }
                        if let Ok(json) = serde_json::from_slice::<Value>(&message.payload) {
                            seen.push(Entry { subject, json });
                        }
                    }
                    _ = &mut stopped => break,
                }
            }
            seen
        });
        Self { task, stop }
    }

    /// Stop recording: what was seen, in order.
    pub async fn stop(self) -> Vec<Entry> {
        let _ = self.stop.send(());
        self.task.await.expect("the ledger task")
    }
}

/// The contract's invariants over `seen`; each broken one, described.
///
/// * each request (one reply subject) is answered at most once, and every requestId the
///   bridge sent more than once got the same answer each time, but for answers that
///   refused without acting and asked for the same requestId again
///   ([`pb_runtime::serve::RETRY_SAME`]);
/// * no event is repeated on its destination (the same event twice in a row);
/// * no event on a destination comes before the first response from it (its init).
pub fn violations(seen: &[Entry]) -> Vec<String> {
    let mut broken = Vec::new();
    let mut answers: HashMap<&str, usize> = HashMap::new();
    let mut by_request: HashMap<(&str, &str), &Value> = HashMap::new();
    let mut answered: HashSet<&str> = HashSet::new();
    let mut last: HashMap<&str, (&str, &Value)> = HashMap::new();
    for entry in seen {
        let target = entry.header("target");
        if entry.is_response() {
            *answers.entry(&entry.subject).or_default() += 1;
            answered.insert(target);
            let id = entry.header("requestId");
            let outcome = &entry.json["header"]["result"];
            // Refused without acting, to be sent again as is.
            let running = entry
                .header("errorMessage")
                .ends_with(pb_runtime::serve::RETRY_SAME);
            if let Some(before) = by_request.get(&(target, id))
                && *before != outcome
                && !running
                && !before.is_null()
            {
                broken.push(format!(
                    "requestId {id} on {target} answered {before} and then {outcome}"
                ));
            }
            if !running {
                by_request.insert((target, id), outcome);
            }
            continue;
        }
        let name = entry.header("name");
        if !answered.contains(target) && !name.starts_with("cti.") {
            broken.push(format!("{name} on {target} before any response from it"));
        }
        let body = &entry.json["body"];
        if last.get(target) == Some(&(name, body)) {
            broken.push(format!("{name} on {target} repeated: {body}"));
        }
        last.insert(target, (name, body));
    }
    for (subject, n) in answers {
        if n > 1 {
            broken.push(format!("{n} responses on {subject}"));
        }
    }
    broken
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn response(inbox: &str, target: &str, id: &str, result: &str) -> Entry {
        Entry {
            subject: format!("{}.{inbox}", bridge_inbox(&Subjects::default())),
            json: json!({"header": {"type": "cti.response", "target": target, "requestId": id, "result": result}}),
        }
    }

    fn event(target: &str, name: &str, body: Value) -> Entry {
        Entry {
            subject: format!("pb.evt.channel.{target}"),
            json: json!({"header": {"type": "cti.event", "name": name, "target": target}, "body": body}),
        }
    }

    #[test]
    fn a_clean_run_breaks_nothing() {
        let seen = [
            response("1", "c", "r1", "SUCCESS"),
            event("c", "channel.ready", json!({})),
            response("2", "c", "r2", "SUCCESS"),
            event("c", "channel.notready", json!({"reasonCode": "x"})),
            // A retry of r2 answered again, the same.
            response("3", "c", "r2", "SUCCESS"),
        ];
        assert_eq!(violations(&seen), Vec::<String>::new());
    }

    #[test]
    fn each_broken_invariant_is_named() {
        let seen = [
            event("c", "channel.ready", json!({})),
            response("1", "c", "r1", "SUCCESS"),
            response("1", "c", "r1", "SUCCESS"),
            event("c", "channel.ready", json!({})),
            response("2", "c", "r1", "FAILURE"),
        ];
        let broken = violations(&seen);
        assert_eq!(broken.len(), 4, "{broken:#?}");
        assert!(broken.iter().any(|b| b.contains("before any response")));
        assert!(broken.iter().any(|b| b.contains("repeated")));
        assert!(broken.iter().any(|b| b.contains("2 responses")));
        assert!(broken.iter().any(|b| b.contains("and then")));
    }
}

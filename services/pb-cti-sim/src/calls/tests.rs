//! Scenarios of the lab's interactions, driven through [`Lab`]: every agent's view is
//! checked, and every snapshot published or replied keeps the rule of reference §9.5.2.

use std::collections::HashMap;
use std::fmt::Debug;
use std::time::Duration;

use pb_cti::{Action, AgentEvent, CtiError, CtiErrorCode, InteractionSnapshot};
use pb_protocol::Body;
use pb_protocol::channel::{AgentState, ChannelType};
use pb_protocol::conversation::ConversationState as Conv;
use pb_protocol::interaction::InteractionState as State;
use serde_json::{Value, json};

use crate::admin::Offer;
use crate::calls::QUEUE_CAP;
use crate::lab::{Lab, Outcome, Outgoing};
use crate::roster::generate;

const ANSWER: Duration = Duration::from_millis(300);
const CALLER: &str = "+15550100";

/// A lab whose four agents, 1001 to 1004, are logged in and hold all their channels, NOT
/// READY; it records every event and checks every interaction snapshot.
struct World {
    lab: Lab,
    log: Vec<Outgoing>,
    /// (agent, interaction) -> the last revision published.
    revisions: HashMap<(String, String), u64>,
}

/// The rule of reference §9.5.2 for a call; a chat or an email has no legs.
fn fits(s: &InteractionSnapshot) {
    if s.media == ChannelType::Telephony {
        if let Err(e) = s.conversations().fit(s.state) {
            panic!(
                "{} is {:?} with {:?}: {e}",
                s.name,
                s.state,
                s.conversations()
            );
        }
    } else {
        assert!(s.legs.is_empty(), "{s:?}");
    }
}

fn body(value: Value) -> Body {
    match value {
        Value::Object(map) => map,
        other => panic!("not an object: {other}"),
    }
}

fn leg(s: &InteractionSnapshot, role: &str) -> (Conv, String) {
    let l = s
        .leg(&format!("{}.{role}", s.name))
        .unwrap_or_else(|| panic!("{} has no leg {role}: {s:?}", s.name));
    (l.state, l.remote.clone())
}

impl World {
    fn new() -> Self {
        let mut w = Self {
            lab: Lab::new(generate(4), ANSWER),
            log: Vec::new(),
            revisions: HashMap::new(),
        };
        for id in ["1001", "1002", "1003", "1004"] {
            w.run(|lab| lab.login(id, &format!("pw-{id}"), None));
            for kind in ["ext", "mail", "chat"] {
                w.run(|lab| lab.activate(id, &format!("{kind}-{id}")));
            }
        }
        w
    }

    /// An operation that must succeed; its events are checked and logged.
    fn run<T>(&mut self, op: impl FnOnce(&mut Lab) -> Outcome<T>) -> T {
        let (reply, events) = op(&mut self.lab).unwrap_or_else(|e| panic!("refused: {e:?}"));
        self.check(events);
        reply
    }

    /// An operation that must be refused, with this code.
    fn refused<T: Debug>(
        &mut self,
        code: CtiErrorCode,
        op: impl FnOnce(&mut Lab) -> Outcome<T>,
    ) -> CtiError {
        let e = op(&mut self.lab).expect_err("accepted");
        assert_eq!(e.code, code, "{}", e.message);
        e
    }

    fn check(&mut self, events: Vec<Outgoing>) {
        for event in &events {
            let AgentEvent::InteractionChanged {
                agent_id,
                interaction,
            } = event
            else {
                continue;
            };
            fits(interaction);
            assert!(
                interaction.endpoint.ends_with(&format!("-{agent_id}")),
                "{agent_id} heard of another agent's interaction: {interaction:?}"
            );
            let key = (agent_id.clone(), interaction.name.clone());
            let before = self.revisions.insert(key.clone(), interaction.revision);
            assert!(
                before < Some(interaction.revision),
                "revision {before:?} then {}",
                interaction.revision
            );
            if interaction.state == State::Completed {
                self.revisions.remove(&key);
            }
        }
        self.log.extend(events);
    }

    fn mark(&self) -> usize {
        self.log.len()
    }

    fn since(&self, mark: usize) -> &[Outgoing] {
        &self.log[mark..]
    }

    /// The interaction changes published to `agent` since `mark`.
    fn heard(&self, mark: usize, agent: &str) -> Vec<InteractionSnapshot> {
        self.since(mark)
            .iter()
            .filter_map(|e| match e {
                AgentEvent::InteractionChanged {
                    agent_id,
                    interaction,
                } if agent_id == agent => Some(interaction.clone()),
                _ => None,
            })
            .collect()
    }

    /// The last change of an agent's interaction published.
    fn last(&self, agent: &str, name: &str) -> InteractionSnapshot {
        self.heard(0, agent)
            .into_iter()
            .rev()
            .find(|s| s.name == name)
            .unwrap_or_else(|| panic!("{agent} never heard of {name}"))
    }

    /// The newest interaction published to `agent`.
    fn newest(&self, agent: &str) -> InteractionSnapshot {
        self.heard(0, agent)
            .pop()
            .unwrap_or_else(|| panic!("{agent} heard of no interaction"))
    }

    fn ready(&mut self, agent: &str, endpoint: &str) {
        self.run(|lab| lab.set_state(agent, endpoint, AgentState::Ready, None));
    }

    fn offer(&mut self, media: ChannelType, data: Value) -> String {
        let offer = Offer {
            media,
            data: body(data),
            from: (media == ChannelType::Telephony).then(|| CALLER.to_owned()),
            agent_id: None,
        };
        self.run(|lab| lab.offer(offer)).name
    }

    fn act(&mut self, agent: &str, name: &str, action: Action) -> InteractionSnapshot {
        let reply = self.run(|lab| lab.act(agent, name, action));
        fits(&reply);
        reply
    }

    fn refuse(&mut self, code: CtiErrorCode, agent: &str, name: &str, action: Action) -> String {
        self.refused(code, |lab| lab.act(agent, name, action))
            .message
    }

    fn dial(&mut self, agent: &str, destination: &str) -> InteractionSnapshot {
        let reply = self.run(|lab| lab.dial(agent, &format!("ext-{agent}"), destination));
        fits(&reply);
        reply
    }

    /// Fire every timer set; how many there were.
    fn fire(&mut self) -> usize {
        let timers = self.lab.take_timers();
        for (after, timer) in &timers {
            assert_eq!(*after, ANSWER);
            let events = self.lab.fire(*timer);
            self.check(events);
        }
        timers.len()
    }

    /// `agent`, READY on its phone, takes a call from [`CALLER`] with an account number.
    fn connected(&mut self, agent: &str) -> String {
        self.ready(agent, &format!("ext-{agent}"));
        let name = self.offer(ChannelType::Telephony, json!({"accountId": "ACC-7"}));
        assert_eq!(self.newest(agent).name, name, "routed to {agent}");
        let s = self.act(agent, &name, Action::Accept);
        assert_eq!(leg(&s, "p").0, Conv::Connected);
        name
    }

    /// `agent` on a call consults agent 1002, which answers.
    fn consulting(&mut self, agent: &str) -> (String, String) {
        let name = self.connected(agent);
        self.act(
            agent,
            &name,
            Action::Consult {
                destination: "1002".into(),
            },
        );
        let b = self.newest("1002");
        self.act(
            "1002",
            &b.name,
            Action::Answer {
                leg: format!("{}.p", b.name),
            },
        );
        (name, b.name)
    }
}

fn release(leg: &str) -> Action {
    Action::Release { leg: leg.into() }
}

#[test]
fn an_inbound_call_goes_to_a_ready_free_agent_with_its_data() {
    let mut w = World::new();
    // 1001 stays NOT_READY; 1002 is READY but busy dialing out; 1003 is READY on email only.
    w.ready("1002", "ext-1002");
    w.dial("1002", "+15559999");
    w.ready("1003", "mail-1003");
    let name = w.offer(
        ChannelType::Telephony,
        json!({"accountId": "ACC-1", "reason": "billing"}),
    );
    assert_eq!(
        w.lab.interactions().queued,
        vec![name.clone()],
        "nobody fits"
    );
    w.ready("1004", "ext-1004");
    let got = w.last("1004", &name);
    assert_eq!(got.state, State::Alerting);
    assert_eq!(got.endpoint, "ext-1004");
    assert_eq!(
        got.data,
        body(json!({"accountId": "ACC-1", "reason": "billing"}))
    );
    assert_eq!(leg(&got, "p"), (Conv::Alerting, CALLER.to_owned()));
    for other in ["1001", "1003"] {
        assert!(w.heard(0, other).is_empty(), "{other} heard of it");
    }
    assert!(w.heard(0, "1002").iter().all(|s| s.name != name));
    assert_eq!(
        w.lab.snapshot("1004").unwrap().interactions,
        vec![got.clone()]
    );
    assert_eq!(w.lab.interaction("1004", &name).unwrap(), got);
    let e = w.lab.interaction("1001", &name).unwrap_err();
    assert_eq!(e.code, CtiErrorCode::BadRequest);
    assert!(w.lab.interactions().queued.is_empty());
}

#[test]
fn a_ready_agent_gets_the_waiting_call_after_its_state_change() {
    let mut w = World::new();
    let name = w.offer(ChannelType::Telephony, json!({}));
    let mark = w.mark();
    w.ready("1001", "ext-1001");
    let events = w.since(mark);
    assert!(matches!(
        events.first(),
        Some(AgentEvent::ChannelChanged { .. })
    ));
    let Some(AgentEvent::InteractionChanged { interaction, .. }) = events.last() else {
        panic!("{events:?}")
    };
    assert_eq!(interaction.name, name);
}

#[test]
fn the_channel_free_longest_gets_the_call() {
    let mut w = World::new();
    w.ready("1003", "ext-1003");
    w.ready("1001", "ext-1001");
    let first = w.offer(ChannelType::Telephony, json!({}));
    assert_eq!(w.newest("1001").name, first, "1001 took its phone first");
    let second = w.offer(ChannelType::Telephony, json!({}));
    assert_eq!(w.newest("1003").name, second);
    w.act("1001", &first, Action::Accept);
    w.act("1001", &first, release(&format!("{first}.p")));
    w.act("1001", &first, Action::Complete);
    w.act("1003", &second, Action::Accept);
    w.act("1003", &second, release(&format!("{second}.p")));
    w.act("1003", &second, Action::Complete);
    let third = w.offer(ChannelType::Telephony, json!({}));
    assert_eq!(w.newest("1001").name, third, "1001 has been free longer");
}

#[test]
fn answer_hold_retrieve_release_complete() {
    let mut w = World::new();
    let name = w.connected("1001");
    let p = format!("{name}.p");
    let s = w.act("1001", &name, Action::Hold { leg: p.clone() });
    assert_eq!((s.state, leg(&s, "p").0), (State::Started, Conv::Held));
    let s = w.act("1001", &name, Action::Retrieve { leg: p.clone() });
    assert_eq!(leg(&s, "p").0, Conv::Connected);
    let s = w.act("1001", &name, release(&p));
    assert_eq!(s.state, State::Ended);
    assert_eq!(leg(&s, "p"), (Conv::Ended, CALLER.to_owned()));
    assert_eq!(w.last("1001", &name), s);
    assert_eq!(w.lab.snapshot("1001").unwrap().interactions, vec![s]);
    let s = w.act("1001", &name, Action::Complete);
    assert_eq!(s.state, State::Completed);
    assert!(w.lab.snapshot("1001").unwrap().interactions.is_empty());
    let e = w.lab.interaction("1001", &name).unwrap_err();
    assert_eq!(e.code, CtiErrorCode::BadRequest);
    assert!(e.message.contains(&name), "{}", e.message);
    let tally = w.lab.tally();
    assert_eq!((tally.offered, tally.completed, tally.live), (1, 1, 0));
}

#[test]
fn an_external_number_answers_after_the_delay() {
    let mut w = World::new();
    let s = w.dial("1001", "+15557777");
    assert_eq!(s.state, State::Dialing);
    assert_eq!(leg(&s, "p"), (Conv::Dialing, "+15557777".to_owned()));
    assert!(s.data.is_empty());
    assert_eq!(w.fire(), 1);
    let s = w.last("1001", &s.name);
    assert_eq!((s.state, leg(&s, "p").0), (State::Started, Conv::Connected));
    // Released before the far end answers: the timer changes nothing.
    let other = w.dial("1002", "+15558888");
    w.act("1002", &other.name, release(&format!("{}.p", other.name)));
    let mark = w.mark();
    assert_eq!(w.fire(), 1);
    assert!(w.since(mark).is_empty());
    assert_eq!(w.last("1002", &other.name).state, State::Ended);
}

#[test]
fn dialing_another_agent() {
    let mut w = World::new();
    let a = w.dial("1001", "1002");
    assert_eq!(leg(&a, "p"), (Conv::Dialing, "ext-1002".to_owned()));
    let b = w.newest("1002");
    assert_eq!(b.state, State::Alerting);
    assert!(b.data.is_empty());
    assert_eq!(leg(&b, "p"), (Conv::Alerting, "ext-1001".to_owned()));
    assert_eq!(w.fire(), 0, "an agent answers itself");
    let b = w.act("1002", &b.name, Action::Accept);
    assert_eq!((b.state, leg(&b, "p").0), (State::Started, Conv::Connected));
    let a = w.last("1001", &a.name);
    assert_eq!((a.state, leg(&a, "p").0), (State::Started, Conv::Connected));
    // Hanging up ends the other side too.
    w.act("1002", &b.name, release(&format!("{}.p", b.name)));
    assert_eq!(w.last("1001", &a.name).state, State::Ended);
    // By endpoint; and who cannot be called.
    w.dial("1003", "ext-1004");
    assert_eq!(w.newest("1004").state, State::Alerting);
    let busy = w.refused(CtiErrorCode::InvalidState, |lab| {
        lab.dial("1001", "ext-1001", "1004")
    });
    assert!(busy.message.contains("busy"), "{}", busy.message);
    w.run(|lab| lab.logout("1002", None));
    let gone = w.refused(CtiErrorCode::InvalidState, |lab| {
        lab.dial("1001", "ext-1001", "1002")
    });
    assert!(gone.message.contains("not logged in"), "{}", gone.message);
    let nobody = w.refused(CtiErrorCode::InvalidState, |lab| {
        lab.dial("1001", "ext-1001", "ext-1002")
    });
    assert!(
        nobody.message.contains("nobody holds it"),
        "{}",
        nobody.message
    );
    w.refused(CtiErrorCode::InvalidState, |lab| {
        lab.dial("1001", "ext-1001", "1001")
    });
    w.refused(CtiErrorCode::BadRequest, |lab| {
        lab.dial("1001", "ext-1001", "mail-1003")
    });
    w.refused(CtiErrorCode::BadRequest, |lab| {
        lab.dial("1001", "mail-1001", "+1555")
    });
    w.refused(CtiErrorCode::BadRequest, |lab| {
        lab.dial("1001", "ext-1001", " ")
    });
    w.refused(CtiErrorCode::InvalidState, |lab| {
        lab.dial("1002", "ext-1002", "+1555")
    });
    w.run(|lab| lab.deactivate("1001", "ext-1001"));
    w.refused(CtiErrorCode::InvalidState, |lab| {
        lab.dial("1001", "ext-1001", "+1555")
    });
}

#[test]
fn consult_then_transfer() {
    let mut w = World::new();
    let name = w.connected("1001");
    w.act(
        "1001",
        &name,
        Action::SetData {
            data: body(json!({"note": "vip"})),
        },
    );
    let a = w.act(
        "1001",
        &name,
        Action::Consult {
            destination: "1002".into(),
        },
    );
    assert_eq!(leg(&a, "p").0, Conv::Held);
    assert_eq!(leg(&a, "c1"), (Conv::Dialing, "ext-1002".to_owned()));
    assert_eq!(a.state, State::Started);
    let b = w.newest("1002");
    assert_eq!(b.state, State::Alerting);
    assert_eq!(b.data, body(json!({"accountId": "ACC-7", "note": "vip"})));
    assert_eq!(leg(&b, "p"), (Conv::Alerting, "ext-1001".to_owned()));
    let b = w.act(
        "1002",
        &b.name,
        Action::Answer {
            leg: format!("{}.p", b.name),
        },
    );
    assert_eq!(leg(&b, "p").0, Conv::Connected);
    assert_eq!(leg(&w.last("1001", &name), "c1").0, Conv::Connected);
    let a = w.act("1001", &name, Action::Transfer);
    assert_eq!(a.state, State::Ended);
    assert_eq!(leg(&a, "p").0, Conv::Ended);
    assert_eq!(leg(&a, "c1").0, Conv::Ended);
    let b = w.last("1002", &b.name);
    assert_eq!(
        (b.state, leg(&b, "p")),
        (State::Started, (Conv::Connected, CALLER.to_owned()))
    );
    // The caller leaves B at the end.
    w.run(|lab| lab.hangup(&b.name));
    assert_eq!(w.last("1002", &b.name).state, State::Ended);
}

#[test]
fn conference_then_the_conferencing_agent_leaves() {
    let mut w = World::new();
    let (name, b) = w.consulting("1001");
    let a = w.act("1001", &name, Action::Conference);
    assert_eq!(
        leg(&a, "p"),
        (Conv::Connected, format!("{CALLER},ext-1002"))
    );
    assert_eq!(leg(&a, "c1").0, Conv::Ended);
    assert_eq!(a.conversations().consult, None);
    let bs = w.last("1002", &b);
    assert_eq!(
        leg(&bs, "p"),
        (Conv::Connected, format!("{CALLER},ext-1001"))
    );
    let a = w.act("1001", &name, release(&format!("{name}.p")));
    assert_eq!(a.state, State::Ended);
    let bs = w.last("1002", &b);
    assert_eq!(
        (bs.state, leg(&bs, "p")),
        (State::Started, (Conv::Connected, CALLER.to_owned()))
    );
}

#[test]
fn alternate_swaps_held_and_connected() {
    let mut w = World::new();
    let name = w.connected("1001");
    w.act(
        "1001",
        &name,
        Action::Consult {
            destination: "+15552222".into(),
        },
    );
    let e = w.refuse(CtiErrorCode::InvalidState, "1001", &name, Action::Alternate);
    assert!(e.contains("DIALING"), "{e}");
    w.fire();
    let a = w.act("1001", &name, Action::Alternate);
    assert_eq!(
        (leg(&a, "p").0, leg(&a, "c1").0),
        (Conv::Connected, Conv::Held)
    );
    let a = w.act("1001", &name, Action::Alternate);
    assert_eq!(
        (leg(&a, "p").0, leg(&a, "c1").0),
        (Conv::Held, Conv::Connected)
    );
    // The consult ends: nothing to alternate with; the primary stays held.
    let a = w.act("1001", &name, release(&format!("{name}.c1")));
    assert_eq!((a.state, leg(&a, "p").0), (State::Started, Conv::Held));
    w.refuse(CtiErrorCode::InvalidState, "1001", &name, Action::Alternate);
    // A second consult gets a new leg.
    let a = w.act(
        "1001",
        &name,
        Action::Consult {
            destination: "+15553333".into(),
        },
    );
    assert_eq!(leg(&a, "c2").0, Conv::Dialing);
    // Alternated back to the caller, the held consult can still be transferred to.
    w.fire();
    w.act("1001", &name, Action::Alternate);
    let a = w.act("1001", &name, Action::Transfer);
    assert_eq!(a.state, State::Ended, "transferred from a held consult");
}

#[test]
fn blind_transfer_to_an_agent() {
    let mut w = World::new();
    let name = w.connected("1001");
    let a = w.act(
        "1001",
        &name,
        Action::BlindTransfer {
            leg: format!("{name}.p"),
            destination: "1003".into(),
        },
    );
    assert_eq!((a.state, leg(&a, "p").0), (State::Ended, Conv::Ended));
    let b = w.newest("1003");
    assert_eq!(b.state, State::Alerting);
    assert_eq!(b.data["accountId"], "ACC-7");
    assert_eq!(leg(&b, "p"), (Conv::Alerting, CALLER.to_owned()));
    let b = w.act("1003", &b.name, Action::Accept);
    assert_eq!(leg(&b, "p"), (Conv::Connected, CALLER.to_owned()));
}

#[test]
fn blind_conference_keeps_the_leg() {
    let mut w = World::new();
    let name = w.connected("1001");
    let p = format!("{name}.p");
    let a = w.act(
        "1001",
        &name,
        Action::BlindConference {
            leg: p.clone(),
            destination: "+15554444".into(),
        },
    );
    assert_eq!(
        leg(&a, "p"),
        (Conv::Connected, format!("{CALLER},+15554444"))
    );
    let a = w.act(
        "1001",
        &name,
        Action::BlindConference {
            leg: p,
            destination: "1002".into(),
        },
    );
    assert_eq!(leg(&a, "p").0, Conv::Connected);
    let b = w.newest("1002");
    assert_eq!(
        leg(&b, "p"),
        (Conv::Alerting, format!("{CALLER},ext-1001,+15554444"))
    );
    assert_eq!(b.data["accountId"], "ACC-7");
    let dialing = w.dial("1003", "+15550000");
    w.refuse(
        CtiErrorCode::InvalidState,
        "1003",
        &dialing.name,
        Action::BlindConference {
            leg: format!("{}.p", dialing.name),
            destination: "+1".into(),
        },
    );
}

#[test]
fn dtmf_is_recorded_and_bad_digits_refused() {
    let mut w = World::new();
    let name = w.connected("1001");
    let p = format!("{name}.p");
    let dtmf = |digits: &str| Action::SendDtmf {
        leg: p.clone(),
        digits: digits.into(),
    };
    let before = w.last("1001", &name);
    let mark = w.mark();
    let s = w.act("1001", &name, dtmf("12#"));
    w.act("1001", &name, dtmf("A*"));
    assert_eq!(s, before, "no change of state");
    assert!(w.since(mark).is_empty());
    let listed = w.lab.interactions();
    let mine = listed
        .interactions
        .iter()
        .find(|i| i.interaction.name == name)
        .unwrap();
    assert_eq!(mine.digits[&p], "12#A*");
    for bad in ["12x", "", "a"] {
        let e = w.refuse(CtiErrorCode::BadRequest, "1001", &name, dtmf(bad));
        assert!(e.contains("0-9"), "{e}");
    }
    w.act("1001", &name, Action::Hold { leg: p.clone() });
    w.refuse(CtiErrorCode::InvalidState, "1001", &name, dtmf("1"));
}

#[test]
fn a_chat_is_accepted_and_completed() {
    let mut w = World::new();
    w.ready("1001", "chat-1001");
    let name = w.offer(
        ChannelType::Chat,
        json!({"customer": "Ada", "topic": "refund"}),
    );
    assert!(name.starts_with("chat-"), "{name}");
    let s = w.newest("1001");
    assert_eq!((s.name.as_str(), s.state), (name.as_str(), State::Alerting));
    assert_eq!(s.endpoint, "chat-1001");
    assert!(s.legs.is_empty());
    let s = w.act("1001", &name, Action::Accept);
    assert_eq!(s.state, State::Started);
    w.refuse(
        CtiErrorCode::BadRequest,
        "1001",
        &name,
        Action::Hold { leg: "x".into() },
    );
    w.refuse(
        CtiErrorCode::BadRequest,
        "1001",
        &name,
        Action::Consult {
            destination: "1002".into(),
        },
    );
    let s = w.act(
        "1001",
        &name,
        Action::SetData {
            data: body(json!({"topic": null, "done": "yes"})),
        },
    );
    assert_eq!(s.data, body(json!({"customer": "Ada", "done": "yes"})));
    let s = w.act("1001", &name, Action::Complete);
    assert_eq!(s.state, State::Completed);
    // The customer closes a chat: ENDED, then the agent completes it.
    let name = w.offer(ChannelType::Chat, json!({}));
    w.act("1001", &name, Action::Accept);
    w.run(|lab| lab.hangup(&name));
    assert_eq!(w.last("1001", &name).state, State::Ended);
    w.act("1001", &name, Action::Complete);
}

#[test]
fn a_rejected_email_goes_to_another_agent() {
    let mut w = World::new();
    w.ready("1001", "mail-1001");
    w.ready("1002", "mail-1002");
    let name = w.offer(ChannelType::Email, json!({"subject": "Invoice"}));
    assert!(name.starts_with("email-"), "{name}");
    assert_eq!(w.newest("1001").name, name, "free longest");
    let mark = w.mark();
    let s = w.act("1001", &name, Action::Reject);
    assert_eq!(s.state, State::Completed);
    assert_eq!(
        w.heard(mark, "1001").len(),
        1,
        "1001 hears it once, COMPLETED"
    );
    let b = w.newest("1002");
    assert_eq!((b.name.as_str(), b.state), (name.as_str(), State::Alerting));
    assert_eq!(b.data["subject"], "Invoice");
    // 1002 rejects too: it waits, for neither of them.
    w.act("1002", &name, Action::Reject);
    assert_eq!(w.lab.interactions().queued, vec![name.clone()]);
    w.ready("1003", "mail-1003");
    assert_eq!(w.newest("1003").name, name);
    assert!(w.lab.snapshot("1001").unwrap().interactions.is_empty());
    assert_eq!(w.lab.tally().completed, 0, "a rejection completes nothing");
}

#[test]
fn the_caller_hangs_up_while_alerting() {
    let mut w = World::new();
    w.ready("1001", "ext-1001");
    let name = w.offer(ChannelType::Telephony, json!({}));
    w.run(|lab| lab.hangup(&name));
    let s = w.last("1001", &name);
    assert_eq!((s.state, leg(&s, "p").0), (State::Ended, Conv::Ended));
    assert_eq!(w.lab.tally().abandoned, 1);
    w.refused(CtiErrorCode::InvalidState, |lab| lab.hangup(&name));
    w.refused(CtiErrorCode::BadRequest, |lab| lab.hangup("call-999"));
    // An offer still waiting can be given up too.
    w.run(|lab| lab.set_state("1002", "chat-1002", AgentState::NotReady, None));
    let waiting = w.offer(ChannelType::Chat, json!({}));
    w.run(|lab| lab.hangup(&waiting));
    assert!(w.lab.interactions().queued.is_empty());
    assert_eq!(w.lab.tally().abandoned, 2);
}

#[test]
fn the_caller_hangs_up_while_on_hold() {
    let mut w = World::new();
    let name = w.connected("1001");
    w.act(
        "1001",
        &name,
        Action::Hold {
            leg: format!("{name}.p"),
        },
    );
    w.run(|lab| lab.hangup(&name));
    let s = w.last("1001", &name);
    assert_eq!((s.state, leg(&s, "p").0), (State::Ended, Conv::Ended));
    assert_eq!(w.lab.tally().abandoned, 0, "the agent had taken it");
}

#[test]
fn the_caller_hangs_up_during_a_consult() {
    let mut w = World::new();
    let (name, b) = w.consulting("1001");
    w.run(|lab| lab.hangup(&name));
    let a = w.last("1001", &name);
    assert_eq!(a.state, State::Ended);
    assert_eq!(
        (leg(&a, "p").0, leg(&a, "c1").0),
        (Conv::Ended, Conv::Ended)
    );
    let bs = w.last("1002", &b);
    assert_eq!((bs.state, leg(&bs, "p").0), (State::Ended, Conv::Ended));
    // An internal call has no customer to hang up.
    let internal = w.dial("1003", "1004");
    w.refused(CtiErrorCode::InvalidState, |lab| lab.hangup(&internal.name));
}

#[test]
fn a_rejected_consult_ends_the_consult_leg() {
    let mut w = World::new();
    let name = w.connected("1001");
    w.act(
        "1001",
        &name,
        Action::Consult {
            destination: "ext-1002".into(),
        },
    );
    let b = w.newest("1002");
    let bs = w.act("1002", &b.name, Action::Reject);
    assert_eq!(bs.state, State::Completed);
    let a = w.last("1001", &name);
    assert_eq!(a.state, State::Started);
    assert_eq!((leg(&a, "p").0, leg(&a, "c1").0), (Conv::Held, Conv::Ended));
    assert!(w.lab.interactions().queued.is_empty(), "not from the queue");
}

#[test]
fn requests_that_do_not_fit_are_refused() {
    let mut w = World::new();
    let name = w.connected("1001");
    let p = format!("{name}.p");
    let e = w.refuse(
        CtiErrorCode::InvalidState,
        "1001",
        &name,
        Action::Answer { leg: p.clone() },
    );
    assert_eq!(
        e,
        format!("conversation `{p}` is CONNECTED: only an ALERTING conversation can be answered")
    );
    let e = w.refuse(CtiErrorCode::InvalidState, "1001", &name, Action::Transfer);
    assert!(e.contains("no answered consult to transfer to"), "{e}");
    w.refuse(
        CtiErrorCode::InvalidState,
        "1001",
        &name,
        Action::Conference,
    );
    let e = w.refuse(CtiErrorCode::InvalidState, "1001", &name, Action::Complete);
    assert!(e.contains("release the call first"), "{e}");
    w.refuse(
        CtiErrorCode::InvalidState,
        "1001",
        &name,
        Action::Retrieve { leg: p.clone() },
    );
    w.refuse(CtiErrorCode::InvalidState, "1001", &name, Action::Accept);
    w.refuse(CtiErrorCode::InvalidState, "1001", &name, Action::Reject);
    w.refuse(
        CtiErrorCode::BadRequest,
        "1001",
        &name,
        Action::Hold {
            leg: "call-99.p".into(),
        },
    );
    w.refuse(CtiErrorCode::BadRequest, "1001", "call-99", Action::Accept);
    w.refuse(CtiErrorCode::BadRequest, "1002", &name, Action::Accept);
    let e = w.refused(CtiErrorCode::InvalidState, |lab| {
        lab.deactivate("1001", "ext-1001")
    });
    assert!(e.message.contains("live interaction"), "{}", e.message);
    w.act(
        "1001",
        &name,
        Action::Consult {
            destination: "+15556666".into(),
        },
    );
    w.refuse(
        CtiErrorCode::InvalidState,
        "1001",
        &name,
        Action::Consult {
            destination: "+15556667".into(),
        },
    );
    let e = w.refuse(CtiErrorCode::InvalidState, "1001", &name, Action::Transfer);
    assert!(e.contains("no answered consult"), "a DIALING consult: {e}");
    w.act("1001", &name, release(&p));
    let a = w.last("1001", &name);
    assert_eq!(a.state, State::Ended, "the consult went with the primary");
    w.refuse(CtiErrorCode::InvalidState, "1001", &name, release(&p));
    w.refused(CtiErrorCode::BadRequest, |lab| {
        lab.offer(Offer {
            media: ChannelType::Callback,
            data: Body::new(),
            from: None,
            agent_id: None,
        })
    });
    w.refused(CtiErrorCode::UnknownAgent, |lab| {
        lab.offer(Offer {
            media: ChannelType::Chat,
            data: Body::new(),
            from: None,
            agent_id: Some("nobody".into()),
        })
    });
}

#[test]
fn an_offer_for_one_agent_waits_for_it() {
    let mut w = World::new();
    w.ready("1001", "chat-1001");
    let name = w.run(|lab| {
        lab.offer(Offer {
            media: ChannelType::Chat,
            data: Body::new(),
            from: None,
            agent_id: Some("1002".into()),
        })
    });
    assert_eq!(w.lab.interactions().queued, vec![name.name.clone()]);
    w.ready("1002", "chat-1002");
    assert_eq!(w.newest("1002").name, name.name);
}

#[test]
fn a_pending_not_ready_applies_when_the_call_ends() {
    let mut w = World::new();
    let name = w.connected("1001");
    let ch = w.run(|lab| {
        lab.set_state(
            "1001",
            "ext-1001",
            AgentState::NotReady,
            Some("break".into()),
        )
    });
    assert_eq!(ch.agent_state, AgentState::Ready);
    assert_eq!(ch.pending_state, Some(AgentState::NotReady));
    assert_eq!(ch.pending_reason.as_deref(), Some("break"));
    let ch = w.run(|lab| {
        lab.set_state(
            "1001",
            "ext-1001",
            AgentState::NotReady,
            Some("lunch".into()),
        )
    });
    assert_eq!(
        ch.pending_reason.as_deref(),
        Some("lunch"),
        "the later one replaces it"
    );
    let ch = w.run(|lab| lab.set_state("1001", "ext-1001", AgentState::Ready, None));
    assert_eq!(ch.pending_state, None, "the current state clears it");
    let ch = w.run(|lab| {
        lab.set_state(
            "1001",
            "ext-1001",
            AgentState::NotReady,
            Some("lunch".into()),
        )
    });
    let revision = ch.revision;
    let mark = w.mark();
    w.act("1001", &name, release(&format!("{name}.p")));
    let events = w.since(mark);
    let at_interaction = events
        .iter()
        .position(|e| matches!(e, AgentEvent::InteractionChanged { .. }))
        .unwrap();
    let at_channel = events
        .iter()
        .position(|e| matches!(e, AgentEvent::ChannelChanged { .. }))
        .unwrap();
    assert!(at_interaction < at_channel, "{events:?}");
    let AgentEvent::ChannelChanged { channel, .. } = &events[at_channel] else {
        unreachable!()
    };
    assert_eq!(channel.agent_state, AgentState::NotReady);
    assert_eq!(channel.reason_code.as_deref(), Some("lunch"));
    assert_eq!(channel.pending_state, None);
    assert!(channel.revision > revision);
    // NOT_READY now: the next call waits.
    w.act("1001", &name, Action::Complete);
    let next = w.offer(ChannelType::Telephony, json!({}));
    assert_eq!(w.lab.interactions().queued, vec![next]);
}

#[test]
fn a_logout_waits_for_the_call() {
    let mut w = World::new();
    let name = w.connected("1001");
    w.ready("1001", "chat-1001");
    let snap = w.run(|lab| lab.logout("1001", Some("eod".into())));
    assert!(snap.logged_in && snap.logout_pending);
    assert_eq!(snap.interactions.len(), 1);
    // Nothing more is routed to it meanwhile.
    let chat = w.offer(ChannelType::Chat, json!({}));
    assert_eq!(w.lab.interactions().queued, vec![chat]);
    let mark = w.mark();
    let reply = w.act("1001", &name, release(&format!("{name}.p")));
    assert_eq!(reply.state, State::Ended, "the reply: what the release did");
    let events = w.since(mark).to_vec();
    let states: Vec<State> = events
        .iter()
        .filter_map(|e| match e {
            AgentEvent::InteractionChanged { interaction, .. } => Some(interaction.state),
            _ => None,
        })
        .collect();
    assert_eq!(
        states,
        [State::Ended, State::Completed],
        "completed at the logout"
    );
    assert_eq!(w.last("1001", &name).state, State::Completed);
    let Some(AgentEvent::LoggedOut { reason_code, .. }) = events.last() else {
        panic!("{events:?}")
    };
    assert_eq!(reason_code.as_deref(), Some("eod"));
    assert!(
        events[2..events.len() - 1]
            .iter()
            .all(|e| matches!(e, AgentEvent::ChannelChanged { .. }))
    );
    let snap = w.lab.snapshot("1001").unwrap();
    assert!(!snap.logged_in && !snap.logout_pending && snap.interactions.is_empty());
}

#[test]
fn a_logout_gives_an_alerting_offer_back() {
    let mut w = World::new();
    w.ready("1001", "mail-1001");
    let name = w.offer(ChannelType::Email, json!({}));
    let snap = w.run(|lab| lab.logout("1001", None));
    assert!(
        !snap.logged_in,
        "an alerting offer does not hold the logout"
    );
    assert_eq!(w.last("1001", &name).state, State::Completed);
    assert_eq!(w.lab.interactions().queued, vec![name.clone()]);
    w.ready("1002", "mail-1002");
    assert_eq!(w.newest("1002").name, name);
}

#[test]
fn the_queue_is_capped() {
    let mut w = World::new();
    for _ in 0..QUEUE_CAP {
        w.offer(ChannelType::Email, json!({}));
    }
    let e = w.refused(CtiErrorCode::InvalidState, |lab| {
        lab.offer(Offer {
            media: ChannelType::Email,
            data: Body::new(),
            from: None,
            agent_id: None,
        })
    });
    assert!(e.message.contains("queue is full"), "{}", e.message);
    let tally = w.lab.tally();
    assert_eq!(tally.offered, QUEUE_CAP as u64 + 1);
    assert_eq!((tally.queued, tally.abandoned), (QUEUE_CAP, 1));
}

#[test]
fn generated_traffic_is_offered_and_routed() {
    let mut w = World::new();
    w.ready("1001", "ext-1001");
    w.ready("1002", "chat-1002");
    let mut pacer = crate::traffic::Pacer::new(
        crate::admin::Traffic {
            calls: 1.0,
            chats: 1.0,
            emails: 1.0,
        },
        Duration::ZERO,
    );
    for offer in pacer.due(Duration::from_secs(1)) {
        w.run(|lab| lab.offer(offer));
    }
    let call = w.newest("1001");
    assert!(call.data["caller"].as_str().unwrap().starts_with("+1555"));
    assert_eq!(leg(&call, "p").1, call.data["caller"]);
    assert!(w.newest("1002").data.contains_key("topic"));
    assert_eq!(w.lab.tally().offered, 3);
    assert_eq!(w.lab.tally().queued, 1, "nobody takes email");
}

//! Interactions and conversations end to end (issue 6): calls, consults, transfers,
//! conferences, chats and emails routed by the simulated CTI to agents logged in through
//! every service (two replicas each), against a real nats-server; each scenario checks what
//! both agents' destinations show and what the bridge is told.

use std::time::Duration;

use pb_bridge::flow::LoggedIn;
use pb_protocol::{Outcome, Response};
use pb_sim_admin::{GetInteractions, GetStatus, Hangup, Offer, Traffic};
use pb_system_tests::World;
use pb_testkit::RawEvent;
use serde_json::{Value, json};

const WAIT: Duration = Duration::from_secs(5);
const QUIET: Duration = Duration::from_millis(500);

async fn world() -> World {
    World::builder()
        .replicas(2)
        .env(&[("SIM_ANSWER_MS", "1500")])
        .events()
        .start()
        .await
}

/// One of an agent's destinations for a call: its interaction and primary conversation.
struct Call {
    name: String,
    interaction: String,
    primary: String,
}

/// The scenarios' steps, on the shared world: events read while waiting for another are
/// kept in its backlog, oldest first; each wait takes the first that matches, so events of
/// different destinations may arrive in any order.
trait Scenario {
    async fn ok(&self, name: &'static str, target: &str, body: Value) -> Value;

    /// The FAILURE reason of a command that must fail.
    async fn failure(&self, name: &str, target: &str, body: Value) -> String;

    /// A customer contacts the centre through the simulator; the interaction's name.
    async fn offer(&self, media: &str, data: Value, agent: Option<&str>) -> String;

    async fn hangup(&self, interaction: &str);

    /// The next event named `name` on `target`; others are kept for later waits.
    async fn until(&mut self, name: &str, target: &str) -> RawEvent;

    /// Every event up to the next `name` on `target` (the last), in the order they arrived.
    async fn arrivals_until(&mut self, name: &str, target: &str) -> Vec<RawEvent>;

    /// Every event that arrives within `window`, the backlog first (which it empties).
    async fn quiet(&mut self, window: Duration) -> Vec<RawEvent>;

    /// The next event on `target` named `name` whose body's `key` is `value`.
    async fn until_state(&mut self, name: &str, target: &str, key: &str, value: &str);

    async fn conversation_is(&mut self, target: &str, state: &str);

    async fn interaction_is(&mut self, target: &str, state: &str);

    /// Wait for `channel.interaction.added` on `channel`, create the interaction `<channel>.i<n>`
    /// and init it: (its CTI name, the target, the init answer).
    async fn take(&mut self, channel: &str, id: &str) -> (String, String, Value);

    /// Create the conversation `<interaction>.<id>` for `leg` and init it.
    async fn conversation(&self, interaction: &str, id: &str, leg: &str) -> (String, Value);

    /// Take a call alerting on `channel` and create its primary conversation.
    async fn take_call(&mut self, channel: &str, id: &str) -> (Call, Value);

    /// A call offered to `agent` on its telephony channel, taken and answered.
    async fn answered_call(&mut self, agent: &LoggedIn, id: &str) -> Call;

    /// `agent` consults `other`, who answers: (the consulting agent's consult
    /// conversation, the consulted agent's call).
    async fn consulted(&mut self, call: &Call, other: &LoggedIn) -> (String, Call);

    async fn init(&self, target: &str) -> Value;

    /// The simulator's interactions, by name.
    async fn at_cti(&self) -> Value;
}

impl Scenario for World {
    async fn ok(&self, name: &'static str, target: &str, body: Value) -> Value {
        let body = self
            .driver
            .ok(name, target, body)
            .await
            .unwrap_or_else(|e| panic!("{name} on {target}: {e}"));
        Value::Object(body)
    }

    async fn failure(&self, name: &str, target: &str, body: Value) -> String {
        match self.bridge.send(name, target, body).await {
            Response {
                outcome: Outcome::Failure(why),
                ..
            } => why,
            other => panic!("{name} on {target} should fail: {other:?}"),
        }
    }

    async fn offer(&self, media: &str, data: Value, agent: Option<&str>) -> String {
        let offer = Offer {
            media: serde_json::from_value(json!(media)).expect("a medium"),
            data: serde_json::from_value(data).expect("a JSON object"),
            from: Some("+15550100".into()),
            agent_id: agent.map(str::to_owned),
        };
        match self.bridge.admin(&offer).await {
            Ok(offered) => offered.name,
            Err(e) => panic!("offer refused: {e}"),
        }
    }

    async fn hangup(&self, interaction: &str) {
        let hangup = Hangup {
            interaction: interaction.to_owned(),
        };
        if let Err(e) = self.bridge.admin(&hangup).await {
            panic!("hangup refused: {e}");
        }
    }

    async fn until(&mut self, name: &str, target: &str) -> RawEvent {
        let wanted = |e: &RawEvent| e.name == name && e.target == target;
        if let Some(at) = self.backlog.iter().position(wanted) {
            return self.backlog.remove(at).unwrap();
        }
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            match self.events().next(left).await {
                Some(e) if wanted(&e) => return e,
                Some(e) => self.backlog.push_back(e),
                None => panic!("no `{name}` on `{target}` within {WAIT:?}"),
            }
        }
    }

    async fn arrivals_until(&mut self, name: &str, target: &str) -> Vec<RawEvent> {
        let mut seen: Vec<RawEvent> = self.backlog.drain(..).collect();
        let wanted = |e: &RawEvent| e.name == name && e.target == target;
        if let Some(at) = seen.iter().position(wanted) {
            self.backlog.extend(seen.split_off(at + 1));
            return seen;
        }
        seen.push(self.until(name, target).await);
        let last = seen.pop().unwrap();
        seen.append(&mut self.backlog.drain(..).collect());
        seen.push(last);
        seen
    }

    async fn quiet(&mut self, window: Duration) -> Vec<RawEvent> {
        let mut seen: Vec<RawEvent> = self.backlog.drain(..).collect();
        seen.extend(self.events().collect(window).await);
        seen
    }

    async fn until_state(&mut self, name: &str, target: &str, key: &str, value: &str) {
        loop {
            let event = self.until(name, target).await;
            if event.body[key] == value {
                return;
            }
        }
    }

    async fn conversation_is(&mut self, target: &str, state: &str) {
        self.until_state(
            "conversation.statechanged",
            target,
            "conversation-state",
            state,
        )
        .await;
    }

    async fn interaction_is(&mut self, target: &str, state: &str) {
        self.until_state(
            "interaction.statechanged",
            target,
            "interaction-state",
            state,
        )
        .await;
    }

    async fn take(&mut self, channel: &str, id: &str) -> (String, String, Value) {
        let added = self.until("channel.interaction.added", channel).await;
        let name = added.body["name"].as_str().unwrap().to_owned();
        self.ok(
            "channel.request.createinteraction",
            channel,
            json!({"id": id, "name": name}),
        )
        .await;
        let target = format!("{channel}.{id}");
        let init = self.ok("interaction.query.init", &target, json!({})).await;
        (name, target, init)
    }

    async fn conversation(&self, interaction: &str, id: &str, leg: &str) -> (String, Value) {
        self.ok(
            "interaction.request.createconversation",
            interaction,
            json!({"id": id, "name": leg}),
        )
        .await;
        let target = format!("{interaction}.{id}");
        let init = self.ok("conversation.query.init", &target, json!({})).await;
        (target, init)
    }

    async fn take_call(&mut self, channel: &str, id: &str) -> (Call, Value) {
        let (name, interaction, init) = self.take(channel, id).await;
        let leg = init["conversations"]["primary"]["id"]
            .as_str()
            .unwrap_or_else(|| panic!("no primary conversation: {init}"))
            .to_owned();
        let (primary, _) = self.conversation(&interaction, "p", &leg).await;
        let call = Call {
            name,
            interaction,
            primary,
        };
        (call, init)
    }

    async fn answered_call(&mut self, agent: &LoggedIn, id: &str) -> Call {
        self.offer(
            "TELEPHONY",
            json!({"accountId": "ACC-42"}),
            Some(&agent.agent_id),
        )
        .await;
        let (call, _) = self.take_call(&agent.channels[0].target, id).await;
        self.ok("conversation.request.answer", &call.primary, json!({}))
            .await;
        self.conversation_is(&call.primary, "CONNECTED").await;
        self.interaction_is(&call.interaction, "STARTED").await;
        call
    }

    async fn consulted(&mut self, call: &Call, other: &LoggedIn) -> (String, Call) {
        self.ok(
            "interaction.request.consult",
            &call.interaction,
            json!({"destination": other.agent_id}),
        )
        .await;
        let added = self
            .until("interaction.conversation.added", &call.interaction)
            .await;
        assert_eq!(added.body["role"], "consult");
        self.conversation_is(&call.primary, "HELD").await;
        let leg = added.body["name"].as_str().unwrap().to_owned();
        let (consult, init) = self.conversation(&call.interaction, "c", &leg).await;
        assert_eq!(init["role"], "consult");
        assert_eq!(init["remote"], other.channels[0].endpoint);
        let (theirs, their_init) = self.take_call(&other.channels[0].target, "i1").await;
        assert_eq!(their_init["interaction-state"], "ALERTING");
        assert_eq!(
            their_init["interaction-data"]["accountId"], "ACC-42",
            "the consulted agent sees the call's data"
        );
        self.ok("conversation.request.answer", &theirs.primary, json!({}))
            .await;
        self.conversation_is(&consult, "CONNECTED").await;
        self.conversation_is(&theirs.primary, "CONNECTED").await;
        (consult, theirs)
    }

    async fn init(&self, target: &str) -> Value {
        let name = if target.split('.').count() == 4 {
            "interaction.query.init"
        } else {
            "conversation.query.init"
        };
        self.ok(name, target, json!({})).await
    }

    async fn at_cti(&self) -> Value {
        json!(
            self.bridge
                .admin(&GetInteractions {})
                .await
                .expect("the simulator answers")
        )
    }
}

#[tokio::test]
async fn an_inbound_call_is_answered_held_retrieved_released_and_completed() {
    let mut w = world().await;
    let a = w.login("1001").await;
    let ext = a.channels[0].target.clone();
    let data = json!({"caller": "+15550100", "accountId": "ACC-42", "vip": {"tier": "gold"}});
    let name = w.offer("TELEPHONY", data.clone(), Some("1001")).await;

    let (call, init) = w.take_call(&ext, "i1").await;
    assert_eq!(call.name, name);
    assert_eq!(init["interaction-state"], "ALERTING");
    assert_eq!(init["interaction-data"], data, "screen-pop data");
    assert!(init["conversations"].get("consult").is_none());
    let conversation = w.init(&call.primary).await;
    assert_eq!(
        conversation,
        json!({"conversation-state": "ALERTING", "role": "primary", "remote": "+15550100"})
    );
    let channel = w.ok("channel.query.init", &ext, json!({})).await;
    assert_eq!(
        channel["interactions"],
        json!([{"name": name, "type": "TELEPHONY"}])
    );

    // The response comes before the events it causes: the leg, then the call.
    let mut tap = w.bridge.tap().await;
    w.bridge
        .send_tapped(
            &tap,
            "conversation.request.answer",
            &call.primary,
            json!({}),
            "answer-1",
        )
        .await;
    let mut seen = Vec::new();
    let deadline = tokio::time::Instant::now() + WAIT;
    while seen.len() < 3 && tokio::time::Instant::now() < deadline {
        seen.extend(tap.collect(Duration::from_millis(100)).await);
    }
    seen.extend(tap.collect(QUIET).await); // and nothing more
    drop(tap); // its `>` subscription would answer for destinations that are gone
    let order: Vec<(&str, String)> = seen
        .iter()
        .map(|s| (s.name(), s.json["body"].to_string()))
        .collect();
    assert_eq!(
        order,
        [
            ("conversation.request.answer", "{}".to_owned()),
            (
                "conversation.statechanged",
                json!({"conversation-state": "CONNECTED"}).to_string()
            ),
            (
                "interaction.statechanged",
                json!({"interaction-state": "STARTED"}).to_string()
            ),
        ]
    );
    let started = w.init(&call.interaction).await;
    assert_eq!(started["interaction-state"], "STARTED");
    assert!(started["conversations"]["primary"]["id"].is_string());

    w.ok("conversation.request.hold", &call.primary, json!({}))
        .await;
    w.conversation_is(&call.primary, "HELD").await;
    w.ok("conversation.request.retrieve", &call.primary, json!({}))
        .await;
    w.conversation_is(&call.primary, "CONNECTED").await;

    w.ok("conversation.request.release", &call.primary, json!({}))
        .await;
    w.conversation_is(&call.primary, "ENDED").await;
    w.interaction_is(&call.interaction, "ENDED").await;
    let ended = w.init(&call.interaction).await;
    assert_eq!(ended["interaction-state"], "ENDED");
    assert_eq!(
        ended["conversations"],
        json!({}),
        "no conversation once ended"
    );

    w.ok(
        "interaction.request.setdata",
        &call.interaction,
        json!({"interaction-data": {"disposition": "sale"}}),
    )
    .await;
    let changed = w.until("interaction.datachanged", &call.interaction).await;
    assert_eq!(changed.body["interaction-data"]["disposition"], "sale");
    assert_eq!(changed.body["interaction-data"]["accountId"], "ACC-42");

    w.ok("interaction.request.complete", &call.interaction, json!({}))
        .await;
    w.interaction_is(&call.interaction, "COMPLETED").await;
    let channel = w.ok("channel.query.init", &ext, json!({})).await;
    assert_eq!(channel["interactions"], json!([]));
    let completed = w.init(&call.interaction).await;
    assert_eq!(completed["interaction-state"], "COMPLETED");
    assert_eq!(completed["interaction-data"]["disposition"], "sale");
    assert_eq!(completed["conversations"], json!({}));
    assert_eq!(w.init(&call.primary).await["conversation-state"], "ENDED");

    w.ok("conversation.request.dispose", &call.primary, json!({}))
        .await;
    w.ok("interaction.request.dispose", &call.interaction, json!({}))
        .await;
    for (name, target) in [
        ("conversation.query.init", &call.primary),
        ("interaction.query.init", &call.interaction),
    ] {
        match w.driver.send(name, target, json!({})).await {
            Err(pb_bridge::flow::FlowError::Transport { message, .. }) => {
                assert!(message.contains("no responders"), "{message}")
            }
            Ok(Response {
                outcome: Outcome::Failure(why),
                ..
            }) => assert!(why.starts_with("unknown "), "{why}"),
            other => panic!("{name} on {target} should be gone: {other:?}"),
        }
    }
}

#[tokio::test]
async fn an_outbound_call_dials_until_the_far_end_answers() {
    let mut w = world().await;
    let a = w.login("1001").await;
    let ext = a.channels[0].target.clone();
    let dialled = w
        .ok(
            "channel.request.dial",
            &ext,
            json!({"destination": "+15559876"}),
        )
        .await;
    assert_eq!(dialled["type"], "TELEPHONY");
    let (call, init) = w.take_call(&ext, "o1").await;
    assert_eq!(dialled["name"], call.name.as_str());
    assert_eq!(init["interaction-state"], "DIALING");
    let leg = w.init(&call.primary).await;
    assert_eq!(leg["conversation-state"], "DIALING");
    assert_eq!(leg["remote"], "+15559876");
    w.conversation_is(&call.primary, "CONNECTED").await;
    w.interaction_is(&call.interaction, "STARTED").await;
    w.ok("conversation.request.release", &call.primary, json!({}))
        .await;
    w.interaction_is(&call.interaction, "ENDED").await;
    w.ok("interaction.request.complete", &call.interaction, json!({}))
        .await;
    w.interaction_is(&call.interaction, "COMPLETED").await;

    // Dialing is telephony's only.
    let why = w
        .failure(
            "channel.request.dial",
            &a.channels[1].target,
            json!({"destination": "+15559876"}),
        )
        .await;
    assert!(why.contains("only TELEPHONY channels dial"), "{why}");
}

#[tokio::test]
async fn a_consult_ends_in_a_transfer_on_both_agents() {
    let mut w = world().await;
    let a = w.login("1001").await;
    let b = w.login("1002").await;
    let call = w.answered_call(&a, "i1").await;
    let why = w
        .failure("interaction.request.transfer", &call.interaction, json!({}))
        .await;
    assert!(why.contains("consult"), "transfer without a consult: {why}");

    let (consult, theirs) = w.consulted(&call, &b).await;
    let during = w.init(&call.interaction).await;
    assert_eq!(during["interaction-state"], "STARTED");
    assert!(during["conversations"]["consult"]["id"].is_string());

    w.ok("interaction.request.transfer", &call.interaction, json!({}))
        .await;
    w.conversation_is(&call.primary, "ENDED").await;
    w.conversation_is(&consult, "ENDED").await;
    w.interaction_is(&call.interaction, "ENDED").await;
    let after = w.init(&call.interaction).await;
    assert_eq!(after["conversations"], json!({}));
    // The consulted agent now talks to the caller.
    let leg = w.init(&theirs.primary).await;
    assert_eq!(leg["conversation-state"], "CONNECTED");
    assert_eq!(leg["remote"], "+15550100");
    assert_eq!(
        w.init(&theirs.interaction).await["interaction-state"],
        "STARTED"
    );

    w.ok("interaction.request.complete", &call.interaction, json!({}))
        .await;
    w.ok("conversation.request.release", &theirs.primary, json!({}))
        .await;
    w.interaction_is(&theirs.interaction, "ENDED").await;
}

#[tokio::test]
async fn alternate_swaps_the_legs_and_a_conference_keeps_the_others_talking() {
    let mut w = world().await;
    let a = w.login("1001").await;
    let b = w.login("1002").await;
    let call = w.answered_call(&a, "i1").await;
    let (consult, theirs) = w.consulted(&call, &b).await;

    w.ok(
        "interaction.request.alternate",
        &call.interaction,
        json!({}),
    )
    .await;
    w.conversation_is(&call.primary, "CONNECTED").await;
    w.conversation_is(&consult, "HELD").await;
    w.ok(
        "interaction.request.alternate",
        &call.interaction,
        json!({}),
    )
    .await;
    w.conversation_is(&call.primary, "HELD").await;
    w.conversation_is(&consult, "CONNECTED").await;

    w.ok(
        "interaction.request.conference",
        &call.interaction,
        json!({}),
    )
    .await;
    w.conversation_is(&consult, "ENDED").await;
    w.conversation_is(&call.primary, "CONNECTED").await;
    let mine = w.init(&call.interaction).await;
    assert_eq!(mine["interaction-state"], "STARTED");
    assert!(mine["conversations"].get("consult").is_none());
    let remote = w.init(&call.primary).await["remote"].clone();
    let remote = remote.as_str().unwrap();
    assert!(
        remote.contains("+15550100") && remote.contains(&b.channels[0].endpoint),
        "three parties: {remote}"
    );
    assert_eq!(
        w.init(&theirs.primary).await["conversation-state"],
        "CONNECTED"
    );

    // The conferencing agent leaves; the other two keep talking.
    w.ok("conversation.request.release", &call.primary, json!({}))
        .await;
    w.interaction_is(&call.interaction, "ENDED").await;
    let leg = w.init(&theirs.primary).await;
    assert_eq!(leg["conversation-state"], "CONNECTED");
    assert_eq!(leg["remote"], "+15550100");
    w.hangup(&theirs.name).await;
    w.conversation_is(&theirs.primary, "ENDED").await;
    w.interaction_is(&theirs.interaction, "ENDED").await;
}

#[tokio::test]
async fn blind_transfer_and_dtmf_on_a_conversation() {
    let mut w = world().await;
    let a = w.login("1001").await;
    let b = w.login("1002").await;
    let call = w.answered_call(&a, "i1").await;

    w.ok(
        "conversation.request.senddtmf",
        &call.primary,
        json!({"digits": "12*#"}),
    )
    .await;
    let cti = w.at_cti().await;
    let heard = cti["interactions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|i| i["name"] == call.name.as_str())
        .unwrap_or_else(|| panic!("{cti}"));
    let leg = w.init(&call.interaction).await["conversations"]["primary"]["id"].clone();
    assert_eq!(heard["digits"][leg.as_str().unwrap()], "12*#");
    let why = w
        .failure(
            "conversation.request.senddtmf",
            &call.primary,
            json!({"digits": "12x"}),
        )
        .await;
    assert!(why.contains('x'), "{why}");

    w.ok(
        "conversation.request.blindtransfer",
        &call.primary,
        json!({"destination": "1002"}),
    )
    .await;
    w.conversation_is(&call.primary, "ENDED").await;
    w.interaction_is(&call.interaction, "ENDED").await;
    let (theirs, init) = w.take_call(&b.channels[0].target, "i1").await;
    assert_eq!(init["interaction-state"], "ALERTING");
    assert_eq!(init["interaction-data"]["accountId"], "ACC-42");
    assert_eq!(w.init(&theirs.primary).await["remote"], "+15550100");
    w.ok("conversation.request.answer", &theirs.primary, json!({}))
        .await;
    w.interaction_is(&theirs.interaction, "STARTED").await;
}

#[tokio::test]
async fn chats_and_emails_are_accepted_completed_or_rejected_back_to_the_queue() {
    let mut w = world().await;
    let a = w.login("1001").await;
    let (mail, chat) = (a.channels[1].target.clone(), a.channels[2].target.clone());
    assert_eq!(a.channels[2].endpoint, "chat-1001");

    let name = w
        .offer("CHAT", json!({"topic": "billing"}), Some("1001"))
        .await;
    let (taken, target, init) = w.take(&chat, "m1").await;
    assert_eq!(taken, name);
    assert_eq!(init["interaction-state"], "ALERTING");
    assert_eq!(init["interaction-data"]["topic"], "billing");
    assert!(init.get("conversations").is_none(), "multimedia: no calls");
    w.until("interaction.alerting", &target).await;
    // An init asked again (a bridge's retry) is answered afresh; its first event is not
    // raised again.
    assert_eq!(w.init(&target).await["interaction-state"], "ALERTING");
    let again = w.quiet(Duration::from_millis(500)).await;
    assert!(
        !again
            .iter()
            .any(|e| e.name == "interaction.alerting" && e.target == target),
        "alerting raised again: {again:?}"
    );
    let why = w
        .failure(
            "interaction.request.consult",
            &target,
            json!({"destination": "1002"}),
        )
        .await;
    assert!(why.contains("telephony"), "{why}");
    w.ok("interaction.request.accept", &target, json!({})).await;
    w.interaction_is(&target, "STARTED").await;
    w.ok("interaction.request.complete", &target, json!({}))
        .await;
    w.interaction_is(&target, "COMPLETED").await;

    // An email rejected goes back to the queue, and to the next agent who is ready.
    let b = w.login("1002").await;
    w.ok("channel.request.notready", &b.channels[1].target, json!({}))
        .await;
    let name = w.offer("EMAIL", json!({"subject": "refund"}), None).await;
    let (_, target, _) = w.take(&mail, "m2").await;
    w.until("interaction.alerting", &target).await;
    w.ok("interaction.request.reject", &target, json!({})).await;
    w.interaction_is(&target, "COMPLETED").await;
    let queued = w.at_cti().await["queued"].clone();
    assert_eq!(queued, json!([name]), "back in the queue");
    w.ok("channel.request.ready", &b.channels[1].target, json!({}))
        .await;
    let (again, theirs, init) = w.take(&b.channels[1].target, "m1").await;
    assert_eq!(again, name);
    assert_eq!(init["interaction-data"]["subject"], "refund");
    w.ok("interaction.request.accept", &theirs, json!({})).await;
    w.interaction_is(&theirs, "STARTED").await;
}

#[tokio::test]
async fn the_caller_hangs_up_while_alerting_on_hold_and_during_a_consult() {
    let mut w = world().await;
    let a = w.login("1001").await;
    let b = w.login("1002").await;
    let ext = a.channels[0].target.clone();

    // While alerting.
    w.offer("TELEPHONY", json!({}), Some("1001")).await;
    let (call, _) = w.take_call(&ext, "i1").await;
    w.hangup(&call.name).await;
    w.conversation_is(&call.primary, "ENDED").await;
    w.interaction_is(&call.interaction, "ENDED").await;
    let ended = w.init(&call.interaction).await;
    assert_eq!(ended["conversations"], json!({}));
    let why = w
        .failure("conversation.request.answer", &call.primary, json!({}))
        .await;
    assert!(why.contains("ENDED"), "{why}");
    w.ok("interaction.request.complete", &call.interaction, json!({}))
        .await;

    // While on hold.
    let call = w.answered_call(&a, "i2").await;
    w.ok("conversation.request.hold", &call.primary, json!({}))
        .await;
    w.conversation_is(&call.primary, "HELD").await;
    w.hangup(&call.name).await;
    w.conversation_is(&call.primary, "ENDED").await;
    w.interaction_is(&call.interaction, "ENDED").await;
    w.ok("interaction.request.complete", &call.interaction, json!({}))
        .await;

    // During a consult: the consult is cleared with the call, on both agents.
    let call = w.answered_call(&a, "i3").await;
    let (consult, theirs) = w.consulted(&call, &b).await;
    w.hangup(&call.name).await;
    w.conversation_is(&call.primary, "ENDED").await;
    w.conversation_is(&consult, "ENDED").await;
    w.interaction_is(&call.interaction, "ENDED").await;
    w.conversation_is(&theirs.primary, "ENDED").await;
    w.interaction_is(&theirs.interaction, "ENDED").await;
    for target in [&call.interaction, &theirs.interaction] {
        let init = w.init(target).await;
        assert_eq!(init["interaction-state"], "ENDED");
        assert_eq!(init["conversations"], json!({}));
    }
}

#[tokio::test]
async fn a_state_change_asked_while_busy_waits_for_the_interaction_to_end() {
    let mut w = world().await;
    let a = w.login("1001").await;
    let ext = a.channels[0].target.clone();
    let call = w.answered_call(&a, "i1").await;

    w.ok(
        "channel.request.notready",
        &ext,
        json!({"reasonCode": "break"}),
    )
    .await;
    let channel = w.ok("channel.query.init", &ext, json!({})).await;
    assert_eq!(channel["agent-state"], "READY");
    assert_eq!(channel["pending-agent-state"], "NOT_READY");
    let early = w.quiet(QUIET).await;
    assert!(
        !early.iter().any(|e| e.name == "channel.notready"),
        "nothing takes effect while busy: {early:?}"
    );

    w.ok("conversation.request.release", &call.primary, json!({}))
        .await;
    // It takes effect when the call ends, and is reported after it.
    let seen = w.arrivals_until("channel.notready", &ext).await;
    let ended = seen
        .iter()
        .position(|e| e.target == call.interaction && e.body["interaction-state"] == "ENDED");
    assert!(ended.is_some(), "the call ends first: {seen:?}");
    assert_eq!(seen.last().unwrap().body["reasonCode"], "break");
    let channel = w.ok("channel.query.init", &ext, json!({})).await;
    assert_eq!(channel["agent-state"], "NOT_READY");
    assert!(channel.get("pending-agent-state").is_none());
    w.ok("interaction.request.complete", &call.interaction, json!({}))
        .await;

    // A logout asked while busy waits too, and the bridge is told when it happens.
    w.ok("channel.request.ready", &ext, json!({})).await;
    let call = w.answered_call(&a, "i2").await;
    let answer = w
        .ok(
            "session.request.logout",
            &a.session,
            json!({"reasonCode": "eod"}),
        )
        .await;
    assert_eq!(answer, json!({"pending": true}));
    assert_eq!(
        w.ok("channel.query.init", &ext, json!({})).await["state"],
        "ACTIVE"
    );
    w.ok("conversation.request.release", &call.primary, json!({}))
        .await;
    w.interaction_is(&call.interaction, "ENDED").await;
    // Two services report it, each in its own order.
    let mut deactivated = false;
    let mut logged_out = None;
    while !deactivated || logged_out.is_none() {
        let event = match w.backlog.pop_front() {
            Some(event) => event,
            None => w
                .events()
                .next(WAIT)
                .await
                .expect("channel.deactivated and session.loggedout"),
        };
        deactivated |= event.name == "channel.deactivated" && event.target == ext;
        if event.name == "session.loggedout" && event.target == a.session {
            logged_out = Some(event.body);
        }
    }
    assert_eq!(logged_out.unwrap()["reasonCode"], "eod");
}

#[tokio::test]
async fn requests_that_do_not_fit_the_state_are_answered_failure_and_retries_are_not_redone() {
    let mut w = world().await;
    let a = w.login("1001").await;
    let ext = a.channels[0].target.clone();
    w.offer("TELEPHONY", json!({}), Some("1001")).await;
    let added = w.until("channel.interaction.added", &ext).await;
    let name = added.body["name"].as_str().unwrap().to_owned();

    let why = w
        .failure(
            "channel.request.createinteraction",
            &ext,
            json!({"id": "i1", "name": "call-nobody"}),
        )
        .await;
    assert!(why.contains("no interaction `call-nobody`"), "{why}");
    w.ok(
        "channel.request.createinteraction",
        &ext,
        json!({"id": "i1", "name": name}),
    )
    .await;
    let it = format!("{ext}.i1");
    let why = w
        .failure("interaction.request.complete", &it, json!({}))
        .await;
    assert!(why.contains("init has not been answered"), "{why}");
    let init = w.init(&it).await;
    let leg = init["conversations"]["primary"]["id"].as_str().unwrap();
    let why = w
        .failure(
            "interaction.request.createconversation",
            &it,
            json!({"id": "p", "name": "leg-nobody"}),
        )
        .await;
    assert!(why.contains("no conversation `leg-nobody`"), "{why}");
    let (primary, _) = w.conversation(&it, "p", leg).await;
    let why = w
        .failure("interaction.request.complete", &it, json!({}))
        .await;
    assert!(
        why.contains("ALERTING") && why.contains("only an ENDED"),
        "complete a live call: {why}"
    );
    let why = w
        .failure("interaction.request.consult", &it, json!({}))
        .await;
    assert!(why.contains("destination"), "a body without it: {why}");

    // A retried answer gets its first answer; a new one is refused: already connected.
    let first = w
        .bridge
        .send_with_id(
            "conversation.request.answer",
            &primary,
            json!({}),
            "answer-x",
        )
        .await;
    assert_eq!(first.outcome, Outcome::success());
    let again = w
        .bridge
        .send_with_id(
            "conversation.request.answer",
            &primary,
            json!({}),
            "answer-x",
        )
        .await;
    assert_eq!(again.outcome, Outcome::success(), "a retry is not redone");
    let why = w
        .failure("conversation.request.answer", &primary, json!({}))
        .await;
    assert!(why.contains("CONNECTED"), "answer a connected call: {why}");
    let why = w
        .failure("conversation.request.retrieve", &primary, json!({}))
        .await;
    assert!(why.contains("CONNECTED"), "retrieve a call not held: {why}");
    let why = w
        .failure("interaction.request.alternate", &it, json!({}))
        .await;
    assert!(why.contains("consult"), "{why}");
}

#[tokio::test]
async fn the_simulator_generates_traffic_that_reaches_ready_agents() {
    let mut w = world().await;
    let a = w.login("1001").await;
    w.bridge
        .admin(&Traffic {
            calls: 20.0,
            chats: 20.0,
            emails: 20.0,
        })
        .await
        .expect("the simulator acts");
    for channel in &a.channels {
        w.until("channel.interaction.added", &channel.target).await;
    }
    w.bridge
        .admin(&Traffic::none())
        .await
        .expect("the simulator acts");
    let status = json!(
        w.bridge
            .admin(&GetStatus {})
            .await
            .expect("the simulator answers")
    );
    assert!(status["offered"].as_u64().unwrap() >= 3, "{status}");
    assert_eq!(
        status["live"], 3,
        "one per channel of the one ready agent: {status}"
    );
}

#[tokio::test]
async fn no_event_before_an_interactions_init_and_init_shows_what_changed() {
    let mut w = world().await;
    let a = w.login("1001").await;
    let ext = a.channels[0].target.clone();
    let name = w.offer("TELEPHONY", json!({}), Some("1001")).await;
    w.until("channel.interaction.added", &ext).await;
    w.ok(
        "channel.request.createinteraction",
        &ext,
        json!({"id": "i1", "name": name}),
    )
    .await;
    w.hangup(&name).await;
    let target = format!("{ext}.i1");
    let early = w.quiet(QUIET).await;
    assert!(
        !early.iter().any(|e| e.target.starts_with(&target)),
        "no event before init: {early:?}"
    );
    let init = w.init(&target).await;
    assert_eq!(init["interaction-state"], "ENDED");
    assert_eq!(init["conversations"], json!({}));
    let late = w.quiet(QUIET).await;
    assert!(
        !late.iter().any(|e| e.target.starts_with(&target)),
        "the init showed it all: {late:?}"
    );
    let why = w
        .failure(
            "interaction.request.createconversation",
            &target,
            json!({"id": "p", "name": format!("{name}.p")}),
        )
        .await;
    assert!(
        why.contains("no conversation"),
        "an ended call's legs: {why}"
    );
}

//! The bridge emulator against a running system (real nats-server, simulator, control).

use std::process::Output;
use std::time::Duration;

use pb_testkit::{NatsServer, Process};

struct Running {
    nats: NatsServer,
    _sim: Process,
    _control: Process,
}

async fn running() -> Running {
    let nats = NatsServer::start();
    let env = vec![("NATS_URL", nats.url()), ("SIM_AGENTS", "5".to_owned())];
    let sim = Process::spawn("pb-cti-sim", &env).ready().await;
    let control = Process::spawn("pb-control", &env).ready().await;
    Running {
        nats,
        _sim: sim,
        _control: control,
    }
}

async fn cli(nats: &NatsServer, args: &[&str]) -> Output {
    tokio::process::Command::new(env!("CARGO_BIN_EXE_pb-bridge"))
        .args(args)
        .env("NATS_URL", nats.url())
        .output()
        .await
        .expect("run pb-bridge")
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

#[tokio::test]
async fn init_reports_status_and_capabilities() {
    let sys = running().await;
    let out = cli(&sys.nats, &["init"]).await;
    let text = stdout(&out);
    assert!(
        out.status.success(),
        "{text}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        text.contains("-> cti.request.serverstatus  PB1.CONTROL"),
        "{text}"
    );
    assert!(
        text.contains("<- event cti.serverstatuschanged: status \"in-service\""),
        "{text}"
    );
    assert!(
        text.contains("\"channel-groups-supported\": true"),
        "{text}"
    );
}

#[tokio::test]
async fn send_by_name_with_a_body_and_exit_codes() {
    let sys = running().await;
    let out = cli(
        &sys.nats,
        &[
            "send",
            "cti.query.agentinfo",
            "--body",
            r#"{"agentId":"1002","requestingAgentLogin":"1001","requestingAgentPassword":"pw-1001"}"#,
            "--json",
        ],
    )
    .await;
    assert!(out.status.success());
    let response: serde_json::Value = serde_json::from_str(&stdout(&out)).unwrap();
    assert_eq!(response["header"]["result"], "SUCCESS");
    assert_eq!(response["body"]["switch-agent-id"], "sw-1002");

    let out = cli(&sys.nats, &["send", "cti.query.agentinfo", "--body", "{}"]).await;
    assert_eq!(out.status.code(), Some(1), "FAILURE exits 1");
    assert!(stdout(&out).contains("<- FAILURE"), "{}", stdout(&out));
    assert!(stdout(&out).contains("missing field `agentId`"));

    let out = cli(&sys.nats, &["send", "channel.query.init"]).await;
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("give its --target"));
    let out = cli(
        &sys.nats,
        &["send", "cti.query.capabilities", "--body", "{oops"],
    )
    .await;
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--body is not JSON"));
}

#[tokio::test]
async fn watch_shows_events_caused_through_the_simulator() {
    let sys = running().await;
    assert!(cli(&sys.nats, &["init"]).await.status.success());
    let nats_url = sys.nats.url();
    let watcher = tokio::spawn(async move {
        tokio::process::Command::new(env!("CARGO_BIN_EXE_pb-bridge"))
            .args(["watch", "--count", "2", "--for-ms", "5000"])
            .env("NATS_URL", nats_url)
            .output()
            .await
            .expect("run watch")
    });
    tokio::time::sleep(Duration::from_millis(500)).await;
    let down = cli(&sys.nats, &["sim", "link-down", "--reason", "test drop"]).await;
    assert!(
        down.status.success(),
        "{}",
        String::from_utf8_lossy(&down.stderr)
    );
    let out = watcher.await.unwrap();
    let text = stdout(&out);
    assert!(text.contains("cti.communicationlost"), "{text}");
    assert!(text.contains("test drop"), "{text}");
    assert!(text.contains("pausing-service"), "{text}");
    let status = cli(&sys.nats, &["sim", "status"]).await;
    assert!(
        stdout(&status).contains("\"up\": false"),
        "{}",
        stdout(&status)
    );
}

#[tokio::test]
async fn a_missing_server_is_an_error_that_says_what_to_do() {
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_pb-bridge"))
        .args(["--nats-url", "nats://127.0.0.1:1", "init"])
        .output()
        .await
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("cannot reach NATS at nats://127.0.0.1:1"),
        "{err}"
    );
    assert!(
        err.contains("start the system with scripts/dev, or set NATS_URL"),
        "{err}"
    );
}

#[tokio::test]
async fn a_closed_output_pipe_is_a_quiet_exit_not_a_panic() {
    let sys = running().await;
    let script = format!(
        "set -o pipefail; {} init | head -c 1 >/dev/null",
        env!("CARGO_BIN_EXE_pb-bridge")
    );
    let out = tokio::process::Command::new("bash")
        .args(["-c", &script])
        .env("NATS_URL", sys.nats.url())
        .output()
        .await
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!err.contains("panicked"), "{err}");
    assert!(out.status.success(), "{err}");
}

mod whole_chain {
    use super::*;
    use pb_testkit::{Bridge, Stack};
    use serde_json::{Value, json};

    async fn run(stack: &Stack, args: &[&str]) -> Output {
        cli(&stack.nats, args).await
    }

    /// Run a command that must succeed; its standard output.
    async fn ok(stack: &Stack, args: &[&str]) -> String {
        let out = run(stack, args).await;
        let text = stdout(&out);
        assert!(
            out.status.success(),
            "pb-bridge {}: {text}{}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr)
        );
        text
    }

    /// A destination's init answer, through `send --json`.
    async fn init(stack: &Stack, name: &str, target: &str) -> Value {
        let text = ok(stack, &["send", name, "--target", target, "--json"]).await;
        serde_json::from_str::<Value>(&text).unwrap()["body"].clone()
    }

    /// The simulator's status, through `sim status`.
    async fn sim_status(stack: &Stack) -> Value {
        serde_json::from_str(&ok(stack, &["sim", "status"]).await).unwrap()
    }

    #[tokio::test]
    async fn an_inbound_call_taken_answered_held_retrieved_released_and_completed() {
        let stack = Stack::start(1, &[]).await;
        ok(&stack, &["init"]).await;
        ok(&stack, &["login", "1001"]).await;
        let ext = "s-1001.g1.c1";
        let mut events = Bridge::new(stack.nats.client().await).events().await;
        let offered = ok(
            &stack,
            &[
                "sim",
                "offer",
                "--type",
                "TELEPHONY",
                "--agent",
                "1001",
                "--from",
                "+15550100",
                "--data",
                r#"{"accountId":"ACC-42"}"#,
            ],
        )
        .await;
        let offered: Value = serde_json::from_str(&offered).unwrap();
        let name = offered["name"].as_str().unwrap().to_owned();
        let added = events
            .expect("channel.interaction.added", Duration::from_secs(5))
            .await;
        assert_eq!(
            (added.target.as_str(), &added.body["name"]),
            (ext, &json!(name))
        );

        // An interaction the channel does not have: FAILURE, exit 1, the reason shown.
        let out = run(&stack, &["interaction", "take", ext, "no-such-call"]).await;
        assert_eq!(out.status.code(), Some(1), "{}", stdout(&out));
        assert!(
            stdout(&out).contains(
                "FAILURE: channel.request.createinteraction on s-1001.g1.c1 failed: channel `ext-1001` has no interaction `no-such-call`"
            ),
            "{}",
            stdout(&out)
        );

        let text = ok(&stack, &["interaction", "take", ext, &name, "--id", "i1"]).await;
        let call = "s-1001.g1.c1.i1";
        assert!(
            text.contains(&format!("interaction {call} (CTI {name}): ALERTING")),
            "{text}"
        );
        assert!(text.contains(r#"  data: {"accountId":"ACC-42"}"#), "{text}");
        let leg = text
            .lines()
            .find_map(|l| l.strip_prefix("  conversation "))
            .and_then(|rest| rest.split_whitespace().next())
            .unwrap_or_else(|| panic!("no conversation in {text}"))
            .to_owned();
        assert!(leg.starts_with(&format!("{call}.")), "{leg}");
        assert!(
            text.contains("): primary ALERTING, remote +15550100"),
            "{text}"
        );

        for (verb, state) in [
            ("answer", "CONNECTED"),
            ("hold", "HELD"),
            ("retrieve", "CONNECTED"),
            ("release", "ENDED"),
        ] {
            let text = ok(&stack, &["conversation", verb, &leg]).await;
            assert!(
                text.contains(&format!(
                    "-> conversation.request.{verb}  {leg}  (requestId "
                )),
                "{text}"
            );
            assert!(text.contains("<- SUCCESS in "), "{text}");
            let now = init(&stack, "conversation.query.init", &leg).await;
            assert_eq!(now["conversation-state"], state, "after {verb}");
        }
        assert_eq!(
            init(&stack, "interaction.query.init", call).await["interaction-state"],
            "ENDED"
        );

        // A request the leg's state does not allow: FAILURE, exit 1, the reason shown.
        let out = run(&stack, &["conversation", "answer", &leg]).await;
        assert_eq!(out.status.code(), Some(1));
        assert!(stdout(&out).contains("<- FAILURE in "), "{}", stdout(&out));

        let text = ok(
            &stack,
            &["interaction", "complete", call, "--disposition", "sale"],
        )
        .await;
        let setdata = text
            .find(&format!("-> interaction.request.setdata  {call}"))
            .unwrap_or_else(|| panic!("{text}"));
        let complete = text
            .find(&format!("-> interaction.request.complete  {call}"))
            .unwrap_or_else(|| panic!("{text}"));
        assert!(setdata < complete, "{text}");
        assert_eq!(text.matches("<- SUCCESS").count(), 2, "{text}");
        // The bridge is told: the data with the disposition, then COMPLETED.
        let mut data = Value::Null;
        loop {
            let event = events
                .next(Duration::from_secs(5))
                .await
                .expect("interaction.statechanged COMPLETED");
            match event.name.as_str() {
                _ if event.target != call => {}
                "interaction.datachanged" => data = event.body["interaction-data"].clone(),
                "interaction.statechanged" if event.body["interaction-state"] == "COMPLETED" => {
                    break;
                }
                _ => {}
            }
        }
        assert_eq!(data, json!({"accountId": "ACC-42", "disposition": "sale"}));

        ok(&stack, &["conversation", "dispose", &leg]).await;
        ok(&stack, &["interaction", "dispose", call]).await;
        let out = run(&stack, &["conversation", "hold", &leg]).await;
        assert_eq!(out.status.code(), Some(2), "a disposed destination");
        assert!(
            String::from_utf8_lossy(&out.stderr).contains("no such conversation destination"),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let status = sim_status(&stack).await;
        assert_eq!(
            (&status["completed"], &status["live"]),
            (&json!(1), &json!(0))
        );
    }

    #[tokio::test]
    async fn the_desk_handles_a_call_a_chat_and_an_email_then_logs_out() {
        let stack = Stack::start(1, &[]).await;
        let desk = tokio::process::Command::new(env!("CARGO_BIN_EXE_pb-bridge"))
            .args(["desk", "--agents", "2", "--talk-ms", "200", "--for-s", "8"])
            .env("NATS_URL", stack.nats.url())
            .output();
        let desk = tokio::spawn(desk);
        // Offered before the agents are ready, an interaction waits in the queue.
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        while sim_status(&stack).await["logged_in"] != 2 {
            assert!(
                tokio::time::Instant::now() < deadline,
                "the desk logged nobody in"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        for media in ["TELEPHONY", "chat", "EMAIL"] {
            ok(&stack, &["sim", "offer", "--type", media]).await;
        }
        let out = desk.await.unwrap().expect("run the desk");
        let text = stdout(&out);
        assert!(
            out.status.success(),
            "{text}{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(text.contains("desk: 2 agents for "), "{text}");
        assert!(
            text.contains("handled: 3 (failed 0, unfinished 0, an event missed 0)"),
            "{text}"
        );
        let row = |label: &str, count: usize| format!("{label:<38} {count:>7} ");
        for (label, count) in [
            ("TELEPHONY", 1),
            ("CHAT", 1),
            ("EMAIL", 1),
            ("all", 3),
            ("channel.request.createinteraction", 3),
            ("interaction.request.createconversation", 1),
            ("conversation.request.answer", 1),
            ("interaction.request.accept", 2),
            ("conversation.request.release", 1),
            ("interaction.request.setdata", 3),
            ("interaction.request.complete", 3),
            ("interaction.request.dispose", 3),
        ] {
            assert!(text.contains(&row(label, count)), "{label}: {text}");
        }
        let status = sim_status(&stack).await;
        assert_eq!(status["completed"], 3, "{status}");
        assert_eq!(status["live"], 0, "{status}");
        assert_eq!(
            status["logged_in"], 0,
            "the desk logged its agents out: {status}"
        );
    }

    #[tokio::test]
    async fn login_state_logout_in_one_command_each() {
        let stack = Stack::start(1, &[]).await;
        assert!(run(&stack, &["init"]).await.status.success());
        let out = run(&stack, &["login", "1001"]).await;
        let text = stdout(&out);
        assert!(
            out.status.success(),
            "{text}{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(
            text.contains("agent 1001 logged in: session s-1001, channel group s-1001.g1"),
            "{text}"
        );
        assert!(
            text.contains("s-1001.g1.c1             ext-1001       TELEPHONY   ACTIVE READY"),
            "{text}"
        );
        let out = run(
            &stack,
            &["state", "s-1001.g1.c1", "notready", "--reason", "lunch"],
        )
        .await;
        assert!(out.status.success(), "{}", stdout(&out));
        let out = run(
            &stack,
            &[
                "send",
                "channel.query.init",
                "--target",
                "s-1001.g1.c1",
                "--json",
            ],
        )
        .await;
        let init: serde_json::Value = serde_json::from_str(&stdout(&out)).unwrap();
        assert_eq!(init["body"]["reasonCode"], "lunch");
        // A change made at the CTI, through the simulator's controls, reaches the channel.
        let out = run(&stack, &["sim", "set-state", "1001", "ext-1001", "ready"]).await;
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let out = run(
            &stack,
            &[
                "send",
                "channel.query.init",
                "--target",
                "s-1001.g1.c1",
                "--json",
            ],
        )
        .await;
        let init: serde_json::Value = serde_json::from_str(&stdout(&out)).unwrap();
        assert_eq!(init["body"]["agent-state"], "READY");
        let out = run(
            &stack,
            &["sim", "add-channel", "place-1001", "cb-1001", "callback"],
        )
        .await;
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let out = run(&stack, &["sim", "add-channel", "place-1001", "x", "fax"]).await;
        assert!(String::from_utf8_lossy(&out.stderr).contains("`fax` is not one of"));
        let out = run(&stack, &["logout", "s-1001"]).await;
        assert!(
            stdout(&out)
                .contains("disposed: s-1001.g1.c1, s-1001.g1.c2, s-1001.g1.c3, s-1001.g1, s-1001"),
            "{}",
            stdout(&out)
        );
        let out = run(
            &stack,
            &["send", "session.query.init", "--target", "s-1001"],
        )
        .await;
        assert_eq!(out.status.code(), Some(2));
        assert!(String::from_utf8_lossy(&out.stderr).contains("no such session destination"));
    }

    #[tokio::test]
    async fn a_small_storm_reports_rates_and_latencies() {
        let stack = Stack::start(1, &[("SIM_AGENTS", "30")]).await;
        let out = run(&stack, &["storm", "--agents", "20", "--concurrency", "4"]).await;
        let text = stdout(&out);
        assert!(
            out.status.success(),
            "{text}{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(text.contains("logged in: 20 (failed 0)"), "{text}");
        assert!(
            text.contains("cti.request.createsession                   20"),
            "{text}"
        );
        assert!(
            text.contains("channel.request.ready                       60"),
            "{text}"
        );
        let out = run(&stack, &["storm", "--agents", "40"]).await;
        assert_eq!(out.status.code(), Some(2));
        assert!(
            String::from_utf8_lossy(&out.stderr).contains("start it with SIM_AGENTS=40 or more")
        );
    }
}

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
    use pb_testkit::Stack;

    async fn run(stack: &Stack, args: &[&str]) -> Output {
        cli(&stack.nats, args).await
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

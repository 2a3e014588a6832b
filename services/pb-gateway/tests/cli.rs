//! The bridge emulator as a real Processor Bridge: `pb-bridge --tcp-listen` listens, the
//! gateway connects, and the CLI's commands go over the socket (what the README tells a
//! user to run beside `scripts/dev`).

use std::time::Duration;

use pb_testkit::{Stack, bin_path, sample};

/// A port free a moment ago.
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

async fn cli(stack: &Stack, addr: &str, args: &[&str]) -> std::process::Output {
    tokio::time::timeout(
        Duration::from_secs(30),
        tokio::process::Command::new(bin_path("pb-bridge"))
            .arg("--tcp-listen")
            .arg(addr)
            .args(args)
            .env("NATS_URL", stack.nats.url())
            .output(),
    )
    .await
    .expect("the CLI finishes")
    .expect("the CLI runs")
}

#[tokio::test]
async fn the_cli_listens_as_the_bridge_and_its_commands_cross_the_gateway() {
    let addr = format!("127.0.0.1:{}", free_port());
    let mut stack = Stack::start(1, &[]).await;
    stack.gateway("gw-0", &addr, &[]).await;
    for args in [
        &["login", "1001"][..],
        &["state", "s-1001.g1.c1", "notready", "--reason", "lunch"],
        &["logout", "s-1001"],
    ] {
        let out = cli(&stack, &addr, args).await;
        assert!(
            out.status.success(),
            "{args:?}: {}\n{}",
            String::from_utf8_lossy(&out.stderr),
            stack.logs()
        );
    }
    // A FAILURE over the socket exits 1, as over NATS.
    let out = cli(
        &stack,
        &addr,
        &["send", "session.query.init", "--target", "s-nobody"],
    )
    .await;
    assert_eq!(
        out.status.code(),
        Some(1),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    let m = stack.process("gw-0").metrics().await;
    assert_eq!(
        sample(&m, "pb_gateway_connects_total"),
        4.0,
        "one link per CLI run: {m}"
    );
    assert!(
        sample(&m, r#"pb_gateway_frames_received_total{type="request"}"#) >= 10.0,
        "{m}"
    );
}

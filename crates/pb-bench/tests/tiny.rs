//! The harness runs once, at a tiny size, in the test suite so that it cannot rot. No
//! figure is asserted against a target here (timings belong to `pb-bench` runs, not tests):
//! the run must complete and report every figure.

use std::process::Command;

use pb_bench::report::Report;
use pb_testkit::{TempDir, bin_path};

#[test]
fn a_tiny_run_reports_every_figure_beside_the_floor() {
    let dir = TempDir::new("bench");
    let json = dir.path().join("tiny.json");
    let out = Command::new(bin_path("pb-bench"))
        .args([
            "--runs",
            "1",
            "--agents",
            "5,10",
            "--gateway-agents",
            "4,8",
            "--samples",
            "30",
            "--in-flight",
            "4",
            "--desk-agents",
            "2",
            "--desk-seconds",
            "2",
        ])
        .arg("--json")
        .arg(&json)
        .output()
        .expect("run pb-bench");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "pb-bench failed:\n{stdout}\n{stderr}");
    for progress in [
        "login storm: 10 agents",
        "through the gateway: cti.query.capabilities",
        "login storm through the gateway: 8 agents",
    ] {
        assert!(
            stderr.contains(progress),
            "no `{progress}` in the progress:\n{stderr}"
        );
    }
    for line in [
        "echo floor, sequential p50",
        "cti.query.capabilities (no CTI call) p50",
        "cti.query.agentinfo (one CTI call) p99.9",
        "channel.request.ready",
        "storm 10: logins per second",
        "resident memory per logged-in agent",
        "event latency (CTI -> bridge) p99",
        "interactions handled per second (automatic desk)",
        "conversation.request.answer (1 CTI call) under load p99",
        "gateway: cti.query.capabilities p50 - NATS p50, floors",
        "gateway: channel.request.ready, 64 in flight",
        "gateway storm 8: logins per second through the gateway",
        "gateway storm 4: gateway memory per 1,000 agents",
        "targets met:",
    ] {
        assert!(stdout.contains(line), "no `{line}` in the table:\n{stdout}");
    }

    let report: Report = serde_json::from_slice(&std::fs::read(&json).unwrap()).unwrap();
    assert_eq!(report.runs.len(), 1);
    for key in [
        "floor.seq.p50_us",
        "floor.seq.p999_us",
        "floor.per_s",
        "cmd.cti.query.capabilities.seq.p50_us",
        "cmd.cti.query.agentinfo.per_s",
        "cmd.channel.request.ready.seq.p99_us",
        "storm.5.logins_per_s",
        "storm.10.worst_p99_ms",
        "event.p50_us",
        "desk.handled_per_s",
        "desk.answer.p50_us",
        "desk.worst_p99_ms",
        "event.p99_us",
        "gw.cmd.cti.query.capabilities.seq.p50_us",
        "gw.cmd.cti.query.agentinfo.seq.p99_us",
        "gw.cmd.channel.request.ready.per_s",
        "gw.storm.4.logins_per_s",
        "gw.storm.8.nats.logins_per_s",
        "gw.storm.8.worst_p99_ms",
        "gw.storm.8.gateway_kib",
    ] {
        let value = report.median.get(key).copied();
        assert!(
            value.is_some_and(|v| v > 0.0),
            "{key} = {value:?} in {:?}",
            report.median
        );
    }
    // Differences and growth: any sign.
    for key in [
        "memory.kib_per_agent",
        "gw.cmd.cti.query.capabilities.extra_floors",
        "gw.storm.8.gateway_kib_per_1000",
    ] {
        assert!(report.median.contains_key(key), "no {key}");
    }

    // Two reports compare figure by figure.
    let compared = Command::new(bin_path("pb-bench"))
        .arg("compare")
        .arg(&json)
        .arg(&json)
        .output()
        .expect("run pb-bench compare");
    let text = String::from_utf8_lossy(&compared.stdout);
    assert!(compared.status.success(), "{text}");
    for key in ["floor.per_s", "gw.storm.8.logins_per_s"] {
        assert!(
            text.lines()
                .any(|l| l.starts_with(key) && l.ends_with("1.00x")),
            "{text}"
        );
    }
}

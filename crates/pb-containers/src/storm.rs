//! A login storm from the host under a fault, and the invariants checked over it: the same
//! checks as the fault tests on processes ([`pb_testkit::ledger::violations`]), plus every
//! acknowledged login still served afterwards.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use pb_bridge::flow::LoggedIn;
use pb_protocol::Subjects;
use pb_testkit::ledger::{Ledger, violations};
use serde_json::json;

use crate::Containers;

/// How long a storm's driver retries what goes unanswered, with the same requestId.
const RETRY_BUDGET: Duration = Duration::from_secs(60);

/// Wait until `done` logins have been answered.
pub async fn after(done: &AtomicUsize, logins: usize) {
    while done.load(Ordering::Relaxed) < logins {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Log `agents` agents in (1001 upward, 16 at a time) from the host while `fault` runs
/// (it watches `done`, the logins answered so far), then check that every login succeeded
/// (retried where unanswered), every acknowledged one is still served with its state and
/// takes a change, and the ledger saw each command answered once, no event repeated, none
/// before its destination's first response. Returns the logins.
pub async fn storm_under(
    stack: &Containers,
    agents: usize,
    done: &AtomicUsize,
    fault: impl Future<Output = ()>,
) -> Vec<LoggedIn> {
    let subjects = Subjects::default();
    let observer = stack.observer().await;
    let ledger = Ledger::start(&observer, &subjects).await;
    let d = stack.driver(RETRY_BUDGET).await;
    d.ok("cti.request.serverstatus", "PB1.CONTROL", json!({}))
        .await
        .unwrap_or_else(|e| panic!("the control does not answer: {e}\n{}", stack.logs(40)));
    let (logged, ()) = tokio::join!(d.login_range(1001, agents, 16, "storm", done), fault);
    let failed: Vec<String> = logged
        .iter()
        .filter_map(|r| r.as_ref().err().map(ToString::to_string))
        .collect();
    assert!(
        failed.is_empty(),
        "{} logins failed: {failed:#?}\n{}",
        failed.len(),
        stack.logs(40)
    );
    let logged: Vec<LoggedIn> = logged.into_iter().flatten().collect();
    for agent in &logged {
        d.still_served(agent, "after-the-fault")
            .await
            .unwrap_or_else(|e| panic!("{}: {e}\n{}", agent.agent_id, stack.logs(40)));
    }
    let seen = ledger.stop().await;
    let broken = violations(&seen);
    assert!(
        broken.is_empty(),
        "{} broken of {} seen: {broken:#?}",
        broken.len(),
        seen.len()
    );
    logged
}

//! Who may publish and subscribe to what on NATS: one user per process, each allowed only
//! the subjects it needs. The deployments' `auth.conf` files are rendered from here
//! (`pb-ops nats-auth`, one per [`Deployment`]), and a test keeps the committed files in
//! step with the code.
//!
//! - **Replies.** Each process takes its replies on its own inbox prefix ([`inbox_prefix`],
//!   which [`crate::connect::options`] sets), and only that process's user may subscribe
//!   it: no credential reads another process's replies. A process answers a request through
//!   the server's response permission (`allow_responses`: one message to the reply subject
//!   of each message it received, within [`RESPONSE_WINDOW`]), which covers the gateway's
//!   `_GW_P.evt.…` replies, the JetStream flow control and the `$SRV` discovery answers,
//!   rather than by a right to publish into inboxes. One exception: a forwarded internal
//!   request ([`crate::owned`]) is answered by the unit's owner, which did not receive the
//!   original request, straight to the requester; so the session service may publish to
//!   the control's inbox, and the channel-group service to the session service's.
//! - **Buckets.** A bucket is written, and its stream created, only by the services that own
//!   it: the replies bucket by the three command services, each service's own records by
//!   it, the target index by the session service, and the owners and members buckets by
//!   the owned services, each only below its own name (`$KV.<bucket>.<service>.>`). Others
//!   read what they need; nobody may delete, purge or change a stream.
//! - **The simulator** is a lab's ([`Deployment::Lab`]): production has no user for it, and
//!   no production user may publish `P.sim.>` (which drops the CTI link, logs agents out
//!   and reads interaction data).

use std::time::Duration;

use pb_protocol::{Callee, Kind, Subjects};

use crate::kv::{bucket_name, buckets, key};

/// The NATS users, each also the binary name of the process that connects as it.
pub const CONTROL: &str = "pb-control";
pub const SESSION: &str = "pb-session";
pub const CHANNEL_GROUP: &str = "pb-channel-group";
/// A real CTI platform's adapter (the contract of `pb-cti`), in production.
pub(crate) const CTI_ADAPTER: &str = "pb-cti-adapter";
/// The simulated CTI: the adapter's subjects and the simulator's control panel (lab only).
pub const CTI_SIM: &str = "pb-cti-sim";
/// The bridge emulator, or a Processor Bridge that speaks NATS itself.
pub const BRIDGE: &str = "pb-bridge";
pub const GATEWAY: &str = "pb-gateway";

/// How long after receiving a request a process may still answer it: far beyond any
/// deadline (`PB_DEADLINE_MS` is seconds), and the server forgets a reply subject after it.
pub(crate) const RESPONSE_WINDOW: Duration = Duration::from_secs(120);

/// The JetStream account information: asked by every readiness check, and before a bucket
/// is created.
const JS_INFO: &str = "$JS.API.INFO";

/// The inbox prefix of the process whose NATS user is `user`: its requests' replies and its
/// JetStream deliveries come below it, and only `user` may subscribe it.
pub fn inbox_prefix(user: &str) -> String {
    format!("_INBOX_{}", pb_protocol::target::encode_token(user))
}

/// Every reply subject of `user`'s requests.
fn inbox(user: &str) -> String {
    format!("{}.>", inbox_prefix(user))
}

/// Which set of users a deployment runs with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Deployment {
    /// Against a real CTI platform: its adapter's user, no simulator, and nobody may drive
    /// one.
    Production,
    /// docker-compose, the local Kubernetes overlay and the tests: production's users, the
    /// simulator's, and the bridge's right to drive the simulator (`P.sim.>`).
    Lab,
}

impl Deployment {
    pub const ALL: [Self; 2] = [Self::Production, Self::Lab];

    /// Where the deployment's `auth.conf` is committed, from the workspace root.
    pub fn auth_conf_path(self) -> &'static str {
        match self {
            Self::Production => "deploy/base/nats/auth.conf",
            Self::Lab => "deploy/overlays/local/nats/auth.conf",
        }
    }

    /// The `pb-ops nats-auth` command that renders it.
    pub(crate) fn render_command(self) -> &'static str {
        match self {
            Self::Production => "pb-ops nats-auth",
            Self::Lab => "pb-ops nats-auth --lab",
        }
    }
}

/// One NATS user and its permissions.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct User {
    /// The user name, which is also the process's binary name.
    pub name: &'static str,
    /// The environment variable the NATS server reads the user's password from.
    pub password_var: &'static str,
    pub publish: Vec<String>,
    pub subscribe: Vec<String>,
    /// Whether it answers requests: one message to the reply subject of each message it
    /// receives, within [`RESPONSE_WINDOW`].
    pub responds: bool,
}

/// Every user of `deployment`, for the subjects `subjects`.
pub fn users(subjects: &Subjects, deployment: Deployment) -> Vec<User> {
    use pb_protocol::internal::{
        CHANNEL_GROUP_SERVICE, CONTROL_SERVICE, CREATE, DISPOSED, PAUSE, RESUME, SESSION_SERVICE,
        SYNC,
    };
    let discovery = || "$SRV.>".to_owned();
    let commands = |kind: Kind| subjects.commands_of(kind);
    let events = |kind: Kind| subjects.events_of(kind);
    let cti_calls = || subjects.calls(Callee::Cti);
    let bucket = |name: &str| bucket_name(subjects, name);
    // A bucket read, written (its stream created too), or written below one service's name.
    let read = |name: &str| read_bucket(&bucket(name));
    let write = |name: &str| write_bucket(&bucket(name), "");
    let write_own =
        |name: &str, service: &str| write_bucket(&bucket(name), &format!("{}.", key(&[service])));
    let disposed = subjects.internal_request(CONTROL_SERVICE, DISPOSED);
    let control = User {
        name: CONTROL,
        password_var: "PB_CONTROL_PASSWORD",
        publish: [
            vec![
                events(Kind::Control),
                subjects.internal_request(SESSION_SERVICE, CREATE),
                subjects.internal_requests(CONTROL_SERVICE),
                cti_calls(),
                // Re-sync requests to the owning replicas when the link is back.
                subjects.nodes(SESSION_SERVICE),
                subjects.nodes(CHANNEL_GROUP_SERVICE),
            ],
            write(buckets::REPLIES),
            write(buckets::CONTROL),
            // Which replicas to ask for a re-sync.
            read(buckets::MEMBERS),
        ]
        .concat(),
        subscribe: vec![
            commands(Kind::Control),
            pb_cti::link_events(subjects),
            subjects.internal_requests(CONTROL_SERVICE),
            discovery(),
            inbox(CONTROL),
        ],
        responds: true,
    };
    // An owned service: `requester` sends it the internal requests it may forward to a
    // unit's owner, which answers the requester itself.
    let owned = |name: &'static str,
                 password_var: &'static str,
                 service: &str,
                 kinds: &[Kind],
                 calls: Vec<String>,
                 requester: &str,
                 records: Vec<String>| User {
        name,
        password_var,
        publish: [
            kinds.iter().map(|k| events(*k)).collect(),
            calls,
            vec![
                subjects.internal_requests(service),
                subjects.nodes(service),
                cti_calls(),
                inbox(requester),
            ],
            write(buckets::REPLIES),
            records,
            write_own(buckets::OWNERS, service),
            write_own(buckets::MEMBERS, service),
        ]
        .concat(),
        subscribe: [
            kinds.iter().map(|k| commands(*k)).collect(),
            vec![
                subjects.internal_requests(service),
                subjects.nodes(service),
                pb_cti::all_agent_events(subjects),
                pb_cti::link_events(subjects),
                disposed.clone(),
                discovery(),
                inbox(name),
            ],
        ]
        .concat(),
        responds: true,
    };
    let session = owned(
        SESSION,
        "PB_SESSION_PASSWORD",
        SESSION_SERVICE,
        &[Kind::Session],
        [CREATE, PAUSE, RESUME, SYNC]
            .iter()
            .map(|op| subjects.internal_request(CHANNEL_GROUP_SERVICE, op))
            .collect(),
        CONTROL,
        [write(buckets::SESSIONS), write(buckets::TARGETS)].concat(),
    );
    let channel_group = owned(
        CHANNEL_GROUP,
        "PB_CHANNEL_GROUP_PASSWORD",
        CHANNEL_GROUP_SERVICE,
        &[
            Kind::ChannelGroup,
            Kind::Channel,
            Kind::Interaction,
            Kind::Conversation,
        ],
        Vec::new(),
        SESSION,
        [write(buckets::CHANNELS), read(buckets::TARGETS)].concat(),
    );
    // The CTI adapter contract: requests in, events out.
    let adapter = |name: &'static str, password_var: &'static str| User {
        name,
        password_var,
        publish: vec![pb_cti::all_events(subjects), JS_INFO.to_owned()],
        subscribe: vec![cti_calls(), discovery(), inbox(name)],
        responds: true,
    };
    let simulator = subjects.calls(Callee::Simulator);
    let mut bridge = User {
        name: BRIDGE,
        password_var: "PB_BRIDGE_PASSWORD",
        publish: Kind::ALL.iter().map(|k| commands(*k)).collect(),
        subscribe: vec![subjects.all_events(), inbox(BRIDGE)],
        responds: false,
    };
    let gateway = User {
        name: GATEWAY,
        password_var: "PB_GATEWAY_PASSWORD",
        publish: [
            Kind::ALL.iter().map(|k| commands(*k)).collect(),
            write(buckets::GATEWAY),
        ]
        .concat(),
        subscribe: vec![
            subjects.events_and_gateway_replies(),
            discovery(),
            inbox(GATEWAY),
        ],
        responds: true,
    };
    let mut all = vec![
        control,
        session,
        channel_group,
        adapter(CTI_ADAPTER, "PB_CTI_ADAPTER_PASSWORD"),
    ];
    if deployment == Deployment::Lab {
        let mut sim = adapter(CTI_SIM, "PB_CTI_SIM_PASSWORD");
        sim.subscribe.push(simulator.clone());
        all.push(sim);
        bridge.publish.push(simulator);
    }
    all.extend([bridge, gateway]);
    all
}

/// What a reader of key-value bucket `bucket` uses: the account and stream information,
/// direct and message gets, the watchers' consumers and their flow control.
fn read_bucket(bucket: &str) -> Vec<String> {
    let stream = stream_of(bucket);
    vec![
        JS_INFO.to_owned(),
        format!("$JS.API.STREAM.INFO.{stream}"),
        format!("$JS.API.STREAM.MSG.GET.{stream}"),
        format!("$JS.API.DIRECT.GET.{stream}"),
        format!("$JS.API.DIRECT.GET.{stream}.>"),
        format!("$JS.API.CONSUMER.CREATE.{stream}"),
        format!("$JS.API.CONSUMER.CREATE.{stream}.>"),
        format!("$JS.API.CONSUMER.DELETE.{stream}.>"),
        format!("$JS.API.CONSUMER.INFO.{stream}.>"),
        format!("$JS.FC.{stream}.>"),
    ]
}

/// The JetStream stream that holds key-value bucket `bucket`.
fn stream_of(bucket: &str) -> String {
    format!("KV_{bucket}")
}

/// What a writer of bucket `bucket` uses: a reader's, the stream's creation, and the keys
/// starting with `keys` (every key when empty).
fn write_bucket(bucket: &str, keys: &str) -> Vec<String> {
    let mut subjects = read_bucket(bucket);
    subjects.push(format!("$JS.API.STREAM.CREATE.{}", stream_of(bucket)));
    subjects.push(format!("$KV.{bucket}.{keys}>"));
    subjects
}

/// The NATS server configuration block of every user of `deployment`, their passwords read
/// from the environment (`$PB_CONTROL_PASSWORD`, ...).
pub fn auth_conf(subjects: &Subjects, deployment: Deployment) -> String {
    let list = |items: &[String]| {
        let mut unique: Vec<&String> = Vec::new();
        for item in items {
            if !unique.contains(&item) {
                unique.push(item);
            }
        }
        unique
            .iter()
            .map(|s| format!("\"{s}\""))
            .collect::<Vec<_>>()
            .join(", ")
    };
    let which = match deployment {
        Deployment::Production => {
            "# Production: a real CTI platform's adapter (pb-cti-adapter), no simulator, and no user\n\
             # may publish to the simulator's subjects.\n"
        }
        Deployment::Lab => {
            "# Lab (docker-compose, the local overlay, the tests): production's users, the simulated\n\
             # CTI's (pb-cti-sim), and the bridge may drive the simulator. Never in production.\n"
        }
    };
    let mut out = format!(
        "# The NATS users of the Processor Bridge client, one per process, each allowed only the\n\
         # subjects it needs; each reads replies on its own inbox prefix only, and answers what\n\
         # it receives through allow_responses. Rendered by `{}` from\n\
         # pb_runtime::permissions; a test fails when this file and the code disagree.\n\
         # Passwords come from the environment of the nats-server process.\n\
         {which}authorization {{\n  users = [\n",
        deployment.render_command(),
    );
    for user in users(subjects, deployment) {
        let responses = if user.responds {
            format!(
                "        allow_responses: {{ max: 1, expires: \"{}s\" }}\n",
                RESPONSE_WINDOW.as_secs()
            )
        } else {
            String::new()
        };
        out.push_str(&format!(
            "    {{\n      user: \"{}\"\n      password: ${}\n      permissions: {{\n        publish: {{ allow: [{}] }}\n        subscribe: {{ allow: [{}] }}\n{responses}      }}\n    }}\n",
            user.name,
            user.password_var,
            list(&user.publish),
            list(&user.subscribe),
        ));
    }
    out.push_str("  ]\n}\n");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Whether NATS delivers `subject` to a subscription on `pattern` (or lets a publish
    /// permission on `pattern` publish it).
    fn matches(pattern: &str, subject: &str) -> bool {
        let (mut p, mut s) = (pattern.split('.'), subject.split('.'));
        loop {
            match (p.next(), s.next()) {
                (Some(">"), Some(_)) => return true,
                (Some("*"), Some(_)) => {}
                (Some(a), Some(b)) if a == b => {}
                (None, None) => return true,
                _ => return false,
            }
        }
    }

    fn find(users: &[User], name: &str) -> User {
        users.iter().find(|u| u.name == name).unwrap().clone()
    }

    /// The users allowed to publish `subject`.
    fn publishers(users: &[User], subject: &str) -> Vec<&'static str> {
        users
            .iter()
            .filter(|u| u.publish.iter().any(|p| matches(p, subject)))
            .map(|u| u.name)
            .collect()
    }

    #[test]
    fn the_committed_auth_confs_are_the_rendered_ones() {
        for deployment in Deployment::ALL {
            let path = deployment.auth_conf_path();
            let committed =
                std::fs::read_to_string(format!("{}/../../{path}", env!("CARGO_MANIFEST_DIR")))
                    .unwrap_or_default();
            assert!(
                committed == auth_conf(&Subjects::default(), deployment),
                "{path} is stale: run `cargo run -q -p pb-ops -- {} > {path}`",
                deployment.render_command().trim_start_matches("pb-ops "),
            );
        }
    }

    #[test]
    fn each_user_gets_only_its_own() {
        let users = users(&Subjects::default(), Deployment::Lab);
        let control = find(&users, CONTROL);
        assert!(control.publish.contains(&"pb.evt.control.>".to_owned()));
        assert!(
            !control
                .publish
                .iter()
                .any(|s| s.starts_with("pb.evt.channel"))
        );
        assert!(!control.publish.iter().any(|s| s.contains("KV_pb_sessions")));
        let sim = find(&users, CTI_SIM);
        assert!(!sim.publish.iter().any(|s| s.starts_with("pb.evt.")));
        let gateway = find(&users, GATEWAY);
        assert!(gateway.subscribe.contains(&"*.evt.>".to_owned()));
        assert!(!gateway.publish.iter().any(|s| s.starts_with("pb.evt.")));
        let bridge = find(&users, BRIDGE);
        assert!(
            !bridge
                .publish
                .iter()
                .any(|s| s.starts_with("pb.evt.") || s.starts_with("$JS"))
        );
        // Only the bridge asks and never answers.
        for user in &users {
            assert_eq!(user.responds, user.name != BRIDGE, "{}", user.name);
        }
    }

    #[test]
    fn nobody_reads_or_forges_another_process_s_replies() {
        for deployment in Deployment::ALL {
            let users = users(&Subjects::default(), deployment);
            // A reply as async-nats makes them: the inbox, a 22-character id, a token.
            let reply = |prefix: &str| format!("{prefix}.Tb1RtCy8jeLPK5bRCbKcBu.7");
            let default = reply("_INBOX");
            for user in &users {
                assert!(
                    user.subscribe.contains(&inbox(user.name)),
                    "{} cannot read its own replies",
                    user.name
                );
                for pattern in &user.subscribe {
                    assert!(!matches(pattern, &default), "{}: {pattern}", user.name);
                    for other in users.iter().filter(|o| o.name != user.name) {
                        let theirs = reply(&inbox_prefix(other.name));
                        assert!(
                            !matches(pattern, &theirs),
                            "{} reads {}'s replies: {pattern}",
                            user.name,
                            other.name
                        );
                    }
                }
                assert!(publishers(&users, &default).is_empty());
            }
            // Into an inbox, only the answers to forwarded requests.
            for user in &users {
                let writers = publishers(&users, &reply(&inbox_prefix(user.name)));
                let expected: &[&str] = match user.name {
                    CONTROL => &[SESSION],
                    SESSION => &[CHANNEL_GROUP],
                    _ => &[],
                };
                assert_eq!(writers, expected, "into {}'s inbox", user.name);
            }
            // The gateway's replies come through the response permission only.
            assert!(publishers(&users, "_GW_pb.evt.gw-0.1").is_empty());
        }
    }

    #[test]
    fn buckets_are_written_only_by_their_owners() {
        for deployment in Deployment::ALL {
            let users = users(&Subjects::default(), deployment);
            let who = |subject: String| {
                let mut names = publishers(&users, &subject);
                names.sort_unstable();
                names
            };
            let writers = |bucket: &str, key: &str| who(format!("$KV.pb_{bucket}.{key}"));
            let creators = |bucket: &str| who(format!("$JS.API.STREAM.CREATE.KV_pb_{bucket}"));
            let only = |names: &[&'static str]| {
                let mut names = names.to_vec();
                names.sort_unstable();
                names
            };
            let commands = only(&[CONTROL, SESSION, CHANNEL_GROUP]);
            assert_eq!(writers("replies", "k"), commands);
            assert_eq!(creators("replies"), commands);
            assert_eq!(writers("control", "PB1"), only(&[CONTROL]));
            assert_eq!(writers("sessions", "1001"), only(&[SESSION]));
            assert_eq!(writers("channels", "1001"), only(&[CHANNEL_GROUP]));
            assert_eq!(writers("targets", "s-1"), only(&[SESSION]));
            assert_eq!(creators("targets"), only(&[SESSION]));
            assert_eq!(writers("gateway", "PB1"), only(&[GATEWAY]));
            for bucket in ["owners", "members"] {
                assert_eq!(writers(bucket, "session.1001"), only(&[SESSION]));
                assert_eq!(writers(bucket, "channelgroup.1001"), only(&[CHANNEL_GROUP]));
                assert_eq!(creators(bucket), only(&[SESSION, CHANNEL_GROUP]));
            }
            for user in &users {
                for subject in &user.publish {
                    assert!(
                        !["DELETE", "PURGE", "UPDATE"]
                            .iter()
                            .any(|op| matches(subject, &format!("$JS.API.STREAM.{op}.KV_pb_x"))),
                        "{} may change a stream: {subject}",
                        user.name
                    );
                }
            }
        }
    }

    #[test]
    fn production_has_no_simulator_and_nobody_may_drive_one() {
        let subjects = Subjects::default();
        let production = users(&subjects, Deployment::Production);
        assert!(!production.iter().any(|u| u.name == CTI_SIM));
        assert!(publishers(&production, "pb.sim.link").is_empty());
        assert!(publishers(&production, "pb.sim.logout").is_empty());
        // The lab is production with the simulator: it answers on `P.sim.>`, the bridge
        // drives it, and every production user is there with the same subscriptions.
        let lab = users(&subjects, Deployment::Lab);
        assert_eq!(publishers(&lab, "pb.sim.link"), [BRIDGE]);
        assert!(
            find(&lab, CTI_SIM)
                .subscribe
                .contains(&"pb.sim.>".to_owned())
        );
        for user in &production {
            assert_eq!(find(&lab, user.name).subscribe, user.subscribe);
        }
    }
}

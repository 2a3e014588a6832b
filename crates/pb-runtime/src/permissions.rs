//! Who may publish and subscribe to what on NATS: one user per process, each allowed only
//! the subjects it needs (the JetStream API and key-value subjects of its own buckets
//! included). The deployment's `deploy/base/nats/auth.conf` is rendered from here
//! (`pb-bridge nats-auth`), and a test keeps the committed file in step with the code.

use pb_protocol::{Kind, Subjects};

use crate::kv::{bucket_name, buckets};

/// One NATS user and its permissions.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct User {
    /// The user name, which is also the process's binary name.
    pub name: &'static str,
    /// The environment variable the NATS server reads the user's password from.
    pub password_var: &'static str,
    pub publish: Vec<String>,
    pub subscribe: Vec<String>,
}

/// Every process's user, for the deployment whose subjects are `subjects`.
pub fn users(subjects: &Subjects) -> Vec<User> {
    let p = |rest: &str| subjects.internal(rest);
    let inbox = || "_INBOX.>".to_owned();
    // Where the services answer the gateway's commands.
    let gateway_replies = || subjects.all_gateway_replies();
    let discovery = || "$SRV.>".to_owned();
    let commands = |kind: Kind| subjects.commands_of(kind);
    let events = |kind: Kind| p(&format!("evt.{}.>", kind.token()));
    let kv = |names: &[&str]| -> Vec<String> {
        names
            .iter()
            .flat_map(|name| bucket_subjects(&bucket_name(subjects, name)))
            .collect()
    };
    let disposed = p(pb_protocol::internal::CONTROL_DISPOSED);
    let control = User {
        name: "pb-control",
        password_var: "PB_CONTROL_PASSWORD",
        publish: [
            vec![
                events(Kind::Control),
                p(pb_protocol::internal::SESSION_CREATE),
                p("int.control.>"),
                p("cti.req.>"),
                // Re-sync requests to the owning replicas when the link is back.
                p(&format!(
                    "node.{}.>",
                    pb_protocol::internal::SESSION_SERVICE
                )),
                p(&format!(
                    "node.{}.>",
                    pb_protocol::internal::CHANNEL_GROUP_SERVICE
                )),
                inbox(),
                gateway_replies(),
            ],
            kv(&[buckets::REPLIES, buckets::CONTROL, buckets::MEMBERS]),
        ]
        .concat(),
        subscribe: vec![
            commands(Kind::Control),
            p("cti.evt.link"),
            p("int.control.>"),
            discovery(),
            inbox(),
        ],
    };
    let owned = |name: &'static str,
                 password_var: &'static str,
                 service: &str,
                 kinds: &[Kind],
                 calls: Vec<String>,
                 bucket: &str| User {
        name,
        password_var,
        publish: [
            kinds.iter().map(|k| events(*k)).collect(),
            calls,
            vec![
                p(&format!("int.{service}.>")),
                p(&format!("node.{service}.>")),
                p("cti.req.>"),
                inbox(),
                gateway_replies(),
            ],
            kv(&[
                buckets::REPLIES,
                bucket,
                buckets::TARGETS,
                buckets::OWNERS,
                buckets::MEMBERS,
            ]),
        ]
        .concat(),
        subscribe: [
            kinds.iter().map(|k| commands(*k)).collect(),
            vec![
                p(&format!("int.{service}.>")),
                p(&format!("node.{service}.>")),
                p("cti.evt.agent.>"),
                p("cti.evt.link"),
                disposed.clone(),
                discovery(),
                inbox(),
            ],
        ]
        .concat(),
    };
    let session = owned(
        "pb-session",
        "PB_SESSION_PASSWORD",
        pb_protocol::internal::SESSION_SERVICE,
        &[Kind::Session],
        [
            pb_protocol::internal::CREATE,
            pb_protocol::internal::PAUSE,
            pb_protocol::internal::RESUME,
            pb_protocol::internal::SYNC,
        ]
        .iter()
        .map(|op| p(&format!("int.channelgroup.{op}")))
        .collect(),
        buckets::SESSIONS,
    );
    let channel_group = owned(
        "pb-channel-group",
        "PB_CHANNEL_GROUP_PASSWORD",
        pb_protocol::internal::CHANNEL_GROUP_SERVICE,
        &[
            Kind::ChannelGroup,
            Kind::Channel,
            Kind::Interaction,
            Kind::Conversation,
        ],
        Vec::new(),
        buckets::CHANNELS,
    );
    let sim = User {
        name: "pb-cti-sim",
        password_var: "PB_CTI_SIM_PASSWORD",
        publish: vec![p("cti.evt.>"), inbox()],
        subscribe: vec![p("cti.req.>"), p("sim.>"), discovery(), inbox()],
    };
    let bridge = User {
        name: "pb-bridge",
        password_var: "PB_BRIDGE_PASSWORD",
        publish: Kind::ALL
            .iter()
            .map(|k| commands(*k))
            .chain([p("sim.>")])
            .collect(),
        subscribe: vec![subjects.all_events(), inbox()],
    };
    let gateway = User {
        name: "pb-gateway",
        password_var: "PB_GATEWAY_PASSWORD",
        publish: [
            Kind::ALL.iter().map(|k| commands(*k)).collect(),
            vec![inbox()],
            kv(&[buckets::GATEWAY]),
        ]
        .concat(),
        subscribe: vec![subjects.events_and_gateway_replies(), discovery(), inbox()],
    };
    vec![control, session, channel_group, sim, bridge, gateway]
}

/// The JetStream subjects a client of key-value bucket `bucket` uses: stream info and
/// creation, direct and message gets, the watchers' consumers and flow control, and the
/// bucket's own subjects.
fn bucket_subjects(bucket: &str) -> Vec<String> {
    let stream = format!("KV_{bucket}");
    vec![
        "$JS.API.INFO".to_owned(),
        format!("$JS.API.STREAM.INFO.{stream}"),
        format!("$JS.API.STREAM.CREATE.{stream}"),
        format!("$JS.API.STREAM.MSG.GET.{stream}"),
        format!("$JS.API.DIRECT.GET.{stream}"),
        format!("$JS.API.DIRECT.GET.{stream}.>"),
        format!("$JS.API.CONSUMER.CREATE.{stream}"),
        format!("$JS.API.CONSUMER.CREATE.{stream}.>"),
        format!("$JS.API.CONSUMER.DELETE.{stream}.>"),
        format!("$JS.API.CONSUMER.INFO.{stream}.>"),
        format!("$JS.FC.{stream}.>"),
        format!("$KV.{bucket}.>"),
    ]
}

/// The NATS server configuration block of every user, their passwords read from the
/// environment (`$PB_CONTROL_PASSWORD`, ...).
pub fn auth_conf(subjects: &Subjects) -> String {
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
    let mut out = String::from(
        "# The NATS users of the Processor Bridge client, one per process, each allowed only the\n\
         # subjects it needs. Rendered by `pb-bridge nats-auth` from pb_runtime::permissions;\n\
         # a test fails when this file and the code disagree. Passwords come from the\n\
         # environment of the nats-server process.\n\
         authorization {\n  users = [\n",
    );
    for user in users(subjects) {
        out.push_str(&format!(
            "    {{\n      user: \"{}\"\n      password: ${}\n      permissions: {{\n        publish: {{ allow: [{}] }}\n        subscribe: {{ allow: [{}] }}\n      }}\n    }}\n",
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

    #[test]
    fn the_committed_auth_conf_is_the_rendered_one() {
        let path = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../deploy/base/nats/auth.conf"
        );
        let committed = std::fs::read_to_string(path).unwrap_or_default();
        assert!(
            committed == auth_conf(&Subjects::default()),
            "deploy/base/nats/auth.conf is stale: run `cargo run -p pb-bridge -- nats-auth > deploy/base/nats/auth.conf`"
        );
    }

    #[test]
    fn each_user_gets_only_its_own() {
        let users = users(&Subjects::default());
        let find = |name| users.iter().find(|u| u.name == name).unwrap();
        let control = find("pb-control");
        assert!(control.publish.contains(&"pb.evt.control.>".to_owned()));
        assert!(
            !control
                .publish
                .iter()
                .any(|s| s.starts_with("pb.evt.channel"))
        );
        assert!(!control.publish.iter().any(|s| s.contains("KV_pb_sessions")));
        let sim = find("pb-cti-sim");
        assert!(!sim.publish.iter().any(|s| s.starts_with("pb.evt.")));
        let gateway = find("pb-gateway");
        assert!(gateway.subscribe.contains(&"*.evt.>".to_owned()));
        assert!(!gateway.publish.iter().any(|s| s.starts_with("pb.evt.")));
        for service in ["pb-control", "pb-session", "pb-channel-group"] {
            assert!(find(service).publish.contains(&"_GW_pb.evt.>".to_owned()));
        }
        let bridge = find("pb-bridge");
        assert!(
            !bridge
                .publish
                .iter()
                .any(|s| s.starts_with("pb.evt.") || s.starts_with("$JS"))
        );
    }
}

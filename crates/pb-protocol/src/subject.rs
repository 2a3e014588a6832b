//! Destination kinds and the NATS subjects of commands and events (contract §3).
//!
//! | traffic | subject |
//! |---|---|
//! | query or request, bridge to client | `P.<kind>.<target>` |
//! | event, client to bridge | `P.evt.<kind>.<target>` |

use std::fmt;

use crate::limits::Excerpt;
use crate::target::{Target, TargetError};

/// The six destination kinds. The kind of a message name is `control` for every name that
/// begins with `cti.`, else the name's first dot-separated token.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Kind {
    Control,
    Session,
    ChannelGroup,
    Channel,
    Interaction,
    Conversation,
}

impl Kind {
    pub const ALL: [Kind; 6] = [
        Kind::Control,
        Kind::Session,
        Kind::ChannelGroup,
        Kind::Channel,
        Kind::Interaction,
        Kind::Conversation,
    ];

    /// The subject token of this kind.
    pub fn token(self) -> &'static str {
        match self {
            Kind::Control => "control",
            Kind::Session => "session",
            Kind::ChannelGroup => "channelgroup",
            Kind::Channel => "channel",
            Kind::Interaction => "interaction",
            Kind::Conversation => "conversation",
        }
    }

    pub(crate) fn from_token(token: &str) -> Option<Kind> {
        Kind::ALL.into_iter().find(|k| k.token() == token)
    }

    /// The kind a message name belongs to, if its first token names one.
    pub fn of_name(name: &str) -> Option<Kind> {
        let first = name.split('.').next().unwrap_or_default();
        if first == "cti" {
            Some(Kind::Control)
        } else if first == "control" {
            None
        } else {
            Kind::from_token(first)
        }
    }

    /// How many segments a target of this kind has below its session's (contract §4: a
    /// channel group is `<session>.<id>`, a channel `<group>.<id>`, ...); `None` for the
    /// control, which belongs to no session.
    pub(crate) fn below_session(self) -> Option<usize> {
        match self {
            Kind::Control => None,
            Kind::Session => Some(0),
            Kind::ChannelGroup => Some(1),
            Kind::Channel => Some(2),
            Kind::Interaction => Some(3),
            Kind::Conversation => Some(4),
        }
    }

    /// How a person calls a destination of this kind, for error messages.
    pub fn describe(self) -> &'static str {
        match self {
            Kind::Control => "control",
            Kind::Session => "session",
            Kind::ChannelGroup => "channel group",
            Kind::Channel => "channel",
            Kind::Interaction => "interaction",
            Kind::Conversation => "conversation",
        }
    }
}

impl fmt::Display for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.token())
    }
}

/// Why a subject is not one of ours.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SubjectError {
    #[error(
        "subject prefix `{0}` is invalid: it must be one or more non-empty tokens of printable ASCII without `*`, `>` or spaces"
    )]
    BadPrefix(String),
    #[error(
        "subject `{}` does not start with the prefix `{prefix}.`",
        Excerpt(.subject)
    )]
    WrongPrefix { subject: String, prefix: String },
    #[error("subject `{}` names no destination kind", Excerpt(.0))]
    UnknownKind(String),
    #[error("subject `{}` has no target", Excerpt(.0))]
    NoTarget(String),
    #[error("subject `{}`: {source}", Excerpt(.subject))]
    Target {
        subject: String,
        #[source]
        source: TargetError,
    },
}

/// The subjects of one deployment, built from its prefix `P` (default `pb`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Subjects {
    prefix: String,
}

impl Default for Subjects {
    fn default() -> Self {
        Self {
            prefix: "pb".into(),
        }
    }
}

impl Subjects {
    pub fn new(prefix: impl Into<String>) -> Result<Self, SubjectError> {
        let prefix = prefix.into();
        let valid = !prefix.is_empty()
            && prefix.split('.').all(|t| {
                !t.is_empty()
                    && t.bytes()
                        .all(|b| b > b' ' && b < 0x7F && b != b'*' && b != b'>')
            });
        if valid {
            Ok(Self { prefix })
        } else {
            Err(SubjectError::BadPrefix(prefix))
        }
    }

    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// `P.<kind>.<target>`: where the bridge sends commands to a destination.
    pub fn command(&self, kind: Kind, target: &Target) -> String {
        format!(
            "{}.{}.{}",
            self.prefix,
            kind.token(),
            target.to_subject_tokens()
        )
    }

    /// `P.<kind>.<session>.>`: the commands to every destination of `kind` below the session
    /// `session` (and below any session whose target extends it).
    pub fn commands_below(&self, kind: Kind, session: &Target) -> String {
        format!(
            "{}.{}.{}.>",
            self.prefix,
            kind.token(),
            session.to_subject_tokens()
        )
    }

    /// `P.evt.<kind>.<target>`: where the client publishes a destination's events.
    pub fn event(&self, kind: Kind, target: &Target) -> String {
        format!(
            "{}.evt.{}.{}",
            self.prefix,
            kind.token(),
            target.to_subject_tokens()
        )
    }

    /// `P.<kind>.>`: every command to destinations of one kind.
    pub fn commands_of(&self, kind: Kind) -> String {
        format!("{}.{}.>", self.prefix, kind.token())
    }

    /// `P.evt.>`: every event, what a bridge watches.
    pub fn all_events(&self) -> String {
        format!("{}.evt.>", self.prefix)
    }

    /// Where the responses to the commands of gateway `gateway` come back (contract §8):
    /// `_GW_P.evt.<gateway>` and a token per command. They lie beside the events in the
    /// subject space (`P` with `_GW_` before its first token), so that one subscription,
    /// [`Subjects::events_and_gateway_replies`], receives responses and events in the
    /// order the services published them; a bridge watching `P.evt.>` never sees them.
    pub fn gateway_replies(&self, gateway: &str) -> String {
        format!(
            "_GW_{}.evt.{}",
            self.prefix,
            crate::target::encode_token(gateway)
        )
    }

    /// `_GW_P.evt.>`: every gateway's responses.
    pub fn all_gateway_replies(&self) -> String {
        format!("_GW_{}.evt.>", self.prefix)
    }

    /// One pattern covering `P.evt.>` and `_GW_P.evt.>`: the first token of `P` made a
    /// wildcard (`*.evt.>` for `pb`). It also covers the events of deployments whose prefix
    /// differs only in its first token, which a reader tells apart by the subject.
    pub fn events_and_gateway_replies(&self) -> String {
        match self.prefix.split_once('.') {
            Some((_, rest)) => format!("*.{rest}.evt.>"),
            None => "*.evt.>".to_owned(),
        }
    }

    /// A project-internal subject `P.<rest>` (the CTI adapter's subjects, `pb_cti`).
    pub fn internal(&self, rest: &str) -> String {
        format!("{}.{rest}", self.prefix)
    }

    /// `P.evt.<kind>.>`: every event of destinations of one kind.
    pub fn events_of(&self, kind: Kind) -> String {
        format!("{}.evt.{}.>", self.prefix, kind.token())
    }

    /// `P.int.<service>.<op>`: a hand-off to `service`'s queue group (the services'
    /// names and operations are in [`crate::internal`]); with `op` empty, the prefix they
    /// share.
    pub fn internal_request(&self, service: &str, op: &str) -> String {
        format!("{}.int.{service}.{op}", self.prefix)
    }

    /// `P.int.<service>.>`: every hand-off to `service`.
    pub fn internal_requests(&self, service: &str) -> String {
        self.internal_request(service, ">")
    }

    /// `P.node.<service>.<replica>`: one replica of an owning service, for its peers
    /// (forwards, pings, re-syncs).
    pub fn node(&self, service: &str, replica: &str) -> String {
        format!(
            "{}.node.{service}.{}",
            self.prefix,
            crate::target::encode_token(replica)
        )
    }

    /// `P.node.<service>.>`: every replica of `service`.
    pub fn nodes(&self, service: &str) -> String {
        format!("{}.node.{service}.>", self.prefix)
    }

    /// Split a command subject into its kind and target.
    pub fn parse_command(&self, subject: &str) -> Result<(Kind, Target), SubjectError> {
        let rest = self.strip_prefix(subject)?;
        parse_kind_and_target(subject, rest)
    }

    /// Split an event subject into its kind and target.
    pub fn parse_event(&self, subject: &str) -> Result<(Kind, Target), SubjectError> {
        let rest = self.strip_prefix(subject)?;
        let rest = rest
            .strip_prefix("evt.")
            .ok_or_else(|| SubjectError::UnknownKind(subject.to_owned()))?;
        parse_kind_and_target(subject, rest)
    }

    fn strip_prefix<'s>(&self, subject: &'s str) -> Result<&'s str, SubjectError> {
        subject
            .strip_prefix(self.prefix.as_str())
            .and_then(|r| r.strip_prefix('.'))
            .ok_or_else(|| SubjectError::WrongPrefix {
                subject: subject.to_owned(),
                prefix: self.prefix.clone(),
            })
    }
}

fn parse_kind_and_target(subject: &str, rest: &str) -> Result<(Kind, Target), SubjectError> {
    let (kind, tokens) = rest
        .split_once('.')
        .ok_or_else(|| SubjectError::NoTarget(subject.to_owned()))?;
    let kind =
        Kind::from_token(kind).ok_or_else(|| SubjectError::UnknownKind(subject.to_owned()))?;
    let target = Target::from_subject_tokens(tokens).map_err(|source| SubjectError::Target {
        subject: subject.to_owned(),
        source,
    })?;
    Ok((kind, target))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(s: &str) -> Target {
        Target::new(s).unwrap()
    }

    /// The table of contract §3, row by row.
    #[test]
    fn commands_below_a_session() {
        let s = Subjects::default();
        let session = Target::new("Main PB.s1").unwrap();
        assert_eq!(
            s.commands_below(Kind::Channel, &session),
            "pb.channel.Main%20PB.s1.>"
        );
    }

    #[test]
    fn contract_subject_examples() {
        let s = Subjects::default();
        let rows = [
            (
                "cti.query.capabilities",
                "PB1.CONTROL",
                false,
                "pb.control.PB1.CONTROL",
            ),
            (
                "cti.serverstatuschanged",
                "PB1.CONTROL",
                true,
                "pb.evt.control.PB1.CONTROL",
            ),
            (
                "cti.request.createsession",
                "Main PB.CONTROL",
                false,
                "pb.control.Main%20PB.CONTROL",
            ),
            ("session.query.init", "s-42", false, "pb.session.s-42"),
            (
                "channelgroup.query.init",
                "s-42.g1",
                false,
                "pb.channelgroup.s-42.g1",
            ),
            (
                "channel.activated",
                "s-42.g1.c7",
                true,
                "pb.evt.channel.s-42.g1.c7",
            ),
        ];
        for (name, target, event, subject) in rows {
            let kind = Kind::of_name(name).unwrap();
            let built = if event {
                s.event(kind, &t(target))
            } else {
                s.command(kind, &t(target))
            };
            assert_eq!(built, subject, "{name}");
            let parsed = if event {
                s.parse_event(subject)
            } else {
                s.parse_command(subject)
            };
            assert_eq!(parsed.unwrap(), (kind, t(target)), "{name}");
        }
    }

    #[test]
    fn kind_of_names() {
        assert_eq!(Kind::of_name("cti.communicationlost"), Some(Kind::Control));
        assert_eq!(
            Kind::of_name("channelgroup.channel.added"),
            Some(Kind::ChannelGroup)
        );
        assert_eq!(
            Kind::of_name("conversation.request.answer"),
            Some(Kind::Conversation)
        );
        assert_eq!(Kind::of_name("control.query.x"), None);
        assert_eq!(Kind::of_name("agent.query.x"), None);
        assert_eq!(Kind::of_name(""), None);
    }

    #[test]
    fn gateway_replies_share_one_pattern_with_the_events() {
        for (prefix, pattern) in [("pb", "*.evt.>"), ("acme.pb", "*.pb.evt.>")] {
            let s = Subjects::new(prefix).unwrap();
            assert_eq!(s.events_and_gateway_replies(), pattern);
            let replies = s.gateway_replies("gw 1");
            assert!(
                replies.starts_with(&format!("_GW_{prefix}.evt.")),
                "{replies}"
            );
            assert!(replies.ends_with("gw%201"), "{replies}");
            for subject in [format!("{replies}.17"), s.event(Kind::Channel, &t("s.g.c"))] {
                let p: Vec<&str> = pattern.split('.').collect();
                let tokens: Vec<&str> = subject.split('.').collect();
                assert!(tokens.len() >= p.len(), "{subject}");
                assert!(
                    p.iter()
                        .zip(&tokens)
                        .all(|(p, t)| *p == "*" || *p == ">" || p == t),
                    "{subject} is not covered by {pattern}"
                );
            }
            assert!(s.parse_event(&format!("{replies}.1")).is_err());
        }
    }

    #[test]
    fn custom_prefix_and_errors() {
        let s = Subjects::new("acme.pb").unwrap();
        assert_eq!(s.command(Kind::Session, &t("s 1")), "acme.pb.session.s%201");
        assert_eq!(s.all_events(), "acme.pb.evt.>");
        assert!(matches!(
            s.parse_command("pb.session.x"),
            Err(SubjectError::WrongPrefix { .. })
        ));
        assert!(matches!(
            s.parse_command("acme.pb.agent.x"),
            Err(SubjectError::UnknownKind(_))
        ));
        assert!(matches!(
            s.parse_command("acme.pb.session"),
            Err(SubjectError::NoTarget(_))
        ));
        assert!(matches!(
            s.parse_command("acme.pb.session.a%zz"),
            Err(SubjectError::Target { .. })
        ));
        assert!(matches!(
            s.parse_event("acme.pb.session.x"),
            Err(SubjectError::UnknownKind(_))
        ));
        for bad in ["", "a..b", "a b", "a.*", ">", "a."] {
            assert!(Subjects::new(bad).is_err(), "{bad:?}");
        }
    }
}

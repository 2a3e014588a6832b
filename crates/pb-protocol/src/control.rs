//! The processor control destination, `{Processor_Name}.CONTROL` (reference §9.1).

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::Value;

use crate::Secret;

messages! {
    /// Queries and requests the bridge sends to the control destination.
    pub enum ControlCommand {
        Capabilities = "cti.query.capabilities",
        AgentInfo(AgentInfoQuery) = "cti.query.agentinfo",
        ValidateAgentCredentials(AgentCredentials) = "cti.request.validateagentcredentials",
        ServerStatus = "cti.request.serverstatus",
        CreateSession(CreateSession) = "cti.request.createsession",
        Dispose = "cti.request.dispose",
    }
}

messages! {
    /// Events of the control destination.
    pub enum ControlEvent {
        ServerStatusChanged(ServerStatusChanged) = "cti.serverstatuschanged",
        /// Project-defined (contract §7): the CTI link dropped.
        CommunicationLost(CommunicationLost) = "cti.communicationlost",
        /// Project-defined (contract §7): the CTI link is back.
        CommunicationRestored = "cti.communicationrestored",
    }
}

/// Body of `cti.query.agentinfo`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AgentInfoQuery {
    pub agent_id: String,
    pub requesting_agent_login: String,
    pub requesting_agent_password: Secret,
}

/// Body of `cti.request.validateagentcredentials`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AgentCredentials {
    pub agent_id: String,
    pub agent_login: String,
    pub agent_password: Secret,
}

/// Body of `cti.request.createsession`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CreateSession {
    pub agent_id: String,
    pub agent_password: Secret,
    pub session_id: String,
    /// The target the new session destination uses.
    pub destination: String,
}

/// Response body of `cti.query.capabilities`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct Capabilities {
    pub channel_groups_supported: bool,
    pub channel_groups_max_per_agent: u32,
    /// Comma-separated media types, for example `TELEPHONY,EMAIL,CHAT`.
    pub channel_groups_media_types: String,
    pub single_channels_supported: bool,
    pub single_channels_media_types: String,
}

/// Response body of `cti.query.agentinfo`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AgentInfo {
    #[serde(rename = "switch-agent-id")]
    pub switch_agent_id: String,
    #[serde(flatten)]
    pub name: AgentName,
    #[serde(
        rename = "cti-specific",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub cti_specific: Option<Value>,
}

/// An agent's name: one `full-name`, or `first-name` and `last-name`. When a message holds
/// `full-name`, it wins and the other two are ignored (reference §9.1).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AgentName {
    Full(String),
    Split { first: String, last: String },
}

#[derive(Serialize, Deserialize)]
struct AgentNameWire {
    #[serde(rename = "full-name", default, skip_serializing_if = "Option::is_none")]
    full: Option<String>,
    #[serde(
        rename = "first-name",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    first: Option<String>,
    #[serde(rename = "last-name", default, skip_serializing_if = "Option::is_none")]
    last: Option<String>,
}

impl Serialize for AgentName {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let wire = match self {
            AgentName::Full(full) => AgentNameWire {
                full: Some(full.clone()),
                first: None,
                last: None,
            },
            AgentName::Split { first, last } => AgentNameWire {
                full: None,
                first: Some(first.clone()),
                last: Some(last.clone()),
            },
        };
        wire.serialize(s)
    }
}

impl<'de> Deserialize<'de> for AgentName {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let wire = AgentNameWire::deserialize(d)?;
        match wire {
            AgentNameWire {
                full: Some(full), ..
            } => Ok(AgentName::Full(full)),
            AgentNameWire {
                first: Some(first),
                last: Some(last),
                ..
            } => Ok(AgentName::Split { first, last }),
            _ => Err(serde::de::Error::custom(
                "agent info needs `full-name`, or both `first-name` and `last-name`",
            )),
        }
    }
}

/// The five service states of `cti.serverstatuschanged` (reference §10.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ServerStatus {
    StartingService,
    InService,
    PausingService,
    StoppingService,
    OutOfService,
}

impl ServerStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            ServerStatus::StartingService => "starting-service",
            ServerStatus::InService => "in-service",
            ServerStatus::PausingService => "pausing-service",
            ServerStatus::StoppingService => "stopping-service",
            ServerStatus::OutOfService => "out-of-service",
        }
    }
}

/// Body of `cti.serverstatuschanged`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServerStatusChanged {
    pub status: ServerStatus,
}

/// Body of `cti.communicationlost`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CommunicationLost {
    pub reason: String,
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn full_name_wins_over_first_and_last() {
        let info: AgentInfo = serde_json::from_value(json!({
            "switch-agent-id": "sw-1001",
            "first-name": "Ada", "last-name": "Lovelace", "full-name": "Countess of Lovelace",
        }))
        .unwrap();
        assert_eq!(info.name, AgentName::Full("Countess of Lovelace".into()));
        assert_eq!(info.cti_specific, None);
    }

    #[test]
    fn first_and_last_when_no_full_name() {
        let info: AgentInfo = serde_json::from_value(json!({
            "switch-agent-id": "sw-1", "first-name": "Ada", "last-name": "Lovelace",
            "cti-specific": {"skill": ["billing"]}
        }))
        .unwrap();
        assert_eq!(
            info.name,
            AgentName::Split {
                first: "Ada".into(),
                last: "Lovelace".into()
            }
        );
        let back = serde_json::to_value(&info).unwrap();
        assert!(back.get("full-name").is_none());
        assert_eq!(back["cti-specific"]["skill"][0], "billing");
    }

    #[test]
    fn a_name_is_required() {
        let err = serde_json::from_value::<AgentInfo>(json!({
            "switch-agent-id": "sw-1", "first-name": "Ada"
        }))
        .unwrap_err();
        assert!(err.to_string().contains("full-name"), "{err}");
    }

    #[test]
    fn status_spelling() {
        for s in [
            ServerStatus::StartingService,
            ServerStatus::InService,
            ServerStatus::PausingService,
            ServerStatus::StoppingService,
            ServerStatus::OutOfService,
        ] {
            assert_eq!(serde_json::to_value(s).unwrap(), json!(s.as_str()));
        }
    }
}

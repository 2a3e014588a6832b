//! The lab's control panel: fault injection and changes "made at the CTI", on `P.sim.<op>`
//! (request-reply, reply [`pb_cti::CtiReply`]), each a [`Call`](pb_protocol::Call) to [`Callee::Simulator`]. Only the simulator (`pb-cti-sim`) answers
//! them; a real platform's adapter does not. The bridge emulator's `sim` commands, the
//! benchmark and the tests send them. Pure data: this crate links no simulator.

use pb_cti::{CtiReply, Done, InteractionSnapshot, LinkEvent};
use pb_protocol::channel::{AgentState, ChannelType};
use pb_protocol::{Body, Callee};
use serde::{Deserialize, Serialize};

/// Drop (`up: false`) or restore the CTI link.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SetLink {
    pub up: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// With `up: false`: the switch keeps working behind the dropped link, as a real one
    /// does. Changes made at the CTI (states, logouts, channels, offers, hang-ups, far ends
    /// answering) still happen, but their events are lost, and the adapter's clients are
    /// still refused. Without it the whole CTI stands still.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub switch_runs: bool,
}

impl SetLink {
    /// Restore the link.
    pub fn up() -> Self {
        Self {
            up: true,
            reason: None,
            switch_runs: false,
        }
    }

    /// Drop the link for `reason`; the whole CTI stands still.
    pub fn down(reason: impl Into<String>) -> Self {
        Self {
            up: false,
            reason: Some(reason.into()),
            switch_runs: false,
        }
    }
}

/// Lose (`lose: true`) every event the CTI raises from now on, until told otherwise, the
/// link staying up: messages lost on the way, which only a re-synchronisation recovers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LoseEvents {
    pub lose: bool,
}

/// Make every CTI call take this long (0 for none).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SetDelay {
    pub ms: u64,
}

/// Make the CTI refuse an agent (or accept it again).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RejectAgent {
    pub agent_id: String,
    pub rejected: bool,
}

/// Change an agent's state on a channel at the CTI (as a supervisor or the phone would).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ForceState {
    pub agent_id: String,
    pub endpoint: String,
    pub state: AgentState,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason_code: Option<String>,
}

/// Log an agent out at the CTI, outside the desktop.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ForceLogout {
    pub agent_id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason_code: Option<String>,
}

/// Add a channel to a place (the agents of the place hear `channelgroup.channel.added`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AddChannel {
    pub place: String,
    pub endpoint: String,
    #[serde(rename = "type")]
    pub media: ChannelType,
}

/// Remove a channel nobody holds from a place.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RemoveChannel {
    pub place: String,
    pub endpoint: String,
}

/// A customer contacts the centre: a call, a chat or an email joins the queue and is
/// routed to a ready agent holding a channel of its media (the one waiting longest).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Offer {
    /// TELEPHONY, CHAT or EMAIL.
    #[serde(rename = "type")]
    pub media: ChannelType,
    /// Attached data, shown to the agent (for example `caller`, `accountId`).
    #[serde(default)]
    pub data: Body,
    /// Telephony: the caller's number (a generated one when absent).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub from: Option<String>,
    /// Route only to this agent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub agent_id: Option<String>,
}

/// The offered interaction's CTI name, the name the agent's interaction will have.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Offered {
    pub name: String,
}

/// The customer leaves: the external party of the interaction's call hangs up, or the
/// chat or email is closed by the customer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Hangup {
    pub interaction: String,
}

/// Generate traffic: new calls, chats and emails per second (0 stops each).
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct Traffic {
    #[serde(default)]
    pub calls: f64,
    #[serde(default)]
    pub chats: f64,
    #[serde(default)]
    pub emails: f64,
}

impl Traffic {
    /// No generated traffic.
    pub fn none() -> Self {
        Self {
            calls: 0.0,
            chats: 0.0,
            emails: 0.0,
        }
    }
}

/// Ask for every interaction at the CTI and the queue.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct GetInteractions {}

/// Every interaction at the CTI that is not COMPLETED, and the queue.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Interactions {
    pub interactions: Vec<AgentInteraction>,
    /// Offered interactions waiting for an agent, oldest first.
    pub queued: Vec<String>,
}

/// One agent's interaction, and what the far ends of its legs heard.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AgentInteraction {
    pub agent_id: String,
    #[serde(flatten)]
    pub interaction: InteractionSnapshot,
    /// DTMF digits sent on each leg, by leg name.
    #[serde(default, skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    pub digits: std::collections::BTreeMap<String, String>,
}

/// Ask for the lab's state.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct GetStatus {}

/// The lab's state.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SimStatus {
    pub link: LinkEvent,
    pub delay_ms: u64,
    pub agents: usize,
    pub logged_in: usize,
    /// The traffic being generated.
    pub traffic: Traffic,
    /// Interactions offered, waiting in the queue, live at agents, completed, and given up
    /// by the customer before an agent took them.
    pub offered: u64,
    pub queued: usize,
    pub live: usize,
    pub completed: u64,
    pub abandoned: u64,
}

// Each operation: its name (the subject's last token) and reply.
pb_protocol::calls!(Callee::Simulator => {
    SetLink = "link" -> CtiReply<LinkEvent>;
    LoseEvents = "loseevents" -> CtiReply<Done>;
    SetDelay = "delay" -> CtiReply<Done>;
    RejectAgent = "reject" -> CtiReply<Done>;
    ForceState = "setstate" -> CtiReply<Done>;
    ForceLogout = "logout" -> CtiReply<Done>;
    AddChannel = "addchannel" -> CtiReply<Done>;
    RemoveChannel = "removechannel" -> CtiReply<Done>;
    Offer = "offer" -> CtiReply<Offered>;
    Hangup = "hangup" -> CtiReply<Done>;
    Traffic = "traffic" -> CtiReply<Done>;
    GetInteractions = "interactions" -> CtiReply<Interactions>;
    GetStatus = "status" -> CtiReply<SimStatus>;
});

//! The command line: the arguments of every command, as clap reads them, and the
//! conversions of their values into the protocol's.

use std::path::PathBuf;

use anyhow::Context;
use clap::{Parser, Subcommand};
use pb_protocol::channel::ChannelType;
use pb_protocol::conversation::{ConversationCommand, Destination, Dtmf};
use serde::de::DeserializeOwned;

/// Play the Processor Bridge against a running system.
#[derive(Debug, Parser)]
#[command(name = "pb-bridge", version, about)]
pub struct Cli {
    /// NATS server to use.
    #[arg(
        long,
        env = "NATS_URL",
        default_value = "nats://127.0.0.1:4222",
        global = true
    )]
    pub nats_url: String,
    /// Subject prefix of the deployment.
    #[arg(long, env = "PB_SUBJECT_PREFIX", default_value = "pb", global = true)]
    pub prefix: String,
    /// Processor name: commands named `cti.*` go to `<processor>.CONTROL`.
    #[arg(long, env = "PB_PROCESSOR", default_value = "PB1", global = true)]
    pub processor: String,
    /// How long to wait for a response, in milliseconds.
    #[arg(long, default_value_t = 10_000, global = true)]
    pub timeout_ms: u64,
    /// Play a real Processor Bridge: listen on this address (for example
    /// `127.0.0.1:9100`) for the gateway (`pb-gateway`, `PB_BRIDGE_ADDR`), run the control
    /// initialisation when it connects, and send every command over that TCP link instead
    /// of NATS (`sim` commands still use NATS). Empty: NATS (to override the variable).
    #[arg(long, env = "PB_BRIDGE_LISTEN", global = true, value_name = "ADDR")]
    pub tcp_listen: Option<String>,
    /// With --tcp-listen: how long to wait for the gateway to connect, in milliseconds.
    #[arg(long, default_value_t = 30_000, global = true)]
    pub wait_ms: u64,
    /// With --tcp-listen: the byte order of the frames' length field.
    #[arg(long, value_enum, default_value = "big", global = true)]
    pub byte_order: ByteOrderArg,
    /// With --tcp-listen: serve TLS with this certificate (PEM; needs --tls-key).
    #[arg(long, global = true, requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,
    /// With --tcp-listen: the key of --tls-cert (PEM).
    #[arg(long, global = true, requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,
    /// With --tls-cert: accept only gateways with a client certificate this CA signed.
    #[arg(long, global = true, requires = "tls_cert")]
    pub tls_client_ca: Option<PathBuf>,
    #[command(subcommand)]
    pub command: Command,
}

/// The byte order of the TCP link's length field.
#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum ByteOrderArg {
    Big,
    Little,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Send one query or request by name and print the response.
    Send {
        /// Message name, for example `cti.query.capabilities` or `channel.request.ready`.
        name: String,
        /// Destination target; defaults to `<processor>.CONTROL` for `cti.*` names.
        #[arg(long)]
        target: Option<String>,
        /// Body as a JSON object.
        #[arg(long, default_value = "{}")]
        body: String,
        /// requestId to use (a fresh UUID by default); repeat one to test retries.
        #[arg(long)]
        request_id: Option<String>,
        /// Print the raw response envelope only.
        #[arg(long)]
        json: bool,
    },
    /// Print events (`P.evt.>`) as they arrive.
    Watch {
        /// Stop after this many events.
        #[arg(long)]
        count: Option<usize>,
        /// Stop after this many milliseconds.
        #[arg(long)]
        for_ms: Option<u64>,
    },
    /// Run the control initialisation: server status (and its event), then capabilities.
    Init,
    /// Log an agent in through the whole chain: session, channel group, every channel
    /// initialised, activated and ready.
    Login {
        /// The agent id (the simulator's agents are 1001 upward).
        agent_id: String,
        /// Its password (the simulator's is `pw-<id>`).
        #[arg(long)]
        password: Option<String>,
        /// The session target (default `s-<agent>`).
        #[arg(long)]
        session: Option<String>,
    },
    /// Set an agent's state on a channel: `ready`, or `notready` with an optional reason.
    State {
        /// The channel target, for example `s-1001.g1.c1`.
        target: String,
        /// `ready` or `notready`.
        state: AgentStateArg,
        #[arg(long)]
        reason: Option<String>,
    },
    /// Log a session's agent out at the CTI, then dispose its channels, group and session
    /// (those created by `login`: `<session>.g1.c1` upward).
    Logout {
        /// The session target, for example `s-1001`.
        session: String,
    },
    /// Log many agents in at once and report logins per second and latencies.
    Storm {
        /// How many agents.
        #[arg(long, default_value_t = 1000)]
        agents: usize,
        /// How many logins in flight at once.
        #[arg(long, default_value_t = 64)]
        concurrency: usize,
        /// The first agent id.
        #[arg(long, default_value_t = 1001)]
        first: u64,
        /// Leave the agents logged in (by default they are logged out afterwards, untimed).
        #[arg(long)]
        keep: bool,
    },
    /// Handle an interaction (a call, a chat, an email) one request at a time.
    ///
    /// Its target is `<channel target>.<id>`, for example `s-1001.g1.c1.call-7`, as
    /// `interaction take` prints it.
    #[command(subcommand, visible_alias = "ix")]
    Interaction(InteractionVerb),
    /// Act on a conversation (a leg of a call) one request at a time.
    ///
    /// Its target is `<interaction target>.<id>`, as `interaction take` prints it.
    #[command(subcommand, visible_alias = "conv")]
    Conversation(ConversationVerb),
    /// An automatic agent desk: log agents in and handle every interaction that reaches them.
    ///
    /// Each interaction is taken, answered (or accepted), talked through, released, given a
    /// disposition, completed and disposed, concurrently. After --for-s (or Ctrl-C) the
    /// agents are made not ready, what is in hand is finished, the agents are logged out,
    /// and a table of rates, handling times and latencies is printed.
    Desk {
        /// How many agents (sessions `desk-<id>`).
        #[arg(long, default_value_t = 10)]
        agents: usize,
        /// The first agent id.
        #[arg(long, default_value_t = 1001)]
        first: u64,
        /// How long each interaction is talked through, in milliseconds.
        #[arg(long, default_value_t = 2000)]
        talk_ms: u64,
        /// The disposition set on each interaction before it is completed.
        #[arg(long, default_value = "resolved")]
        disposition: String,
        /// Stop after this many seconds (counted once the agents are logged in).
        #[arg(long)]
        for_s: Option<u64>,
    },
    /// Drive the simulated CTI (fault injection and changes made at the CTI).
    #[command(subcommand)]
    Sim(SimCommand),
}

/// Requests to an interaction: `<channel target>.<id>`.
#[derive(Debug, Subcommand)]
pub enum InteractionVerb {
    /// Take an interaction a channel announced (`channel.interaction.added`): create its
    /// destination, read it, and create a destination for each of its conversations.
    Take {
        /// The channel target, for example `s-1001.g1.c1`.
        channel: String,
        /// The interaction's CTI name, as the event (or `sim offer`) gave it.
        name: String,
        /// The interaction's id, the last segment of its target (default: its name).
        #[arg(long)]
        id: Option<String>,
    },
    /// Place a call from a telephony channel, then take it.
    Dial {
        /// The channel target, for example `s-1001.g1.c1`.
        channel: String,
        /// A number, another channel's endpoint or another agent's id.
        destination: String,
        /// The interaction's id (default: its CTI name).
        #[arg(long)]
        id: Option<String>,
    },
    /// Accept an alerting interaction (a call: answer its primary conversation).
    Accept { target: String },
    /// Give an alerting interaction back to its queue.
    Reject { target: String },
    /// Call: hold the primary party and dial `destination`; then take the consult leg.
    Consult { target: String, destination: String },
    /// Call: connect the primary party to the consulted one and leave.
    Transfer { target: String },
    /// Call: join the consulted party to the primary call.
    Conference { target: String },
    /// Call: swap between the primary and the consulted party.
    Alternate { target: String },
    /// Complete an ended interaction (a chat or an email also when started).
    Complete {
        target: String,
        /// Set `{"disposition": X}` on it first.
        #[arg(long)]
        disposition: Option<String>,
    },
    /// Dispose of the interaction's destination.
    Dispose { target: String },
}

/// Requests to a conversation: `<interaction target>.<id>`.
#[derive(Debug, Subcommand)]
pub enum ConversationVerb {
    /// Answer an alerting leg.
    Answer { target: String },
    /// Put the far end on hold.
    Hold { target: String },
    /// Take the far end off hold.
    Retrieve { target: String },
    /// Hang the leg up.
    Release { target: String },
    /// Send DTMF digits (`0-9`, `*`, `#`, `A-D`).
    Dtmf { target: String, digits: String },
    /// Transfer the far end to `destination` without consulting.
    BlindTransfer { target: String, destination: String },
    /// Add `destination` to the call without consulting.
    BlindConference { target: String, destination: String },
    /// Dispose of the conversation's destination.
    Dispose { target: String },
}

impl ConversationVerb {
    /// The request it sends, and to which target.
    pub(crate) fn request(self) -> (String, ConversationCommand) {
        use ConversationCommand as C;
        let blind = |destination| Destination { destination };
        match self {
            Self::Answer { target } => (target, C::Answer),
            Self::Hold { target } => (target, C::Hold),
            Self::Retrieve { target } => (target, C::Retrieve),
            Self::Release { target } => (target, C::Release),
            Self::Dtmf { target, digits } => (target, C::SendDtmf(Dtmf { digits })),
            Self::BlindTransfer {
                target,
                destination,
            } => (target, C::BlindTransfer(blind(destination))),
            Self::BlindConference {
                target,
                destination,
            } => (target, C::BlindConference(blind(destination))),
            Self::Dispose { target } => (target, C::Dispose),
        }
    }
}

/// The media `sim offer` offers.
#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum MediaArg {
    Telephony,
    Chat,
    Email,
}

impl From<MediaArg> for ChannelType {
    fn from(media: MediaArg) -> Self {
        match media {
            MediaArg::Telephony => ChannelType::Telephony,
            MediaArg::Chat => ChannelType::Chat,
            MediaArg::Email => ChannelType::Email,
        }
    }
}

/// The states `pb-bridge state` sets.
#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum AgentStateArg {
    Ready,
    Notready,
}

#[derive(Debug, Subcommand)]
pub enum SimCommand {
    /// Drop the CTI link.
    LinkDown {
        #[arg(long)]
        reason: Option<String>,
        /// The switch keeps working behind the dropped link: changes at the CTI still
        /// happen, their events are lost (the client must re-synchronise when it is back).
        #[arg(long)]
        switch_runs: bool,
    },
    /// Restore the CTI link.
    LinkUp,
    /// Lose every event the CTI raises, the link up (messages lost on the way); with
    /// --off, stop losing them.
    LoseEvents {
        #[arg(long)]
        off: bool,
    },
    /// Make every CTI call take this many milliseconds (0 for none).
    Delay { ms: u64 },
    /// Make the CTI refuse an agent.
    Reject { agent_id: String },
    /// Make the CTI accept a refused agent again.
    Accept { agent_id: String },
    /// Change an agent's state on a channel at the CTI (as a supervisor or the phone would).
    SetState {
        agent_id: String,
        endpoint: String,
        state: AgentStateArg,
        #[arg(long)]
        reason: Option<String>,
    },
    /// Log an agent out at the CTI, outside the desktop.
    Logout {
        agent_id: String,
        #[arg(long)]
        reason: Option<String>,
    },
    /// Add a channel to a place.
    AddChannel {
        place: String,
        endpoint: String,
        /// TELEPHONY, EMAIL, CHAT, CALLBACK or UNSUPPORTED.
        #[arg(value_parser = parse_channel_type)]
        media: pb_protocol::channel::ChannelType,
    },
    /// Remove a channel nobody holds from a place.
    RemoveChannel { place: String, endpoint: String },
    /// A customer contacts the centre: a call, chat or email joins the queue and goes to a
    /// ready agent holding a channel of its media. Prints its CTI name.
    Offer {
        /// TELEPHONY, CHAT or EMAIL.
        #[arg(long = "type", value_name = "TYPE", value_enum, ignore_case = true)]
        media: MediaArg,
        /// Attached data, a JSON object (for example `{"caller":"Ann"}`).
        #[arg(long, default_value = "{}")]
        data: String,
        /// A call's caller number (a generated one by default).
        #[arg(long)]
        from: Option<String>,
        /// Route it only to this agent.
        #[arg(long)]
        agent: Option<String>,
    },
    /// The customer leaves: the caller hangs up, or the chat or email is closed.
    Hangup {
        /// The interaction's CTI name.
        interaction: String,
    },
    /// Generate traffic: new calls, chats and emails per second (0 stops each).
    Traffic {
        #[arg(long, default_value_t = 0.0)]
        calls: f64,
        #[arg(long, default_value_t = 0.0)]
        chats: f64,
        #[arg(long, default_value_t = 0.0)]
        emails: f64,
    },
    /// List the interactions at the CTI and the queue.
    Interactions,
    /// Show the lab's state.
    Status,
}

fn parse_channel_type(text: &str) -> Result<pb_protocol::channel::ChannelType, String> {
    serde_json::from_value(serde_json::json!(text.to_ascii_uppercase())).map_err(|_| {
        format!("`{text}` is not one of TELEPHONY, EMAIL, CHAT, CALLBACK, UNSUPPORTED")
    })
}

/// `text`, given with `flag`, read as `what`.
pub(crate) fn parse_json<T: DeserializeOwned>(
    flag: &str,
    what: &str,
    text: &str,
) -> anyhow::Result<T> {
    serde_json::from_str(text).with_context(|| format!("{flag} is not {what}: {text}"))
}

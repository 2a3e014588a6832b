//! The bridge emulator: plays the Processor Bridge against a running system. It sends any
//! query or request by name with a JSON body, watches events, runs the control
//! initialisation, logs agents in, handles interactions and conversations one request at a
//! time or as an automatic desk, and drives the simulated CTI.

pub mod desk;
pub mod flow;
pub mod interaction;
pub mod link;
pub mod probe;
pub mod report;
pub mod storm;

use std::io::Write;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use async_nats::Client;
use clap::{Parser, Subcommand};
use pb_protocol::channel::{ChannelCommand, ChannelType};
use pb_protocol::conversation::{ConversationCommand, Destination, Dtmf};
use pb_protocol::interaction::InteractionCommand;
use pb_protocol::session::ReasonCode;
use pb_protocol::{CommandMessage, Kind, Outcome, Response, Subjects, Target};
use pb_sim_admin::{self as admin, AdminOp};
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::{Value, json};

use crate::flow::FlowError;
use crate::interaction::{Leg, StepError, Taken, id_of, set_disposition};

/// `println!` that returns an error instead of panicking (a closed pipe, for example).
macro_rules! say {
    ($($arg:tt)*) => {
        writeln!(std::io::stdout().lock(), $($arg)*)
    };
}

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
    pub tls_cert: Option<std::path::PathBuf>,
    /// With --tcp-listen: the key of --tls-cert (PEM).
    #[arg(long, global = true, requires = "tls_cert")]
    pub tls_key: Option<std::path::PathBuf>,
    /// With --tls-cert: accept only gateways with a client certificate this CA signed.
    #[arg(long, global = true, requires = "tls_cert")]
    pub tls_client_ca: Option<std::path::PathBuf>,
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
    /// Print the NATS server authorization block (one user per process, each allowed only
    /// its subjects) of production, as `deploy/base/nats/auth.conf` holds it.
    NatsAuth {
        /// The lab's instead (docker-compose, the local overlay, the tests: with the
        /// simulated CTI), as `deploy/overlays/local/nats/auth.conf` holds it.
        #[arg(long)]
        lab: bool,
    },
    /// Exit 0 if `url` answers HTTP 200 (container health checks: no curl in the image).
    Probe { url: String },
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
    fn request(self) -> (String, ConversationCommand) {
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
    serde_json::from_value(json!(text.to_ascii_uppercase())).map_err(|_| {
        format!("`{text}` is not one of TELEPHONY, EMAIL, CHAT, CALLBACK, UNSUPPORTED")
    })
}

/// Run the CLI; the exit code is 1 when the system answered FAILURE.
pub async fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    let subjects = Subjects::new(cli.prefix.clone())?;
    // Commands that need no NATS.
    match &cli.command {
        Command::NatsAuth { lab } => {
            use pb_runtime::permissions::{Deployment, auth_conf};
            let deployment = if *lab {
                Deployment::Lab
            } else {
                Deployment::Production
            };
            say!("{}", auth_conf(&subjects, deployment).trim_end())?;
            return Ok(ExitCode::SUCCESS);
        }
        Command::Probe { url } => {
            return Ok(probe::probe(url, Duration::from_millis(cli.timeout_ms)).await);
        }
        _ => {}
    }
    let bridge = Emulator {
        subjects,
        control: Target::control(&cli.processor)?,
        timeout: Duration::from_millis(cli.timeout_ms),
        nats: tokio::sync::OnceCell::new(),
        link: tokio::sync::OnceCell::new(),
        cli_nats_url: cli.nats_url.clone(),
        tcp: match cli.tcp_listen.as_deref().map(str::trim) {
            Some(addr) if !addr.is_empty() => Some(tcp_settings(&cli, addr)?),
            _ => None,
        },
    };
    match cli.command {
        Command::Send {
            name,
            target,
            body,
            request_id,
            json,
        } => {
            let body: Value = parse_json("--body", "JSON", &body)?;
            let target = bridge.target_for(&name, target)?;
            let request_id = request_id.unwrap_or_else(|| uuid::Uuid::new_v4().to_string());
            // Connected (over TCP: the gateway too) before the clock starts.
            let driver = bridge.driver().await?;
            let started = Instant::now();
            let response = driver
                .send_with_id(&name, &target, body, &request_id)
                .await?;
            if json {
                say!("{}", String::from_utf8_lossy(&response.encode()))?;
            } else {
                print_exchange(&name, &target, &request_id, &response, started.elapsed())?;
            }
            Ok(exit_code(&response))
        }
        Command::Watch { count, for_ms } => {
            bridge
                .watch(count, for_ms.map(Duration::from_millis))
                .await?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Init => bridge.init().await,
        Command::Login {
            agent_id,
            password,
            session,
        } => {
            let password = password.unwrap_or_else(|| format!("pw-{agent_id}"));
            let session = session.unwrap_or_else(|| format!("s-{agent_id}"));
            let logged = bridge
                .driver()
                .await?
                .login(&agent_id, &password, &session)
                .await?;
            say!(
                "agent {} logged in: session {}, channel group {}",
                logged.agent_id,
                logged.session,
                logged.group
            )?;
            for channel in &logged.channels {
                say!(
                    "  {:<24} {:<14} {:<11} ACTIVE READY",
                    channel.target,
                    channel.endpoint,
                    channel.media.as_str()
                )?;
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::State {
            target,
            state,
            reason,
        } => {
            let request = match state {
                AgentStateArg::Ready => ChannelCommand::Ready,
                AgentStateArg::Notready => ChannelCommand::NotReady(ReasonCode {
                    reason_code: reason,
                }),
            };
            bridge.exchanges([(target, request.into())]).await
        }
        Command::Logout { session } => {
            let disposed = bridge.driver().await?.logout_session(&session).await?;
            say!(
                "session {session} logged out; disposed: {}",
                disposed.join(", ")
            )?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Storm {
            agents,
            concurrency,
            first,
            keep,
        } => bridge.storm(agents, concurrency, first, keep).await,
        Command::Interaction(verb) => bridge.interaction(verb).await,
        Command::Conversation(verb) => {
            let (target, request) = verb.request();
            bridge.exchanges([(target, request.into())]).await
        }
        Command::Desk {
            agents,
            first,
            talk_ms,
            disposition,
            for_s,
        } => {
            let config = desk::DeskConfig {
                first,
                agents,
                talk: Duration::from_millis(talk_ms),
                disposition,
                run_for: for_s.map(Duration::from_secs),
                progress: true,
            };
            bridge.desk(&config).await
        }
        Command::NatsAuth { .. } | Command::Probe { .. } => Ok(ExitCode::SUCCESS), // answered above
        Command::Sim(command) => {
            let reply = match command {
                SimCommand::LinkDown {
                    reason,
                    switch_runs,
                } => {
                    bridge
                        .admin(&admin::SetLink {
                            up: false,
                            reason,
                            switch_runs,
                        })
                        .await?
                }
                SimCommand::LinkUp => {
                    bridge
                        .admin(&admin::SetLink {
                            up: true,
                            reason: None,
                            switch_runs: false,
                        })
                        .await?
                }
                SimCommand::LoseEvents { off } => {
                    bridge.admin(&admin::LoseEvents { lose: !off }).await?
                }
                SimCommand::Delay { ms } => bridge.admin(&admin::SetDelay { ms }).await?,
                SimCommand::Reject { agent_id } => {
                    bridge
                        .admin(&admin::RejectAgent {
                            agent_id,
                            rejected: true,
                        })
                        .await?
                }
                SimCommand::Accept { agent_id } => {
                    bridge
                        .admin(&admin::RejectAgent {
                            agent_id,
                            rejected: false,
                        })
                        .await?
                }
                SimCommand::SetState {
                    agent_id,
                    endpoint,
                    state,
                    reason,
                } => {
                    let state = match state {
                        AgentStateArg::Ready => pb_protocol::channel::AgentState::Ready,
                        AgentStateArg::Notready => pb_protocol::channel::AgentState::NotReady,
                    };
                    let op = admin::ForceState {
                        agent_id,
                        endpoint,
                        state,
                        reason_code: reason,
                    };
                    bridge.admin(&op).await?
                }
                SimCommand::Logout { agent_id, reason } => {
                    let op = admin::ForceLogout {
                        agent_id,
                        reason_code: reason,
                    };
                    bridge.admin(&op).await?
                }
                SimCommand::AddChannel {
                    place,
                    endpoint,
                    media,
                } => {
                    let op = admin::AddChannel {
                        place,
                        endpoint,
                        media,
                    };
                    bridge.admin(&op).await?
                }
                SimCommand::RemoveChannel { place, endpoint } => {
                    bridge
                        .admin(&admin::RemoveChannel { place, endpoint })
                        .await?
                }
                SimCommand::Offer {
                    media,
                    data,
                    from,
                    agent,
                } => {
                    let op = admin::Offer {
                        media: media.into(),
                        data: parse_json("--data", "a JSON object", &data)?,
                        from,
                        agent_id: agent,
                    };
                    bridge.admin(&op).await?
                }
                SimCommand::Hangup { interaction } => {
                    bridge.admin(&admin::Hangup { interaction }).await?
                }
                SimCommand::Traffic {
                    calls,
                    chats,
                    emails,
                } => {
                    let op = admin::Traffic {
                        calls,
                        chats,
                        emails,
                    };
                    bridge.admin(&op).await?
                }
                SimCommand::Interactions => bridge.admin(&admin::GetInteractions {}).await?,
                SimCommand::Status => bridge.admin(&admin::GetStatus {}).await?,
            };
            say!("{}", serde_json::to_string_pretty(&reply)?)?;
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// `text`, given with `flag`, read as `what`.
fn parse_json<T: DeserializeOwned>(flag: &str, what: &str, text: &str) -> anyhow::Result<T> {
    serde_json::from_str(text).with_context(|| format!("{flag} is not {what}: {text}"))
}

/// How the protocol writes an enumeration's value (`ALERTING`, `primary`).
fn wire<T: Serialize>(value: &T) -> String {
    match serde_json::to_value(value) {
        Ok(Value::String(s)) => s,
        Ok(other) => other.to_string(),
        Err(e) => e.to_string(),
    }
}

/// How a command made of several steps ended: shown on success; on FAILURE (or when the
/// system did not follow up), the reason and exit code 1; when it could not talk to the
/// system at all, an error (exit code 2).
fn conclude<T>(
    result: Result<T, StepError>,
    show: impl FnOnce(&T) -> std::io::Result<()>,
) -> anyhow::Result<ExitCode> {
    match result {
        Ok(value) => {
            show(&value)?;
            Ok(ExitCode::SUCCESS)
        }
        Err(StepError::Flow(
            e @ (FlowError::Timeout { .. } | FlowError::Transport { .. } | FlowError::Watch { .. }),
        )) => Err(e.into()),
        Err(e) => {
            say!("FAILURE: {e}")?;
            Ok(ExitCode::FAILURE)
        }
    }
}

fn print_taken(taken: &Taken) -> std::io::Result<()> {
    say!(
        "interaction {} (CTI {}): {}",
        taken.target,
        taken.name,
        wire(&taken.init.state)
    )?;
    if !taken.init.data.is_empty() {
        say!("  data: {}", Value::Object(taken.init.data.clone()))?;
    }
    taken.conversations.iter().try_for_each(print_leg)
}

fn print_leg(leg: &Leg) -> std::io::Result<()> {
    say!(
        "  conversation {} (CTI {}): {} {}, remote {}",
        leg.target,
        leg.name,
        wire(&leg.init.role),
        wire(&leg.init.state),
        leg.init.remote
    )
}

/// A failed NATS request, worded once (async-nats nests the same text in its sources).
fn request_error(e: async_nats::RequestError, subject: &str, who: &str) -> anyhow::Error {
    match e.kind() {
        async_nats::RequestErrorKind::NoResponders => {
            anyhow::anyhow!("nobody answers {subject}: {who}")
        }
        _ => anyhow::anyhow!("request on {subject} failed: {e}"),
    }
}

fn exit_code(response: &Response) -> ExitCode {
    if response.outcome.is_success() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

fn print_exchange(
    name: &str,
    target: &str,
    request_id: &str,
    response: &Response,
    took: Duration,
) -> std::io::Result<()> {
    say!("-> {name}  {target}  (requestId {request_id})")?;
    match &response.outcome {
        Outcome::Success(body) => {
            say!("<- SUCCESS in {:.1} ms", took.as_secs_f64() * 1000.0)?;
            if !body.is_empty() {
                say!("{}", serde_json::to_string_pretty(body).unwrap_or_default())?;
            }
        }
        Outcome::Failure(why) => {
            say!("<- FAILURE in {:.1} ms: {why}", took.as_secs_f64() * 1000.0)?;
        }
    }
    Ok(())
}

/// The TCP listener to open instead of using NATS for commands.
struct TcpSettings {
    addr: String,
    options: link::TcpOptions,
    wait: Duration,
}

fn tcp_settings(cli: &Cli, addr: &str) -> anyhow::Result<TcpSettings> {
    let subjects = Subjects::new(cli.prefix.clone())?;
    let mut options = link::TcpOptions::new(subjects, Target::control(&cli.processor)?);
    options.byte_order = match cli.byte_order {
        ByteOrderArg::Big => pb_framing::ByteOrder::Big,
        ByteOrderArg::Little => pb_framing::ByteOrder::Little,
    };
    options.timeout = Duration::from_millis(cli.timeout_ms);
    if let (Some(cert), Some(key)) = (&cli.tls_cert, &cli.tls_key) {
        options.tls = Some(link::tls::server_config(
            cert,
            key,
            cli.tls_client_ca.as_deref(),
        )?);
    }
    Ok(TcpSettings {
        addr: addr.to_owned(),
        options,
        wait: Duration::from_millis(cli.wait_ms),
    })
}

struct Emulator {
    subjects: Subjects,
    control: Target,
    timeout: Duration,
    cli_nats_url: String,
    tcp: Option<TcpSettings>,
    /// Connected on first use: commands over TCP need none unless they drive the simulator.
    nats: tokio::sync::OnceCell<Client>,
    link: tokio::sync::OnceCell<link::Link>,
}

impl Emulator {
    /// The NATS connection, made on first use.
    async fn nats(&self) -> anyhow::Result<&Client> {
        self.nats
            .get_or_try_init(|| async {
                // Identity and TLS come from the same NATS_* variables the services read.
                let mut settings =
                    pb_runtime::config::NatsSettings::from_lookup(&|v| std::env::var(v).ok())?;
                settings.url = self.cli_nats_url.clone();
                let options = pb_runtime::connect::options(&settings, pb_runtime::permissions::BRIDGE)
                    .await
                    .map_err(anyhow::Error::msg)?
                    .connection_timeout(Duration::from_secs(3));
                options.connect(pb_runtime::connect::servers(&self.cli_nats_url).as_slice()).await.map_err(|e| {
                    anyhow::anyhow!(
                        "cannot reach NATS at {} ({e}): start the system with scripts/dev, or set NATS_URL",
                        self.cli_nats_url
                    )
                })
            })
            .await
    }

    /// How commands go: the TCP link once a gateway has connected and the control is
    /// initialised (with --tcp-listen), else NATS.
    async fn link(&self) -> anyhow::Result<&link::Link> {
        self.link
            .get_or_try_init(|| async {
                match &self.tcp {
                    None => Ok(link::Link::Nats(self.nats().await?.clone())),
                    Some(tcp) => {
                        let listener = link::TcpLink::listen(&tcp.addr, tcp.options.clone())
                            .await
                            .with_context(|| {
                                format!(
                                    "cannot listen on {} (another pb-bridge --tcp-listen may hold it)",
                                    tcp.addr
                                )
                            })?;
                        eprintln!(
                            "listening on {} as the Processor Bridge: waiting for the gateway...",
                            listener.local_addr()
                        );
                        listener.connected(tcp.wait).await?;
                        Ok(link::Link::Tcp(listener))
                    }
                }
            })
            .await
    }

    async fn driver(&self) -> anyhow::Result<flow::Driver> {
        Ok(flow::Driver::new(
            self.link().await?.clone(),
            self.subjects.clone(),
            self.control.clone(),
            self.timeout,
        ))
    }

    /// A driver for agents `first..first+agents` of the simulated CTI, once it has them and
    /// the control reports its status (which lets sessions be created).
    async fn driver_for_agents(&self, first: u64, agents: usize) -> anyhow::Result<flow::Driver> {
        if agents == 0 {
            bail!("no agents: give --agents 1 or more");
        }
        if first < 1001 {
            bail!("the simulated CTI's agents are 1001 upward: give --first 1001 or more");
        }
        let status = self.admin(&admin::GetStatus {}).await?;
        let available = status["agents"].as_u64().unwrap_or(0);
        let last = first.saturating_add(agents as u64 - 1);
        if last > 1000 + available {
            bail!(
                "the simulated CTI has agents 1001 to {}: start it with SIM_AGENTS={} or more",
                1000 + available,
                last - 1000
            );
        }
        let driver = self.driver().await?;
        driver
            .ok("cti.request.serverstatus", self.control.as_str(), json!({}))
            .await?;
        Ok(driver)
    }

    async fn storm(
        &self,
        agents: usize,
        concurrency: usize,
        first: u64,
        keep: bool,
    ) -> anyhow::Result<ExitCode> {
        let driver = self.driver_for_agents(first, agents).await?;
        eprintln!("logging {agents} agents in, {concurrency} at a time...");
        let (report, logged) = storm::storm(&driver, first, agents, concurrency, true).await;
        say!("{}", report.table())?;
        if !keep {
            eprintln!("logging them out again (not timed)...");
            for (agent, e) in driver.logout_all(&logged, concurrency).await {
                eprintln!("logout of {agent} failed: {e}");
            }
        }
        Ok(if report.failures == 0 {
            ExitCode::SUCCESS
        } else {
            ExitCode::FAILURE
        })
    }

    async fn desk(&self, config: &desk::DeskConfig) -> anyhow::Result<ExitCode> {
        let driver = self.driver_for_agents(config.first, config.agents).await?;
        // Listening for Ctrl-C from now on: the agents are logged out however the desk stops.
        let shutdown = pb_runtime::shutdown::Shutdown::on_signals();
        eprintln!(
            "desk: logging agents {} to {} in, then handling what reaches them (Ctrl-C stops)",
            config.first,
            config.first + config.agents as u64 - 1
        );
        let report = desk::run(&driver, config, shutdown).await?;
        say!("{}", report.table())?;
        Ok(if report.clean() {
            ExitCode::SUCCESS
        } else {
            ExitCode::FAILURE
        })
    }

    async fn interaction(&self, verb: InteractionVerb) -> anyhow::Result<ExitCode> {
        use InteractionCommand as C;
        let driver = self.driver().await?;
        match verb {
            InteractionVerb::Take { channel, name, id } => {
                let id = id.unwrap_or_else(|| id_of(&name));
                let taken = driver.take(&channel, &name, &id).await;
                conclude(taken.map_err(StepError::from), print_taken)
            }
            InteractionVerb::Dial {
                channel,
                destination,
                id,
            } => {
                let taken = driver.dial(&channel, &destination, id.as_deref()).await;
                conclude(taken.map_err(StepError::from), print_taken)
            }
            InteractionVerb::Consult {
                target,
                destination,
            } => conclude(driver.consult(&target, &destination).await, |leg| {
                say!("interaction {target}: consulting {destination}")?;
                print_leg(leg)
            }),
            InteractionVerb::Complete {
                target,
                disposition,
            } => {
                let data = disposition.map(|d| (target.clone(), set_disposition(&d).into()));
                let complete = (target, C::Complete.into());
                self.exchanges(data.into_iter().chain([complete])).await
            }
            InteractionVerb::Accept { target } => {
                self.exchanges([(target, C::Accept.into())]).await
            }
            InteractionVerb::Reject { target } => {
                self.exchanges([(target, C::Reject.into())]).await
            }
            InteractionVerb::Transfer { target } => {
                self.exchanges([(target, C::Transfer.into())]).await
            }
            InteractionVerb::Conference { target } => {
                self.exchanges([(target, C::Conference.into())]).await
            }
            InteractionVerb::Alternate { target } => {
                self.exchanges([(target, C::Alternate.into())]).await
            }
            InteractionVerb::Dispose { target } => {
                self.exchanges([(target, C::Dispose.into())]).await
            }
        }
    }

    /// Send each request in turn, printing each exchange; stop at the first FAILURE (exit
    /// code 1).
    async fn exchanges(
        &self,
        requests: impl IntoIterator<Item = (String, CommandMessage)>,
    ) -> anyhow::Result<ExitCode> {
        for (target, request) in requests {
            let id = uuid::Uuid::new_v4().to_string();
            let name = request.name();
            let body = Value::Object(request.to_body());
            let started = Instant::now();
            let response = self.send(name, &target, body, &id).await?;
            print_exchange(name, &target, &id, &response, started.elapsed())?;
            if !response.outcome.is_success() {
                return Ok(ExitCode::FAILURE);
            }
        }
        Ok(ExitCode::SUCCESS)
    }

    fn target_for(&self, name: &str, target: Option<String>) -> anyhow::Result<String> {
        match (target, Kind::of_name(name)) {
            (Some(t), _) => Ok(t),
            (None, Some(Kind::Control)) => Ok(self.control.as_str().to_owned()),
            (None, Some(kind)) => bail!(
                "`{name}` goes to a {} destination: give its --target",
                kind.describe()
            ),
            (None, None) => bail!(
                "`{name}` names no destination kind: names start with cti., session., \
                 channelgroup., channel., interaction. or conversation."
            ),
        }
    }

    /// Send a command as the bridge does and decode the response.
    async fn send(
        &self,
        name: &str,
        target: &str,
        body: Value,
        request_id: &str,
    ) -> anyhow::Result<Response> {
        Ok(self
            .driver()
            .await?
            .send_with_id(name, target, body, request_id)
            .await?)
    }

    async fn watch(&self, count: Option<usize>, duration: Option<Duration>) -> anyhow::Result<()> {
        let driver = self.driver().await?;
        let mut events = driver.events(self.subjects.all_events()).await?;
        eprintln!("watching {} (Ctrl-C to stop)", self.subjects.all_events());
        let started = Instant::now();
        let until = duration.map(|d| tokio::time::Instant::now() + d);
        let mut seen = 0;
        while count.is_none_or(|c| seen < c) {
            let next = match until {
                Some(t) => match tokio::time::timeout_at(t, events.next()).await {
                    Ok(next) => next,
                    Err(_) => break,
                },
                None => events.next().await,
            };
            let Some(message) = next else { break };
            let value: Value = serde_json::from_slice(&message.payload).unwrap_or(Value::Null);
            say!(
                "+{:>9.3}s  {:<32} {:<28} {}",
                started.elapsed().as_secs_f64(),
                value["header"]["name"].as_str().unwrap_or("?"),
                value["header"]["target"].as_str().unwrap_or("?"),
                value["body"]
            )?;
            seen += 1;
        }
        Ok(())
    }

    async fn init(&self) -> anyhow::Result<ExitCode> {
        let event_subject = self.subjects.event(Kind::Control, &self.control);
        let mut events = self.driver().await?.events(event_subject).await?;
        let target = self.control.as_str();
        let id = uuid::Uuid::new_v4().to_string();
        let started = Instant::now();
        let status = self
            .send("cti.request.serverstatus", target, json!({}), &id)
            .await?;
        print_exchange(
            "cti.request.serverstatus",
            target,
            &id,
            &status,
            started.elapsed(),
        )?;
        if !status.outcome.is_success() {
            return Ok(ExitCode::FAILURE);
        }
        let event = tokio::time::timeout(self.timeout, async {
            while let Some(message) = events.next().await {
                let value: Value = serde_json::from_slice(&message.payload).unwrap_or(Value::Null);
                if value["header"]["name"] == "cti.serverstatuschanged" {
                    return Some(value);
                }
            }
            None
        })
        .await
        .ok()
        .flatten()
        .context("the client answered but raised no cti.serverstatuschanged")?;
        say!(
            "<- event cti.serverstatuschanged: status {}",
            event["body"]["status"]
        )?;
        let id = uuid::Uuid::new_v4().to_string();
        let started = Instant::now();
        let caps = self
            .send("cti.query.capabilities", target, json!({}), &id)
            .await?;
        print_exchange(
            "cti.query.capabilities",
            target,
            &id,
            &caps,
            started.elapsed(),
        )?;
        Ok(exit_code(&caps))
    }

    async fn admin<A: AdminOp>(&self, op: &A) -> anyhow::Result<Value> {
        let reply = sim_admin(self.nats().await?, &self.subjects, self.timeout, op).await?;
        Ok(serde_json::to_value(reply)?)
    }
}

/// Call the simulated CTI's control panel (`P.sim.<op>`) within `timeout`: its reply, or
/// an error saying what to check.
pub async fn sim_admin<A: AdminOp>(
    client: &async_nats::Client,
    subjects: &Subjects,
    timeout: Duration,
    op: &A,
) -> anyhow::Result<A::Reply> {
    let subject = admin::subject(subjects, A::OP);
    let reply = tokio::time::timeout(
        timeout,
        client.request(subject.clone(), serde_json::to_vec(op)?.into()),
    )
    .await
    .with_context(|| format!("no answer on {subject} within {timeout:?}"))?
    .map_err(|e| request_error(e, &subject, "is pb-cti-sim running?"))?;
    let reply: pb_cti::CtiReply<A::Reply> = serde_json::from_slice(&reply.payload)?;
    match reply {
        pb_cti::CtiReply::Ok(value) => Ok(value),
        pb_cti::CtiReply::Error(e) => bail!("the simulator refused {}: {}", A::OP, e.message),
    }
}

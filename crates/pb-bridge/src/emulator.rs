//! The emulator's connection to the system and the one way it sends a command.

use std::io::Write;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use async_nats::Client;
use pb_protocol::{Kind, Response, Subjects, Target};
use pb_sim_admin::GetStatus;
use serde_json::{Value, json};

use crate::cli::{ByteOrderArg, Cli};
use crate::commands::sim::sim_admin;
use crate::print::print_exchange;
use crate::{flow, link};

/// The TCP listener to open instead of using NATS for commands.
struct TcpSettings {
    addr: String,
    options: link::TcpOptions,
    wait: Duration,
}

fn tcp_settings(
    cli: &Cli,
    addr: &str,
    subjects: &Subjects,
    control: &Target,
) -> anyhow::Result<TcpSettings> {
    let mut options = link::TcpOptions::new(subjects.clone(), control.clone());
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

/// How [`Emulator::exchange`] prints what it sent and got.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Show {
    /// The request, the outcome, its time and body, for a reader.
    Exchange,
    /// Only the raw response envelope, for a program.
    Envelope,
}

/// The bridge emulator's connection to the system: NATS, or a TCP link a gateway connects
/// to; each made on first use.
pub(crate) struct Emulator {
    pub(crate) subjects: Subjects,
    pub(crate) control: Target,
    pub(crate) timeout: Duration,
    cli_nats_url: String,
    tcp: Option<TcpSettings>,
    /// Connected on first use: commands over TCP need none unless they drive the simulator.
    nats: tokio::sync::OnceCell<Client>,
    link: tokio::sync::OnceCell<link::Link>,
}

impl Emulator {
    pub(crate) fn new(cli: &Cli) -> anyhow::Result<Self> {
        let subjects = Subjects::new(cli.prefix.clone())?;
        let control = Target::control(&cli.processor)?;
        let tcp = match cli.tcp_listen.as_deref().map(str::trim) {
            Some(addr) if !addr.is_empty() => Some(tcp_settings(cli, addr, &subjects, &control)?),
            _ => None,
        };
        Ok(Self {
            subjects,
            control,
            timeout: Duration::from_millis(cli.timeout_ms),
            nats: tokio::sync::OnceCell::new(),
            link: tokio::sync::OnceCell::new(),
            cli_nats_url: cli.nats_url.clone(),
            tcp,
        })
    }

    /// Send `name` to `target` as the bridge does (a fresh requestId unless one is given)
    /// and print it as `show` says: the one way a command is sent and shown.
    pub(crate) async fn exchange(
        &self,
        name: &str,
        target: &str,
        body: Value,
        request_id: Option<String>,
        show: Show,
    ) -> anyhow::Result<Response> {
        let id = request_id.unwrap_or_else(|| uuid::Uuid::new_v4().to_string());
        // Connected (over TCP: the gateway too) before the clock starts.
        let driver = self.driver().await?;
        let started = Instant::now();
        let response = driver.send_with_id(name, target, body, &id).await?;
        match show {
            Show::Exchange => print_exchange(name, target, &id, &response, started.elapsed())?,
            Show::Envelope => say!("{}", String::from_utf8_lossy(&response.encode()))?,
        }
        Ok(response)
    }

    /// The NATS connection, made on first use.
    pub(crate) async fn nats(&self) -> anyhow::Result<&Client> {
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

    pub(crate) async fn driver(&self) -> anyhow::Result<flow::Driver> {
        Ok(flow::Driver::new(
            self.link().await?.clone(),
            self.subjects.clone(),
            self.control.clone(),
            self.timeout,
        ))
    }

    /// A driver for agents `first..first+agents` of the simulated CTI, once it has them and
    /// the control reports its status (which lets sessions be created).
    pub(crate) async fn driver_for_agents(
        &self,
        first: u64,
        agents: usize,
    ) -> anyhow::Result<flow::Driver> {
        if agents == 0 {
            bail!("no agents: give --agents 1 or more");
        }
        if first < 1001 {
            bail!("the simulated CTI's agents are 1001 upward: give --first 1001 or more");
        }
        let status = sim_admin(
            self.nats().await?,
            &self.subjects,
            self.timeout,
            &GetStatus {},
        );
        let available = status.await?.agents as u64;
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

    pub(crate) fn target_for(&self, name: &str, target: Option<String>) -> anyhow::Result<String> {
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
}

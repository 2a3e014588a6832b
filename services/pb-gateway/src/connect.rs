//! Opening the link (contract §8.1): TCP to the bridge's address with keep-alive on, then
//! TLS when configured (the bridge's certificate verified against the configured CA or the
//! system's roots, an optional client certificate, an optional server name).

use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use pb_runtime::pem::{self, PemError};
use rustls_pki_types::ServerName;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;

use crate::config::{GatewayConfig, TlsSettings};

/// A byte stream to the bridge, plain or TLS.
pub trait Stream: AsyncRead + AsyncWrite + Send + Unpin {}
impl<T: AsyncRead + AsyncWrite + Send + Unpin> Stream for T {}

/// The link, as opened.
pub type Link = Pin<Box<dyn Stream>>;

/// Why TLS cannot be set up from the configuration (this does not heal by retrying).
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// The file named by variable `var` gave nothing usable.
    #[error("{var}: {source}")]
    Pem {
        var: &'static str,
        #[source]
        source: PemError,
    },
    #[error("the system has no usable root certificates: set PB_BRIDGE_TLS_CA")]
    NoRoots,
    #[error("`{0}` cannot be a TLS server name: set PB_BRIDGE_TLS_SERVER_NAME")]
    ServerName(String),
    #[error("TLS setup failed: {0}")]
    Rustls(#[from] rustls::Error),
}

/// Why one attempt to connect failed.
#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    #[error("cannot connect to the bridge at {addr}: {source}")]
    Tcp {
        addr: String,
        #[source]
        source: std::io::Error,
    },
    #[error("the TLS handshake with the bridge at {addr} failed: {source}")]
    Handshake {
        addr: String,
        #[source]
        source: std::io::Error,
    },
    #[error("no connection to the bridge at {addr} within {timeout:?}")]
    Timeout { addr: String, timeout: Duration },
}

impl ConnectError {
    /// What failed, as counted.
    pub fn reason(&self) -> crate::metrics::ConnectFailed {
        use crate::metrics::ConnectFailed;
        match self {
            Self::Tcp { .. } => ConnectFailed::tcp,
            Self::Handshake { .. } => ConnectFailed::tls,
            Self::Timeout { .. } => ConnectFailed::timeout,
        }
    }
}

/// How to open the link: built once from the configuration.
#[derive(Clone)]
pub(crate) struct Connector {
    addr: String,
    timeout: Duration,
    tls: Option<(TlsConnector, ServerName<'static>)>,
}

impl std::fmt::Debug for Connector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Connector")
            .field("addr", &self.addr)
            .field("tls", &self.tls.as_ref().map(|(_, name)| name))
            .finish()
    }
}

impl Connector {
    pub fn new(config: &GatewayConfig) -> Result<Self, TlsError> {
        let tls = match &config.tls {
            None => None,
            Some(settings) => {
                let name = settings
                    .server_name
                    .clone()
                    .unwrap_or_else(|| config.bridge_host.clone());
                let server =
                    ServerName::try_from(name.clone()).map_err(|_| TlsError::ServerName(name))?;
                Some((
                    TlsConnector::from(Arc::new(client_config(settings)?)),
                    server,
                ))
            }
        };
        Ok(Self {
            addr: config.bridge_addr.clone(),
            timeout: config.connect_timeout,
            tls,
        })
    }

    /// Where it connects.
    pub fn addr(&self) -> &str {
        &self.addr
    }

    /// Whether the link is TLS.
    pub fn tls(&self) -> bool {
        self.tls.is_some()
    }

    /// One attempt: TCP with keep-alive, then the TLS handshake if configured.
    pub async fn connect(&self) -> Result<Link, ConnectError> {
        let attempt = async {
            let tcp = TcpStream::connect(&self.addr)
                .await
                .map_err(|source| ConnectError::Tcp {
                    addr: self.addr.clone(),
                    source,
                })?;
            keep_alive(&tcp);
            let _ = tcp.set_nodelay(true);
            match &self.tls {
                None => Ok(Box::pin(tcp) as Link),
                Some((connector, name)) => connector
                    .connect(name.clone(), tcp)
                    .await
                    .map(|tls| Box::pin(tls) as Link)
                    .map_err(|source| ConnectError::Handshake {
                        addr: self.addr.clone(),
                        source,
                    }),
            }
        };
        tokio::time::timeout(self.timeout, attempt)
            .await
            .unwrap_or_else(|_| {
                Err(ConnectError::Timeout {
                    addr: self.addr.clone(),
                    timeout: self.timeout,
                })
            })
    }
}

/// TCP keep-alive: a bridge host that vanishes is noticed within about a minute even when
/// nothing is sent.
fn keep_alive(tcp: &TcpStream) {
    let settings = socket2::TcpKeepalive::new()
        .with_time(Duration::from_secs(30))
        .with_interval(Duration::from_secs(10))
        .with_retries(3);
    if let Err(e) = socket2::SockRef::from(tcp).set_tcp_keepalive(&settings) {
        tracing::warn!(error = %e, "cannot turn TCP keep-alive on");
    }
}

fn client_config(settings: &TlsSettings) -> Result<rustls::ClientConfig, TlsError> {
    let mut roots = rustls::RootCertStore::empty();
    match &settings.ca {
        Some(path) => {
            for cert in pem::certificates(path).map_err(pem_error("PB_BRIDGE_TLS_CA"))? {
                roots.add(cert)?;
            }
        }
        None => {
            let native = rustls_native_certs::load_native_certs();
            let (added, _) = roots.add_parsable_certificates(native.certs);
            if added == 0 {
                return Err(TlsError::NoRoots);
            }
        }
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_root_certificates(roots);
    Ok(match &settings.client {
        None => builder.with_no_client_auth(),
        Some((cert, key)) => {
            let chain = pem::certificates(cert).map_err(pem_error("PB_BRIDGE_TLS_CERT"))?;
            let key = pem::private_key(key).map_err(pem_error("PB_BRIDGE_TLS_KEY"))?;
            builder.with_client_auth_cert(chain, key)?
        }
    })
}

/// A PEM file's error, for the file variable `var` names.
fn pem_error(var: &'static str) -> impl Fn(PemError) -> TlsError {
    move |source| TlsError::Pem { var, source }
}

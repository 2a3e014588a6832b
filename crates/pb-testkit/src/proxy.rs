//! A TCP proxy between one process and a server, to cut that process off the network and
//! let it back: the network fault a replica meets when its node loses its link.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

/// Forwards connections from a loopback port to `upstream`; [`Proxy::cut`] drops every
/// connection and refuses new ones until [`Proxy::heal`]. Stops when dropped.
#[derive(Debug)]
pub struct Proxy {
    local: SocketAddr,
    cut: Arc<AtomicBool>,
    /// Bumped at each cut: every forwarding task of an older generation ends.
    generation: watch::Sender<u64>,
    accept: tokio::task::JoinHandle<()>,
}

impl Proxy {
    /// A proxy to `upstream` (`host:port`) on a free loopback port.
    pub async fn start(upstream: &str) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind the proxy");
        let local = listener.local_addr().expect("the proxy's address");
        let cut = Arc::new(AtomicBool::new(false));
        let (generation, _) = watch::channel(0u64);
        let accept = tokio::spawn(accept(
            listener,
            upstream.to_owned(),
            cut.clone(),
            generation.clone(),
        ));
        Self {
            local,
            cut,
            generation,
            accept,
        }
    }

    /// `host:port` to connect to instead of the upstream.
    pub fn addr(&self) -> String {
        self.local.to_string()
    }

    /// Drop every connection and refuse new ones.
    pub fn cut(&self) {
        self.cut.store(true, Ordering::SeqCst);
        self.generation.send_modify(|g| *g += 1);
    }

    /// Accept and forward connections again.
    pub fn heal(&self) {
        self.cut.store(false, Ordering::SeqCst);
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.accept.abort();
        self.cut();
    }
}

async fn accept(
    listener: TcpListener,
    upstream: String,
    cut: Arc<AtomicBool>,
    generation: watch::Sender<u64>,
) {
    while let Ok((mut client, _)) = listener.accept().await {
        if cut.load(Ordering::SeqCst) {
            drop(client); // refused: closed at once
            continue;
        }
        let upstream = upstream.clone();
        let mut ended = generation.subscribe();
        let born = *ended.borrow_and_update();
        tokio::spawn(async move {
            let Ok(mut server) = TcpStream::connect(&upstream).await else {
                return;
            };
            tokio::select! {
                _ = tokio::io::copy_bidirectional(&mut client, &mut server) => {}
                _ = ended.wait_for(|g| *g != born) => {}
            }
        });
    }
}

//! The operations port over a real TCP socket: several requests on one connection
//! (keep-alive), the metrics' format by the `Accept` header, the answers to other paths and
//! methods, and the port closing with its process.

use std::time::Duration;

use pb_testkit::NatsServer;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// One HTTP response as read off the socket.
#[derive(Debug)]
struct Answer {
    status: u16,
    headers: Vec<(String, String)>,
    body: String,
}

impl Answer {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// A client on one connection: each request is written, then its whole answer read (by its
/// `Content-Length`), leaving the connection ready for the next.
struct Connection {
    stream: TcpStream,
    buffered: Vec<u8>,
}

impl Connection {
    async fn open(addr: std::net::SocketAddr) -> Self {
        Self {
            stream: TcpStream::connect(addr).await.unwrap(),
            buffered: Vec::new(),
        }
    }

    async fn send(&mut self, method: &str, path: &str, headers: &[(&str, &str)]) -> Answer {
        let mut request = format!("{method} {path} HTTP/1.1\r\nHost: ops\r\n");
        for (name, value) in headers {
            request.push_str(&format!("{name}: {value}\r\n"));
        }
        request.push_str("\r\n");
        self.stream.write_all(request.as_bytes()).await.unwrap();
        let head = loop {
            if let Some(end) = self.buffered.windows(4).position(|w| w == b"\r\n\r\n") {
                let head = String::from_utf8(self.buffered[..end].to_vec()).unwrap();
                self.buffered.drain(..end + 4);
                break head;
            }
            self.fill().await;
        };
        let mut lines = head.lines();
        let status = lines
            .next()
            .unwrap()
            .split(' ')
            .nth(1)
            .unwrap()
            .parse()
            .unwrap();
        let headers: Vec<(String, String)> = lines
            .map(|l| {
                let (n, v) = l.split_once(':').unwrap();
                (n.to_owned(), v.trim().to_owned())
            })
            .collect();
        let mut answer = Answer {
            status,
            headers,
            body: String::new(),
        };
        let length: usize = if method == "HEAD" {
            0
        } else {
            answer.header("content-length").unwrap().parse().unwrap()
        };
        while self.buffered.len() < length {
            self.fill().await;
        }
        answer.body = String::from_utf8(self.buffered.drain(..length).collect()).unwrap();
        answer
    }

    async fn fill(&mut self) {
        let mut chunk = [0; 4096];
        let n = tokio::time::timeout(Duration::from_secs(5), self.stream.read(&mut chunk))
            .await
            .expect("an answer within 5 s")
            .unwrap();
        assert!(n > 0, "connection closed mid-answer");
        self.buffered.extend_from_slice(&chunk[..n]);
    }

    /// Whether the server closes the connection within `within`.
    async fn closed_within(&mut self, within: Duration) -> bool {
        let mut chunk = [0; 64];
        matches!(
            tokio::time::timeout(within, self.stream.read(&mut chunk)).await,
            Ok(Ok(0) | Err(_))
        )
    }
}

#[tokio::test]
async fn keep_alive_negotiation_and_refusals_on_one_connection() {
    let nats = NatsServer::start();
    let client = nats.client().await;
    let ops = pb_runtime::ops::start(
        &client,
        "127.0.0.1:0",
        "pb-test",
        "test-0",
        &Default::default(),
    )
    .await
    .unwrap();
    let mut connection = Connection::open(ops.addr).await;

    let alive = connection.send("GET", "/livez", &[]).await;
    assert_eq!((alive.status, alive.body.as_str()), (200, "alive\n"));
    assert_ne!(alive.header("connection"), Some("close"), "{alive:?}");

    // The Prometheus text by default, OpenMetrics when asked for, on the same connection.
    let text = connection.send("GET", "/metrics", &[]).await;
    assert_eq!(text.status, 200);
    assert_eq!(
        text.header("content-type"),
        Some("text/plain; version=0.0.4; charset=utf-8")
    );
    assert!(
        text.body
            .contains("# TYPE pb_nats_slow_consumer_total counter"),
        "{}",
        text.body
    );
    assert!(!text.body.contains("# EOF"), "{}", text.body);
    let prometheus_accept = "application/openmetrics-text;version=1.0.0,application/openmetrics-text;version=0.0.1;q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1";
    let open = connection
        .send("GET", "/metrics", &[("Accept", prometheus_accept)])
        .await;
    assert_eq!(open.status, 200);
    assert_eq!(
        open.header("content-type"),
        Some("application/openmetrics-text; version=1.0.0; charset=utf-8")
    );
    assert!(
        open.body.contains("# TYPE pb_nats_slow_consumer counter"),
        "{}",
        open.body
    );
    assert!(open.body.ends_with("# EOF\n"), "{}", open.body);
    let plain = connection
        .send("GET", "/metrics", &[("Accept", "text/plain;version=0.0.4")])
        .await;
    assert!(
        plain
            .header("content-type")
            .unwrap()
            .starts_with("text/plain")
    );

    // HEAD is GET without the body; the next answer on the connection is whole.
    let head = connection.send("HEAD", "/livez", &[]).await;
    assert_eq!((head.status, head.body.as_str()), (200, ""));
    let unknown = connection.send("GET", "/nothing", &[]).await;
    assert_eq!(unknown.status, 404);
    assert_eq!(unknown.body, "try /livez, /readyz or /metrics\n");
    let posted = connection.send("POST", "/metrics", &[]).await;
    assert_eq!(posted.status, 405);
    assert_eq!(posted.header("allow"), Some("GET, HEAD"));
    let ready = connection.send("GET", "/readyz", &[]).await;
    assert_eq!((ready.status, ready.body.as_str()), (200, "ready\n"));

    // Draining: alive, not ready.
    ops.draining();
    let draining = connection.send("GET", "/readyz", &[]).await;
    assert_eq!(
        (draining.status, draining.body.as_str()),
        (503, "not ready: draining\n")
    );
    assert_eq!(connection.send("GET", "/livez", &[]).await.status, 200);

    // The port closes with its process: the idle connection is closed, no new one opens.
    let addr = ops.addr;
    drop(ops);
    assert!(connection.closed_within(Duration::from_secs(2)).await);
    let refused = async {
        while TcpStream::connect(addr).await.is_ok() {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    };
    tokio::time::timeout(Duration::from_secs(2), refused)
        .await
        .expect("the port closed");
}

//! `pb-ops probe <url>`: a plain HTTP GET for container health checks, where the runtime
//! image has no curl. Exit 0 on status 200, 1 otherwise (the reason on standard error).

use std::process::ExitCode;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// GET `url` (`http://host:port/path`) and report whether it answered 200.
pub async fn probe(url: &str, timeout: Duration) -> ExitCode {
    match tokio::time::timeout(timeout, get_status(url)).await {
        Ok(Ok(200)) => ExitCode::SUCCESS,
        Ok(Ok(status)) => {
            eprintln!("{url} answered HTTP {status}");
            ExitCode::FAILURE
        }
        Ok(Err(e)) => {
            eprintln!("{url}: {e}");
            ExitCode::FAILURE
        }
        Err(_) => {
            eprintln!("{url} did not answer within {timeout:?}");
            ExitCode::FAILURE
        }
    }
}

async fn get_status(url: &str) -> Result<u16, String> {
    let rest = url
        .strip_prefix("http://")
        .ok_or("only http:// URLs are probed")?;
    let (authority, path) = rest
        .split_once('/')
        .map_or((rest, "/".to_owned()), |(a, p)| (a, format!("/{p}")));
    let mut stream = tokio::net::TcpStream::connect(authority)
        .await
        .map_err(|e| format!("cannot connect: {e}"))?;
    let request = format!("GET {path} HTTP/1.1\r\nHost: {authority}\r\nConnection: close\r\n\r\n");
    stream
        .write_all(request.as_bytes())
        .await
        .map_err(|e| e.to_string())?;
    let mut head = vec![0; 64];
    let n = stream.read(&mut head).await.map_err(|e| e.to_string())?;
    let line = String::from_utf8_lossy(&head[..n]);
    line.split_whitespace()
        .nth(1)
        .and_then(|code| code.parse().ok())
        .ok_or_else(|| format!("not an HTTP answer: {line:?}"))
}

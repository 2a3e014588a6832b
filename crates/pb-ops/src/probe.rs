//! `pb-ops probe <url>`: an HTTP GET (hyper's HTTP/1 client) for container health checks,
//! where the runtime image has no curl. Exit 0 on status 200, 1 otherwise (the reason on
//! standard error).

use std::process::ExitCode;
use std::time::Duration;

use hyper::Request;
use hyper::header::HOST;
use hyper_util::rt::TokioIo;

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
    let uri: hyper::Uri = url.parse().map_err(|e| format!("not a URL: {e}"))?;
    if uri.scheme_str() != Some("http") {
        return Err("only http:// URLs are probed".into());
    }
    let authority = uri.authority().ok_or("the URL names no host")?.clone();
    let port = authority.port_u16().unwrap_or(80);
    let host = authority
        .host()
        .trim_start_matches('[')
        .trim_end_matches(']');
    let stream = tokio::net::TcpStream::connect((host, port))
        .await
        .map_err(|e| format!("cannot connect: {e}"))?;
    let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(|e| format!("cannot speak HTTP: {e}"))?;
    tokio::spawn(connection);
    let path = uri.path_and_query().map_or("/", |p| p.as_str());
    let request = Request::get(path)
        .header(HOST, authority.as_str())
        .body(String::new())
        .map_err(|e| e.to_string())?;
    let response = sender
        .send_request(request)
        .await
        .map_err(|e| format!("not an HTTP answer: {e}"))?;
    Ok(response.status().as_u16())
}

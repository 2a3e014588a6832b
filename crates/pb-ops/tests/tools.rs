//! The tools as an operator runs them: the binary, real files, a real TCP socket.

use std::process::Output;

use pb_protocol::Subjects;
use pb_runtime::permissions::{Deployment, auth_conf};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

async fn pb_ops(args: &[&str]) -> Output {
    tokio::process::Command::new(env!("CARGO_BIN_EXE_pb-ops"))
        .args(args)
        .env_remove("PB_SUBJECT_PREFIX")
        .output()
        .await
        .expect("pb-ops runs")
}

#[tokio::test]
async fn nats_auth_prints_each_deployments_rendering() {
    // (The committed files are checked against the rendering by pb-runtime's tests.)
    for (args, deployment) in [
        (&["nats-auth"][..], Deployment::Production),
        (&["nats-auth", "--lab"][..], Deployment::Lab),
    ] {
        let out = pb_ops(args).await;
        assert!(out.status.success(), "{out:?}");
        let printed = String::from_utf8(out.stdout).unwrap();
        let rendered = auth_conf(&Subjects::default(), deployment);
        assert_eq!(printed.trim_end(), rendered.trim_end());
    }
    let prefixed = pb_ops(&["nats-auth", "--prefix", "acme"]).await;
    let rendered = auth_conf(&Subjects::new("acme").unwrap(), Deployment::Production);
    assert_eq!(
        String::from_utf8(prefixed.stdout).unwrap().trim_end(),
        rendered.trim_end()
    );
}

/// An HTTP server on a real socket answering every request with `status_line`.
async fn answering(status_line: &'static str) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            let mut request = vec![0; 1024];
            let _ = stream.read(&mut request).await;
            let answer = format!("{status_line}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
            let _ = stream.write_all(answer.as_bytes()).await;
        }
    });
    format!("http://{addr}/readyz")
}

#[tokio::test]
async fn probe_exits_0_on_200_and_1_with_the_reason_otherwise() {
    let ok = pb_ops(&["probe", &answering("HTTP/1.1 200 OK").await]).await;
    assert_eq!(ok.status.code(), Some(0), "{ok:?}");

    let unready = pb_ops(&[
        "probe",
        &answering("HTTP/1.1 503 Service Unavailable").await,
    ])
    .await;
    assert_eq!(unready.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&unready.stderr).contains("answered HTTP 503"));

    // Nobody listens: the port of a listener just closed.
    let closed = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/readyz", closed.local_addr().unwrap());
    drop(closed);
    let refused = pb_ops(&["probe", &url]).await;
    assert_eq!(refused.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&refused.stderr).contains("cannot connect"));

    let https = pb_ops(&["probe", "https://127.0.0.1:1/readyz"]).await;
    assert_eq!(https.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&https.stderr).contains("only http:// URLs"));
}

//! An OTLP/HTTP trace receiver with a subset of Jaeger's query API ([`pb_testkit::OtlpReceiver`]),
//! standing in for Jaeger in the container tests (its image cannot be pulled here). It
//! listens where Jaeger does: OTLP on 4318, queries on 16686, health on 13133
//! (`PB_OTLP_SINK_LISTEN`, comma-separated, overrides them).

use anyhow::Context;

#[tokio::main(flavor = "current_thread")]
async fn main() -> anyhow::Result<()> {
    let addresses = std::env::var("PB_OTLP_SINK_LISTEN")
        .unwrap_or_else(|_| "0.0.0.0:4318,0.0.0.0:16686,0.0.0.0:13133".to_owned());
    let mut listeners = Vec::new();
    for address in addresses.split(',') {
        let listener = tokio::net::TcpListener::bind(address)
            .await
            .with_context(|| format!("bind {address} (PB_OTLP_SINK_LISTEN)"))?;
        listeners.push(listener);
    }
    let _receiver = pb_testkit::OtlpReceiver::serve(listeners);
    eprintln!("pb-otlp-sink: listening on {addresses}");
    // SIGTERM (docker stop) or SIGINT ends it.
    pb_runtime::Shutdown::on_signals().requested().await;
    Ok(())
}

//! `pb-bench-echo`: the floor's far end. Answers every request on `bench.echo` with its own
//! payload, as a separate process, so the floor crosses the same process boundaries as a
//! command does. `NATS_URL` names the server.

use futures::StreamExt;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let url = std::env::var("NATS_URL").unwrap_or_else(|_| "nats://127.0.0.1:4222".into());
    let client = async_nats::connect(&url).await?;
    let mut requests = client.subscribe(pb_bench::ECHO_SUBJECT).await?;
    client.flush().await?;
    eprintln!("pb-bench-echo: service ready on {url}");
    while let Some(request) = requests.next().await {
        if let Some(reply) = request.reply {
            client.publish(reply, request.payload).await?;
        }
    }
    Ok(())
}

//! Faults of a key-value bucket that the NATS server can be made to show.

/// Make a key-value bucket's stream refuse every write (`full`: no room for a byte more)
/// or take writes again; reads work throughout.
pub async fn fill_bucket(client: &async_nats::Client, bucket: &str, full: bool) {
    let js = async_nats::jetstream::new(client.clone());
    let mut stream = js.get_stream(format!("KV_{bucket}")).await.unwrap();
    let info = stream.info().await.unwrap().clone();
    let mut config = info.config;
    config.discard = async_nats::jetstream::stream::DiscardPolicy::New;
    config.max_bytes = if full { info.state.bytes as i64 } else { -1 };
    js.update_stream(config).await.unwrap();
}

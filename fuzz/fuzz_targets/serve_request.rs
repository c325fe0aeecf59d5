//! serve's request path on arbitrary bytes: the input is written to an
//! in-memory connection served exactly as a TCP one (hyper's HTTP parsing,
//! routing, validation, the device registry); whatever comes back, serve
//! must not panic or hang.
#![no_main]

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use fleetstorm::server::{ServeConfig, Shared, serve_stream};
use libfuzzer_sys::fuzz_target;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

fn runtime() -> &'static tokio::runtime::Runtime {
    static RT: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    RT.get_or_init(|| tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap())
}

fn shared() -> Arc<Shared> {
    static SHARED: OnceLock<Arc<Shared>> = OnceLock::new();
    SHARED.get_or_init(|| Shared::new(ServeConfig { max_devices: 10_000, ..ServeConfig::default() })).clone()
}

fuzz_target!(|data: &[u8]| {
    // `POST /faults` injects latency and stalls on purpose: not a hang.
    if data.windows(7).any(|w| w.eq_ignore_ascii_case(b"/faults")) {
        return;
    }
    let data = data.to_vec();
    runtime().block_on(async move {
        let (mut client, server) = tokio::io::duplex(1 << 20);
        let served = tokio::spawn(serve_stream(shared(), server));
        let _ = client.write_all(&data).await;
        let _ = client.shutdown().await;
        let mut answer = Vec::new();
        let read = tokio::time::timeout(Duration::from_secs(5), client.read_to_end(&mut answer)).await;
        assert!(read.is_ok(), "serve did not answer or close within 5 s");
        drop(client);
        let _ = tokio::time::timeout(Duration::from_secs(5), served).await;
    });
});

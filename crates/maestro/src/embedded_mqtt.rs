//! The embedded MQTT 5 broker (rumqttd) for single-node setups:
//! `maestro server --broker mqtt --embedded-mqtt ADDR`. rumqttd runs on its own thread and has
//! no shutdown API, so it lives as long as the process.

use std::collections::HashMap;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::time::{Duration, Instant};

use rumqttd::{Broker, Config, ConnectionSettings, RouterConfig, ServerSettings};

/// An embedded broker failure.
#[derive(Debug, thiserror::Error)]
pub enum EmbeddedError {
    /// No free port could be reserved.
    #[error("cannot reserve a port on {addr}: {source}")]
    Port {
        /// The requested address.
        addr: SocketAddr,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// The broker did not accept connections in time.
    #[error("the embedded MQTT broker did not start listening on {0} within 10 s")]
    NotListening(SocketAddr),
}

fn config(listen: SocketAddr, max_payload_bytes: usize) -> Config {
    let connections = ConnectionSettings {
        connection_timeout_ms: 60_000,
        max_payload_size: max_payload_bytes,
        max_inflight_count: 200,
        auth: None,
        external_auth: None,
        dynamic_filters: true,
    };
    let server = ServerSettings {
        name: "maestro-v5".into(),
        listen,
        tls: None,
        next_connection_delay_ms: 1,
        connections,
    };
    Config {
        id: 0,
        router: RouterConfig {
            max_connections: 20_010,
            max_outgoing_packet_count: 1_000,
            max_segment_size: 100 * 1024 * 1024,
            max_segment_count: 10,
            custom_segment: None,
            initialized_filters: None,
            shared_subscriptions_strategy: Default::default(),
        },
        v5: Some(HashMap::from([("v5".to_owned(), server)])),
        ..Default::default()
    }
}

/// Starts rumqttd with an MQTT 5 listener on `addr` (port 0 picks a free port) accepting
/// packets up to `max_payload_bytes`, and waits until it accepts connections. Returns the
/// address it listens on.
///
/// # Errors
/// [`EmbeddedError`] when no port can be reserved or the broker does not come up.
pub fn start(addr: SocketAddr, max_payload_bytes: usize) -> Result<SocketAddr, EmbeddedError> {
    let listen = if addr.port() == 0 {
        let l = TcpListener::bind(addr).map_err(|source| EmbeddedError::Port { addr, source })?;
        l.local_addr().map_err(|source| EmbeddedError::Port { addr, source })?
    } else {
        addr
    };
    let cfg = config(listen, max_payload_bytes);
    std::thread::Builder::new()
        .name("rumqttd".into())
        .spawn(move || {
            if let Err(e) = Broker::new(cfg).start() {
                tracing::error!(error = %e, "embedded MQTT broker stopped");
            }
        })
        .map_err(|source| EmbeddedError::Port { addr, source })?;
    let probe =
        if listen.ip().is_unspecified() { SocketAddr::from(([127, 0, 0, 1], listen.port())) } else { listen };
    let start = Instant::now();
    while start.elapsed() < Duration::from_secs(10) {
        if TcpStream::connect_timeout(&probe, Duration::from_millis(200)).is_ok() {
            tracing::info!(%listen, "embedded MQTT broker listening");
            return Ok(probe);
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    Err(EmbeddedError::NotListening(listen))
}

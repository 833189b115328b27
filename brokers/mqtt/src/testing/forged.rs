//! Forged packets for framing attacks: a raw TCP session that logs in with a real CONNECT
//! ([`connect_raw`]) and then sends packets only a server may send ([`server_only_packets`]),
//! to show that a broker survives them. rumqttd 0.20 panics on some of them (a CONNACK, an
//! UNSUBACK with a body), which is why the embedded broker always runs behind the
//! [`crate::gate`] (docs/security.md, "MQTT").

use std::time::Duration;

use bytes::{Bytes, BytesMut};
use rumqttc::v5::mqttbytes::QoS;
use rumqttc::v5::mqttbytes::v5::{
    ConnAck, Connect, ConnectReturnCode, Login, Packet, PingResp, SubAck, SubscribeReasonCode, UnsubAck,
    UnsubAckReason,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// How long [`connect_raw`] waits for the CONNACK.
const CONNACK_TIMEOUT: Duration = Duration::from_secs(10);

fn encode(packet: &Packet) -> Bytes {
    let mut buf = BytesMut::new();
    // Small, well-formed packets into a growable buffer: writing cannot fail.
    let _ = packet.write(&mut buf, None);
    buf.freeze()
}

/// An encoded MQTT 5 CONNECT: clean start, 30 s keep alive, `client_id`, optional `login`
/// (user, password).
pub fn connect_packet(client_id: &str, login: Option<(&str, &str)>) -> Bytes {
    let connect =
        Connect { keep_alive: 30, client_id: client_id.to_owned(), clean_start: true, properties: None };
    encode(&Packet::Connect(connect, None, login.map(|(u, p)| Login::new(u, p))))
}

/// Packets only a server may send, each encoded as a whole packet and named for messages:
/// CONNACK, SUBACK, UNSUBACK with a body (two reason codes), PINGRESP, and AUTH (no enhanced
/// authentication is ever negotiated, so a client may not send it either).
pub fn server_only_packets() -> Vec<(&'static str, Bytes)> {
    let connack = ConnAck { session_present: false, code: ConnectReturnCode::Success, properties: None };
    let suback = SubAck {
        pkid: 1,
        return_codes: vec![SubscribeReasonCode::Success(QoS::AtLeastOnce)],
        properties: None,
    };
    let unsuback = UnsubAck {
        pkid: 1,
        reasons: vec![UnsubAckReason::Success, UnsubAckReason::NoSubscriptionExisted],
        properties: None,
    };
    vec![
        ("CONNACK", encode(&Packet::ConnAck(connack))),
        ("SUBACK", encode(&Packet::SubAck(suback))),
        ("UNSUBACK with a body", encode(&Packet::UnsubAck(unsuback))),
        ("PINGRESP", encode(&Packet::PingResp(PingResp))),
        // AUTH 0x18 (continue authentication), no properties: rumqttc does not export the
        // reason code type, so the bytes are written out.
        ("AUTH", Bytes::from_static(&[0xf0, 0x02, 0x18, 0x00])),
    ]
}

/// The packet named `name` in [`server_only_packets`].
///
/// # Panics
/// When no packet has that name.
pub fn server_only_packet(name: &str) -> Bytes {
    server_only_packets()
        .into_iter()
        .find(|(n, _)| *n == name)
        .map(|(_, bytes)| bytes)
        .unwrap_or_else(|| panic!("no server-only packet named {name:?}"))
}

/// Reads one whole packet: (first byte, body); `None` once the peer closed.
pub async fn read_packet(tcp: &mut TcpStream) -> Option<(u8, Vec<u8>)> {
    let first = tcp.read_u8().await.ok()?;
    let (mut len, mut shift) = (0usize, 0u32);
    loop {
        let b = tcp.read_u8().await.ok()?;
        len |= usize::from(b & 0x7f) << shift;
        if b & 0x80 == 0 {
            break;
        }
        shift += 7;
        if shift > 21 {
            return None;
        }
    }
    let mut body = vec![0; len];
    tcp.read_exact(&mut body).await.ok()?;
    Some((first, body))
}

/// Opens a TCP connection to `addr` (`host:port`), sends [`connect_packet`] and waits (up to
/// 10 s) for a successful CONNACK.
///
/// # Errors
/// When the connection fails, closes, answers something else or refuses the login.
pub async fn connect_raw(
    addr: &str,
    client_id: &str,
    login: Option<(&str, &str)>,
) -> Result<TcpStream, String> {
    let mut tcp = TcpStream::connect(addr).await.map_err(|e| format!("connect to {addr}: {e}"))?;
    tcp.write_all(&connect_packet(client_id, login)).await.map_err(|e| format!("send CONNECT: {e}"))?;
    let answer = tokio::time::timeout(CONNACK_TIMEOUT, read_packet(&mut tcp))
        .await
        .map_err(|_| "no CONNACK within 10 s".to_owned())?;
    match answer {
        // CONNACK: flags, then the reason code.
        Some((0x20, body)) if body.get(1) == Some(&0) => Ok(tcp),
        Some((0x20, body)) => Err(format!("CONNACK refused: {body:?}")),
        Some((first, _)) => Err(format!("expected a CONNACK, got packet 0x{first:02x}")),
        None => Err("closed before the CONNACK".into()),
    }
}

/// Reads until the peer closes `tcp` (up to `timeout`) and returns every packet it sent before:
/// (first byte, body).
///
/// # Errors
/// When the connection is still open after `timeout`.
pub async fn read_until_closed(tcp: &mut TcpStream, timeout: Duration) -> Result<Vec<(u8, Vec<u8>)>, String> {
    let mut packets = Vec::new();
    let closed = tokio::time::timeout(timeout, async {
        while let Some(p) = read_packet(tcp).await {
            packets.push(p);
        }
    })
    .await;
    match closed {
        Ok(()) => Ok(packets),
        Err(_) => Err(format!("the connection is still open after {timeout:?}; got {packets:?}")),
    }
}

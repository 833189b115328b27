//! One client connection through the gate: the CONNECT handshake (authentication unless in
//! anonymous mode, will topic, credential rewrite), then two pumps. Client → broker: every
//! packet is framed; PUBLISH topics and SUBSCRIBE filters are checked against the ACL, refused
//! ones are answered by the gate (PUBACK/PUBREC 0x87, SUBACK 0x87) and never reach the broker;
//! packets a client may not send close the connection; the rest is forwarded byte for byte.
//! Broker → client: forwarded byte for byte, cut at packet boundaries so the gate's own
//! answers never land inside a broker packet.

use std::net::SocketAddr;
use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use rumqttc::v5::mqttbytes::v5::{
    ConnAck, Connect, ConnectReturnCode, Disconnect, DisconnectReasonCode, LastWill, Login, Packet, PubAck,
    PubAckReason, PubRec, PubRecReason, SubAck, SubscribeReasonCode,
};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::sync::mpsc;

use super::acl::Access;
use super::frame::{self, Header};
use super::{GateConfig, SessionError};

/// Packets queued towards the client (the broker's and the gate's answers).
const WRITE_QUEUE: usize = 64;
/// How long the gate's last answer (e.g. a DISCONNECT) may take to reach the client.
const FLUSH_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(2);
/// Read buffer growth step.
const READ_CHUNK: usize = 16 * 1024;
/// Largest CONNECT accepted: an unauthenticated client cannot make the gate buffer more.
const CONNECT_MAX_BYTES: usize = 64 * 1024;

/// An authenticated client.
struct Client {
    user: String,
    peer: SocketAddr,
}

/// What to do with one client packet.
enum Verdict {
    /// Forward it to the broker.
    Forward,
    /// Answer the client with this packet instead (refused).
    Answer(Bytes),
    /// Drop it silently (a refused QoS 0 PUBLISH: there is nothing to answer).
    Drop,
    /// Answer the client with this packet and close (protocol violation).
    Close(Bytes),
}

fn encode(packet: &Packet) -> Bytes {
    let mut buf = BytesMut::with_capacity(packet.size());
    // Writing one of the gate's small, well-formed packets into a growable buffer cannot fail.
    let _ = packet.write(&mut buf, None);
    buf.freeze()
}

fn connack(code: ConnectReturnCode) -> Bytes {
    encode(&Packet::ConnAck(ConnAck { session_present: false, code, properties: None }))
}

fn disconnect(reason_code: DisconnectReasonCode) -> Bytes {
    encode(&Packet::Disconnect(Disconnect { reason_code, properties: None }))
}

/// Reads until `buf` holds a complete packet and splits it off.
async fn read_packet<R: AsyncRead + Unpin>(
    stream: &mut R,
    buf: &mut BytesMut,
    max: usize,
) -> Result<(Header, BytesMut), SessionError> {
    loop {
        if let Some(found) = frame::next(buf, max)? {
            return Ok(found);
        }
        buf.reserve(READ_CHUNK);
        if stream.read_buf(buf).await? == 0 {
            return Err(SessionError::Closed);
        }
    }
}

/// Serves one accepted connection until either side closes.
pub(crate) async fn run(
    mut client: TcpStream,
    peer: SocketAddr,
    gate: Arc<GateConfig>,
) -> Result<(), SessionError> {
    let _ = client.set_nodelay(true);
    let mut buf = BytesMut::with_capacity(READ_CHUNK);
    let connect = tokio::time::timeout(
        gate.connect_timeout,
        read_packet(&mut client, &mut buf, CONNECT_MAX_BYTES.min(gate.max_packet_bytes)),
    )
    .await
    .map_err(|_| SessionError::ConnectTimeout)??;
    let (who, upstream_connect) = match handshake(connect, peer, &gate) {
        Ok(ok) => ok,
        Err((answer, error)) => {
            let _ = client.write_all(&answer).await;
            let _ = client.shutdown().await;
            return Err(error);
        }
    };
    let mut upstream = tokio::time::timeout(gate.connect_timeout, TcpStream::connect(gate.upstream))
        .await
        .map_err(|_| SessionError::ConnectTimeout)??;
    let _ = upstream.set_nodelay(true);
    upstream.write_all(&upstream_connect).await?;
    let anonymous = gate.users.is_none();
    tracing::debug!(user = %who.user, %peer, anonymous, "MQTT client admitted by the gate");
    pump(client, upstream, buf, who, gate).await
}

type Refusal = (Bytes, SessionError);

/// Checks the CONNECT: user name and password (not in anonymous mode), no enhanced
/// authentication, a will topic the user may publish to. Returns the CONNECT to send upstream
/// (the gate's own credentials; with a password file, the client id prefixed with `<user>:`
/// so no client can take over another user's session).
fn handshake(
    (header, frame): (Header, BytesMut),
    peer: SocketAddr,
    gate: &GateConfig,
) -> Result<(Client, Bytes), Refusal> {
    if header.kind != frame::CONNECT {
        return Err((
            disconnect(DisconnectReasonCode::ProtocolError),
            SessionError::Protocol(format!("the first packet is of type {}, not CONNECT", header.kind)),
        ));
    }
    let (mut connect, will, login) = read_connect(frame, gate)?;
    if connect.properties.as_ref().is_some_and(|p| p.authentication_method.is_some()) {
        let refusal =
            SessionError::Refused { peer, user: String::new(), why: "enhanced authentication".into() };
        return Err((connack(ConnectReturnCode::BadAuthenticationMethod), refusal));
    }
    let user = authenticate(login.as_ref(), peer, gate)?;
    if let Some(w) = &will {
        let topic = String::from_utf8_lossy(&w.topic);
        if !gate.acl.allows(&user, Access::Publish, &topic) {
            let refusal =
                SessionError::Refused { peer, user, why: format!("will topic {topic:?} not allowed") };
            return Err((connack(ConnectReturnCode::NotAuthorized), refusal));
        }
    }
    if gate.users.is_some() {
        connect.client_id = format!("{user}:{}", connect.client_id);
    }
    let login = Some(Login::new(gate.upstream_login.user.clone(), gate.upstream_login.password.clone()));
    Ok((Client { user, peer }, encode(&Packet::Connect(connect, will, login))))
}

/// Decodes the CONNECT `frame` (size-limited by `max_packet_bytes`).
fn read_connect(
    mut frame: BytesMut,
    gate: &GateConfig,
) -> Result<(Connect, Option<LastWill>, Option<Login>), Refusal> {
    let max = u32::try_from(gate.max_packet_bytes).unwrap_or(u32::MAX);
    match Packet::read(&mut frame, Some(max)) {
        Ok(Packet::Connect(c, w, l)) => Ok((c, w, l)),
        Ok(_) => Err((
            disconnect(DisconnectReasonCode::ProtocolError),
            SessionError::Protocol("not a CONNECT".into()),
        )),
        Err(e) => {
            Err((connack(ConnectReturnCode::UnsupportedProtocolVersion), SessionError::UnreadableConnect(e)))
        }
    }
}

/// The user a CONNECT logs in as. With a password file: its user name, once the password is
/// verified (else CONNACK 0x86). In anonymous mode: the user name it gives, unverified (empty
/// without one).
fn authenticate(login: Option<&Login>, peer: SocketAddr, gate: &GateConfig) -> Result<String, Refusal> {
    let given = login.map(|l| l.username.clone()).unwrap_or_default();
    match (&gate.users, login) {
        (None, _) => Ok(given),
        (Some(users), Some(l)) if users.verify(&l.username, l.password.as_bytes()) => Ok(given),
        (Some(_), _) => {
            let refusal =
                SessionError::Refused { peer, user: given, why: "bad user name or password".into() };
            Err((connack(ConnectReturnCode::BadUserNamePassword), refusal))
        }
    }
}

/// Runs the two pumps and the client writer until one side ends; then lets the writer flush
/// what was queued (a refusal or the broker's DISCONNECT) for a moment.
async fn pump(
    client: TcpStream,
    upstream: TcpStream,
    leftover: BytesMut,
    who: Client,
    gate: Arc<GateConfig>,
) -> Result<(), SessionError> {
    let (client_rd, client_wr) = client.into_split();
    let (up_rd, up_wr) = upstream.into_split();
    let (tx, rx) = mpsc::channel::<Bytes>(WRITE_QUEUE);
    let writer = tokio::spawn(write_loop(rx, client_wr));
    let result = tokio::select! {
        r = inbound(client_rd, leftover, up_wr, tx.clone(), &who, &gate) => r,
        r = outbound(up_rd, tx) => r,
    };
    let mut writer = writer;
    if tokio::time::timeout(FLUSH_TIMEOUT, &mut writer).await.is_err() {
        writer.abort();
    }
    result
}

/// Client → broker: checks and forwards.
async fn inbound(
    mut client: OwnedReadHalf,
    mut buf: BytesMut,
    mut upstream: OwnedWriteHalf,
    tx: mpsc::Sender<Bytes>,
    who: &Client,
    gate: &GateConfig,
) -> Result<(), SessionError> {
    let mut out = BytesMut::new();
    loop {
        while let Some((header, packet)) = frame::next(&mut buf, gate.max_packet_bytes)? {
            match verdict(&header, &packet, who, gate)? {
                Verdict::Forward => out.extend_from_slice(&packet),
                Verdict::Drop => {}
                Verdict::Answer(answer) => tx.send(answer).await.map_err(|_| SessionError::Closed)?,
                Verdict::Close(answer) => {
                    upstream.write_all(&out).await?;
                    let _ = tx.send(answer).await;
                    return Err(SessionError::Protocol(format!(
                        "packet type {} from the client",
                        header.kind
                    )));
                }
            }
        }
        if !out.is_empty() {
            upstream.write_all(&out).await?;
            // Released, not cleared: an idle connection keeps no buffer.
            out = BytesMut::new();
        }
        if read_when_ready(&mut client, &mut buf).await? == 0 {
            return Ok(());
        }
    }
}

/// Reads what `stream` has into `buf`, taking memory only once data is there: an empty `buf`
/// is released first, so an idle connection holds no read buffer (an agent's connection is
/// idle nearly all the time; 10,000 agents with a 16 KiB buffer each in both directions would
/// hold 320 MiB). Returns the bytes read, 0 at the end of the stream.
///
/// # Errors
/// The socket's read error.
async fn read_when_ready(stream: &mut OwnedReadHalf, buf: &mut BytesMut) -> std::io::Result<usize> {
    if buf.is_empty() {
        *buf = BytesMut::new();
    }
    stream.readable().await?;
    buf.reserve(READ_CHUNK);
    stream.read_buf(buf).await
}

/// Broker → client: forwards whole packets.
async fn outbound(mut upstream: OwnedReadHalf, tx: mpsc::Sender<Bytes>) -> Result<(), SessionError> {
    let mut buf = BytesMut::new();
    loop {
        if read_when_ready(&mut upstream, &mut buf).await? == 0 {
            return Ok(());
        }
        let complete = frame::complete_prefix(&buf)?;
        if complete > 0 {
            tx.send(buf.split_to(complete).freeze()).await.map_err(|_| SessionError::Closed)?;
        }
    }
}

async fn write_loop(mut rx: mpsc::Receiver<Bytes>, mut client: OwnedWriteHalf) {
    while let Some(bytes) = rx.recv().await {
        if client.write_all(&bytes).await.is_err() {
            return;
        }
    }
    let _ = client.shutdown().await;
}

/// The ACL decision for one client packet.
fn verdict(header: &Header, packet: &[u8], who: &Client, gate: &GateConfig) -> Result<Verdict, SessionError> {
    match header.kind {
        frame::PUBLISH => publish_verdict(header, packet, who, gate),
        frame::SUBSCRIBE => subscribe_verdict(packet, who, gate),
        frame::PUBACK
        | frame::PUBREC
        | frame::PUBREL
        | frame::PUBCOMP
        | frame::UNSUBSCRIBE
        | frame::PINGREQ
        | frame::DISCONNECT => Ok(Verdict::Forward),
        // A second CONNECT, AUTH (no enhanced authentication was negotiated), server-only
        // packets and the reserved type.
        _ => Ok(Verdict::Close(disconnect(DisconnectReasonCode::ProtocolError))),
    }
}

fn publish_verdict(
    header: &Header,
    packet: &[u8],
    who: &Client,
    gate: &GateConfig,
) -> Result<Verdict, SessionError> {
    let head = frame::publish_head(header, packet)?;
    // An empty topic name means "the topic of this topic alias". The broker only learns an
    // alias from a PUBLISH that also names the topic, and such PUBLISHes are checked here (a
    // refused one never reaches it), so an alias always stands for an allowed topic.
    if head.topic.is_empty() || gate.acl.allows(&who.user, Access::Publish, head.topic) {
        return Ok(Verdict::Forward);
    }
    tracing::warn!(user = %who.user, peer = %who.peer, topic = head.topic, qos = head.qos,
        "MQTT publish refused by the topic ACL");
    Ok(match (head.qos, head.pkid) {
        (1, Some(pkid)) => Verdict::Answer(encode(&Packet::PubAck(PubAck {
            pkid,
            reason: PubAckReason::NotAuthorized,
            properties: None,
        }))),
        (2, Some(pkid)) => Verdict::Answer(encode(&Packet::PubRec(PubRec {
            pkid,
            reason: PubRecReason::NotAuthorized,
            properties: None,
        }))),
        _ => Verdict::Drop,
    })
}

/// A SUBSCRIBE with any filter outside the grant is refused as a whole: 0x87 for those
/// filters, 0x80 (unspecified) for the others, which were not subscribed either.
fn subscribe_verdict(packet: &[u8], who: &Client, gate: &GateConfig) -> Result<Verdict, SessionError> {
    let subscribe = match Packet::read(&mut BytesMut::from(packet), None) {
        Ok(Packet::Subscribe(s)) => s,
        _ => return Ok(Verdict::Close(disconnect(DisconnectReasonCode::MalformedPacket))),
    };
    let allowed: Vec<bool> =
        subscribe.filters.iter().map(|f| gate.acl.allows(&who.user, Access::Subscribe, &f.path)).collect();
    if allowed.iter().all(|a| *a) {
        return Ok(Verdict::Forward);
    }
    let refused: Vec<&str> =
        subscribe.filters.iter().zip(&allowed).filter(|(_, a)| !**a).map(|(f, _)| f.path.as_str()).collect();
    tracing::warn!(user = %who.user, peer = %who.peer, filters = ?refused, "MQTT subscription refused by the topic ACL");
    let return_codes = allowed
        .iter()
        .map(|a| if *a { SubscribeReasonCode::Unspecified } else { SubscribeReasonCode::NotAuthorized })
        .collect();
    Ok(Verdict::Answer(encode(&Packet::SubAck(SubAck {
        pkid: subscribe.pkid,
        return_codes,
        properties: None,
    }))))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::panic)]

    use std::time::Duration;

    use super::*;
    use crate::gate::passwd::hash_password;
    use crate::gate::{Acl, Credentials, PasswordFile};

    fn gate(users: Option<PasswordFile>, acl: Acl) -> GateConfig {
        GateConfig {
            upstream: SocketAddr::from(([127, 0, 0, 1], 1)),
            upstream_login: Credentials { user: "gate".into(), password: "gate-pw".into() },
            users,
            acl,
            max_packet_bytes: 1 << 20,
            connect_timeout: Duration::from_secs(1),
        }
    }

    /// Runs the handshake on a CONNECT of `client_id` with `login`; returns the upstream
    /// CONNECT's client id and login, or the refusal's first answer byte.
    fn shake(gate: &GateConfig, client_id: &str, login: Option<(&str, &str)>) -> Result<(String, Login), u8> {
        let connect =
            Connect { keep_alive: 30, client_id: client_id.into(), clean_start: true, properties: None };
        let mut buf = BytesMut::from(
            &encode(&Packet::Connect(connect, None, login.map(|(u, p)| Login::new(u, p))))[..],
        );
        let framed = frame::next(&mut buf, 1 << 20).unwrap().unwrap();
        let peer = SocketAddr::from(([127, 0, 0, 1], 2));
        match handshake(framed, peer, gate) {
            Ok((_, upstream)) => match Packet::read(&mut BytesMut::from(&upstream[..]), None) {
                Ok(Packet::Connect(c, _, Some(l))) => Ok((c.client_id, l)),
                other => panic!("upstream CONNECT: {other:?}"),
            },
            Err((answer, _)) => Err(answer[0]),
        }
    }

    #[test]
    fn anonymous_mode_admits_anyone_and_keeps_the_client_id() {
        let gate = gate(None, Acl::allow_all());
        for login in [None, Some(("cluster-a", "anything")), Some(("", ""))] {
            let (client_id, upstream_login) = shake(&gate, "agent-1", login).unwrap();
            assert_eq!(client_id, "agent-1");
            assert_eq!(upstream_login, Login::new("gate", "gate-pw"));
        }
    }

    #[test]
    fn with_a_password_file_logins_are_checked_and_client_ids_scoped() {
        let file = format!("cluster-a:{}\n", hash_password("a-pw").unwrap());
        let gate = gate(Some(PasswordFile::parse(&file).unwrap()), Acl::maestro("maestro"));
        let (client_id, upstream_login) = shake(&gate, "agent-1", Some(("cluster-a", "a-pw"))).unwrap();
        assert_eq!(client_id, "cluster-a:agent-1");
        assert_eq!(upstream_login, Login::new("gate", "gate-pw"));
        // CONNACK refusals.
        assert_eq!(shake(&gate, "agent-1", Some(("cluster-a", "wrong"))), Err(0x20));
        assert_eq!(shake(&gate, "agent-1", None), Err(0x20));
    }
}

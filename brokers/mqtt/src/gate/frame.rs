//! MQTT 5 framing for the gate: the fixed header (MQTT 5 §2.1) of every packet, and the topic
//! and packet id of a PUBLISH (§3.3.2). Everything else is forwarded as raw bytes; CONNECT and
//! SUBSCRIBE, which are rare, are decoded with rumqttc's codec.
//!
//! Public so that the property tests and fuzz targets can feed it arbitrary bytes (it reads
//! what unauthenticated clients send); not an API for other crates.

use bytes::BytesMut;

/// CONNECT.
pub const CONNECT: u8 = 1;
/// PUBLISH.
pub const PUBLISH: u8 = 3;
/// PUBACK.
pub const PUBACK: u8 = 4;
/// PUBREC.
pub const PUBREC: u8 = 5;
/// PUBREL.
pub const PUBREL: u8 = 6;
/// PUBCOMP.
pub const PUBCOMP: u8 = 7;
/// SUBSCRIBE.
pub const SUBSCRIBE: u8 = 8;
/// UNSUBSCRIBE.
pub const UNSUBSCRIBE: u8 = 10;
/// PINGREQ.
pub const PINGREQ: u8 = 12;
/// DISCONNECT.
pub const DISCONNECT: u8 = 14;

/// A byte stream that is not MQTT, or a packet over the size limit.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FrameError {
    /// The remaining length takes more than 4 bytes.
    #[error("malformed remaining length")]
    Length,
    /// The packet is larger than allowed.
    #[error("a packet of {size} bytes exceeds the limit of {max} bytes")]
    TooLarge {
        /// The packet size.
        size: usize,
        /// The limit.
        max: usize,
    },
    /// A PUBLISH whose variable header cannot be read.
    #[error("malformed PUBLISH: {0}")]
    Publish(&'static str),
}

/// The fixed header of one packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header {
    /// The packet type (high nibble of the first byte).
    pub kind: u8,
    /// The flags (low nibble of the first byte).
    pub flags: u8,
    /// Bytes of the fixed header (2 to 5).
    pub header_len: usize,
    /// Bytes of the whole packet.
    pub len: usize,
}

/// Reads the fixed header at the start of `buf`; `Ok(None)` while it is incomplete. The
/// packet itself may still be incomplete (`buf.len() < len`).
pub fn header(buf: &[u8], max: usize) -> Result<Option<Header>, FrameError> {
    let Some(&byte1) = buf.first() else { return Ok(None) };
    let mut remaining = 0usize;
    for i in 0..4 {
        let Some(&b) = buf.get(1 + i) else { return Ok(None) };
        remaining |= usize::from(b & 0x7f) << (7 * i);
        if b & 0x80 == 0 {
            let header_len = 2 + i;
            let len = header_len + remaining;
            if len > max {
                return Err(FrameError::TooLarge { size: len, max });
            }
            return Ok(Some(Header { kind: byte1 >> 4, flags: byte1 & 0x0f, header_len, len }));
        }
    }
    Err(FrameError::Length)
}

/// Splits the next complete packet off `buf`, with its header; `Ok(None)` until one is there.
pub fn next(buf: &mut BytesMut, max: usize) -> Result<Option<(Header, BytesMut)>, FrameError> {
    match header(buf, max)? {
        Some(h) if buf.len() >= h.len => Ok(Some((h, buf.split_to(h.len)))),
        _ => Ok(None),
    }
}

/// The number of leading bytes of `buf` that form complete packets (no size limit: used on
/// the trusted broker side).
pub fn complete_prefix(buf: &[u8]) -> Result<usize, FrameError> {
    let mut at = 0;
    while let Some(h) = header(&buf[at..], usize::MAX)? {
        if buf.len() - at < h.len {
            break;
        }
        at += h.len;
    }
    Ok(at)
}

/// What the gate needs of a PUBLISH.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PublishHead<'a> {
    /// The topic name (empty when a topic alias stands for it).
    pub topic: &'a str,
    /// 0, 1 or 2.
    pub qos: u8,
    /// The packet id (QoS 1 and 2).
    pub pkid: Option<u16>,
}

/// Reads the topic, QoS and packet id of the PUBLISH `frame`.
pub fn publish_head<'a>(h: &Header, frame: &'a [u8]) -> Result<PublishHead<'a>, FrameError> {
    let qos = (h.flags >> 1) & 0b11;
    if qos == 3 {
        return Err(FrameError::Publish("QoS 3"));
    }
    let body = frame.get(h.header_len..).ok_or(FrameError::Publish("truncated"))?;
    let len_bytes = body.get(..2).ok_or(FrameError::Publish("no topic length"))?;
    let topic_len = usize::from(u16::from_be_bytes([len_bytes[0], len_bytes[1]]));
    let topic = body.get(2..2 + topic_len).ok_or(FrameError::Publish("truncated topic"))?;
    let topic = std::str::from_utf8(topic).map_err(|_| FrameError::Publish("topic not UTF-8"))?;
    let pkid = if qos == 0 {
        None
    } else {
        let id = body.get(2 + topic_len..4 + topic_len).ok_or(FrameError::Publish("no packet id"))?;
        Some(u16::from_be_bytes([id[0], id[1]]))
    };
    Ok(PublishHead { topic, qos, pkid })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use rumqttc::v5::mqttbytes::QoS;
    use rumqttc::v5::mqttbytes::v5::{Packet, PingReq, Publish};

    fn encode(p: &Packet) -> BytesMut {
        let mut buf = BytesMut::new();
        p.write(&mut buf, None).unwrap();
        buf
    }

    #[test]
    fn frames_split_at_packet_boundaries() {
        let mut publish =
            Publish::new("sources/m/consumers/c/agentevents", QoS::AtLeastOnce, vec![7u8; 300], None);
        publish.pkid = 42;
        let mut stream = encode(&Packet::Publish(publish));
        let publish_len = stream.len();
        stream.extend_from_slice(&encode(&Packet::PingReq(PingReq)));
        // Byte by byte: no packet until it is complete.
        for cut in 0..publish_len {
            let mut part = BytesMut::from(&stream[..cut]);
            assert_eq!(next(&mut part, 1 << 20).unwrap(), None, "cut {cut}");
        }
        assert_eq!(complete_prefix(&stream[..publish_len + 1]).unwrap(), publish_len);
        assert_eq!(complete_prefix(&stream).unwrap(), stream.len());
        let (h, frame) = next(&mut stream, 1 << 20).unwrap().unwrap();
        assert_eq!((h.kind, h.header_len, h.len), (PUBLISH, 3, publish_len));
        let head = publish_head(&h, &frame).unwrap();
        assert_eq!(head, PublishHead { topic: "sources/m/consumers/c/agentevents", qos: 1, pkid: Some(42) });
        let (h, _) = next(&mut stream, 1 << 20).unwrap().unwrap();
        assert_eq!(h.kind, PINGREQ);
        assert!(stream.is_empty());
    }

    #[test]
    fn bad_streams_are_errors() {
        assert_eq!(header(&[0x30, 0xff, 0xff, 0xff, 0xff, 0x01], usize::MAX), Err(FrameError::Length));
        assert!(matches!(
            header(&[0x30, 0xff, 0x01], 100),
            Err(FrameError::TooLarge { size: 258, max: 100 })
        ));
        let h = Header { kind: PUBLISH, flags: 0b0110, header_len: 2, len: 2 };
        assert!(publish_head(&h, &[0x36, 0]).is_err());
        let h = Header { kind: PUBLISH, flags: 0b0010, header_len: 2, len: 6 };
        assert_eq!(publish_head(&h, &[0x32, 4, 0, 2, b'a']), Err(FrameError::Publish("truncated topic")));
        assert_eq!(publish_head(&h, &[0x32, 4, 0, 1, b'a', 0]), Err(FrameError::Publish("no packet id")));
        assert_eq!(
            publish_head(&h, &[0x32, 4, 0, 1, 0xff, 0, 1]),
            Err(FrameError::Publish("topic not UTF-8"))
        );
    }
}

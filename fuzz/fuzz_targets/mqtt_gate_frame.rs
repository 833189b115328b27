//! Raw bytes as a client sends them to the MQTT gate: its framing (`gate::frame`) must not
//! panic, and for every packet it forwards the broker behind it (rumqttd's MQTT 5 reader)
//! must read exactly the same frame (no packet smuggled past the ACL check), the same PUBLISH
//! topic and the same SUBSCRIBE filters as the rumqttc reader the gate checks them with.
#![no_main]

use bytes::BytesMut;
use libfuzzer_sys::fuzz_target;
use maestro_broker_mqtt::gate::frame;
use rumqttc::v5::mqttbytes::v5::Packet;
use rumqttd::protocol::Protocol;

const MAX: usize = 1 << 20;

/// The packet types the gate forwards after the CONNECT (`gate/session.rs`, `verdict`). It
/// closes the connection on any other, so rumqttd (which panics on a client's CONNACK or
/// UNSUBACK) never sees them.
const GATE_FORWARDS: [u8; 9] = [
    frame::PUBLISH,
    frame::SUBSCRIBE,
    frame::PUBACK,
    frame::PUBREC,
    frame::PUBREL,
    frame::PUBCOMP,
    frame::UNSUBSCRIBE,
    frame::PINGREQ,
    frame::DISCONNECT,
];

fuzz_target!(|data: &[u8]| {
    let _ = frame::complete_prefix(data);
    let mut buf = BytesMut::from(data);
    while let Ok(Some((h, packet))) = frame::next(&mut buf, MAX) {
        assert_eq!(packet.len(), h.len);
        if !GATE_FORWARDS.contains(&h.kind) {
            break;
        }
        let head = if h.kind == frame::PUBLISH {
            match frame::publish_head(&h, &packet) {
                Ok(head) => Some(head.topic.to_owned()),
                Err(_) => break,
            }
        } else {
            None
        };
        let filters = if h.kind == frame::SUBSCRIBE {
            match Packet::read(&mut packet.clone(), None) {
                Ok(Packet::Subscribe(s)) => Some(s.filters.into_iter().map(|f| f.path).collect::<Vec<_>>()),
                _ => break,
            }
        } else {
            None
        };
        let mut broker = packet.clone();
        let read = rumqttd::protocol::v5::V5.read_mut(&mut broker, MAX);
        match read {
            Err(rumqttd::protocol::Error::InsufficientBytes(n)) => {
                assert!(broker.is_empty(), "rumqttd needs {n} bytes past the gate's frame {:?}", &packet[..]);
            }
            Err(_) => break,
            Ok(p) => {
                assert!(broker.is_empty(), "rumqttd left part of the gate's frame {:?}", &packet[..]);
                match (p, head, filters) {
                    (rumqttd::protocol::Packet::Publish(p, _), Some(topic), _) if !topic.is_empty() => {
                        assert_eq!(topic.as_bytes(), p.topic.as_ref(), "PUBLISH topic");
                    }
                    (rumqttd::protocol::Packet::Subscribe(s, _), _, Some(gate)) => {
                        let broker: Vec<String> = s.filters.into_iter().map(|f| f.path).collect();
                        assert_eq!(gate, broker, "SUBSCRIBE filters");
                    }
                    _ => {}
                }
            }
        }
    }
});

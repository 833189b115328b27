//! Raw MQTT 5 bytes through the broker connection's receive path: rumqttc's packet reader,
//! then for each PUBLISH the binding message the connection builds, `mqtt::decode` and the
//! topic origin check.
#![no_main]

use bytes::BytesMut;
use libfuzzer_sys::fuzz_target;
use maestro_api::mqtt::{self, MqttMessage};
use maestro_broker_mqtt::topics;
use maestro_fuzz::exercise;
use rumqttc::v5::mqttbytes::v5::Packet;

fuzz_target!(|data: &[u8]| {
    let mut buf = BytesMut::from(data);
    for _ in 0..8 {
        let Ok(packet) = Packet::read(&mut buf, Some(1 << 20)) else { break };
        let Packet::Publish(p) = packet else { continue };
        let topic = String::from_utf8_lossy(&p.topic);
        let props = p.properties.clone().unwrap_or_default();
        let msg = MqttMessage {
            content_type: props.content_type,
            user_properties: props.user_properties,
            payload: p.payload.to_vec(),
        };
        let _ = topics::agent_topic(&topic);
        if let Ok(ev) = mqtt::decode(&msg) {
            let _ = topics::check_agent_origin(&topic, &ev);
            exercise(&ev);
        }
    }
});

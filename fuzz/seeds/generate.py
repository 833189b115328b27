#!/usr/bin/env python3
"""Writes the seed inputs of the byte-level fuzz targets (fuzz/seeds/<target>/): valid spec,
status and resync events in each target's wire form, so that a short bounded fuzzing run
starts from inputs that reach the decoders' deeper checks. Re-run after changing it:
    python3 fuzz/seeds/generate.py
"""
import json
import os
import struct

HERE = os.path.dirname(os.path.abspath(__file__))
MB = "io.open-cluster-management.works.v1alpha1.manifestbundles"
RID = "68ebf474-6709-48bb-b760-386181268060"

BUNDLE = {"manifests": [{"apiVersion": "v1", "kind": "ConfigMap",
                         "metadata": {"name": "a", "namespace": "default"}, "data": {"k": "v"}}]}
STATUS = {"conditions": [{"type": "Applied", "status": "True",
                          "lastTransitionTime": "2024-09-13T06:11:10Z", "reason": "AppliedManifestWorkComplete",
                          "message": "Apply manifest work complete"}],
          "resourceStatus": [{"resourceMeta": {"ordinal": 0, "version": "v1", "kind": "ConfigMap",
                                               "resource": "configmaps", "name": "a", "namespace": "default"},
                              "statusFeedback": {"values": [{"name": "n", "fieldValue": {"type": "Integer", "integer": 2}}]},
                              "conditions": None}]}

# (type suffix, attributes/extensions as strings, resourceversion, deletiontimestamp, data)
EVENTS = [
    ("spec.create_request", {"source": "maestro", "resourceid": RID, "clustername": "c1",
                             "originalsource": "", "logtracing": "{}",
                             "metadata": json.dumps({"name": RID, "labels": {"a": "b"}})}, 1, None, BUNDLE),
    ("spec.delete_request", {"source": "maestro", "resourceid": RID, "clustername": "c1",
                             "originalsource": ""}, 2, "2024-03-01T10:00:00.123Z", None),
    ("status.update_request", {"source": "c1-work-agent", "resourceid": RID, "clustername": "c1",
                               "originalsource": "maestro", "sequenceid": "1834773391719010304",
                               "statushash": "6b7c3d1f", "logtracing": "{}"}, 1, None, STATUS),
    ("spec.resync_request", {"source": "c1-work-agent", "clustername": "c1", "originalsource": ""}, None, None,
     {"resourceVersions": [{"resourceID": RID, "resourceVersion": 1}]}),
    ("status.resync_request", {"source": "maestro", "clustername": "", "originalsource": ""}, None, None,
     {"statusHashes": [{"resourceID": RID, "statusHash": "6b7c3d1f"}]}),
]


def write(target, name, data):
    d = os.path.join(HERE, target)
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, name), "wb") as f:
        f.write(data)


# --- structured JSON -------------------------------------------------------------------------

def structured(i, suffix, attrs, version, deletion, data):
    ev = {"specversion": "1.0", "id": f"ev-{i}", "type": f"{MB}.{suffix}",
          "time": "2024-09-13T06:11:10.123456789Z"}
    ev.update(attrs)
    if version is not None:
        ev["resourceversion"] = version
    if deletion:
        ev["deletiontimestamp"] = deletion
    if data is not None:
        ev["datacontenttype"] = "application/json"
        ev["data"] = data
    return json.dumps(ev, separators=(",", ":")).encode()


# --- protobuf (io.cloudevents.v1.CloudEvent, OCM attribute mapping) -------------------------

def varint(n):
    out = bytearray()
    while True:
        b = n & 0x7F
        n >>= 7
        if n:
            out.append(b | 0x80)
        else:
            out.append(b)
            return bytes(out)


def field(num, wire, payload):
    key = varint((num << 3) | wire)
    if wire == 2:
        return key + varint(len(payload)) + payload
    return key + payload


def s(num, text):
    return field(num, 2, text.encode() if isinstance(text, str) else text)


def attr_value(kind, value):
    if kind == "string":
        return s(3, value)
    if kind == "int":
        return field(2, 0, varint(value))
    if kind == "ts":
        secs, nanos = value
        return s(7, field(1, 0, varint(secs)) + field(2, 0, varint(nanos)))
    raise ValueError(kind)


def proto(i, suffix, attrs, version, deletion, data, structured_mode=False):
    if structured_mode:
        entry = s(1, "contenttype") + s(2, attr_value("string", "application/cloudevents+json"))
        return s(5, entry) + s(6, structured(i, suffix, attrs, version, deletion, data))
    msg = s(1, f"ev-{i}") + s(2, attrs["source"]) + s(3, "1.0") + s(4, f"{MB}.{suffix}")
    entries = [("ce-time", attr_value("ts", (1726207870, 123456789)))]
    for k, v in attrs.items():
        if k != "source":
            entries.append((f"ce-{k}", attr_value("string", v)))
    if version is not None:
        entries.append(("ce-resourceversion", attr_value("int", version)))
    if deletion:
        entries.append(("ce-deletiontimestamp", attr_value("ts", (1709287200, 123000000))))
    if data is not None:
        entries.append(("contenttype", attr_value("string", "application/json")))
    for k, v in entries:
        msg += s(5, s(1, k) + s(2, v))
    if data is not None:
        msg += s(6, json.dumps(data, separators=(",", ":")).encode())
    return msg


# --- MQTT 5 ------------------------------------------------------------------------------------

def mqtt_str(text):
    b = text.encode()
    return struct.pack(">H", len(b)) + b


def packet(first_byte, body):
    return bytes([first_byte]) + varint(len(body)) + body


def publish(i, suffix, attrs, version, deletion, data, topic):
    props = b""
    if data is not None:
        props += b"\x03" + mqtt_str("application/json")
    user = [("ce-specversion", "1.0"), ("ce-id", f"ev-{i}"), ("ce-source", attrs["source"]),
            ("ce-type", f"{MB}.{suffix}"), ("ce-time", "2024-09-13T06:11:10.123456789Z")]
    user += [(f"ce-{k}", v) for k, v in attrs.items() if k != "source"]
    if version is not None:
        user.append(("ce-resourceversion", str(version)))
    if deletion:
        user.append(("ce-deletiontimestamp", deletion))
    for k, v in user:
        props += b"\x26" + mqtt_str(k) + mqtt_str(v)
    payload = json.dumps(data, separators=(",", ":")).encode() if data is not None else b""
    body = mqtt_str(topic) + struct.pack(">H", 1 + i) + varint(len(props)) + props + payload
    return packet(0x32, body)  # PUBLISH, QoS 1


def subscribe(filters, pkid=7):
    body = struct.pack(">H", pkid) + varint(0)
    for f in filters:
        body += mqtt_str(f) + b"\x01"
    return packet(0x82, body)


def main():
    for i, (suffix, attrs, version, deletion, data) in enumerate(EVENTS):
        name = suffix.replace(".", "-")
        write("json_cloudevent", name, structured(i, suffix, attrs, version, deletion, data))
        write("proto_cloudevent", name, proto(i, suffix, attrs, version, deletion, data))
        write("proto_cloudevent", name + "-structured",
              proto(i, suffix, attrs, version, deletion, data, structured_mode=True))
        topic = ("sources/c1/agentbroadcast" if suffix == "spec.resync_request"
                 else "sources/maestro/consumers/c1/agentevents")
        pub = publish(i, suffix, attrs, version, deletion, data, topic)
        write("mqtt_packet", name, pub)
        write("mqtt_gate_frame", name, pub + packet(0xC0, b""))  # + PINGREQ
        write("event_type", name, f"{MB}.{suffix}".encode())
    write("mqtt_gate_frame", "subscribe",
          subscribe(["sources/maestro/consumers/+/agentevents", "sources/+/agentbroadcast"]))
    write("mqtt_packet", "subscribe", subscribe(["sources/maestro/consumers/c1/sourceevents"]))


if __name__ == "__main__":
    main()

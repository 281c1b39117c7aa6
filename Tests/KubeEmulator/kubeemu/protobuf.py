"""Kubernetes protobuf bodies: the ``k8s\\0`` runtime.Unknown envelope and the few kinds helm writes.

client-go's typed clients (which helm's storage drivers use) send Secrets and ConfigMaps as
``application/vnd.kubernetes.protobuf``. Such a body is the 4-byte magic ``k8s\\0`` followed by a
``runtime.Unknown`` message whose ``raw`` field holds the object itself. This module decodes that
into the same dict the JSON API would carry, for the kinds in ``SCHEMAS``; for any other kind only
``metadata`` (field 1 of every top-level kind) is decoded.

The encoder is the exact inverse and exists so tests can build bodies without helm.
"""

from __future__ import annotations

import base64
import datetime as _dt
import struct
from typing import Any

MAGIC = b"k8s\x00"


class ProtobufError(ValueError):
    """A body that is not a well-formed Kubernetes protobuf message."""


# A field is (json name, type). Types: "string", "bytes", "bool", "int32", "int64", "time",
# "msg:Name", "map:string", "map:bytes" (map<string,string|bytes>), and "[]" + any scalar or msg type
# for repeated fields. Bytes become base64 strings, as in Kubernetes JSON.
SCHEMAS: dict[str, dict[int, tuple[str, str]]] = {
    "TypeMeta": {1: ("apiVersion", "string"), 2: ("kind", "string")},
    "Unknown": {
        1: ("typeMeta", "msg:TypeMeta"),
        2: ("raw", "rawbytes"),
        3: ("contentEncoding", "string"),
        4: ("contentType", "string"),
    },
    "ObjectMeta": {
        1: ("name", "string"),
        2: ("generateName", "string"),
        3: ("namespace", "string"),
        4: ("selfLink", "string"),
        5: ("uid", "string"),
        6: ("resourceVersion", "string"),
        7: ("generation", "int64"),
        8: ("creationTimestamp", "time"),
        9: ("deletionTimestamp", "time"),
        10: ("deletionGracePeriodSeconds", "int64"),
        11: ("labels", "map:string"),
        12: ("annotations", "map:string"),
        13: ("ownerReferences", "[]msg:OwnerReference"),
        14: ("finalizers", "[]string"),
    },
    "OwnerReference": {
        1: ("kind", "string"),
        3: ("name", "string"),
        4: ("uid", "string"),
        5: ("apiVersion", "string"),
        6: ("controller", "bool"),
        7: ("blockOwnerDeletion", "bool"),
    },
    "Secret": {
        1: ("metadata", "msg:ObjectMeta"),
        2: ("data", "map:bytes"),
        3: ("type", "string"),
        4: ("stringData", "map:string"),
        5: ("immutable", "bool"),
    },
    "ConfigMap": {
        1: ("metadata", "msg:ObjectMeta"),
        2: ("data", "map:string"),
        3: ("binaryData", "map:bytes"),
        4: ("immutable", "bool"),
    },
    "Namespace": {
        1: ("metadata", "msg:ObjectMeta"),
        2: ("spec", "msg:NamespaceSpec"),
        3: ("status", "msg:NamespaceStatus"),
    },
    "NamespaceSpec": {1: ("finalizers", "[]string")},
    "NamespaceStatus": {1: ("phase", "string")},
    "DeleteOptions": {
        1: ("gracePeriodSeconds", "int64"),
        2: ("preconditions", "msg:Preconditions"),
        3: ("orphanDependents", "bool"),
        4: ("propagationPolicy", "string"),
        5: ("dryRun", "[]string"),
    },
    "Preconditions": {1: ("uid", "string"), 2: ("resourceVersion", "string")},
    "Event": {
        1: ("metadata", "msg:ObjectMeta"),
        2: ("involvedObject", "msg:ObjectReference"),
        3: ("reason", "string"),
        4: ("message", "string"),
        5: ("source", "msg:EventSource"),
        6: ("firstTimestamp", "time"),
        7: ("lastTimestamp", "time"),
        8: ("count", "int32"),
        9: ("type", "string"),
        12: ("action", "string"),
        14: ("reportingComponent", "string"),
        15: ("reportingInstance", "string"),
    },
    "ObjectReference": {
        1: ("kind", "string"),
        2: ("namespace", "string"),
        3: ("name", "string"),
        4: ("uid", "string"),
        5: ("apiVersion", "string"),
        6: ("resourceVersion", "string"),
        7: ("fieldPath", "string"),
    },
    "EventSource": {1: ("component", "string"), 2: ("host", "string")},
    "Time": {1: ("seconds", "int64"), 2: ("nanos", "int32")},
}

# Kinds whose protobuf we know; any other kind decodes its metadata only.
KNOWN_KINDS = {"Secret", "ConfigMap", "Namespace", "DeleteOptions", "Event"}


# ---------------------------------------------------------------------------------------------
# Wire level


def _read_varint(buf: bytes, pos: int) -> tuple[int, int]:
    result = 0
    shift = 0
    while True:
        if pos >= len(buf):
            raise ProtobufError("truncated varint")
        b = buf[pos]
        pos += 1
        result |= (b & 0x7F) << shift
        if not b & 0x80:
            return result, pos
        shift += 7
        if shift > 63:
            raise ProtobufError("varint too long")


def iter_fields(buf: bytes):
    """Yield (field number, wire type, value) for each field; value is int or bytes."""
    pos = 0
    n = len(buf)
    while pos < n:
        key, pos = _read_varint(buf, pos)
        field, wire = key >> 3, key & 7
        if field == 0:
            raise ProtobufError("field number 0")
        if wire == 0:
            value, pos = _read_varint(buf, pos)
        elif wire == 1:
            if pos + 8 > n:
                raise ProtobufError("truncated fixed64")
            value = struct.unpack_from("<Q", buf, pos)[0]
            pos += 8
        elif wire == 2:
            length, pos = _read_varint(buf, pos)
            if pos + length > n:
                raise ProtobufError("truncated length-delimited field")
            value = bytes(buf[pos : pos + length])
            pos += length
        elif wire == 5:
            if pos + 4 > n:
                raise ProtobufError("truncated fixed32")
            value = struct.unpack_from("<I", buf, pos)[0]
            pos += 4
        else:
            raise ProtobufError(f"unsupported wire type {wire}")
        yield field, wire, value


def _signed64(v: int) -> int:
    return v - (1 << 64) if v >= (1 << 63) else v


def _signed32(v: int) -> int:
    v &= 0xFFFFFFFF
    return v - (1 << 32) if v >= (1 << 31) else v


def format_time(seconds: int, nanos: int = 0) -> str:
    t = _dt.datetime.fromtimestamp(seconds, tz=_dt.timezone.utc)
    return t.strftime("%Y-%m-%dT%H:%M:%SZ")


def _decode_scalar(typ: str, wire: int, value: Any) -> Any:
    if typ == "string":
        if wire != 2:
            raise ProtobufError("string with wrong wire type")
        return value.decode("utf-8")
    if typ == "bytes":
        return base64.b64encode(value).decode("ascii")
    if typ == "rawbytes":
        return value
    if typ == "bool":
        return bool(value)
    if typ == "int64":
        return _signed64(value)
    if typ == "int32":
        return _signed32(value)
    if typ == "time":
        t = decode_message(value, "Time")
        return format_time(t.get("seconds", 0), t.get("nanos", 0))
    if typ.startswith("msg:"):
        if wire != 2:
            raise ProtobufError("message with wrong wire type")
        return decode_message(value, typ[4:])
    raise ProtobufError(f"unknown schema type {typ}")


def decode_message(buf: bytes, schema: str) -> dict:
    """Decode one message by schema name; unknown fields are skipped, as protobuf allows."""
    fields = SCHEMAS[schema]
    out: dict[str, Any] = {}
    for num, wire, value in iter_fields(buf):
        spec = fields.get(num)
        if spec is None:
            continue
        name, typ = spec
        if typ.startswith("map:"):
            entry = {}
            for enum, ewire, evalue in iter_fields(value):
                if enum == 1:
                    entry["k"] = evalue.decode("utf-8")
                elif enum == 2:
                    entry["v"] = _decode_scalar("string" if typ == "map:string" else "bytes", ewire, evalue)
            out.setdefault(name, {})[entry.get("k", "")] = entry.get(
                "v", "" if typ == "map:string" else ""
            )
        elif typ.startswith("[]"):
            out.setdefault(name, []).append(_decode_scalar(typ[2:], wire, value))
        else:
            out[name] = _decode_scalar(typ, wire, value)
    return out


# ---------------------------------------------------------------------------------------------
# Envelope


def is_protobuf(body: bytes) -> bool:
    return body[:4] == MAGIC


def decode_envelope(body: bytes) -> tuple[str, str, bytes]:
    """Return (apiVersion, kind, raw object bytes) from a ``k8s\\0`` + runtime.Unknown body."""
    if not is_protobuf(body):
        raise ProtobufError("missing k8s\\0 magic")
    unknown = decode_message(body[4:], "Unknown")
    tm = unknown.get("typeMeta", {})
    if unknown.get("contentEncoding"):
        raise ProtobufError(f"unsupported contentEncoding {unknown['contentEncoding']!r}")
    return tm.get("apiVersion", ""), tm.get("kind", ""), unknown.get("raw", b"")


def decode_object(body: bytes) -> dict:
    """Decode a whole protobuf request body into a Kubernetes JSON-shaped dict."""
    api_version, kind, raw = decode_envelope(body)
    if kind in KNOWN_KINDS:
        obj = decode_message(raw, kind)
    else:
        obj = {}
        for num, wire, value in iter_fields(raw):
            if num == 1 and wire == 2:
                obj["metadata"] = decode_message(value, "ObjectMeta")
    result = {"kind": kind, "apiVersion": api_version}
    result.update(obj)
    return result


# ---------------------------------------------------------------------------------------------
# Encoder (for tests)


def _varint(v: int) -> bytes:
    if v < 0:
        v += 1 << 64
    out = bytearray()
    while True:
        b = v & 0x7F
        v >>= 7
        if v:
            out.append(b | 0x80)
        else:
            out.append(b)
            return bytes(out)


def _key(num: int, wire: int) -> bytes:
    return _varint((num << 3) | wire)


def _ld(num: int, payload: bytes) -> bytes:
    return _key(num, 2) + _varint(len(payload)) + payload


def _parse_time(s: str) -> int:
    t = _dt.datetime.strptime(s, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=_dt.timezone.utc)
    return int(t.timestamp())


def _encode_scalar(num: int, typ: str, value: Any) -> bytes:
    if typ == "string":
        return _ld(num, value.encode("utf-8"))
    if typ == "bytes":
        return _ld(num, base64.b64decode(value))
    if typ == "rawbytes":
        return _ld(num, value)
    if typ == "bool":
        return _key(num, 0) + _varint(1 if value else 0)
    if typ in ("int64", "int32"):
        return _key(num, 0) + _varint(int(value))
    if typ == "time":
        return _ld(num, encode_message({"seconds": _parse_time(value)}, "Time"))
    if typ.startswith("msg:"):
        return _ld(num, encode_message(value, typ[4:]))
    raise ProtobufError(f"unknown schema type {typ}")


def encode_message(obj: dict, schema: str) -> bytes:
    out = bytearray()
    for num, (name, typ) in sorted(SCHEMAS[schema].items()):
        if name not in obj or obj[name] is None:
            continue
        value = obj[name]
        if typ.startswith("map:"):
            vtyp = "string" if typ == "map:string" else "bytes"
            for k in sorted(value):
                out += _ld(num, _encode_scalar(1, "string", k) + _encode_scalar(2, vtyp, value[k]))
        elif typ.startswith("[]"):
            for item in value:
                out += _encode_scalar(num, typ[2:], item)
        else:
            out += _encode_scalar(num, typ, value)
    return bytes(out)


def encode_object(obj: dict) -> bytes:
    """Encode a JSON-shaped object of a kind in KNOWN_KINDS as a ``k8s\\0`` protobuf body."""
    kind = obj["kind"]
    raw = encode_message({k: v for k, v in obj.items() if k not in ("kind", "apiVersion")}, kind)
    unknown = encode_message(
        {"typeMeta": {"apiVersion": obj.get("apiVersion", "v1"), "kind": kind}, "raw": raw, "contentType": ""},
        "Unknown",
    )
    return MAGIC + unknown

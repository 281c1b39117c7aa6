"""The HTTP side: Kubernetes API routes, watch streams, the service and pod proxy, and /_emu."""

from __future__ import annotations

import base64
import http.client
import json
import select
import socket
import threading
import time
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from . import patch as patchlib
from . import protobuf, resources, tables
from .controller import Controller
from .resources import Resource, lookup
from .selectors import (SelectorError, matches_fields, matches_labels, parse_field_selector, parse_label_selector,
                        selector_object_to_string)
from .store import ApiError, Store, bad_request, not_found

JSON = "application/json"
try:  # optional: YAML apply bodies (helm and kubectl send JSON, which needs no YAML parser)
    import yaml as _yaml  # type: ignore
except ImportError:  # pragma: no cover
    _yaml = None

VERSION_INFO = {
    "major": "1", "minor": "34", "emulationMajor": "1", "emulationMinor": "34",
    "minCompatibilityMajor": "1", "minCompatibilityMinor": "33", "gitVersion": "v1.34.0-kubeemu",
    "gitCommit": "0000000000000000000000000000000000000000", "gitTreeState": "clean",
    "buildDate": "2026-01-01T00:00:00Z", "goVersion": "go1.24.0", "compiler": "gc", "platform": "linux/amd64",
}
MAX_WATCH_SECONDS = 1800


def not_found_path() -> ApiError:
    return ApiError(404, "NotFound", "the server could not find the requested resource", {})


class RequestLog:
    """JSON-lines log of requests: one line per request, written when its response starts."""

    def __init__(self, path: str | None) -> None:
        self.fh = open(path, "a", buffering=1) if path else None
        self.lock = threading.Lock()

    def write(self, entry: dict) -> None:
        if not self.fh:
            return
        line = json.dumps(entry, separators=(",", ":"))
        with self.lock:
            self.fh.write(line + "\n")


class EmulatorHTTPServer(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 1024

    def __init__(self, addr, store: Store, controller: Controller, log: RequestLog) -> None:
        self.store = store
        self.controller = controller
        self.reqlog = log
        self.stopping = threading.Event()
        super().__init__(addr, Handler)


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True
    server_version = "kubeemu/0.1"
    server: EmulatorHTTPServer

    def log_message(self, fmt, *args):  # the JSON log replaces the stderr access log
        pass

    # ------------------------------------------------------------------------------------------
    # plumbing

    def send_response(self, code, message=None):
        super().send_response(code, message)
        self._status = code
        u = urllib.parse.urlsplit(self.path)
        self.server.reqlog.write({
            "time": round(time.time(), 3), "method": self.command, "path": u.path, "query": u.query,
            "contentType": self.headers.get("Content-Type", ""), "accept": self.headers.get("Accept", ""),
            "userAgent": self.headers.get("User-Agent", ""), "status": code,
        })

    def _send_bytes(self, code: int, data: bytes, content_type: str = JSON, headers: dict | None = None) -> None:
        self.send_response(code)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(data)))
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(data)

    def _send_json(self, code: int, obj: Any) -> None:
        self._send_bytes(code, json.dumps(obj, separators=(",", ":")).encode())

    def _send_error(self, err: ApiError) -> None:
        self._send_json(err.code, err.status())

    def _read_body(self) -> bytes:
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            out = bytearray()
            while True:
                line = self.rfile.readline().strip()
                size = int(line.split(b";")[0], 16)
                if size == 0:
                    self.rfile.readline()
                    return bytes(out)
                out += self.rfile.read(size)
                self.rfile.readline()
        n = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(n) if n else b""

    def _decode_body(self, raw: bytes) -> Any:
        if not raw:
            return None
        ct = (self.headers.get("Content-Type") or "").split(";")[0].strip().lower()
        if ct == "application/vnd.kubernetes.protobuf" or protobuf.is_protobuf(raw):
            try:
                return protobuf.decode_object(raw)
            except (protobuf.ProtobufError, UnicodeDecodeError) as e:
                raise bad_request(f"unable to decode protobuf body: {e}")
        try:
            return json.loads(raw)
        except ValueError:
            if _yaml is not None and ("yaml" in ct or ct == ""):
                try:
                    return _yaml.safe_load(raw)
                except Exception as e:  # noqa: BLE001
                    raise bad_request(f"unable to decode YAML body: {e}")
            raise bad_request("the body of the request was not valid JSON")

    def do_GET(self):
        self._dispatch()

    def do_HEAD(self):
        self._dispatch()

    def do_POST(self):
        self._dispatch()

    def do_PUT(self):
        self._dispatch()

    def do_PATCH(self):
        self._dispatch()

    def do_DELETE(self):
        self._dispatch()

    def do_OPTIONS(self):
        self._dispatch()

    def _dispatch(self) -> None:
        u = urllib.parse.urlsplit(self.path)
        self.query = {k: v[-1] for k, v in urllib.parse.parse_qs(u.query, keep_blank_values=True).items()}
        self.raw_query = u.query
        path = u.path
        raw = b""
        try:
            if self.command in ("POST", "PUT", "PATCH", "DELETE"):
                raw = self._read_body()
            self.raw_body = raw
            self._route(path)
        except ApiError as e:
            self._send_error(e)
        except (SelectorError, ValueError) as e:
            self._send_error(bad_request(str(e)))
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True
        except Exception as e:  # noqa: BLE001 - report as a 500 Status, keep serving
            import traceback

            traceback.print_exc()
            try:
                self._send_error(ApiError(500, "InternalError", f"an error on the server (\"{e}\") has prevented "
                                                                f"the request from succeeding"))
            except OSError:
                self.close_connection = True

    # ------------------------------------------------------------------------------------------
    # routing

    def _route(self, path: str) -> None:
        segs = [urllib.parse.unquote(s) for s in path.split("/") if s]
        m = self.command
        discovery = (segs in (["version"], ["api"], ["apis"]) or segs[:1] == ["openapi"]
                     or (segs[:1] == ["api"] and len(segs) == 2) or (segs[:1] == ["apis"] and len(segs) in (2, 3)))
        if discovery and m not in ("GET", "HEAD"):
            raise ApiError(405, "MethodNotAllowed", "the server does not allow this method on the requested resource")
        if segs == ["version"]:
            return self._send_json(200, VERSION_INFO)
        if segs in (["healthz"], ["livez"], ["readyz"]):
            return self._send_bytes(200, b"ok", "text/plain; charset=utf-8")
        if segs[:1] == ["_emu"]:
            return self._emu(segs[1:])
        if segs[:1] == ["openapi"]:
            return self._openapi(segs[1:])
        if segs == ["api"]:
            return self._send_json(200, resources.api_versions_doc())
        if segs == ["apis"]:
            return self._send_json(200, resources.api_group_list_doc())
        if segs[:1] == ["api"] and len(segs) >= 2:
            if segs[1] != "v1":
                raise not_found_path()
            if len(segs) == 2:
                return self._send_json(200, resources.resource_list_doc("", "v1"))
            return self._resource_path("", "v1", segs[2:])
        if segs[:1] == ["apis"] and len(segs) >= 2:
            group = segs[1]
            if len(segs) == 2:
                doc = resources.api_group_doc(group)
                if doc is None:
                    raise not_found_path()
                return self._send_json(200, doc)
            version = segs[2]
            if len(segs) == 3:
                doc = resources.resource_list_doc(group, version)
                if doc is None:
                    raise not_found_path()
                return self._send_json(200, doc)
            return self._resource_path(group, version, segs[3:])
        raise not_found_path()

    def _openapi(self, segs: list[str]) -> None:
        if segs == ["v3"]:
            return self._send_json(200, resources.openapi_v3_root())
        if len(segs) >= 2 and segs[0] == "v3":
            rest = segs[1:]
            doc = None
            if rest == ["api", "v1"]:
                doc = resources.openapi_v3_gv("", "v1")
            elif len(rest) == 3 and rest[0] == "apis":
                doc = resources.openapi_v3_gv(rest[1], rest[2])
            if doc is not None:
                return self._send_json(200, doc)
        raise not_found_path()

    def _resource_path(self, group: str, version: str, rest: list[str]) -> None:
        watch_prefix = False
        if rest[:1] == ["watch"]:
            watch_prefix = True
            rest = rest[1:]
        ns: str | None = None
        if len(rest) >= 3 and rest[0] == "namespaces" and lookup(group, version, rest[2]) is not None:
            ns = rest[1]
            rest = rest[2:]
        if not rest:
            raise not_found_path()
        res = lookup(group, version, rest[0])
        if res is None or (ns is not None and not res.namespaced):
            raise not_found_path()
        name = rest[1] if len(rest) >= 2 else None
        sub = rest[2] if len(rest) >= 3 else None
        tail = rest[3:] if len(rest) >= 4 else []
        if res.namespaced and ns is None and name is not None:
            raise not_found_path()
        if sub is not None and sub not in res.subresources:
            raise not_found_path()
        if watch_prefix or (self.query.get("watch") in ("true", "1") and name is None):
            if self.command != "GET":
                raise ApiError(405, "MethodNotAllowed", "the server does not allow this method")
            if name is not None:
                self.query["fieldSelector"] = ",".join(
                    x for x in (self.query.get("fieldSelector"), f"metadata.name={name}") if x)
            return self._watch(res, ns)
        if sub == "proxy":
            return self._proxy(res, ns or "", name, tail)
        if sub == "log":
            return self._pod_log(ns or "", name)
        if sub == "scale":
            return self._scale(res, ns or "", name)
        if sub == "eviction" and self.command == "POST":
            body = self._decode_body(self.raw_body) if self.raw_body else None
            opts = (body.get("deleteOptions") or {}) if isinstance(body, dict) else {}
            self.server.store.delete(res, ns or "", name, grace_period=opts.get("gracePeriodSeconds"))
            return self._send_json(201, {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success",
                                         "code": 201})
        if sub not in (None, "status"):
            raise ApiError(405, "MethodNotAllowed", f"{sub} is not supported by the emulator")
        if name is None:
            return self._collection(res, ns)
        return self._item(res, ns or "", name, sub)

    # ------------------------------------------------------------------------------------------
    # CRUD

    def _dry_run(self) -> bool:
        return self.query.get("dryRun") == "All"

    def _collection(self, res: Resource, ns: str | None) -> None:
        store = self.server.store
        m = self.command
        if m in ("GET", "HEAD"):
            items, rv = store.list(res, ns, self.query.get("labelSelector"), self.query.get("fieldSelector"))
            meta: dict[str, Any] = {"resourceVersion": str(rv)}
            limit = int(self.query.get("limit") or 0)
            offset = 0
            if self.query.get("continue"):
                try:
                    token = json.loads(base64.urlsafe_b64decode(self.query["continue"]))
                    offset = int(token["offset"])
                except (ValueError, KeyError) as e:
                    raise bad_request(f"invalid continue token: {e}")
            items = items[offset:]
            if limit and len(items) > limit:
                meta["continue"] = base64.urlsafe_b64encode(
                    json.dumps({"offset": offset + limit, "rv": rv}).encode()).decode()
                meta["remainingItemCount"] = len(items) - limit
                items = items[:limit]
            if tables.wants_table(self.headers.get("Accept", "")):
                return self._send_json(200, tables.table(res, items, meta, self.query.get("includeObject")))
            return self._send_json(200, {"kind": res.list_kind, "apiVersion": res.api_version, "metadata": meta,
                                         "items": items})
        if m == "POST":
            body = self._decode_body(self.raw_body)
            if res.namespaced and ns is None:
                raise ApiError(405, "MethodNotAllowed", "the server does not allow this method on the requested "
                                                        "resource")
            obj = store.create(res, ns or "", body, dry_run=self._dry_run())
            return self._send_json(201, obj)
        if m == "DELETE":
            opts = self._delete_options()
            gone = store.delete_collection(res, ns, self.query.get("labelSelector"), self.query.get("fieldSelector"),
                                           opts.get("propagationPolicy"), opts.get("gracePeriodSeconds"))
            return self._send_json(200, {"kind": res.list_kind, "apiVersion": res.api_version,
                                         "metadata": {"resourceVersion": str(store.rv)}, "items": gone})
        raise ApiError(405, "MethodNotAllowed", "the server does not allow this method on the requested resource")

    def _delete_options(self) -> dict:
        opts: dict[str, Any] = {}
        body = self._decode_body(self.raw_body) if self.raw_body else None
        if isinstance(body, dict):
            opts.update(body)
        if self.query.get("propagationPolicy"):
            opts["propagationPolicy"] = self.query["propagationPolicy"]
        if self.query.get("orphanDependents") == "true" and "propagationPolicy" not in opts:
            opts["propagationPolicy"] = "Orphan"
        if opts.get("orphanDependents") is True and "propagationPolicy" not in opts:
            opts["propagationPolicy"] = "Orphan"
        if self.query.get("gracePeriodSeconds") not in (None, ""):
            opts["gracePeriodSeconds"] = self.query["gracePeriodSeconds"]
        if opts.get("gracePeriodSeconds") is not None:
            try:
                opts["gracePeriodSeconds"] = int(opts["gracePeriodSeconds"])
            except (TypeError, ValueError):
                raise bad_request(f"invalid gracePeriodSeconds {opts['gracePeriodSeconds']!r}")
        return opts

    def _item(self, res: Resource, ns: str, name: str, sub: str | None) -> None:
        store = self.server.store
        m = self.command
        if m in ("GET", "HEAD"):
            obj = store.get(res, ns, name)
            if tables.wants_table(self.headers.get("Accept", "")):
                return self._send_json(200, tables.table(res, [obj], {"resourceVersion": obj["metadata"].get(
                    "resourceVersion", "")}, self.query.get("includeObject")))
            return self._send_json(200, obj)
        if m == "PUT":
            body = self._decode_body(self.raw_body)
            return self._send_json(200, store.update(res, ns, name, body, subresource=sub, dry_run=self._dry_run()))
        if m == "PATCH":
            ct = self.headers.get("Content-Type", "")
            ctl = ct.split(";")[0].strip().lower()
            raw = self.raw_body
            if ctl == "application/apply-patch+yaml":
                try:
                    body = json.loads(raw)
                except ValueError:
                    if _yaml is None:
                        raise bad_request("YAML apply bodies need PyYAML; send JSON")
                    body = _yaml.safe_load(raw)
            else:
                try:
                    body = json.loads(raw or b"null")
                except ValueError:
                    raise bad_request("the body of the request was not valid JSON")
            obj, created = store.patch(res, ns, name, ct, body, self.query.get("fieldManager", ""),
                                       subresource=sub, dry_run=self._dry_run(),
                                       force=self.query.get("force") == "true")
            return self._send_json(201 if created else 200, obj)
        if m == "DELETE":
            opts = self._delete_options()
            if sub:
                raise ApiError(405, "MethodNotAllowed", "the server does not allow this method")
            gone = store.delete(res, ns, name, opts.get("propagationPolicy"), dry_run=self._dry_run(),
                                preconditions=opts.get("preconditions"), grace_period=opts.get("gracePeriodSeconds"))
            return self._send_json(200, gone)
        raise ApiError(405, "MethodNotAllowed", "the server does not allow this method on the requested resource")

    def _scale(self, res: Resource, ns: str, name: str) -> None:
        store = self.server.store

        def scale_of(obj: dict) -> dict:
            sel = (obj.get("spec") or {}).get("selector") or {}
            return {"kind": "Scale", "apiVersion": "autoscaling/v1",
                    "metadata": {"name": name, "namespace": ns, "uid": obj["metadata"]["uid"],
                                 "resourceVersion": obj["metadata"]["resourceVersion"],
                                 "creationTimestamp": obj["metadata"].get("creationTimestamp")},
                    "spec": {"replicas": (obj.get("spec") or {}).get("replicas", 1)},
                    "status": {"replicas": (obj.get("status") or {}).get("replicas", 0),
                               "selector": selector_object_to_string(sel)}}

        obj = store.get(res, ns, name)
        if self.command == "GET":
            return self._send_json(200, scale_of(obj))
        body = self._decode_body(self.raw_body)
        if self.command == "PATCH":
            ct = self.headers.get("Content-Type", "")
            cur = scale_of(obj)
            ctl = ct.split(";")[0].strip()
            if ctl == "application/json-patch+json":
                new = patchlib.json_patch(cur, body)
            elif ctl == "application/strategic-merge-patch+json":
                new = patchlib.strategic_merge_patch(cur, body)
            else:
                new = patchlib.json_merge_patch(cur, body)
        elif self.command == "PUT":
            new = body
        else:
            raise ApiError(405, "MethodNotAllowed", "the server does not allow this method")
        replicas = int(((new or {}).get("spec") or {}).get("replicas", 0))
        upd = json.loads(json.dumps(obj))
        upd["spec"]["replicas"] = replicas
        obj = store.update(res, ns, name, upd, check_rv=False)
        return self._send_json(200, scale_of(obj))

    def _pod_log(self, ns: str, name: str) -> None:
        ctl = self.server.controller
        self.server.store.get(lookup("", "v1", "pods"), ns, name)
        engine = ctl.pod_engine(ns, name)
        if engine is None:
            raise bad_request(f'container "vllm" in pod "{name}" is waiting to start: ContainerCreating')
        lines = [f"INFO kubeemu: simulated vLLM OpenAI-compatible server for model {engine.model_id}",
                 f"INFO kubeemu: served model name {engine.served_name}, listening on {engine.url}"]
        if engine.is_ready():
            lines.append("INFO:     Application startup complete.")
        else:
            lines.append("INFO kubeemu: loading model weights ...")
        self._send_bytes(200, ("\n".join(lines) + "\n").encode(), "text/plain")

    # ------------------------------------------------------------------------------------------
    # watch

    def _client_gone(self) -> bool:
        try:
            r, _, _ = select.select([self.connection], [], [], 0)
            if r:
                data = self.connection.recv(1, socket.MSG_PEEK)
                return data == b""
        except OSError:
            return True
        return False

    def _write_chunk(self, data: bytes) -> None:
        self.wfile.write(f"{len(data):x}\r\n".encode() + data + b"\r\n")
        self.wfile.flush()

    def _watch(self, res: Resource, ns: str | None) -> None:
        store = self.server.store
        q = self.query
        lreqs = parse_label_selector(q.get("labelSelector"))
        freqs = parse_field_selector(q.get("fieldSelector"))
        send_initial = q.get("sendInitialEvents") == "true"
        bookmarks = q.get("allowWatchBookmarks") == "true"
        rv_param = q.get("resourceVersion")
        try:
            timeout = float(q.get("timeoutSeconds") or MAX_WATCH_SECONDS)
        except ValueError:
            raise bad_request("invalid timeoutSeconds")
        deadline = time.monotonic() + min(timeout, MAX_WATCH_SECONDS)
        key = (res.group, res.plural)

        def matches(obj: dict | None) -> bool:
            if obj is None:
                return False
            return matches_labels(lreqs, obj["metadata"].get("labels")) and matches_fields(freqs, obj)

        as_table = tables.wants_table(self.headers.get("Accept", ""))

        def typed(obj: dict) -> dict:
            if obj.get("kind") != res.kind or obj.get("apiVersion") != res.api_version:
                obj = dict(obj)
                obj["kind"], obj["apiVersion"] = res.kind, res.api_version
            if as_table:
                # kubectl get -w: each event carries a one-row Table, as on a real API server.
                return tables.table(res, [obj], {"resourceVersion": obj["metadata"].get("resourceVersion", "")},
                                    q.get("includeObject"))
            return obj

        initial: list[dict] = []
        too_old = False
        with store.lock:
            if send_initial or (q.get("sendInitialEvents") != "false" and rv_param in (None, "", "0")):
                # No resourceVersion (or "0"), or WatchList: synthetic ADDED events for the current state.
                initial, cursor = store.list(res, ns, q.get("labelSelector"), q.get("fieldSelector"))
            else:
                try:
                    cursor = int(rv_param or 0) if rv_param not in (None, "") else store.rv
                except ValueError:
                    raise bad_request(f"invalid resourceVersion {rv_param!r}")
                if store.events_after(cursor) is None:
                    too_old = True
        self.send_response(200)
        self.send_header("Content-Type", JSON)
        self.send_header("Transfer-Encoding", "chunked")
        self.send_header("Cache-Control", "no-cache, private")
        self.end_headers()
        self.close_connection = False

        def emit(etype: str, obj: dict) -> None:
            self._write_chunk(json.dumps({"type": etype, "object": obj}, separators=(",", ":")).encode() + b"\n")

        def bookmark(rv: int, end: bool = False) -> None:
            meta: dict[str, Any] = {"resourceVersion": str(rv), "creationTimestamp": None}
            if end:
                meta["annotations"] = {"k8s.io/initial-events-end": "true"}
            emit("BOOKMARK", {"kind": res.kind, "apiVersion": res.api_version, "metadata": meta})

        try:
            if too_old:
                emit("ERROR", {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
                               "message": f"too old resource version: {rv_param} ({store.oldest_rv + 1})",
                               "reason": "Expired", "code": 410})
                self._write_chunk(b"")
                return
            for obj in initial:
                emit("ADDED", typed(obj))
            if send_initial:
                bookmark(cursor, end=True)
            last_bookmark = time.monotonic()
            while not self.server.stopping.is_set():
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    break
                with store.cond:
                    if store.rv <= cursor:
                        store.cond.wait(timeout=min(remaining, 1.0))
                    events = store.events_after(cursor)
                if events is None:
                    emit("ERROR", {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
                                   "message": "too old resource version", "reason": "Expired", "code": 410})
                    break
                for ev in events:
                    cursor = ev.rv
                    if ev.key != key or (ns and res.namespaced and ev.namespace != ns):
                        continue
                    new_ok = matches(ev.obj)
                    if ev.type == "ADDED":
                        if new_ok:
                            emit("ADDED", typed(ev.obj))
                    elif ev.type == "DELETED":
                        if new_ok or matches(ev.old):
                            emit("DELETED", typed(ev.obj))
                    else:
                        old_ok = matches(ev.old)
                        if new_ok and old_ok:
                            emit("MODIFIED", typed(ev.obj))
                        elif new_ok:
                            emit("ADDED", typed(ev.obj))
                        elif old_ok:
                            emit("DELETED", typed(ev.obj))
                if events:
                    cursor = max(cursor, events[-1].rv)
                if bookmarks and time.monotonic() - last_bookmark > 10:
                    bookmark(cursor)
                    last_bookmark = time.monotonic()
                if self._client_gone():
                    self.close_connection = True
                    return
            self._write_chunk(b"")
        except (BrokenPipeError, ConnectionResetError, OSError):
            self.close_connection = True

    # ------------------------------------------------------------------------------------------
    # proxy

    def _proxy(self, res: Resource, ns: str, name_port: str, tail: list[str]) -> None:
        ctl = self.server.controller
        parts = name_port.split(":")
        if len(parts) == 3:
            name = parts[1]
        else:
            name = parts[0]
        if res.kind == "Service":
            self.server.store.get(res, ns, name)  # 404 for an unknown service
            engine = ctl.pick_service_engine(ns, name)
            if engine is None:
                raise ApiError(503, "ServiceUnavailable", f'no endpoints available for service "{name}"')
        elif res.kind == "Pod":
            self.server.store.get(res, ns, name)
            engine = ctl.pod_engine(ns, name)
            if engine is None:
                ip, port = ctl.pod_address(ns, name)
                raise ApiError(503, "ServiceUnavailable", f"error trying to reach service: dial tcp {ip}:{port}: "
                                                          "connect: connection refused")
        else:
            raise not_found(res, name)
        path = "/" + "/".join(urllib.parse.quote(p) for p in tail)
        if self.raw_query:
            path += "?" + self.raw_query
        headers = {}
        for h in ("Content-Type", "Accept", "Authorization"):
            if self.headers.get(h):
                headers[h] = self.headers[h]
        try:
            conn = http.client.HTTPConnection(engine.host, engine.port, timeout=60)
            conn.request(self.command, path, body=self.raw_body or None, headers=headers)
            resp = conn.getresponse()
            data = resp.read()
            ctype = resp.getheader("Content-Type", "application/octet-stream")
            conn.close()
        except OSError as e:
            raise ApiError(503, "ServiceUnavailable", f"error trying to reach service: {e}")
        self._send_bytes(resp.status, data, ctype)

    # ------------------------------------------------------------------------------------------
    # control API

    def _emu(self, segs: list[str]) -> None:
        ctl = self.server.controller
        store = self.server.store
        m = self.command
        body = None
        if m == "POST" and self.raw_body:
            try:
                body = json.loads(self.raw_body)
            except ValueError:
                raise bad_request("control API bodies are JSON")
        if segs == ["dump"] and m == "GET":
            snap = store.snapshot()
            snap["engines"] = ctl.engines()
            return self._send_json(200, snap)
        if segs == ["engines"] and m == "GET":
            return self._send_json(200, {"engines": ctl.engines()})
        if segs == ["pods"] and m == "GET":
            return self._send_json(200, ctl.pods())
        if segs == ["reset-counters"] and m == "POST":
            ctl.reset_counters()
            return self._send_json(200, {"ok": True})
        if segs == ["nodes"] and m == "GET":
            return self._send_json(200, {"nodes": self._node_summary()})
        if segs == ["nodes"] and m == "POST":
            body = body or {}
            if "add" in body:
                spec = body["add"]
                ctl.add_node(spec["name"], int(spec.get("gpus", ctl.cfg.gpus_per_node)), spec.get("labels"))
            if "set" in body:
                spec = body["set"]
                ctl.set_node(spec["name"], gpus=spec.get("gpus"), ready=spec.get("ready"),
                             unschedulable=spec.get("unschedulable"), labels=spec.get("labels"))
            if "remove" in body:
                ctl.remove_node(body["remove"])
            if not any(k in body for k in ("add", "set", "remove")):
                raise bad_request('expected one of "add", "set", "remove"')
            return self._send_json(200, {"nodes": self._node_summary()})
        if len(segs) == 4 and segs[0] == "pods" and segs[3] == "ready" and m == "POST":
            ready = True if not isinstance(body, dict) else bool(body.get("ready", True))
            return self._send_json(200, ctl.force_ready(segs[1], segs[2], ready))
        raise not_found_path()

    def _node_summary(self) -> list[dict]:
        from .controller import GPU, R_NODE, parse_quantity, pod_requests

        store = self.server.store
        with store.lock:
            out = []
            pods = store.list_raw(lookup("", "v1", "pods"))
            for node in store.list_raw(R_NODE):
                name = node["metadata"]["name"]
                used = sum(pod_requests(p).get(GPU, 0) for p in pods if p["spec"].get("nodeName") == name
                           and (p.get("status") or {}).get("phase") not in ("Succeeded", "Failed"))
                alloc = parse_quantity(node["status"].get("allocatable", {}).get(GPU, 0))
                ready = next((c["status"] for c in node["status"].get("conditions", []) if c["type"] == "Ready"),
                             "Unknown")
                out.append({"name": name, "gpuAllocatable": int(alloc), "gpuRequested": int(used),
                            "ready": ready == "True", "unschedulable": bool(node["spec"].get("unschedulable"))})
            return out


def make_server(host: str, port: int, store: Store, controller: Controller, log: RequestLog) -> EmulatorHTTPServer:
    return EmulatorHTTPServer((host, port), store, controller, log)

"""The HTTP side: Web API under /api/, the Socket Mode WebSocket under /link/, response_url targets
under /hooks/, and the tests' control API under /_emu/."""

from __future__ import annotations

import json
import sys
import threading
import time
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from . import payloads
from .schema import Schema
from .state import Config, State
from .websocket import OP_BINARY, OP_CLOSE, OP_CONT, OP_PING, OP_PONG, OP_TEXT, ProtocolError, ServerSocket, \
    accept_key, read_frame

BOT_METHODS = {"auth.test", "chat.postMessage", "chat.update", "chat.postEphemeral", "reactions.add", "users.info"}


class ApiError(Exception):
    def __init__(self, error: str, **extra: Any) -> None:
        super().__init__(error)
        self.error = error
        self.extra = extra


def _parse_args(query: str, content_type: str, body: bytes) -> tuple[dict, str | None]:
    """Arguments merged from the query string, a form body and a JSON body (body wins)."""
    args: dict[str, Any] = {}
    for k, v in urllib.parse.parse_qsl(query, keep_blank_values=True):
        args[k] = v
    ctype = content_type.split(";")[0].strip().lower()
    if body:
        if ctype == "application/json":
            try:
                obj = json.loads(body.decode("utf-8"))
            except (UnicodeDecodeError, ValueError):
                return args, "invalid_json"
            if not isinstance(obj, dict):
                return args, "invalid_json"
            args.update(obj)
        elif ctype in ("application/x-www-form-urlencoded", ""):
            try:
                text = body.decode("utf-8")
            except UnicodeDecodeError:
                return args, "invalid_charset"
            for k, v in urllib.parse.parse_qsl(text, keep_blank_values=True):
                args[k] = v
        else:
            return args, "invalid_form_data"
    return args, None


def _json_arg(v: Any) -> Any:
    """blocks/attachments arrive as JSON arrays (JSON bodies) or JSON strings (form bodies)."""
    if isinstance(v, str) and v.strip()[:1] in ("[", "{"):
        try:
            return json.loads(v)
        except ValueError:
            raise ApiError("invalid_blocks")
    return v


def _truthy(v: Any) -> bool:
    return v is True or (isinstance(v, (str, int)) and str(v).lower() in ("1", "true"))


class Emulator:
    """Web API semantics on top of State."""

    def __init__(self, state: State, schema: Schema, log=None) -> None:
        self.state = state
        self.schema = schema
        self.log = log

    # ------------------------------------------------------------------ Web API dispatch

    def call(self, method: str, http_method: str, args: dict, token: str | None, token_source: str | None,
             content_type: str, parse_error: str | None) -> tuple[int, dict, dict]:
        """(HTTP status, JSON body, extra headers); records the call."""
        st = self.state
        cfg = st.config
        headers = {"x-oauth-scopes": cfg.scopes, "x-accepted-oauth-scopes": ""}
        missing, unknown = self.schema.check_args(method, args)
        record = {"method": method, "httpMethod": http_method, "args": {k: v for k, v in args.items() if k != "token"},
                  "token": token, "tokenSource": token_source, "contentType": content_type,
                  "unknownArgs": unknown}
        status = 200
        rl = st.take_ratelimit(method)
        try:
            if rl is not None:
                status = 429
                headers["Retry-After"] = str(rl["retryAfter"])
                raise ApiError("ratelimited")
            if parse_error:
                raise ApiError(parse_error)
            handler = getattr(self, "api_" + method.replace(".", "_"), None)
            if handler is None:
                extra = {"warning": "known to Slack's schema but not emulated"} if self.schema.knows(method) else {}
                raise ApiError("unknown_method", **extra)
            self._auth(method, token, token_source)
            if missing:
                raise ApiError("invalid_arguments", response_metadata={
                    "messages": [f"[ERROR] missing required field: {n}" for n in missing]})
            body = handler(args)
            body = {"ok": True, **body}
        except ApiError as e:
            body = {"ok": False, "error": e.error, **e.extra}
        # unknown arguments are accepted (real Slack ignores them; Bolt adds team_id) and only recorded
        violations = self.schema.validate_response(method, body)
        if violations:
            print(f"slackemu: {method} response violates the schema: {violations}", file=sys.stderr, flush=True)
        with st.lock:
            record.update({"seq": st.next_seq(), "time": time.time(), "status": status, "ok": body.get("ok"),
                           "error": body.get("error"), "response": body, "schemaErrors": violations})
            st.calls.append(record)
        return status, body, headers

    def _auth(self, method: str, token: str | None, source: str | None) -> None:
        cfg = self.state.config
        if method == "apps.connections.open":
            if source != "header":
                raise ApiError("not_authed")  # the app token must be in the Authorization header
            if token == cfg.bot_token:
                raise ApiError("not_allowed_token_type")
            if token != cfg.app_token:
                raise ApiError("invalid_auth")
            return
        if not token:
            raise ApiError("not_authed")
        if token == cfg.app_token:
            raise ApiError("not_allowed_token_type")
        if token != cfg.bot_token:
            raise ApiError("invalid_auth")

    # ------------------------------------------------------------------ methods

    def _bot_message(self, channel: str, ts: str, text: str, blocks: Any, thread_ts: str | None) -> dict:
        cfg = self.state.config
        msg = {"type": "message", "text": text, "user": cfg.bot_user_id, "bot_id": cfg.bot_id, "app_id": cfg.app_id,
               "ts": ts, "team": cfg.team_id,
               "bot_profile": {"id": cfg.bot_id, "deleted": False, "name": cfg.bot_name, "updated": 1700000000,
                               "app_id": cfg.app_id, "team_id": cfg.team_id,
                               "icons": {"image_36": "https://a.slack-edge.com/emu_36.png",
                                         "image_48": "https://a.slack-edge.com/emu_48.png",
                                         "image_72": "https://a.slack-edge.com/emu_72.png"}}}
        if blocks is not None:
            msg["blocks"] = blocks
        if thread_ts:
            msg["thread_ts"] = thread_ts
        return msg

    def _channel(self, args: dict) -> str:
        ch = str(args.get("channel") or "")
        if ch not in self.state.channels:
            raise ApiError("channel_not_found")
        return ch

    def _text_blocks(self, args: dict) -> tuple[str, Any, Any]:
        blocks = _json_arg(args.get("blocks")) if args.get("blocks") not in (None, "") else None
        attachments = _json_arg(args.get("attachments")) if args.get("attachments") not in (None, "") else None
        text = args.get("text")
        if blocks is not None and not isinstance(blocks, list):
            raise ApiError("invalid_blocks")
        return ("" if text is None else str(text)), blocks, attachments

    def api_auth_test(self, args: dict) -> dict:
        c = self.state.config
        return {"url": f"https://{c.team_domain}.slack.com/", "team": c.team_name, "user": c.bot_name,
                "team_id": c.team_id, "user_id": c.bot_user_id, "bot_id": c.bot_id, "is_enterprise_install": False}

    def api_apps_connections_open(self, args: dict) -> dict:
        st = self.state
        if st.link_disabled:
            raise ApiError("socket_mode_disabled")
        ticket = st.issue_ticket()
        return {"url": f"ws://{st.config.host}:{st.config.port}/link/?ticket={ticket}&app_id={st.config.app_id}"}

    def api_chat_postMessage(self, args: dict) -> dict:
        st = self.state
        ch = self._channel(args)
        text, blocks, attachments = self._text_blocks(args)
        if not text and not blocks and not attachments:
            raise ApiError("no_text")
        thread_ts = str(args["thread_ts"]) if args.get("thread_ts") not in (None, "") else None
        with st.lock:
            ts = st.new_ts()
            msg = self._bot_message(ch, ts, text, blocks, thread_ts)
            if attachments is not None:
                msg["attachments"] = attachments
            st.store_message(ch, dict(msg, edits=[], reactions=[]))
            st.record_post("post", channel=ch, thread_ts=thread_ts, ts=ts, text=text, blocks=blocks,
                           reply_broadcast=_truthy(args.get("reply_broadcast")))
        return {"channel": ch, "ts": ts, "message": msg}

    def api_chat_update(self, args: dict) -> dict:
        st = self.state
        ch = self._channel(args)
        ts = str(args["ts"])
        text, blocks, attachments = self._text_blocks(args)
        with st.lock:
            stored = st.find_message(ch, ts)
            if stored is None:
                raise ApiError("message_not_found")
            if stored.get("user") != st.config.bot_user_id:
                raise ApiError("cant_update_message")
            if "text" in args:
                stored["text"] = text
            if blocks is not None:
                stored["blocks"] = blocks
            if attachments is not None:
                stored["attachments"] = attachments
            stored["edits"].append({"time": time.time(), "text": text, "blocks": blocks})
            st.record_post("update", channel=ch, thread_ts=stored.get("thread_ts"), ts=ts, text=stored["text"],
                           blocks=stored.get("blocks"))
            msg = {"text": stored["text"]}
            if stored.get("blocks") is not None:
                msg["blocks"] = stored["blocks"]
            if stored.get("attachments") is not None:
                msg["attachments"] = stored["attachments"]
        return {"channel": ch, "ts": ts, "text": stored["text"], "message": msg}

    def api_chat_postEphemeral(self, args: dict) -> dict:
        st = self.state
        ch = self._channel(args)
        user = str(args["user"])
        if user not in st.users:
            raise ApiError("user_not_in_channel")
        text, blocks, attachments = self._text_blocks(args)
        if not text and not blocks and not attachments:
            raise ApiError("no_text")
        thread_ts = str(args["thread_ts"]) if args.get("thread_ts") not in (None, "") else None
        with st.lock:
            ts = st.new_ts()
            st.record_post("ephemeral", channel=ch, thread_ts=thread_ts, ts=ts, user=user, text=text, blocks=blocks)
        return {"message_ts": ts}

    def api_reactions_add(self, args: dict) -> dict:
        st = self.state
        ch = self._channel(args)
        name = str(args["name"]).strip(":")
        if not name or any(c.isspace() for c in name):
            raise ApiError("invalid_name")
        with st.lock:
            msg = st.find_message(ch, str(args["timestamp"]))
            if msg is None:
                raise ApiError("message_not_found")
            if name in msg["reactions"]:
                raise ApiError("already_reacted")
            msg["reactions"].append(name)
            st.record_post("reaction", channel=ch, thread_ts=msg.get("thread_ts"), ts=msg["ts"], name=name)
        return {}

    def api_users_info(self, args: dict) -> dict:
        u = self.state.users.get(str(args.get("user") or ""))
        if u is None:
            raise ApiError("user_not_found")
        return {"user": u}


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "slackemu/1"
    # TCP_NODELAY: a response goes out in two writes (headers, then body), and with Nagle's algorithm
    # the body waits for the client's delayed ACK of the headers, about 40 ms on Linux, on every
    # request of a kept-alive connection after the first few (libcurl keeps them alive; so does the
    # bench's control client). Back-to-back WebSocket frames would wait the same way. Slack does not.
    disable_nagle_algorithm = True
    server: "Server"

    def log_message(self, fmt: str, *args: Any) -> None:  # quiet by default
        if self.server.verbose:
            super().log_message(fmt, *args)

    # ------------------------------------------------------------------ plumbing

    def _body(self) -> bytes:
        n = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(n) if n > 0 else b""

    def _send(self, status: int, body: bytes, ctype: str, headers: dict | None = None) -> None:
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def _json(self, status: int, obj: Any, headers: dict | None = None) -> None:
        self._send(status, json.dumps(obj).encode(), "application/json; charset=utf-8", headers)

    def do_GET(self) -> None:
        self._route("GET")

    def do_POST(self) -> None:
        self._route("POST")

    def _route(self, verb: str) -> None:
        url = urllib.parse.urlsplit(self.path)
        path = url.path
        try:
            if path.startswith("/api/"):
                return self._web_api(verb, path[5:], url.query)
            if path.rstrip("/") == "/link" or path.startswith("/link/"):
                return self._websocket(url.query)
            if path.startswith("/hooks/"):
                return self._hook(verb, path)
            if path.startswith("/_emu/"):
                return self._control(verb, path[6:].strip("/"), url.query)
            self._json(404, {"error": "not found", "path": path})
        except BrokenPipeError:
            pass

    # ------------------------------------------------------------------ /api/

    def _web_api(self, verb: str, method: str, query: str) -> None:
        body = self._body()
        ctype = self.headers.get("Content-Type") or ""
        args, perr = _parse_args(query, ctype, body)
        auth = self.headers.get("Authorization") or ""
        token, source = None, None
        if auth.lower().startswith("bearer "):
            token, source = auth[7:].strip(), "header"
        elif args.get("token"):
            token, source = str(args["token"]), "argument"
        status, obj, headers = self.server.emu.call(method, verb, args, token, source, ctype, perr)
        self._json(status, obj, headers)

    # ------------------------------------------------------------------ /hooks/ (response_url)

    def _hook(self, verb: str, path: str) -> None:
        body = self._body()
        st = self.server.state
        try:
            obj = json.loads(body.decode()) if body else {}
        except (UnicodeDecodeError, ValueError):
            obj = {"_raw": body.decode(errors="replace")}
        with st.lock:
            ctx = st.hooks.get(path) or {"unknown": True}
            st.record_post("response_url", channel=ctx.get("channel"), thread_ts=obj.get("thread_ts"),
                           path=path, body=obj, text=obj.get("text"), blocks=obj.get("blocks"),
                           authorization=self.headers.get("Authorization"))
        if ctx.get("unknown"):
            return self._send(404, b"no_active_hooks", "text/plain")
        self._send(200, b"ok", "text/plain")

    # ------------------------------------------------------------------ /link/ (Socket Mode)

    def _websocket(self, query: str) -> None:
        st = self.server.state
        q = dict(urllib.parse.parse_qsl(query))
        key = self.headers.get("Sec-WebSocket-Key")
        if (self.headers.get("Upgrade") or "").lower() != "websocket" or not key:
            return self._json(400, {"error": "expected a WebSocket upgrade"})
        if self.headers.get("Sec-WebSocket-Version") != "13":
            return self._send(426, b"", "text/plain", {"Sec-WebSocket-Version": "13"})
        problem = st.claim_ticket(q.get("ticket", ""))
        if problem:
            return self._json(401, {"error": problem})
        self.send_response(101, "Switching Protocols")
        self.send_header("Upgrade", "websocket")
        self.send_header("Connection", "Upgrade")
        self.send_header("Sec-WebSocket-Accept", accept_key(key))
        self.end_headers()
        self.wfile.flush()
        self.close_connection = True
        ws = ServerSocket(self.connection, self.rfile)
        conn = st.open_connection(q["ticket"], ws, f"{self.client_address[0]}:{self.client_address[1]}",
                                  q.get("debug_reconnects") == "true")
        self._ws_loop(conn, ws)

    def _ws_loop(self, conn, ws: ServerSocket) -> None:
        st = self.server.state
        parts: list[bytes] = []
        reason, code = "client went away", None
        try:
            while True:
                fin, op, data = read_frame(self.rfile, require_mask=True)
                if op == OP_PING:
                    with st.lock:
                        conn.client_pings += 1
                        silent = conn.silent
                    if not silent:
                        ws.pong(data)
                elif op == OP_PONG:
                    with st.lock:
                        if not conn.silent:
                            conn.pongs += 1
                elif op == OP_CLOSE:
                    code = int.from_bytes(data[:2], "big") if len(data) >= 2 else 1005
                    reason = "client closed" if not ws.close_sent else conn.close_reason or "closed"
                    ws.send_close(code if code not in (1005, 1006) else 1000)
                    break
                elif op in (OP_TEXT, OP_BINARY, OP_CONT):
                    if op != OP_CONT:
                        parts = [] if op == OP_TEXT else [b"\0binary"]
                    parts.append(data)
                    if fin:
                        msg, parts = b"".join(parts), []
                        if not msg.startswith(b"\0binary"):
                            st.on_client_text(conn, msg.decode("utf-8", errors="replace"))
        except ProtocolError as e:
            ws.send_close(e.code, e.reason)
            reason = f"protocol error: {e.reason}"
        except (EOFError, OSError, ValueError):
            pass
        st.connection_ended(conn, reason if conn.close_reason is None else conn.close_reason, code)

    # ------------------------------------------------------------------ /_emu/ (control API)

    def _control(self, verb: str, path: str, query: str) -> None:
        st = self.server.state
        q = dict(urllib.parse.parse_qsl(query))
        body = self._body()
        try:
            req = json.loads(body) if body else {}
        except ValueError:
            return self._json(400, {"error": "body must be JSON"})
        try:
            result = payloads.control(st, verb, path, q, req)
        except KeyError as e:
            return self._json(404, {"error": f"not found: {e.args[0]}"})
        except (ValueError, TypeError) as e:
            return self._json(400, {"error": str(e)})
        if result is None:
            return self._json(404, {"error": f"no control endpoint {verb} /_emu/{path}"})
        self._json(200, result)


class Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, state: State, schema: Schema, verbose: bool = False) -> None:
        super().__init__((state.config.host, state.config.port), Handler)
        state.config.port = self.server_address[1]
        self.state = state
        self.emu = Emulator(state, schema)
        self.verbose = verbose
        self.stopping = threading.Event()
        self._ticker = threading.Thread(target=self._tick, name="slackemu-ticker", daemon=True)

    def start_ticker(self) -> None:
        self._ticker.start()

    def _tick(self) -> None:
        while not self.stopping.wait(0.02):
            try:
                self.state.tick()
            except Exception as e:  # keep ticking; report
                print(f"slackemu: ticker error: {e!r}", file=sys.stderr, flush=True)


def make_server(config: Config, schema_path: str | None = None, verbose: bool = False) -> Server:
    schema = Schema(schema_path) if schema_path else Schema()
    return Server(State(config), schema, verbose)


__all__ = ["Server", "make_server"]

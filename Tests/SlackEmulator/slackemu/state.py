"""Everything the emulator remembers, behind one lock: the workspace (users, channels, messages),
the Web API call log, rate-limit storms, and Socket Mode (tickets, connections, envelopes, acks)."""

from __future__ import annotations

import json
import threading
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

from .websocket import ServerSocket


@dataclass
class Config:
    host: str = "127.0.0.1"
    port: int = 0
    bot_token: str = "xoxb-1-emu-bot"
    app_token: str = "xapp-1-A0EMU0001-1-emu"
    team_id: str = "T0EMU0001"
    team_domain: str = "emu"
    team_name: str = "Emulated Workspace"
    app_id: str = "A0EMU0001"
    bot_id: str = "B0EMUBOT01"
    bot_user_id: str = "U0EMUBOT1"
    bot_name: str = "inferops"
    scopes: str = "app_mentions:read,channels:history,chat:write,commands,reactions:write,users:read"
    ack_timeout: float = 3.0          # Slack: 3 s
    max_retries: int = 3              # redeliveries per envelope before giving up
    redeliver_types: tuple = ("events_api", "slash_commands", "interactive")
    ping_interval: float = 5.0        # server-to-client WebSocket pings; 0 disables
    disconnect_close_delay: float = 0.2
    max_connections: int = 10
    debug_reconnect_interval: float = 30.0   # refresh_requested period for ?debug_reconnects=true
    drop_every: int = 0               # drop the connection (no close frame) after every N new envelopes; 0 never

    def public(self) -> dict:
        return {k: (list(v) if isinstance(v, tuple) else v) for k, v in self.__dict__.items()}


SETTABLE = {"ack_timeout": "ackTimeout", "max_retries": "maxRetries", "ping_interval": "pingInterval",
            "disconnect_close_delay": "disconnectCloseDelay", "max_connections": "maxConnections",
            "debug_reconnect_interval": "debugReconnectInterval", "redeliver_types": "redeliverTypes",
            "drop_every": "dropEvery"}


@dataclass
class Connection:
    id: str
    ticket: str
    ws: ServerSocket
    peer: str
    opened_at: float
    debug_reconnects: bool = False
    silent: bool = False
    closed_at: float | None = None
    close_reason: str | None = None          # who/what ended it
    close_code: int | None = None            # code in the client's close frame, if it sent one
    server_pings: int = 0
    pongs: int = 0
    client_pings: int = 0
    last_server_ping: float = 0.0
    close_at: float | None = None            # scheduled close (after a disconnect message)
    teardown_at: float | None = None         # hard teardown if the client never answers our close
    frames_in: int = 0
    disconnects: list = field(default_factory=list)

    @property
    def open(self) -> bool:
        return self.closed_at is None

    def public(self) -> dict:
        return {"id": self.id, "ticket": self.ticket, "peer": self.peer, "open": self.open,
                "silent": self.silent, "debugReconnects": self.debug_reconnects,
                "openedAt": self.opened_at, "closedAt": self.closed_at, "closeReason": self.close_reason,
                "clientCloseCode": self.close_code, "serverPings": self.server_pings, "pongs": self.pongs,
                "clientPings": self.client_pings, "framesIn": self.frames_in, "disconnects": self.disconnects}


@dataclass
class Envelope:
    id: str
    type: str
    payload: dict
    accepts_response_payload: bool
    created: float
    retry_attempt: int = 0
    retry_reason: str = ""
    deliveries: list = field(default_factory=list)
    acks: list = field(default_factory=list)
    pending: bool = True                     # waiting for a (re)delivery
    gave_up: bool = False

    @property
    def acked(self) -> bool:
        return bool(self.acks)

    def frame(self) -> dict:
        return {"envelope_id": self.id, "type": self.type, "payload": self.payload,
                "accepts_response_payload": self.accepts_response_payload,
                "retry_attempt": self.retry_attempt, "retry_reason": self.retry_reason}

    def public(self) -> dict:
        return {"envelope_id": self.id, "type": self.type, "payload": self.payload,
                "accepts_response_payload": self.accepts_response_payload, "created": self.created,
                "retry_attempt": self.retry_attempt, "retry_reason": self.retry_reason,
                "acked": self.acked, "pending": self.pending, "gaveUp": self.gave_up,
                "deliveries": self.deliveries, "acks": self.acks}


DEFAULT_USERS = [("U0ALICE01", "alice", "Alice Example"), ("U0BOB0001", "bob", "Bob Example")]
DEFAULT_CHANNELS = [("C0DEPLOY01", "deploys"), ("C0RANDOM01", "random")]


class State:
    def __init__(self, config: Config) -> None:
        self.config = config
        self.lock = threading.RLock()
        self.users: dict[str, dict] = {}
        self.channels: dict[str, dict] = {}
        self.connections: dict[str, Connection] = {}
        self._conn_seq = 0
        self._rr = 0
        self._delivered = 0
        self.drops = 0                           # connections dropped by `drop_every`
        self._last_ts_us = 0
        self.reset(connections=False, directory=True)

    # ---------------------------------------------------------------- reset / directory

    def reset(self, *, connections: bool = False, directory: bool = False) -> None:
        with self.lock:
            self.seq = 0
            self.calls: list[dict] = []
            self.posts: list[dict] = []              # every post/update/reaction/response, in order
            self.messages: dict[str, dict[str, dict]] = {}   # channel -> ts -> message
            self.envelopes: dict[str, Envelope] = {}
            self.unknown_acks: list[dict] = []
            self.client_frames: list[dict] = []      # non-ack text frames from clients
            self.ratelimits: dict[str, dict] = {}
            self.tickets: dict[str, dict] = {}
            self.hooks: dict[str, dict] = {}         # response_url path -> {channel, envelope_id, kind}
            self.link_disabled = False
            self._trigger_seq = 0
            self._event_seq = 0
            self._hook_seq = 0
            if directory:
                self.users = {}
                self.channels = {}
                c = self.config
                self.add_user(c.bot_user_id, c.bot_name, c.bot_name, is_bot=True)
                for uid, name, real in DEFAULT_USERS:
                    self.add_user(uid, name, real)
                for cid, name in DEFAULT_CHANNELS:
                    self.channels[cid] = {"id": cid, "name": name}
            if connections:
                for conn in list(self.connections.values()):
                    if conn.open:
                        self._close(conn, "reset", frame=False)
                self.connections = {}
            else:
                for conn in self.connections.values():
                    conn.silent = False

    def add_user(self, uid: str, name: str, real_name: str, is_bot: bool = False) -> dict:
        c = self.config
        u = {"id": uid, "team_id": c.team_id, "name": name, "deleted": False, "color": "9f69e7",
             "real_name": real_name, "tz": "Europe/Berlin", "tz_label": "Central European Time",
             "tz_offset": 3600, "is_admin": False, "is_owner": False, "is_primary_owner": False,
             "is_restricted": False, "is_ultra_restricted": False, "is_bot": is_bot, "is_app_user": False,
             "updated": 1700000000,
             "profile": {"real_name": real_name, "display_name": name, "avatar_hash": "g0000000000",
                         "real_name_normalized": real_name, "display_name_normalized": name, "title": "",
                         "phone": "", "skype": "", "status_text": "", "status_emoji": "", "fields": None,
                         "team": c.team_id}}
        if is_bot:
            u["profile"]["bot_id"] = c.bot_id
            u["profile"]["api_app_id"] = c.app_id
        self.users[uid] = u
        return u

    # ---------------------------------------------------------------- helpers

    def next_seq(self) -> int:
        self.seq += 1
        return self.seq

    def new_ts(self) -> str:
        """Unique, increasing message timestamps "1700000000.000100" (10 digits, dot, 6 digits)."""
        with self.lock:
            us = max(int(time.time() * 1_000_000), self._last_ts_us + 1)
            self._last_ts_us = us
            return f"{us // 1_000_000}.{us % 1_000_000:06d}"

    def record_post(self, kind: str, **fields: Any) -> dict:
        entry = {"seq": self.next_seq(), "time": time.time(), "kind": kind, **fields}
        self.posts.append(entry)
        return entry

    def store_message(self, channel: str, msg: dict) -> None:
        self.messages.setdefault(channel, {})[msg["ts"]] = msg

    def find_message(self, channel: str, ts: str) -> dict | None:
        return self.messages.get(channel, {}).get(ts)

    # ---------------------------------------------------------------- rate limits

    def take_ratelimit(self, method: str) -> dict | None:
        with self.lock:
            for key in (method, "*"):
                rl = self.ratelimits.get(key)
                if rl and rl["remaining"] > 0:
                    rl["remaining"] -= 1
                    rl["served"] += 1
                    return rl
            return None

    # ---------------------------------------------------------------- socket mode: connections

    def issue_ticket(self) -> str:
        t = str(uuid.uuid4())
        with self.lock:
            self.tickets[t] = {"issued": time.time(), "used": None}
        return t

    def claim_ticket(self, ticket: str) -> str | None:
        """None if the ticket may be used now, else the reason it may not."""
        with self.lock:
            t = self.tickets.get(ticket)
            if t is None:
                return "unknown ticket"
            if t["used"] is not None:
                return "ticket already used"
            t["used"] = time.time()
            return None

    def open_connection(self, ticket: str, ws: ServerSocket, peer: str, debug_reconnects: bool) -> Connection:
        with self.lock:
            self._conn_seq += 1
            conn = Connection(id=f"c{self._conn_seq}", ticket=ticket, ws=ws, peer=peer, opened_at=time.time(),
                              debug_reconnects=debug_reconnects)
            conn.last_server_ping = time.monotonic()
            self.connections[conn.id] = conn
            n_open = sum(1 for c in self.connections.values() if c.open)
            hello = {"type": "hello", "num_connections": n_open,
                     "debug_info": {"host": f"applink-emu-{conn.id}", "build_number": 1,
                                    "approximate_connection_time": int(self.config.debug_reconnect_interval)
                                    if debug_reconnects else 3600},
                     "connection_info": {"app_id": self.config.app_id}}
            ws.send_text(json.dumps(hello))
            if n_open > self.config.max_connections:
                self._send_disconnect(conn, "too_many_websockets", self.config.disconnect_close_delay)
            self.pump()
            return conn

    def live_connections(self) -> list[Connection]:
        return [c for c in self.connections.values()
                if c.open and not c.silent and c.close_at is None and not c.disconnects]

    def _close(self, conn: Connection, reason: str, *, frame: bool, code: int = 1000) -> None:
        if not conn.open:
            return
        if frame:
            conn.ws.send_close(code, reason[:60])
        conn.ws.teardown()
        conn.closed_at = time.time()
        conn.close_reason = reason

    def connection_ended(self, conn: Connection, reason: str, client_code: int | None = None) -> None:
        with self.lock:
            if client_code is not None:
                conn.close_code = client_code
            if conn.open:
                conn.ws.teardown()
                conn.closed_at = time.time()
                conn.close_reason = reason

    def _send_disconnect(self, conn: Connection, reason: str, close_after: float | None) -> dict:
        msg = {"type": "disconnect", "reason": reason, "debug_info": {"host": f"applink-emu-{conn.id}"}}
        ok = conn.ws.send_text(json.dumps(msg))
        conn.disconnects.append({"reason": reason, "time": time.time(), "sent": ok, "closeAfter": close_after})
        if close_after is not None:
            conn.close_at = time.monotonic() + max(0.0, close_after)
        return msg

    def disconnect(self, reason: str, conn_id: str | None, close_after: float | None) -> list[str]:
        with self.lock:
            targets = self._targets(conn_id)
            for conn in targets:
                self._send_disconnect(conn, reason, close_after)
            return [c.id for c in targets]

    def drop(self, conn_id: str | None) -> list[str]:
        with self.lock:
            targets = self._targets(conn_id)
            for conn in targets:
                self._close(conn, "dropped", frame=False)
            self.pump()
            return [c.id for c in targets]

    def set_silent(self, conn_id: str | None, silent: bool) -> list[str]:
        with self.lock:
            targets = self._targets(conn_id)
            for conn in targets:
                conn.silent = silent
            self.pump()
            return [c.id for c in targets]

    def _targets(self, conn_id: str | None) -> list[Connection]:
        if conn_id:
            c = self.connections.get(conn_id)
            if c is None:
                raise KeyError(conn_id)
            return [c] if c.open else []
        return [c for c in self.connections.values() if c.open]

    # ---------------------------------------------------------------- socket mode: envelopes

    def enqueue(self, etype: str, payload: dict, accepts_response_payload: bool) -> Envelope:
        with self.lock:
            env = Envelope(id=str(uuid.uuid4()), type=etype, payload=payload,
                           accepts_response_payload=accepts_response_payload, created=time.time())
            self.envelopes[env.id] = env
            self.pump()
            return env

    def pump(self) -> None:
        """Deliver every pending envelope to a live connection (round-robin), in creation order."""
        with self.lock:
            pending = [e for e in self.envelopes.values() if e.pending]
            if not pending:
                return
            live = self.live_connections()
            if not live:
                return
            for env in pending:
                live = [c for c in live if c.open]
                if not live:
                    return
                conn = live[self._rr % len(live)]
                self._rr += 1
                if conn.ws.send_text(json.dumps(env.frame())):
                    env.pending = False
                    env.deliveries.append({"connection": conn.id, "time": time.time(), "mono": time.monotonic(),
                                           "retry_attempt": env.retry_attempt, "retry_reason": env.retry_reason})
                    if env.retry_attempt == 0:
                        self._delivered += 1
                    if (env.retry_attempt == 0 and self.config.drop_every
                            and self._delivered % self.config.drop_every == 0):
                        # Acks of what this connection got last may be lost with it: Slack redelivers those.
                        self.drops += 1
                        self._close(conn, "dropped", frame=False)

    def redeliver(self, envelope_id: str, count: int = 1) -> Envelope:
        """Send an envelope again, acknowledged or not, as Slack does when an acknowledgement was lost:
        the same envelope id, `retry_attempt` one higher each time, `retry_reason` "timeout"."""
        with self.lock:
            env = self.envelopes.get(envelope_id)
            if env is None:
                raise KeyError(envelope_id)
            for _ in range(count):
                env.retry_attempt += 1
                env.retry_reason = "timeout"
                env.pending = True
                self.pump()
            return env

    def on_client_text(self, conn: Connection, text: str) -> None:
        now = time.time()
        with self.lock:
            conn.frames_in += 1
            try:
                obj = json.loads(text)
            except ValueError:
                self.client_frames.append({"connection": conn.id, "time": now, "text": text, "error": "not JSON"})
                return
            if not isinstance(obj, dict) or "envelope_id" not in obj:
                self.client_frames.append({"connection": conn.id, "time": now, "frame": obj})
                return
            eid = obj.get("envelope_id")
            ack = {"envelope_id": eid, "connection": conn.id, "time": now, "hasPayload": "payload" in obj,
                   "payload": obj.get("payload")}
            env = self.envelopes.get(eid)
            if env is None:
                self.unknown_acks.append(ack)
                return
            last = env.deliveries[-1] if env.deliveries else None
            ack["retry_attempt"] = env.retry_attempt
            ack["latencyMs"] = round((time.monotonic() - last["mono"]) * 1000, 1) if last else None
            env.acks.append(ack)
            if len(env.acks) == 1:
                env.pending = False
                p = obj.get("payload")
                if env.accepts_response_payload and isinstance(p, dict) and p:
                    pl = env.payload
                    self.record_post("ack_response", envelope_id=eid, channel=pl.get("channel_id")
                                     or (pl.get("channel") or {}).get("id"), thread_ts=None, body=p,
                                     text=p.get("text"), blocks=p.get("blocks"))

    # ---------------------------------------------------------------- the ticker

    def tick(self) -> None:
        """Called every few tens of ms: pings, scheduled closes, redeliveries, debug reconnects."""
        now = time.monotonic()
        cfg = self.config
        with self.lock:
            for conn in list(self.connections.values()):
                if not conn.open:
                    continue
                if conn.teardown_at is not None and now >= conn.teardown_at:
                    self._close(conn, conn.close_reason or "closed after disconnect", frame=False)
                    continue
                if conn.close_at is not None and now >= conn.close_at:
                    conn.close_at = None
                    conn.ws.send_close(1000, "disconnect")
                    conn.close_reason = "closed after disconnect"
                    conn.teardown_at = now + 1.0
                    continue
                if conn.silent or conn.close_at is not None:
                    continue
                if cfg.ping_interval > 0 and now - conn.last_server_ping >= cfg.ping_interval:
                    conn.last_server_ping = now
                    conn.server_pings += 1
                    conn.ws.ping(f"emu-ping:{conn.server_pings}:{time.time():.3f}".encode())
                if (conn.debug_reconnects and not conn.disconnects and cfg.debug_reconnect_interval > 0
                        and time.time() - conn.opened_at >= cfg.debug_reconnect_interval):
                    self._send_disconnect(conn, "refresh_requested", cfg.disconnect_close_delay)
            for env in self.envelopes.values():
                if env.acked or env.pending or env.gave_up or not env.deliveries:
                    continue
                if now - env.deliveries[-1]["mono"] < cfg.ack_timeout:
                    continue
                if env.type not in cfg.redeliver_types or env.retry_attempt >= cfg.max_retries:
                    env.gave_up = True
                    continue
                env.retry_attempt += 1
                env.retry_reason = "timeout"
                env.pending = True
            self.pump()

"""Envelope payloads (shapes from Slack's own SDK mocks and the Java SDK's json-logs samples)
and the control API under /_emu/."""

from __future__ import annotations

import secrets
import time
import uuid
from typing import Any

from .state import SETTABLE, State


def _user(st: State, uid: str) -> dict:
    u = st.users.get(uid)
    return {"id": uid, "name": u["name"] if u else uid.lower(), "username": u["name"] if u else uid.lower(),
            "team_id": st.config.team_id}


def _channel_name(st: State, cid: str) -> str:
    return (st.channels.get(cid) or {}).get("name", cid.lower())


def _hook(st: State, kind: str, channel: str, envelope_hint: str) -> str:
    st._hook_seq += 1
    path = f"/hooks/{kind}/{st.config.team_id}/{st._hook_seq}/{secrets.token_hex(8)}"
    st.hooks[path] = {"channel": channel, "kind": kind, "hint": envelope_hint}
    return f"http://{st.config.host}:{st.config.port}{path}"


def _trigger(st: State) -> str:
    st._trigger_seq += 1
    return f"{int(time.time())}.{st._trigger_seq}.{secrets.token_hex(8)}"


def _event_ids(st: State) -> tuple[str, int]:
    st._event_seq += 1
    return f"Ev0EMU{st._event_seq:06d}", int(time.time())


def slash_command(st: State, req: dict) -> tuple[dict, bool]:
    c = st.config
    channel = req.get("channel_id") or req.get("channel") or "C0DEPLOY01"
    user = req.get("user_id") or req.get("user") or "U0ALICE01"
    command = req.get("command", "/infer")
    p = {"token": "verification-token", "team_id": c.team_id, "team_domain": c.team_domain,
         "channel_id": channel, "channel_name": req.get("channel_name") or _channel_name(st, channel),
         "user_id": user, "user_name": req.get("user_name") or _user(st, user)["name"],
         "command": command, "text": req.get("text", ""), "api_app_id": c.app_id,
         "is_enterprise_install": "false",
         "response_url": req.get("response_url") or _hook(st, "commands", channel, command),
         "trigger_id": req.get("trigger_id") or _trigger(st)}
    return p, True


def event_callback(st: State, event: dict) -> tuple[dict, bool]:
    c = st.config
    event_id, event_time = _event_ids(st)
    p = {"token": "verification-token", "team_id": c.team_id, "api_app_id": c.app_id, "event": event,
         "type": "event_callback", "event_id": event_id, "event_time": event_time,
         "authorizations": [{"enterprise_id": None, "team_id": c.team_id, "user_id": c.bot_user_id,
                             "is_bot": True, "is_enterprise_install": False}],
         "is_ext_shared_channel": False,
         "event_context": f"4-{event.get('type', 'event')}-{c.team_id}-{event.get('channel', '')}"}
    return p, False


def user_message_event(st: State, req: dict, etype: str) -> dict:
    """An app_mention or message event from a user; the message is also stored in its channel."""
    channel = req.get("channel") or "C0DEPLOY01"
    user = req.get("user") or "U0ALICE01"
    text = req.get("text")
    if text is None:
        text = f"<@{st.config.bot_user_id}> status" if etype == "app_mention" else "hello"
    ts = req.get("ts") or st.new_ts()
    ev: dict[str, Any] = {"client_msg_id": str(uuid.uuid4()), "type": etype, "text": text, "user": user, "ts": ts,
                          "team": st.config.team_id,
                          "blocks": [{"type": "rich_text", "block_id": "emu", "elements": [
                              {"type": "rich_text_section", "elements": [{"type": "text", "text": text}]}]}],
                          "channel": channel, "event_ts": ts}
    if etype == "message":
        ev["channel_type"] = req.get("channel_type", "channel")
    thread_ts = req.get("thread_ts")
    if thread_ts:
        ev["thread_ts"] = thread_ts
        parent = st.find_message(channel, thread_ts)
        if parent is not None and etype == "message":
            ev["parent_user_id"] = parent.get("user")
    st.store_message(channel, {"type": "message", "text": text, "user": user, "ts": ts, "thread_ts": thread_ts,
                               "team": st.config.team_id, "edits": [], "reactions": []})
    return ev


def block_actions(st: State, req: dict) -> tuple[dict, bool]:
    c = st.config
    channel = req.get("channel") or "C0DEPLOY01"
    user = req.get("user") or "U0ALICE01"
    message_ts = req.get("message_ts")
    msg = st.find_message(channel, message_ts) if message_ts else None
    if message_ts is None:
        bot_msgs = [m for m in st.messages.get(channel, {}).values() if m.get("user") == c.bot_user_id]
        msg = bot_msgs[-1] if bot_msgs else None
        message_ts = msg["ts"] if msg else st.new_ts()
    action_id = req.get("action_id", "approve")
    block_id = req.get("block_id", "actions")
    value = req.get("value", "")
    text = {"type": "plain_text", "text": req.get("text", action_id), "emoji": True}
    message: dict[str, Any] = {"bot_id": c.bot_id, "type": "message", "user": c.bot_user_id, "ts": message_ts,
                               "team": c.team_id, "app_id": c.app_id,
                               "text": (msg or {}).get("text", "This content can't be displayed."),
                               "blocks": (msg or {}).get("blocks") or [
                                   {"type": "actions", "block_id": block_id, "elements": [
                                       {"type": "button", "action_id": action_id, "text": text, "value": value}]}]}
    container: dict[str, Any] = {"type": "message", "message_ts": message_ts, "channel_id": channel,
                                 "is_ephemeral": False}
    thread_ts = req.get("thread_ts") or (msg or {}).get("thread_ts")
    if thread_ts:
        container["thread_ts"] = thread_ts
        message["thread_ts"] = thread_ts
    action = {"action_id": action_id, "block_id": block_id, "text": text, "value": value, "type": "button",
              "action_ts": f"{time.time():.6f}"}
    if req.get("style"):
        action["style"] = req["style"]
    p = {"type": "block_actions", "user": _user(st, user), "api_app_id": c.app_id, "token": "verification-token",
         "container": container, "trigger_id": _trigger(st), "team": {"id": c.team_id, "domain": c.team_domain},
         "enterprise": None, "is_enterprise_install": False,
         "channel": {"id": channel, "name": _channel_name(st, channel)}, "message": message,
         "state": {"values": {}}, "response_url": _hook(st, "actions", channel, action_id), "actions": [action]}
    return p, False


def view_submission(st: State, req: dict) -> tuple[dict, bool]:
    c = st.config
    user = req.get("user") or "U0ALICE01"
    values = req.get("values") or {}
    p = {"type": "view_submission", "team": {"id": c.team_id, "domain": c.team_domain}, "user": _user(st, user),
         "api_app_id": c.app_id, "token": "verification-token", "trigger_id": _trigger(st),
         "view": {"id": req.get("view_id", "V0EMU" + secrets.token_hex(3).upper()), "team_id": c.team_id,
                  "type": "modal", "callback_id": req.get("callback_id", "infer_modal"),
                  "private_metadata": req.get("private_metadata", ""), "app_id": c.app_id,
                  "bot_id": c.bot_id, "title": {"type": "plain_text", "text": req.get("title", "InferOps")},
                  "blocks": req.get("blocks", []), "state": {"values": values}, "hash": secrets.token_hex(8)},
         "response_urls": [], "is_enterprise_install": False, "enterprise": None}
    return p, True


# ---------------------------------------------------------------------------------------------

def _envelope_result(env) -> dict:
    return {"envelope_id": env.id, "type": env.type, "payload": env.payload, "delivered": bool(env.deliveries)}


def _posts(st: State, q: dict) -> list[dict]:
    out = list(st.posts)
    if q.get("channel"):
        out = [p for p in out if p.get("channel") == q["channel"]]
    if "thread_ts" in q:
        out = [p for p in out if (p.get("thread_ts") or "") == q["thread_ts"] or
               (q["thread_ts"] and p.get("ts") == q["thread_ts"] and p["kind"] == "post")]
    if q.get("kind"):
        kinds = set(q["kind"].split(","))
        out = [p for p in out if p["kind"] in kinds]
    return out


def control(st: State, verb: str, path: str, q: dict, req: dict) -> Any:
    """Dispatch one control request; None means no such endpoint."""
    with st.lock:
        if verb == "GET":
            if path == "state":
                return {"config": st.config.public(), "connections": [c.public() for c in st.connections.values()],
                        "ratelimits": st.ratelimits, "channels": list(st.channels.values()),
                        "users": sorted(st.users)}
            if path == "connections":
                return {"connections": [c.public() for c in st.connections.values()]}
            if path == "calls":
                calls = st.calls
                if q.get("method"):
                    calls = [c for c in calls if c["method"] == q["method"]]
                return {"calls": calls}
            if path == "posts":
                return {"posts": _posts(st, q)}
            if path == "messages":
                chans = [q["channel"]] if q.get("channel") else list(st.messages)
                return {"messages": {ch: sorted(st.messages.get(ch, {}).values(), key=lambda m: m["ts"])
                                     for ch in chans}}
            if path == "envelopes":
                envs = [e.public() for e in st.envelopes.values()]
                if q.get("type"):
                    envs = [e for e in envs if e["type"] == q["type"]]
                return {"envelopes": envs}
            if path == "acks":
                acks = sorted((a for e in st.envelopes.values() for a in e.acks), key=lambda a: a["time"])
                return {"acks": acks, "unknownAcks": st.unknown_acks}
            if path == "deliveries":
                ds = [dict(d, envelope_id=e.id, type=e.type) for e in st.envelopes.values() for d in e.deliveries]
                ds.sort(key=lambda d: d["time"])
                return {"deliveries": ds}
            if path == "frames":
                return {"frames": st.client_frames}
            return None
        if verb != "POST":
            return None
        if path == "reset":
            st.reset(connections=bool(req.get("connections")), directory=bool(req.get("directory")))
            return {"ok": True}
        if path == "config":
            for attr, key in SETTABLE.items():
                if key in req:
                    cur = getattr(st.config, attr)
                    val = req[key]
                    setattr(st.config, attr, tuple(val) if isinstance(cur, tuple) else type(cur)(val))
            return {"config": st.config.public()}
        if path == "slash":
            p, arp = slash_command(st, req)
            return _envelope_result(st.enqueue("slash_commands", p, arp))
        if path in ("mention", "message"):
            ev = user_message_event(st, req, "app_mention" if path == "mention" else "message")
            p, arp = event_callback(st, ev)
            return _envelope_result(st.enqueue("events_api", p, arp))
        if path == "event":
            if not isinstance(req.get("event"), dict):
                raise ValueError("body needs an 'event' object")
            p, arp = event_callback(st, req["event"])
            return _envelope_result(st.enqueue("events_api", p, arp))
        if path == "button":
            p, arp = block_actions(st, req)
            return _envelope_result(st.enqueue("interactive", p, arp))
        if path == "view_submission":
            p, arp = view_submission(st, req)
            return _envelope_result(st.enqueue("interactive", p, arp))
        if path == "envelope":
            if "type" not in req or not isinstance(req.get("payload"), dict):
                raise ValueError("body needs 'type' and a 'payload' object")
            return _envelope_result(st.enqueue(req["type"], req["payload"], bool(req.get("accepts_response_payload"))))
        if path == "redeliver":
            return _envelope_result(st.redeliver(req["envelope_id"], int(req.get("count", 1))))
        if path == "disconnect":
            reason = req.get("reason", "refresh_requested")
            close_after = req.get("closeAfter", st.config.disconnect_close_delay)
            ids = st.disconnect(reason, req.get("connection"), close_after)
            if reason == "link_disabled" and req.get("disableLink"):
                st.link_disabled = True
            return {"connections": ids, "reason": reason}
        if path == "link":
            st.link_disabled = not bool(req.get("enabled", True))
            return {"linkDisabled": st.link_disabled}
        if path == "drop":
            return {"connections": st.drop(req.get("connection"))}
        if path == "silent":
            return {"connections": st.set_silent(req.get("connection"), bool(req.get("silent", True)))}
        if path == "ratelimit":
            method = req.get("method") or "*"
            count = int(req.get("count", 1))
            st.ratelimits[method] = {"method": method, "remaining": count, "served": 0,
                                     "retryAfter": int(req.get("retryAfter", 1))}
            return {"ratelimit": st.ratelimits[method]}
        if path == "users":
            u = st.add_user(req["id"], req.get("name", req["id"].lower()), req.get("real_name", req["id"]),
                            bool(req.get("is_bot")))
            return {"user": u}
        if path == "channels":
            st.channels[req["id"]] = {"id": req["id"], "name": req.get("name", req["id"].lower())}
            return {"channel": st.channels[req["id"]]}
        return None

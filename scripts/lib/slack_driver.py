#!/usr/bin/env python3
"""The Slack sandbox's chat: a small REPL that plays the people in a Slack workspace against the
Slack emulator (Tests/SlackEmulator) while InferOps serves it over Socket Mode, and shows what the
bot posts the way a Slack user would see it. `scripts/sandbox --slack` runs it; Python 3.11 standard
library only.

    slack_driver.py seed --emulator http://127.0.0.1:PORT
        Adds carol, dave, #prod-deploys and #incidents to the emulator's directory (before the daemon
        starts, so every id in config/sandbox-slack.yaml exists when it first posts).
    slack_driver.py chat --emulator URL [--daemon-pid PID --daemon-log FILE] [--started EPOCH]
        The REPL. Lines typed (or piped):
          /infer <command>    a slash command, as the current user in the current channel
          @inferops <text>    a mention of the bot in the current channel
          /as <user>          switch user: alice, bob, carol, dave (or a U… id)
          /in <#channel>      switch channel: #deploys, #prod-deploys, #incidents, #random (or a C… id)
          /approve, /deny     press the button on the newest approval request the current user can
                              see (`/approve op-…` picks one)
          /quit               stop (so do end of input and Ctrl-C)

What the bot posts is read by polling the emulator's record of posts (`GET /_emu/posts`, every
100 ms): the emulator has no stream of them, and the record is its own account of what Slack would
show whom. Thread replies are indented under their card, card edits print as one "✎ card updated"
line, ephemeral messages are marked "(only you can see this)".

Piped input is a script, like the console sandbox's: each line waits until the bot has answered it
and every operation the answer touched rests (ended, or waits for an approver or behind a lock),
judged from the posts alone: the status card's `state` field and the newest reply in its thread;
then nothing new for half a second. A line that takes longer than SANDBOX_SLACK_TIMEOUT (180 s)
says so and counts as failed. The session ends with the lines that did not succeed and the
console's exit statuses: 0 all done, 1 a command failed (or got no answer in time, or the daemon
stopped), 2 some were refused (a refusal only its requester sees) and none failed. At a terminal,
each line waits only for the first answer, and the session ends with 0.

With --daemon-pid, the end of the session (end of input, /quit, Ctrl-C, SIGTERM) stops the daemon
gracefully with SIGTERM and shows what it posts while it stops; a daemon that stops on its own ends
the session with the tail of its log.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import signal
import sys
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass, field

BOT_TOKEN = "xoxb-1-emu-bot"
BOT_USER = "U0EMUBOT1"

# The emulator's fixed directory, and what this driver adds: the people and channels of
# config/sandbox-slack.yaml. Slack ids are U/C and 8 to 10 upper-case letters and digits.
USERS = {"alice": "U0ALICE01", "bob": "U0BOB0001", "carol": "U0CAROL01", "dave": "U0DAVE001"}
ADDED_USERS = [("U0CAROL01", "carol", "Carol Example"), ("U0DAVE001", "dave", "Dave Example")]
CHANNELS = {"deploys": "C0DEPLOY01", "random": "C0RANDOM01", "prod-deploys": "C0PRODDEP1", "incidents": "C0INCIDNT1"}
ADDED_CHANNELS = [("C0PRODDEP1", "prod-deploys"), ("C0INCIDNT1", "incidents")]

POLL_INTERVAL = 0.1
# An answer counts as whole once nothing new was posted for this long after every operation it
# touched came to rest: a card edit can trail the thread reply that caused it by a few ms.
SETTLE = 0.5
# Card states after which a piped line goes on: the operation ended, or it waits for an approver.
# The card's final edit is always made; edits on the way are at most about one a second, so a card
# can still say `queued` while the thread already says helm is running: `queued` alone is no rest.
ENDED = {"succeeded", "failed", "rolled back", "cancelled", "denied", "expired", "interrupted"}
FAILED = {"failed", "rolled back", "interrupted"}

EMOJI = {
    "hourglass_flowing_sand": "⏳", "hourglass": "⌛", "white_check_mark": "✅", "heavy_check_mark": "✔️",
    "x": "❌", "warning": "⚠️", "information_source": "ℹ️", "rotating_light": "🚨", "lock": "🔒",
    "unlock": "🔓", "eyes": "👀", "no_entry": "⛔", "no_entry_sign": "🚫", "rocket": "🚀", "bulb": "💡",
    "arrows_counterclockwise": "🔄", "rewind": "⏪", "stopwatch": "⏱️", "thumbsup": "👍", "+1": "👍",
}
REFUSAL_EMOJI = ("❌", "⛔", "🚫")


class DriverError(Exception):
    """A problem the user should read (the emulator is unreachable, a bad command line)."""


# ------------------------------------------------------------------------------- the emulator


class Emulator:
    """The emulator's control API, and Slack's Web API with the bot's token (users.info, for names
    the driver does not know). Proxies from the environment are ignored: the emulator is on loopback."""

    def __init__(self, url: str) -> None:
        self.url = url.rstrip("/")
        self.opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))

    def _request(self, method: str, path: str, body: dict | None = None, headers: dict | None = None) -> dict:
        data = json.dumps(body).encode() if body is not None else None
        request = urllib.request.Request(self.url + path, data=data, method=method,
                                         headers={"Content-Type": "application/json", **(headers or {})})
        try:
            with self.opener.open(request, timeout=5) as response:
                return json.loads(response.read() or b"{}")
        except urllib.error.HTTPError as error:
            detail = error.read().decode(errors="replace")[:200]
            raise DriverError(f"the Slack emulator answered {method} {path} with {error.code}: {detail}") from None
        except (urllib.error.URLError, OSError, ValueError) as error:
            raise DriverError(f"the Slack emulator at {self.url} did not answer {method} {path}: {error}") from None

    def get(self, path: str, **query: str) -> dict:
        return self._request("GET", path + ("?" + urllib.parse.urlencode(query) if query else ""))

    def post(self, path: str, body: dict) -> dict:
        return self._request("POST", path, body)

    def web_api(self, method: str, **args: str) -> dict:
        return self._request("POST", f"/api/{method}", args, {"Authorization": f"Bearer {BOT_TOKEN}"})


def seed(emulator: Emulator) -> None:
    for uid, name, real_name in ADDED_USERS:
        emulator.post("/_emu/users", {"id": uid, "name": name, "real_name": real_name})
    for cid, name in ADDED_CHANNELS:
        emulator.post("/_emu/channels", {"id": cid, "name": name})


# ------------------------------------------------------------------------------- Slack's markup


class Terminal:
    """What the output can show: ANSI bold and dim only on a terminal, and never with NO_COLOR."""

    def __init__(self, stream) -> None:
        self.color = stream.isatty() and not os.environ.get("NO_COLOR")

    def bold(self, text: str) -> str:
        return f"\033[1m{text}\033[22m" if self.color else text

    def dim(self, text: str) -> str:
        return f"\033[2m{text}\033[22m" if self.color else text


_ESCAPES = re.compile(r"\x1b(\[[0-?]*[ -/]*[@-~]|\][^\x07\x1b]*(\x07|\x1b\\)?|.)|\x9b[0-?]*[ -/]*[@-~]", re.S)
_CONTROLS = re.compile("[\x00-\x09\x0b-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069]")


def literal(text: str) -> str:
    """Text from Slack made safe for a terminal: no escape sequences, control characters or
    bidirectional overrides (a reason or an engine's answer cannot recolour or rewrite the screen).
    Line breaks stay; tabs become spaces."""
    return _CONTROLS.sub("", _ESCAPES.sub("", text.replace("\t", " ")))


class Markup:
    """Slack's mrkdwn as a Slack client shows it: `<@U…>` as @name, `<#C…>` as #name, links as their
    label, emoji shortcodes as emoji, `*bold*` bold, `&lt;` `&gt;` `&amp;` as the characters."""

    TOKEN = re.compile(r"<([^<>\n]+)>")
    SHORTCODE = re.compile(r":([a-z0-9_+\-]+):")
    BOLD = re.compile(r"(?<![\w*])\*(?=\S)([^*\n]*?\S)\*(?![\w*])")

    def __init__(self, emulator: Emulator, terminal: Terminal) -> None:
        self.emulator = emulator
        self.terminal = terminal
        self.names = {uid: name for name, uid in USERS.items()}
        self.names[BOT_USER] = "inferops"
        self.channel_names = {cid: name for name, cid in CHANNELS.items()}

    def user(self, uid: str) -> str:
        if uid not in self.names:
            try:
                name = self.emulator.web_api("users.info", user=uid).get("user", {}).get("name")
                self.names[uid] = literal(name).replace("\n", " ") if name else uid
            except DriverError:
                self.names[uid] = uid
        return self.names[uid]

    def channel(self, cid: str | None) -> str:
        return "#" + self.channel_names.get(cid or "", cid or "?")

    def _token(self, match: re.Match) -> str:
        inner = match.group(1)
        target, _, label = inner.partition("|")
        if target.startswith("@"):
            return "@" + (label or self.user(target[1:]))
        if target.startswith("#"):
            return "#" + label if label else self.channel(target[1:])
        if target.startswith("!"):
            special = target[1:].split("^")[0]
            return label or ("@" + special if special in ("channel", "here", "everyone") else special)
        return f"{label} ({target})" if label and label != target else target

    def inline(self, text: str, bold: bool = True, code: bool = False) -> str:
        """One mrkdwn text for the terminal; `bold` False drops the bold marks without making it bold,
        `code` keeps every `*` (inside a code block they are characters)."""
        text = literal(text)
        text = self.TOKEN.sub(self._token, text)
        if not code:
            text = self.SHORTCODE.sub(lambda m: EMOJI.get(m.group(1), m.group(0)), text)
            text = self.BOLD.sub(lambda m: self.terminal.bold(m.group(1)) if bold else m.group(1), text)
        return text.replace("&lt;", "<").replace("&gt;", ">").replace("&amp;", "&")

    def lines(self, text: str) -> list[str]:
        """A mrkdwn text as lines; a ``` code block keeps its lines as they are, fences dropped."""
        out: list[str] = []
        for index, part in enumerate(text.split("```")):
            if index % 2 == 1:
                out += ["  " + line for line in self.inline(part.strip("\n"), code=True).split("\n")]
            elif part.strip("\n"):
                out += self.inline(part.strip("\n")).split("\n")
        return out


def fields_of(blocks: list | None) -> dict[str, str]:
    """The label → raw value of a message's section fields (`*label*\\nvalue`, as the renderer writes them)."""
    found: dict[str, str] = {}
    for block in blocks or []:
        for item in block.get("fields") or []:
            match = re.match(r"\*(.+?)\*\n(.*)", item.get("text") or "", re.S)
            if match:
                found[match.group(1)] = match.group(2)
    return found


def title_of(message: dict) -> str:
    """The raw mrkdwn of a message's first line: its first section's, else its text's."""
    for block in message.get("blocks") or []:
        if block.get("type") in ("section", "header") and block.get("text"):
            return (block["text"].get("text") or "").split("\n")[0]
    return (message.get("text") or "").split("\n")[0]


def approval_buttons(blocks: list | None) -> tuple[str, dict[str, dict]] | None:
    """The block id and the approve/deny buttons of an approval request, if the message has them."""
    for block in blocks or []:
        if block.get("type") != "actions":
            continue
        buttons = {e.get("action_id"): e for e in block.get("elements") or [] if e.get("type") == "button"}
        if "approve" in buttons or "deny" in buttons:
            return block.get("block_id") or "", buttons
    return None


def operation_of(message: dict) -> str | None:
    """The operation a message belongs to: a status card's `operation` field, or the `inferops:op-…`
    block id of its buttons."""
    fields = fields_of(message.get("blocks"))
    if "operation" in fields:
        return fields["operation"].strip()
    buttons = approval_buttons(message.get("blocks"))
    if buttons and buttons[0].startswith("inferops:"):
        return buttons[0][len("inferops:"):]
    return None


def is_card(message: dict) -> bool:
    fields = fields_of(message.get("blocks"))
    return "state" in fields and "operation" in fields


def plain_state(message: dict) -> str | None:
    state = fields_of(message.get("blocks")).get("state")
    return state.strip() if state is not None else None


# ------------------------------------------------------------------------------- the workspace


@dataclass
class Entry:
    """One record of the emulator's post log, as the driver saw it."""
    seq: int
    kind: str
    channel: str | None
    ts: str | None
    thread_ts: str | None
    user: str | None
    text: str
    blocks: list | None
    seen: float
    operation: str | None = None
    # The rest of the record: a response_url's or an ack's body, a reaction's name.
    body: dict = field(default_factory=dict)
    reaction: str | None = None


class Workspace:
    """What the bot has posted so far, kept current by a poller thread, and printed as it comes.
    Everything here is guarded by `condition`; the main thread waits on it for a line's answer."""

    def __init__(self, emulator: Emulator, markup: Markup, terminal: Terminal, out) -> None:
        self.emulator = emulator
        self.markup = markup
        self.terminal = terminal
        self.out = out
        self.condition = threading.Condition()
        self.print_lock = threading.RLock()
        # One poll at a time (the poller's, or the main thread's last one when the daemon stopped):
        # each post is taken and printed once, in order. Taken before `condition`, never inside it.
        self.poll_lock = threading.Lock()
        self.entries: list[Entry] = []
        self.last_seq = 0
        self.messages: dict[tuple[str, str], dict] = {}     # (channel, ts) → the message as it is now
        self.cards: dict[str, tuple[str, str]] = {}         # operation → its card's (channel, ts)
        self.user_messages: dict[tuple[str, str], str] = {} # (channel, ts) → "alice's message “…”"
        self.envelope_users: dict[str, str] = {}            # slash command envelope → who typed it
        self.last_card_edit: dict[str, str] = {}
        self.newest_reply: dict[str, dict] = {}             # operation → the newest post in its thread
        self.last_thread: tuple[str, str] | None = None
        self.current_user = USERS["alice"]
        self.poll_error: str | None = None
        self.stopped = threading.Event()
        # At a terminal, a line printed while the user types is printed above the prompt, and the
        # prompt and what was typed so far are written again below it.
        self.prompt: str | None = None
        self.readline = None
        # Called after each of the poller's polls (at a terminal: is the daemon still there?).
        self.after_poll = lambda: None

    # ---- printing

    def emit(self, lines: list[str]) -> None:
        with self.print_lock:
            text = "\n".join(lines) + "\n"
            try:
                if self.prompt is not None and self.readline is not None:
                    typed = self.readline.get_line_buffer()
                    self.out.write("\r\033[K" + text + self.prompt + typed)
                else:
                    self.out.write(text)
                self.out.flush()
            except BrokenPipeError:
                pass

    # ---- polling

    def run_poller(self) -> None:
        while not self.stopped.is_set():
            try:
                self.poll_once()
                self.poll_error = None
            except DriverError as error:
                with self.condition:
                    self.poll_error = str(error)
                    self.condition.notify_all()
            self.after_poll()
            self.stopped.wait(POLL_INTERVAL)

    def poll_once(self) -> None:
        with self.poll_lock:
            self._poll()

    def _poll(self) -> None:
        posts = self.emulator.get("/_emu/posts").get("posts", [])
        now = time.monotonic()
        rendered: list[list[str]] = []
        with self.condition:
            for post in posts:
                if post.get("seq", 0) <= self.last_seq:
                    continue
                entry = Entry(seq=post["seq"], kind=post.get("kind", "?"), channel=post.get("channel"),
                              ts=post.get("ts"), thread_ts=post.get("thread_ts"), user=post.get("user"),
                              text=post.get("text") or "", blocks=post.get("blocks"), seen=now,
                              body=post.get("body") or {}, reaction=post.get("name"))
                if entry.kind == "response_url" and isinstance(post.get("body"), dict):
                    entry.thread_ts = entry.thread_ts or post["body"].get("thread_ts")
                self.last_seq = max(self.last_seq, entry.seq)
                lines = self.absorb(entry)
                self.entries.append(entry)
                if lines:
                    rendered.append(lines)
            self.condition.notify_all()
        for lines in rendered:
            self.emit(lines)

    def absorb(self, entry: Entry) -> list[str]:
        """Records what `entry` changes and returns its lines. Called with `condition` held."""
        key = (entry.channel or "", entry.ts or "")
        if entry.kind == "post":
            message = {"text": entry.text, "blocks": entry.blocks, "thread_ts": entry.thread_ts, "seq": entry.seq,
                       "channel": entry.channel, "ts": entry.ts}
            self.messages[key] = message
            entry.operation = operation_of(message) or self.thread_operation(entry)
            if is_card(message) and entry.operation:
                self.cards[entry.operation] = key
                self.last_card_edit[entry.operation] = self.edit_summary(message)
            elif entry.operation and entry.thread_ts:
                self.newest_reply[entry.operation] = message
            return self.render_message(entry, message)
        if entry.kind == "update":
            message = self.messages.setdefault(key, {"channel": entry.channel, "ts": entry.ts, "seq": entry.seq})
            message.update(text=entry.text, blocks=entry.blocks)
            entry.operation = operation_of(message) or self.thread_operation(entry)
            return self.render_update(entry, message)
        if entry.kind in ("ephemeral", "ack_response", "response_url"):
            message = {"text": entry.text, "blocks": entry.blocks, "thread_ts": entry.thread_ts}
            entry.operation = operation_of(message) or self.thread_operation(entry)
            if entry.kind == "ack_response":
                entry.user = self.envelope_users.get(entry.body.get("envelope_id", "")) or entry.user
            if entry.kind == "response_url" and entry.body.get("response_type") == "in_channel":
                return self.render_message(entry, message)
            return self.render_message(entry, message, private_to=entry.user or self.current_user)
        if entry.kind == "reaction":
            name = literal(entry.reaction or "?")
            target = self.user_messages.get(key) or "a message"
            return [f"    {EMOJI.get(name, ':' + name + ':')} inferops reacted to {target} in {self.markup.channel(entry.channel)}"]
        return []

    def thread_operation(self, entry: Entry) -> str | None:
        """The operation whose card heads the thread `entry` is in."""
        if not entry.thread_ts:
            return None
        root = self.messages.get((entry.channel or "", entry.thread_ts))
        return operation_of(root) if root else None

    # ---- rendering

    def body_lines(self, message: dict) -> list[str]:
        """A message's blocks (or its text) as lines, its title first."""
        markup = self.markup
        blocks = message.get("blocks")
        if not blocks:
            return markup.lines(message.get("text") or "") or [""]
        lines: list[str] = []
        for block in blocks:
            kind = block.get("type")
            if kind in ("section", "header"):
                text = block.get("text") or {}
                if text.get("text"):
                    shown = markup.lines(text["text"]) if text.get("type") == "mrkdwn" else literal(text["text"]).split("\n")
                    lines += [self.terminal.bold(line) for line in shown] if kind == "header" else shown
                if block.get("fields"):
                    lines += self.field_lines(block["fields"])
                accessory = block.get("accessory") or {}
                if accessory.get("type") == "button":
                    lines.append(f"[{literal((accessory.get('text') or {}).get('text', '?'))}]")
            elif kind == "context":
                parts = [markup.inline(e.get("text") or "") for e in block.get("elements") or [] if e.get("text")]
                if parts:
                    lines.append(self.terminal.dim("  ".join(parts)))
            elif kind == "actions":
                buttons = [f"[{literal((e.get('text') or {}).get('text', '?'))}]"
                           for e in block.get("elements") or [] if e.get("type") == "button"]
                hint = ""
                if approval_buttons([block]):
                    hint = "  " + self.terminal.dim("(/approve or /deny presses them)")
                lines.append(" ".join(buttons) + hint)
            elif kind == "divider":
                lines.append("──────────")
            elif kind == "rich_text":
                lines += markup.lines(message.get("text") or "")
            elif kind == "image":
                lines.append(f"[image: {literal(block.get('alt_text') or '')}]")
        return lines or markup.lines(message.get("text") or "") or [""]

    def field_lines(self, fields: list) -> list[str]:
        """Fields as `label: value`: on one line when they are few and short (a card), else one a line."""
        pairs = []
        for item in fields:
            match = re.match(r"\*(.+?)\*\n(.*)", item.get("text") or "", re.S)
            label, value = (match.group(1), match.group(2)) if match else ("", item.get("text") or "")
            pairs.append((self.markup.inline(label, bold=False), self.markup.lines(value)))
        joined = " · ".join(f"{label}: {value[0] if value else ''}" for label, value in pairs)
        if all(len(value) <= 1 for _, value in pairs) and len(joined) <= 110:
            return [joined]
        out = []
        for label, value in pairs:
            out.append(f"{label}: {value[0] if value else ''}" if label else (value[0] if value else ""))
            out += ["  " + line for line in value[1:]]
        return out

    def edit_summary(self, message: dict) -> str:
        """What a card edit says: its tone, state and what it is doing now (or its title)."""
        title = self.markup.inline(title_of(message), bold=False)
        emoji = title.split(" ", 1)[0] if title and not title[0].isalnum() else ""
        fields = fields_of(message.get("blocks"))
        state = plain_state(message)
        now = self.markup.inline(fields["now"], bold=False).replace("\n", " ") if "now" in fields else None
        detail = now or title[len(emoji):].strip()
        if len(detail) > 100:
            detail = detail[:99] + "…"
        return " ".join(part for part in (emoji, (state + " ·") if state else "", detail) if part)

    def thread_header(self, channel: str | None, thread_ts: str) -> str:
        root = self.messages.get((channel or "", thread_ts))
        where = self.markup.channel(channel)
        if root is not None:
            title = self.markup.inline(title_of(root), bold=False)
            if len(title) > 90:
                title = title[:89] + "…"
            op = operation_of(root)
            return f"    ↳ in the thread of [{where}] {title}" + (f" ({op})" if op and op not in title else "")
        mine = self.user_messages.get((channel or "", thread_ts))
        return f"    ↳ in the thread of {mine} in {where}" if mine else f"    ↳ in a thread in {where}"

    def render_message(self, entry: Entry, message: dict, private_to: str | None = None) -> list[str]:
        body = self.body_lines(message)
        if private_to is not None:
            who = "you" if private_to == self.current_user else "@" + self.markup.user(private_to)
            body[0] += " " + self.terminal.dim(f"(only {who} can see this)")
        if entry.thread_ts:
            out = []
            thread = (entry.channel or "", entry.thread_ts)
            if self.last_thread != thread:
                out.append(self.thread_header(entry.channel, entry.thread_ts))
            self.last_thread = thread
            out.append("    │ " + body[0])
            out += ["    │   " + line for line in body[1:]]
            return out
        self.last_thread = (entry.channel or "", entry.ts or "")
        return [f"[{self.markup.channel(entry.channel)}] " + body[0]] + ["    " + line for line in body[1:]]

    def render_update(self, entry: Entry, message: dict) -> list[str]:
        root = message.get("thread_ts") or entry.ts or ""
        thread = (entry.channel or "", root)
        out = []
        if is_card(message):
            summary = self.edit_summary(message)
            op = entry.operation or "?"
            if self.last_card_edit.get(op) == summary:
                return []
            self.last_card_edit[op] = summary
            if self.last_thread != thread:
                out.append(self.thread_header(entry.channel, root))
            out.append(f"    ✎ card updated: {summary}")
        else:
            if self.last_thread != thread:
                out.append(self.thread_header(entry.channel, root))
            body = self.body_lines(message)
            out.append(f"    ✎ message updated: {body[0]}")
            out += ["        " + line for line in body[1:]]
        self.last_thread = thread
        return out

    # ---- questions the main thread asks (with `condition` held)

    def card_state(self, operation: str) -> str | None:
        key = self.cards.get(operation)
        return plain_state(self.messages[key]) if key else None

    def resting(self, operation: str) -> bool:
        """Whether an operation has ended or waits for a person: its card says it ended or awaits
        approval, or the newest reply in its thread is an approval request (asked again after a
        change) or says it is queued behind a lock."""
        state = self.card_state(operation)
        if state in ENDED or state == "awaiting approval":
            return True
        newest = self.newest_reply.get(operation)
        if newest is None:
            return False
        if approval_buttons(newest.get("blocks")):
            return True
        title = self.markup.inline(title_of(newest), bold=False)
        return "Queued: " in title and " is locked by " in title

    def newest_approval(self, user: str, operation: str | None) -> dict | None:
        """The newest message with approve/deny buttons that `user` can see (channel messages, and
        ephemerals to them), as it is now; `operation` narrows it to one."""
        candidates = []
        for (channel, ts), message in self.messages.items():
            buttons = approval_buttons(message.get("blocks"))
            if buttons and (operation is None or operation_of(message) == operation):
                candidates.append((message.get("seq", 0), channel, ts, message, buttons))
        for entry in self.entries:
            if entry.kind == "ephemeral" and entry.user == user:
                buttons = approval_buttons(entry.blocks)
                message = {"blocks": entry.blocks, "text": entry.text, "thread_ts": entry.thread_ts}
                if buttons and (operation is None or operation_of(message) == operation):
                    candidates.append((entry.seq, entry.channel, entry.ts, message, buttons))
        if not candidates:
            return None
        seq, channel, ts, message, (block_id, buttons) = max(candidates, key=lambda c: c[0])
        return {"channel": channel, "ts": ts, "message": message, "block_id": block_id, "buttons": buttons}


# ------------------------------------------------------------------------------- the session


@dataclass
class Outcome:
    failed: bool = False
    refused: bool = False


class Session:
    def __init__(self, workspace: Workspace, emulator: Emulator, args, interactive: bool) -> None:
        self.workspace = workspace
        self.emulator = emulator
        self.args = args
        self.interactive = interactive
        self.user = USERS["alice"]
        self.channel = CHANNELS["deploys"]
        self.commands = 0
        self.unsuccessful: list[tuple[int, str, bool]] = []
        self.daemon_gone = False
        # Set once the session stops the daemon itself: its end is then no news.
        self.stopping = False

    @property
    def user_name(self) -> str:
        return self.workspace.markup.user(self.user)

    @property
    def prompt(self) -> str:
        return f"{self.user_name}@{self.workspace.markup.channel(self.channel)}> "

    def say(self, line: str) -> None:
        self.workspace.emit([line])

    # ---- the daemon

    def daemon_alive(self) -> bool:
        pid = self.args.daemon_pid
        if not pid:
            return True
        try:
            with open(f"/proc/{pid}/stat") as stat:
                # The state follows the command name in parentheses; Z is a zombie its parent has not reaped.
                return stat.read().rsplit(")", 1)[1].split()[0] not in ("Z", "X")
        except (OSError, IndexError):
            return False

    def daemon_log(self, lines: int = 15) -> list[str]:
        """The last `lines` lines of the daemon's log, safe to print."""
        if not self.args.daemon_log:
            return []
        try:
            with open(self.args.daemon_log, errors="replace") as log:
                return [literal(line.rstrip("\n")) for line in log.readlines()[-lines:]]
        except OSError:
            return []

    def report_daemon_gone(self) -> None:
        with self.workspace.print_lock:
            if self.daemon_gone:
                return
            self.daemon_gone = True
        log = self.args.daemon_log or "its log"
        self.workspace.emit([f"✗ InferOps stopped on its own; the end of {log}:"]
                            + (["    " + line for line in self.daemon_log()] or ["    (empty)"])
                            + (["  `/quit` ends the session."] if self.interactive else []))

    def wait_for_connection(self) -> bool:
        """Until InferOps has a Socket Mode connection open (slash commands wait in the emulator's
        queue until then, but a daemon that never connects should say so at once)."""
        deadline = time.monotonic() + self.args.connect_timeout
        while time.monotonic() < deadline:
            connections = self.emulator.get("/_emu/connections").get("connections", [])
            if any(c.get("open") for c in connections):
                # What the daemon says of itself on standard output (signed in as…, listening on…).
                self.workspace.emit([line for line in self.daemon_log(40) if line.startswith("inferops: ")])
                return True
            if not self.daemon_alive():
                self.report_daemon_gone()
                return False
            time.sleep(POLL_INTERVAL)
        self.say(f"✗ InferOps did not connect to the Slack emulator within {self.args.connect_timeout:.0f} s"
                 + (f"; the end of {self.args.daemon_log}:" if self.args.daemon_log else "."))
        self.workspace.emit(["    " + line for line in self.daemon_log()])
        return False

    def stop_daemon(self) -> None:
        """SIGTERM, then the posts it makes while it stops, until it is gone."""
        pid = self.args.daemon_pid
        if not pid or not self.daemon_alive():
            return
        self.stopping = True
        self.say("\n• Stopping InferOps (SIGTERM)…")
        try:
            os.kill(pid, signal.SIGTERM)
        except ProcessLookupError:
            return
        deadline = time.monotonic() + self.args.stop_timeout
        while self.daemon_alive() and time.monotonic() < deadline:
            time.sleep(POLL_INTERVAL)
        try:
            self.workspace.poll_once()
        except DriverError:
            pass
        if self.daemon_alive():
            self.say(f"✗ InferOps is still stopping after {self.args.stop_timeout:.0f} s"
                     + (f" (its log: {self.args.daemon_log})." if self.args.daemon_log else "."))
        else:
            self.say("• InferOps stopped.")

    # ---- lines

    def handle(self, number: int, raw: str) -> bool:
        """One line of input; False ends the session."""
        line = raw.strip()
        if not line or line.startswith("#"):
            return True
        if not self.interactive:
            self.say("\n" + self.prompt + literal(line))
        lowered = line.lower()
        if lowered in ("/quit", "/exit"):
            return False
        self.commands += 1
        outcome = Outcome()
        try:
            if lowered == "/as" or lowered.startswith("/as "):
                outcome = self.switch_user(line[3:].strip())
            elif lowered == "/in" or lowered.startswith("/in "):
                outcome = self.switch_channel(line[3:].strip())
            elif lowered == "/infer" or lowered.startswith("/infer "):
                outcome = self.slash(line[len("/infer"):].strip())
            elif lowered == "@inferops" or lowered.startswith("@inferops "):
                outcome = self.mention(line[len("@inferops"):].strip())
            elif lowered.split(" ")[0] in ("/approve", "/deny"):
                outcome = self.press(lowered.split(" ")[0][1:], line.split()[1:])
            elif lowered in ("/help", "/?"):
                self.say(HELP)
            else:
                first = line.split(" ")[0]
                if first.startswith("/"):
                    self.say(f"✗ `{literal(first[:40])}` is not a command here: type `/infer …`, `@inferops …`, "
                             "`/as <user>`, `/in <#channel>`, `/approve`, `/deny` or `/quit` (`/help` says more).")
                else:
                    self.say(f"✗ Commands start with `/infer`: did you mean `/infer {literal(line[:60])}`?")
                outcome = Outcome(refused=True)
        except DriverError as error:
            self.say(f"✗ {error}")
            outcome = Outcome(failed=True)
        if outcome.failed or outcome.refused:
            self.unsuccessful.append((number, line, outcome.failed))
        return not self.daemon_gone

    def switch_user(self, name: str) -> Outcome:
        wanted = name.lstrip("@")
        uid = USERS.get(wanted.lower()) or (wanted if wanted in USERS.values() else None)
        if uid is None:
            self.say(f"✗ No user `{literal(wanted)}` here: " + ", ".join(USERS) + ".")
            return Outcome(refused=True)
        self.user = uid
        self.workspace.current_user = uid
        self.say(f"• You are now {self.user_name} ({uid}).")
        return Outcome()

    def switch_channel(self, name: str) -> Outcome:
        wanted = name.lstrip("#")
        cid = CHANNELS.get(wanted.lower()) or (wanted if wanted in CHANNELS.values() else None)
        if cid is None:
            self.say(f"✗ No channel `{literal(name)}` here: " + ", ".join("#" + c for c in CHANNELS) + ".")
            return Outcome(refused=True)
        self.channel = cid
        self.say(f"• You are now in {self.workspace.markup.channel(cid)} ({cid}).")
        return Outcome()

    def slash(self, text: str) -> Outcome:
        with self.workspace.condition:
            mark = self.workspace.last_seq
        result = self.emulator.post("/_emu/slash", {
            "command": "/infer", "text": text, "user_id": self.user, "user_name": self.user_name,
            "channel_id": self.channel, "channel_name": self.workspace.markup.channel(self.channel)[1:]})
        with self.workspace.condition:
            self.workspace.envelope_users[result.get("envelope_id", "")] = self.user
        return self.await_answer(mark)

    def mention(self, text: str) -> Outcome:
        with self.workspace.condition:
            mark = self.workspace.last_seq
        result = self.emulator.post("/_emu/mention", {
            "text": f"<@{BOT_USER}> {text}".rstrip(), "user": self.user, "channel": self.channel})
        event = (result.get("payload") or {}).get("event") or {}
        if event.get("ts"):
            with self.workspace.condition:
                shown = text if len(text) <= 40 else text[:39] + "…"
                self.workspace.user_messages[(self.channel, event["ts"])] = \
                    f"{self.user_name}'s message “@inferops {literal(shown)}”"
        return self.await_answer(mark)

    def press(self, action: str, words: list[str]) -> Outcome:
        operation = words[0] if words else None
        with self.workspace.condition:
            request = self.workspace.newest_approval(self.user, operation)
            mark = self.workspace.last_seq
        if request is None:
            which = f" for {literal(operation)}" if operation else ""
            self.say(f"✗ There is no approval request{which} that {self.user_name} can see.")
            return Outcome(refused=True)
        button = request["buttons"].get(action)
        if button is None:
            self.say(f"✗ The newest approval request has no {action} button.")
            return Outcome(refused=True)
        op = operation_of(request["message"]) or "?"
        label = literal((button.get("text") or {}).get("text", action))
        confirm = button.get("confirm") or {}
        asked = literal((confirm.get("text") or {}).get("text", ""))
        self.say(f"• {self.user_name} presses [{label}] on the approval request of {op} in "
                 f"{self.workspace.markup.channel(request['channel'])}"
                 + (f" and confirms “{self.workspace.markup.inline(asked, bold=False)}”" if asked else "") + ".")
        self.emulator.post("/_emu/button", {
            "action_id": action, "value": button.get("value", ""), "block_id": request["block_id"],
            "user": self.user, "channel": request["channel"], "message_ts": request["ts"],
            "thread_ts": request["message"].get("thread_ts"), "style": button.get("style"), "text": label})
        return self.await_answer(mark, operation=op if op != "?" else None)

    # ---- waiting for the bot

    def await_answer(self, mark: int, operation: str | None = None) -> Outcome:
        """Until the bot answered what was sent after post `mark` and, piped, until every operation
        the answer touched rests and nothing more came for `SETTLE` s. At a terminal only the first
        answer is waited for (briefly): the rest prints while the next line is typed."""
        workspace = self.workspace
        timeout = self.args.answer_timeout if not self.interactive else self.args.first_answer_timeout
        deadline = time.monotonic() + timeout
        with workspace.condition:
            while True:
                new = [e for e in workspace.entries if e.seq > mark]
                involved = {e.operation for e in new if e.operation} | ({operation} if operation else set())
                busy = {op: workspace.card_state(op) for op in involved if not workspace.resting(op)}
                now = time.monotonic()
                if new and self.interactive:
                    return self.judge(new, involved)
                if new and not busy and now - max(e.seen for e in new) >= SETTLE:
                    return self.judge(new, involved)
                if now >= deadline or not self.daemon_alive():
                    break
                workspace.condition.wait(POLL_INTERVAL)
        if not self.daemon_alive():
            try:
                workspace.poll_once()   # what it posted last
            except DriverError:
                pass
            self.report_daemon_gone()
            return Outcome(failed=True)
        log = f" (its log: {self.args.daemon_log})" if self.args.daemon_log else ""
        if self.interactive:
            self.say(f"… no answer from InferOps yet after {timeout:.0f} s; it prints here when it comes{log}.")
            return Outcome()
        if not new:
            problem = f"; the emulator: {workspace.poll_error}" if workspace.poll_error else ""
            self.say(f"✗ No answer from InferOps within {timeout:.0f} s{log}{problem}. Going on with the next line.")
        else:
            with workspace.condition:
                for op, state in sorted(busy.items()):
                    newest = workspace.newest_reply.get(op)
                    last = workspace.markup.inline(title_of(newest), bold=False) if newest else None
                    self.say(f"✗ {op} has not ended after {timeout:.0f} s (its card says {state or 'nothing yet'}"
                             + (f"; the newest in its thread: {last}" if last else "") + f"){log}. "
                             "Going on with the next line.")
        return Outcome(failed=True)

    def judge(self, new: list[Entry], involved: set[str]) -> Outcome:
        """What became of a line, from the posts that answered it: failed when an operation it
        touched ended failed, rolled back or interrupted, or InferOps reported an internal error;
        refused when the answer was a refusal shown only to the one who typed it."""
        states = {self.workspace.card_state(op) for op in involved}
        private = [e for e in new if e.kind in ("ephemeral", "ack_response", "response_url")
                   and (e.user in (None, self.user))]
        internal = any("Something went wrong inside InferOps" in e.text for e in private)
        if states & FAILED or internal:
            return Outcome(failed=True)
        refusal = any(self.workspace.markup.inline(e.text, bold=False).startswith(REFUSAL_EMOJI) for e in private)
        return Outcome(refused=refusal)

    # ---- the end

    def summary(self) -> tuple[str, int]:
        if not self.unsuccessful:
            if self.commands == 0:
                return "No commands were given.", 0
            return ("The command succeeded." if self.commands == 1 else f"All {self.commands} commands succeeded."), 0
        parts = []
        for number, command, failed in sorted(self.unsuccessful):
            shown = command if len(command) <= 60 else command[:59] + "…"
            parts.append(f"line {number} `{literal(shown)}` {'failed' if failed else 'refused'}")
        noun = "command" if self.commands == 1 else "commands"
        status = 1 if any(failed for _, _, failed in self.unsuccessful) else 2
        return f"{len(self.unsuccessful)} of {self.commands} {noun} did not succeed: {'; '.join(parts)}.", status


HELP = """• Lines this chat takes:
    /infer <command>    a slash command as you, in this channel (`/infer help` lists them)
    @inferops <text>    a mention of the bot in this channel
    /as <user>          switch user: alice (admin), bob (staging), carol (approves production), dave (on call)
    /in <#channel>      switch channel: #deploys, #prod-deploys (production's changes), #incidents, #random
    /approve, /deny     press the button on the newest approval request you can see (`/approve op-…` picks one)
    /quit               stop (so do Ctrl-D and Ctrl-C); InferOps stops gracefully"""


def read_lines(session: Session, workspace: Workspace):
    """Lines from standard input: with line editing and a history at a terminal."""
    if not session.interactive:
        for line in sys.stdin:
            yield line.rstrip("\n")
        return
    try:
        import readline
        history = os.path.expanduser("~/.inferops_slack_history")
        try:
            readline.read_history_file(history)
        except OSError:
            pass
        readline.set_history_length(1000)
        workspace.readline = readline
    except ImportError:
        readline, history = None, None
    try:
        while True:
            prompt = session.prompt
            with workspace.print_lock:
                workspace.prompt = prompt
            try:
                line = input(prompt)
            finally:
                with workspace.print_lock:
                    workspace.prompt = None
            yield line
    except EOFError:
        print()
    finally:
        if readline is not None:
            try:
                readline.write_history_file(history)
            except OSError:
                pass


def chat(args) -> int:
    sys.stdout.reconfigure(errors="replace")
    emulator = Emulator(args.emulator)
    terminal = Terminal(sys.stdout)
    markup = Markup(emulator, terminal)
    workspace = Workspace(emulator, markup, terminal, sys.stdout)
    interactive = sys.stdin.isatty()
    session = Session(workspace, emulator, args, interactive)

    # SIGTERM (the sandbox itself stopped) ends the session like Ctrl-C: the daemon stops gracefully.
    def interrupt(*_):
        raise KeyboardInterrupt
    signal.signal(signal.SIGTERM, interrupt)
    if interactive:
        # Nobody may type for a while: a daemon that stops on its own is reported when it does.
        workspace.after_poll = lambda: None if session.stopping or session.daemon_alive() else session.report_daemon_gone()

    status = 0
    poller = None
    try:
        workspace.poll_once()   # what is there already (a daemon that posted at start)
        poller = threading.Thread(target=workspace.run_poller, name="posts", daemon=True)
        poller.start()
        if not session.wait_for_connection():
            return 1
        if args.started:
            print(f"sandbox: ready in {int(time.time() - args.started)} s.", file=sys.stderr, flush=True)
        session.say("InferOps on Slack (the emulator). You are alice in #deploys. `/as <user>` switches user, "
                    "`/in <#channel>` channel, `/approve` and `/deny` press the buttons, `/infer help` lists the "
                    "commands, `/help` this chat's own.")
        for number, line in enumerate(read_lines(session, workspace), start=1):
            if not session.handle(number, line):
                break
    except KeyboardInterrupt:
        session.say("")
    except DriverError as error:
        session.say(f"✗ {error}")
        status = 1
    finally:
        try:
            session.stop_daemon()
        except KeyboardInterrupt:
            pass
        workspace.stopped.set()
        if poller is not None:
            poller.join(timeout=2)
    if session.daemon_gone:
        status = 1
    if not interactive:
        text, code = session.summary()
        session.say(text)
        status = 1 if status == 1 else code
    return status


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="mode", required=True)
    seed_parser = sub.add_parser("seed", help="add carol, dave, #prod-deploys and #incidents to the emulator")
    seed_parser.add_argument("--emulator", required=True, help="the emulator's URL, http://127.0.0.1:PORT")
    chat_parser = sub.add_parser("chat", help="the REPL")
    chat_parser.add_argument("--emulator", required=True, help="the emulator's URL, http://127.0.0.1:PORT")
    chat_parser.add_argument("--daemon-pid", type=int, help="InferOps' process: watched, and stopped at the end")
    chat_parser.add_argument("--daemon-log", help="InferOps' log, whose end is shown when it stops on its own")
    chat_parser.add_argument("--started", type=float, help="when the sandbox started (epoch seconds), for `ready in`")
    chat_parser.add_argument("--answer-timeout", type=float,
                             default=float(os.environ.get("SANDBOX_SLACK_TIMEOUT", "180")),
                             help="piped: how long a line may take, answer and operations (default 180 s)")
    chat_parser.add_argument("--first-answer-timeout", type=float, default=10,
                             help="at a terminal: how long to wait for the first answer before the prompt (10 s)")
    chat_parser.add_argument("--connect-timeout", type=float, default=60,
                             help="how long InferOps may take to open its Socket Mode connection (60 s)")
    chat_parser.add_argument("--stop-timeout", type=float, default=45,
                             help="how long InferOps may take to stop after SIGTERM (45 s)")
    args = parser.parse_args()
    if args.mode == "seed":
        try:
            seed(Emulator(args.emulator))
        except DriverError as error:
            print(f"slack-driver: {error}", file=sys.stderr)
            return 1
        return 0
    return chat(args)


if __name__ == "__main__":
    sys.exit(main())

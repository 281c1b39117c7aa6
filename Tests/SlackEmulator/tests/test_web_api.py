"""The Web API: argument encodings, tokens, errors, schema checks, rate limits, the record of calls."""

from __future__ import annotations

import http.client
import json
import statistics
import time
import unittest
import urllib.parse

from slackemu.schema import Schema
from tests.support import APP, BOT, Emulator

CH = "C0DEPLOY01"
BLOCKS = [{"type": "actions", "block_id": "deploy_actions", "elements": [
    {"type": "button", "action_id": "approve", "value": "deploy-42", "style": "primary",
     "text": {"type": "plain_text", "text": "Approve"}}]}]


class WebApiTests(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.emu = Emulator("--ping-interval", "0")
        cls.schema = Schema()

    @classmethod
    def tearDownClass(cls):
        cls.emu.stop()

    def setUp(self):
        self.emu.ctl("reset", {})

    def ok(self, method, args=None, **kw):
        status, headers, body = self.emu.api(method, args, **kw)
        self.assertEqual(status, 200, body)
        self.assertTrue(body["ok"], body)
        self.assertEqual(self.schema.validate_response(method, body), [])
        return body

    def err(self, method, args=None, **kw):
        status, headers, body = self.emu.api(method, args, **kw)
        self.assertEqual(status, 200, body)
        self.assertFalse(body["ok"])
        return body["error"]

    def test_auth_test_and_scopes_header(self):
        status, headers, body = self.emu.api("auth.test", encoding="form")
        self.assertTrue(body["ok"])
        self.assertEqual((body["user_id"], body["team_id"], body["bot_id"]), ("U0EMUBOT1", "T0EMU0001", "B0EMUBOT01"))
        self.assertIn("chat:write", headers["x-oauth-scopes"].split(","))
        self.assertEqual(self.err("auth.test", token="xoxb-wrong"), "invalid_auth")
        self.assertEqual(self.err("auth.test", token=None), "not_authed")
        self.assertEqual(self.err("auth.test", token=APP), "not_allowed_token_type")
        calls = self.emu.ctl("calls")["calls"]
        self.assertEqual([c["error"] for c in calls], [None, "invalid_auth", "not_authed", "not_allowed_token_type"])
        self.assertEqual(calls[0]["token"], BOT)

    def test_apps_connections_open(self):
        body = self.ok("apps.connections.open", token=APP, encoding="none")
        u = urllib.parse.urlsplit(body["url"])
        self.assertEqual((u.scheme, u.hostname, u.port, u.path), ("ws", "127.0.0.1", self.emu.port, "/link/"))
        q = dict(urllib.parse.parse_qsl(u.query))
        self.assertTrue(q["ticket"])
        self.assertEqual(q["app_id"], "A0EMU0001")
        self.assertEqual(self.err("apps.connections.open", token=BOT, encoding="none"), "not_allowed_token_type")
        self.assertEqual(self.err("apps.connections.open", {"token": APP}, token=None, encoding="form"), "not_authed")
        self.assertEqual(self.err("apps.connections.open", token="xapp-wrong", encoding="none"), "invalid_auth")

    def test_post_message_json_form_and_query(self):
        parent = self.ok("chat.postMessage", {"channel": CH, "text": "Deploy requested", "blocks": BLOCKS,
                                              "team_id": "T0EMU0001"})
        self.assertEqual(parent["channel"], CH)
        self.assertEqual(parent["message"]["blocks"], BLOCKS)
        reply = self.ok("chat.postMessage", {"channel": CH, "text": "step 1", "thread_ts": parent["ts"],
                                             "blocks": json.dumps(BLOCKS)}, encoding="form")
        self.assertEqual(reply["message"]["thread_ts"], parent["ts"])
        self.assertEqual(reply["message"]["blocks"], BLOCKS)        # form blocks are a JSON string
        q = self.ok("chat.postMessage", {"channel": CH, "text": "step 2", "thread_ts": parent["ts"]}, encoding="query")
        mixed = self.ok("chat.postMessage", {"text": "step 3"}, query={"channel": CH, "thread_ts": parent["ts"]})
        self.assertGreater(mixed["ts"], q["ts"])
        self.assertGreater(q["ts"], reply["ts"])
        thread = self.emu.ctl(f"posts?channel={CH}&thread_ts={parent['ts']}")["posts"]
        self.assertEqual([p["text"] for p in thread], ["Deploy requested", "step 1", "step 2", "step 3"])
        calls = self.emu.ctl("calls?method=chat.postMessage")["calls"]
        self.assertEqual(calls[0]["unknownArgs"], ["team_id"])     # accepted, and reported
        self.assertEqual(calls[1]["contentType"], "application/x-www-form-urlencoded")
        self.assertEqual(calls[2]["args"]["thread_ts"], parent["ts"])
        self.assertTrue(all(c["schemaErrors"] == [] for c in calls))

    def test_post_message_errors(self):
        self.assertEqual(self.err("chat.postMessage", {"channel": "C0NOSUCH01", "text": "x"}), "channel_not_found")
        self.assertEqual(self.err("chat.postMessage", {"channel": CH}), "no_text")
        status, _, body = self.emu.api("chat.postMessage", {"text": "no channel"})
        self.assertEqual(body["error"], "invalid_arguments")
        self.assertEqual(body["response_metadata"]["messages"], ["[ERROR] missing required field: channel"])
        self.assertEqual(self.err("reactions.add", {"channel": CH, "name": "eyes"}), "invalid_arguments")
        self.assertEqual(self.err("chat.nonsense", {}), "unknown_method")
        self.assertEqual(self.err("conversations.history", {"channel": CH}), "unknown_method")  # in the schema only

    def test_update_ephemeral_reactions_users(self):
        msg = self.ok("chat.postMessage", {"channel": CH, "text": "Deploying", "blocks": BLOCKS})
        upd = self.ok("chat.update", {"channel": CH, "ts": msg["ts"], "text": "Approved", "blocks": []})
        self.assertEqual((upd["ts"], upd["text"]), (msg["ts"], "Approved"))
        self.assertEqual(self.err("chat.update", {"channel": CH, "ts": "1111111111.000001", "text": "x"}),
                         "message_not_found")
        eph = self.ok("chat.postEphemeral", {"channel": CH, "user": "U0ALICE01", "text": "only you"})
        self.assertRegex(eph["message_ts"], r"^\d{10}\.\d{6}$")
        self.ok("reactions.add", {"channel": CH, "timestamp": msg["ts"], "name": "eyes"}, encoding="form")
        self.assertEqual(self.err("reactions.add", {"channel": CH, "timestamp": msg["ts"], "name": "eyes"}),
                         "already_reacted")
        self.assertEqual(self.err("reactions.add", {"channel": CH, "timestamp": "1111111111.000001", "name": "x"}),
                         "message_not_found")
        user = self.ok("users.info", {"user": "U0ALICE01"}, encoding="form")["user"]
        self.assertEqual((user["id"], user["name"], user["team_id"]), ("U0ALICE01", "alice", "T0EMU0001"))
        self.assertIn("real_name", user["profile"])
        self.assertEqual(self.err("users.info", {"user": "U0NOBODY1"}), "user_not_found")
        posts = self.emu.ctl(f"posts?channel={CH}")["posts"]
        self.assertEqual([p["kind"] for p in posts], ["post", "update", "ephemeral", "reaction"])
        stored = self.emu.ctl(f"messages?channel={CH}")["messages"][CH]
        self.assertEqual(stored[0]["text"], "Approved")
        self.assertEqual(stored[0]["reactions"], ["eyes"])

    def test_rate_limit_storm(self):
        self.emu.ctl("ratelimit", {"method": "chat.postMessage", "count": 2, "retryAfter": 7})
        for _ in range(2):
            status, headers, body = self.emu.api("chat.postMessage", {"channel": CH, "text": "x"})
            self.assertEqual(status, 429)
            self.assertEqual(headers["retry-after"], "7")
            self.assertEqual(body, {"ok": False, "error": "ratelimited"})
        self.ok("auth.test")                                          # other methods unaffected
        self.ok("chat.postMessage", {"channel": CH, "text": "x"})
        calls = self.emu.ctl("calls?method=chat.postMessage")["calls"]
        self.assertEqual([c["status"] for c in calls], [429, 429, 200])

    def test_response_url_is_recorded(self):
        env = self.emu.ctl("slash", {"text": "hi"})
        url = urllib.parse.urlsplit(env["payload"]["response_url"])
        status, _, raw = self.emu.request("POST", url.path, json.dumps({"text": "later", "response_type": "in_channel"})
                                          .encode(), {"Content-Type": "application/json"})
        self.assertEqual((status, raw), (200, b"ok"))
        posts = self.emu.ctl("posts?kind=response_url")["posts"]
        self.assertEqual((posts[0]["channel"], posts[0]["text"]), (CH, "later"))
        status, _, _ = self.emu.request("POST", "/hooks/commands/T0EMU0001/999/nope", b"{}")
        self.assertEqual(status, 404)

    def test_kept_alive_connection_answers_without_nagle_delay(self):
        # Headers and body are two writes; without TCP_NODELAY the body of every later response on
        # the connection waited ~40 ms for the client's delayed ACK (a 25-calls-a-second ceiling).
        conn = http.client.HTTPConnection("127.0.0.1", self.emu.port, timeout=10)
        body = json.dumps({"channel": CH, "text": "hi"}).encode()
        headers = {"Authorization": f"Bearer {BOT}", "Content-Type": "application/json"}
        took = []
        try:
            for _ in range(21):
                started = time.monotonic()
                conn.request("POST", "/api/chat.postMessage", body=body, headers=headers)
                response = conn.getresponse()
                self.assertTrue(json.loads(response.read())["ok"])
                took.append(time.monotonic() - started)
        finally:
            conn.close()
        self.assertLess(statistics.median(took), 0.020, [round(t * 1000, 1) for t in took])

    def test_reset_clears_records(self):
        self.ok("chat.postMessage", {"channel": CH, "text": "x"})
        self.emu.ctl("reset", {})
        self.assertEqual(self.emu.ctl("calls")["calls"], [])
        self.assertEqual(self.emu.ctl("posts")["posts"], [])


if __name__ == "__main__":
    unittest.main()

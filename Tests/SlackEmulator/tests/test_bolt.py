"""Fidelity: an unmodified Bolt for Python app (slack_bolt 1.30.0 / slack_sdk 3.48.0, built-in Socket Mode
transport) against the emulator. Needs .tools/slack from scripts/install-tools; fails (never skips) without it."""

from __future__ import annotations

import os
import subprocess
import time
import unittest

from tests.support import EMU_DIR, SLACK_VENV_PY, Emulator, wait_until

CH = "C0DEPLOY01"


def slack_python() -> str:
    if not os.access(SLACK_VENV_PY, os.X_OK):
        raise AssertionError(f"{SLACK_VENV_PY} is missing: run scripts/install-tools first "
                             f"(it installs slack_sdk 3.48.0 and slack_bolt 1.30.0 into .tools/slack)")
    return str(SLACK_VENV_PY)


class BoltFidelityTests(unittest.TestCase):
    def setUp(self):
        py = slack_python()
        self.emu = Emulator("--ping-interval", "2")
        env = {k: v for k, v in os.environ.items() if "proxy" not in k.lower()}
        env.update(SLACKEMU_URL=self.emu.url, PYTHONDONTWRITEBYTECODE="1",
                   HTTPS_PROXY="", https_proxy="", HTTP_PROXY="", http_proxy="")   # slack_sdk ignores NO_PROXY
        self.log_path = os.path.join(self.emu.dir, "bolt.log")
        self._log = open(self.log_path, "w")
        self.bolt = subprocess.Popen([py, str(EMU_DIR / "bolt_app.py")], env=env, stdout=self._log,
                                     stderr=subprocess.STDOUT)

    def tearDown(self):
        if self.bolt.poll() is None:
            self.bolt.terminate()
            try:
                self.bolt.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.bolt.kill()
                self.bolt.wait()
        self._log.close()
        self.emu.stop()

    def bolt_log(self) -> str:
        with open(self.log_path) as f:
            return f.read()

    def wait(self, predicate, message, timeout=15):
        def check():
            if self.bolt.poll() is not None:
                raise AssertionError(f"the Bolt app exited with {self.bolt.returncode}:\n{self.bolt_log()}")
            return predicate()
        try:
            return wait_until(check, timeout=timeout, message=message)
        except AssertionError as e:
            raise AssertionError(f"{e}\n--- bolt app output ---\n{self.bolt_log()}\n--- emulator stderr ---\n"
                                 f"{self.emu.stderr()}") from None

    def open_connections(self):
        return [c for c in self.emu.ctl("connections")["connections"] if c["open"]]

    def test_slash_command_mention_button_and_reconnect(self):
        started = time.monotonic()
        self.wait(self.open_connections, "the Bolt app's Socket Mode connection")
        connected = time.monotonic()

        # 1. slash command: ack with a payload, a message, a threaded reply, a response_url POST
        env = self.emu.ctl("slash", {"command": "/infer", "text": "deploy llama-3-8b prod",
                                     "user_id": "U0ALICE01", "channel_id": CH})
        ack = self.wait(lambda: self.emu.envelope(env["envelope_id"])["acks"], "the slash command's ack")[0]
        self.assertEqual(ack["payload"], {"text": "Queued: deploy llama-3-8b prod"})
        self.assertLess(ack["latencyMs"], 3000)
        posts = self.wait(lambda: [p for p in self.emu.ctl(f"posts?channel={CH}&kind=post")["posts"]][1:] and
                          self.emu.ctl(f"posts?channel={CH}&kind=post")["posts"], "the threaded reply")
        parent, reply = posts[0], posts[1]
        self.assertEqual((parent["text"], parent["thread_ts"]), ("infer: deploy llama-3-8b prod", None))
        self.assertEqual((reply["text"], reply["thread_ts"]), ("done: deploy llama-3-8b prod", parent["ts"]))
        thread = self.emu.ctl(f"posts?channel={CH}&thread_ts={parent['ts']}")["posts"]
        self.assertEqual([p["text"] for p in thread], [parent["text"], reply["text"]])
        self.wait(lambda: self.emu.ctl("posts?kind=response_url")["posts"], "the response_url POST")
        slash_done = time.monotonic()

        # 2. app_mention in a thread: reactions.add (form body) and a reply in that thread
        m = self.emu.ctl("mention", {"text": "<@U0EMUBOT1> status", "channel": CH, "thread_ts": parent["ts"]})
        self.wait(lambda: self.emu.envelope(m["envelope_id"])["acked"], "the mention's ack")
        self.wait(lambda: self.emu.ctl("posts?kind=reaction")["posts"], "the reaction")
        self.wait(lambda: [p for p in self.emu.ctl(f"posts?thread_ts={parent['ts']}")["posts"]
                           if p.get("text") == "status: green"], "the threaded status reply")

        # 3. a button press on the parent: chat.update
        b = self.emu.ctl("button", {"action_id": "approve", "value": "deploy-42", "channel": CH,
                                    "message_ts": parent["ts"], "user": "U0BOB0001"})
        self.wait(lambda: self.emu.envelope(b["envelope_id"])["acked"], "the button's ack")
        upd = self.wait(lambda: self.emu.ctl("posts?kind=update")["posts"], "the chat.update")[0]
        self.assertEqual((upd["ts"], upd["text"]), (parent["ts"], "approved by <@U0BOB0001> (deploy-42)"))
        self.assertFalse(self.emu.envelope(b["envelope_id"])["acks"][0]["hasPayload"])

        # 4. refresh_requested: Bolt reconnects; the next command is acked quickly on the new socket
        self.emu.ctl("disconnect", {"reason": "refresh_requested"})
        self.wait(lambda: len(self.emu.ctl("connections")["connections"]) == 2 and
                  len(self.open_connections()) == 1, "the reconnect")
        again = self.emu.ctl("slash", {"text": "again", "channel_id": CH})
        ack2 = self.wait(lambda: self.emu.envelope(again["envelope_id"])["acks"], "the ack after reconnect")[0]
        self.assertEqual(ack2["connection"], "c2")
        self.assertLess(ack2["latencyMs"], 1000)

        # Every call: right token, no schema violations, no redelivery needed, team_id reported as unknown
        calls = self.emu.ctl("calls")["calls"]
        methods = [c["method"] for c in calls]
        self.assertEqual(methods[:2], ["auth.test", "apps.connections.open"])
        self.assertEqual(methods.count("apps.connections.open"), 2)
        self.assertTrue(all(c["ok"] for c in calls), [c for c in calls if not c["ok"]])
        self.assertTrue(all(c["schemaErrors"] == [] for c in calls))
        self.assertIn("team_id", next(c for c in calls if c["method"] == "chat.postMessage")["unknownArgs"])
        self.assertTrue(all(e["retry_attempt"] == 0 for e in self.emu.ctl("envelopes")["envelopes"]))
        print(f"\n    bolt: connected in {connected - started:.2f}s, slash round trip "
              f"{slash_done - connected:.2f}s, whole scenario {time.monotonic() - started:.2f}s", end=" ")


if __name__ == "__main__":
    unittest.main()

"""Socket Mode over the emulator's WebSocket, driven by the raw stdlib client in tests/support.py."""

from __future__ import annotations

import socket
import unittest

from tests.support import APP, BOT, Emulator, WSClient, connect, wait_until

ACK_TIMEOUT = 0.6


class SocketModeTests(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.emu = Emulator("--ack-timeout", str(ACK_TIMEOUT), "--ping-interval", "0.3", "--max-retries", "2")

    @classmethod
    def tearDownClass(cls):
        cls.emu.stop()

    def setUp(self):
        self.emu.ctl("reset", {"connections": True})
        self.clients: list[WSClient] = []

    def tearDown(self):
        for c in self.clients:
            c.close()

    def open(self, **kw):
        ws, hello = connect(self.emu, **kw)
        self.clients.append(ws)
        return ws, hello

    def test_hello_envelope_ack_and_no_redelivery(self):
        ws, hello = self.open()
        self.assertEqual(hello["num_connections"], 1)
        self.assertEqual(hello["connection_info"], {"app_id": "A0EMU0001"})
        self.assertIn("approximate_connection_time", hello["debug_info"])
        sent = self.emu.ctl("slash", {"text": "deploy llama prod", "user_id": "U0ALICE01", "channel_id": "C0DEPLOY01"})
        env = ws.recv()
        self.assertEqual(env["envelope_id"], sent["envelope_id"])
        self.assertEqual(env["type"], "slash_commands")
        self.assertTrue(env["accepts_response_payload"])
        self.assertEqual((env["retry_attempt"], env["retry_reason"]), (0, ""))
        p = env["payload"]
        self.assertEqual((p["command"], p["text"], p["user_id"], p["channel_id"]),
                         ("/infer", "deploy llama prod", "U0ALICE01", "C0DEPLOY01"))
        self.assertTrue(p["trigger_id"])
        self.assertTrue(p["response_url"].startswith(self.emu.url + "/hooks/commands/"))
        ws.send({"envelope_id": env["envelope_id"]})
        wait_until(lambda: self.emu.envelope(env["envelope_id"])["acked"], message="the ack")
        ws.expect_nothing(within=ACK_TIMEOUT * 3)
        rec = self.emu.envelope(env["envelope_id"])
        self.assertEqual(len(rec["deliveries"]), 1)
        self.assertEqual(len(rec["acks"]), 1)
        self.assertFalse(rec["acks"][0]["hasPayload"])

    def test_unacked_envelope_is_redelivered_with_same_id(self):
        ws, _ = self.open()
        sent = self.emu.ctl("mention", {"text": "<@U0EMUBOT1> status", "thread_ts": "1700000000.000100"})
        first = ws.recv()
        self.assertEqual(first["type"], "events_api")
        self.assertEqual(first["payload"]["event"]["type"], "app_mention")
        self.assertEqual(first["payload"]["event"]["thread_ts"], "1700000000.000100")
        self.assertTrue(first["payload"]["event_id"].startswith("Ev"))
        self.assertEqual(first["retry_attempt"], 0)
        again = ws.recv(timeout=ACK_TIMEOUT * 5)
        self.assertEqual(again["envelope_id"], sent["envelope_id"])
        self.assertEqual((again["retry_attempt"], again["retry_reason"]), (1, "timeout"))
        self.assertEqual(again["payload"]["event_id"], first["payload"]["event_id"])
        ws.send({"envelope_id": again["envelope_id"]})
        wait_until(lambda: self.emu.envelope(sent["envelope_id"])["acked"], message="the ack")
        ws.expect_nothing(within=ACK_TIMEOUT * 3)
        ds = self.emu.ctl("deliveries")["deliveries"]
        self.assertEqual([d["retry_attempt"] for d in ds], [0, 1])
        self.assertEqual(self.emu.ctl("acks")["acks"][0]["retry_attempt"], 1)

    def test_gives_up_after_max_retries(self):
        ws, _ = self.open()
        sent = self.emu.ctl("message", {"text": "rollback", "thread_ts": "1700000000.000100"})
        attempts = [ws.recv(timeout=ACK_TIMEOUT * 5)["retry_attempt"] for _ in range(3)]
        self.assertEqual(attempts, [0, 1, 2])
        wait_until(lambda: self.emu.envelope(sent["envelope_id"])["gaveUp"], message="giving up")
        ws.expect_nothing(within=ACK_TIMEOUT * 2)

    def test_redelivery_goes_to_the_next_connection_after_a_drop(self):
        ws1, _ = self.open()
        sent = self.emu.ctl("button", {"action_id": "approve", "value": "deploy-42"})
        env = ws1.recv()
        self.assertEqual(env["type"], "interactive")
        self.assertEqual(env["payload"]["type"], "block_actions")
        self.assertEqual(env["payload"]["actions"][0]["action_id"], "approve")
        self.assertEqual(env["payload"]["actions"][0]["value"], "deploy-42")
        self.emu.ctl("drop", {})
        self.assertIsNone(ws1.recv(timeout=2))
        self.assertIsNone(ws1.close_code)   # abrupt: no close frame
        ws2, hello = self.open()
        self.assertEqual(hello["num_connections"], 1)
        again = ws2.recv(timeout=ACK_TIMEOUT * 5)
        self.assertEqual((again["envelope_id"], again["retry_attempt"]), (sent["envelope_id"], 1))
        ws2.send({"envelope_id": again["envelope_id"], "payload": {}})
        wait_until(lambda: self.emu.envelope(sent["envelope_id"])["acked"], message="the ack")

    def test_redeliver_sends_an_acked_envelope_again_with_the_same_id(self):
        ws, _ = self.open()
        sent = self.emu.ctl("slash", {"text": "status"})
        env = ws.recv()
        ws.send({"envelope_id": env["envelope_id"]})
        wait_until(lambda: self.emu.envelope(sent["envelope_id"])["acked"], message="the ack")
        self.emu.ctl("redeliver", {"envelope_id": sent["envelope_id"], "count": 3})
        again = [ws.recv() for _ in range(3)]
        self.assertEqual({e["envelope_id"] for e in again}, {sent["envelope_id"]})
        self.assertEqual([e["retry_attempt"] for e in again], [1, 2, 3])
        self.assertEqual({e["retry_reason"] for e in again}, {"timeout"})

    def test_drop_every_n_deliveries(self):
        self.emu.ctl("config", {"dropEvery": 3})
        try:
            ws1, _ = self.open()
            sent = [self.emu.ctl("slash", {"text": f"n{i}"}) for i in range(3)]
            got = [ws1.recv() for _ in range(3)]
            self.assertEqual([g["envelope_id"] for g in got], [s["envelope_id"] for s in sent])
            self.assertIsNone(ws1.recv(timeout=2))   # dropped after the third
            self.assertIsNone(ws1.close_code)
            conns = self.emu.ctl("connections")["connections"]
            self.assertEqual(conns[0]["closeReason"], "dropped")
        finally:
            self.emu.ctl("config", {"dropEvery": 0})

    def test_ack_with_and_without_payload(self):
        ws, _ = self.open()
        a = self.emu.ctl("slash", {"text": "one"})
        b = self.emu.ctl("view_submission", {"callback_id": "infer_modal", "values": {"b": {"a": {"value": "x"}}}})
        ea, eb = ws.recv(), ws.recv()
        self.assertEqual((ea["envelope_id"], eb["envelope_id"]), (a["envelope_id"], b["envelope_id"]))
        self.assertEqual(eb["payload"]["type"], "view_submission")
        self.assertEqual(eb["payload"]["view"]["state"]["values"], {"b": {"a": {"value": "x"}}})
        ws.send({"envelope_id": ea["envelope_id"], "payload": {"text": "Queued: one"}})
        ws.send({"envelope_id": eb["envelope_id"]})
        acks = wait_until(lambda: len(self.emu.ctl("acks")["acks"]) == 2 and self.emu.ctl("acks")["acks"],
                          message="two acks")
        by_id = {x["envelope_id"]: x for x in acks}
        self.assertEqual(by_id[a["envelope_id"]]["payload"], {"text": "Queued: one"})
        self.assertTrue(by_id[a["envelope_id"]]["hasPayload"])
        self.assertFalse(by_id[b["envelope_id"]]["hasPayload"])
        posts = self.emu.ctl("posts")["posts"]
        self.assertEqual([(p["kind"], p["text"]) for p in posts], [("ack_response", "Queued: one")])
        ws.expect_nothing(within=ACK_TIMEOUT * 2)

    def test_disconnect_reasons_close_the_socket(self):
        for reason in ("refresh_requested", "warning", "link_disabled", "too_many_websockets"):
            with self.subTest(reason=reason):
                ws, hello = self.open()
                cid = self.emu.ctl("connections")["connections"][-1]["id"]
                self.emu.ctl("disconnect", {"reason": reason, "connection": cid})
                msg = ws.recv()
                self.assertEqual((msg["type"], msg["reason"]), ("disconnect", reason))
                self.assertIn("host", msg["debug_info"])
                self.assertIsNone(ws.recv(timeout=3))
                self.assertEqual(ws.close_code, 1000)
                wait_until(lambda: not self.emu.connection(cid)["open"], message="the emulator to close it")
                # nothing new goes to a connection that was told to go away
        ws, _ = self.open()
        sent = self.emu.ctl("slash", {"text": "after"})
        self.assertEqual(ws.recv()["envelope_id"], sent["envelope_id"])

    def test_envelopes_wait_while_disconnect_pending_then_go_to_new_socket(self):
        ws1, _ = self.open()
        self.emu.ctl("disconnect", {"reason": "refresh_requested", "closeAfter": None})
        self.assertEqual(ws1.recv()["type"], "disconnect")
        sent = self.emu.ctl("slash", {"text": "x"})
        ws2, hello = self.open()
        self.assertEqual(hello["num_connections"], 2)
        self.assertEqual(ws2.recv()["envelope_id"], sent["envelope_id"])

    def test_silent_connection(self):
        ws, _ = self.open(answer_pings=False)
        cid = self.emu.ctl("connections")["connections"][-1]["id"]
        wait_until(lambda: ws.expect_nothing(0.05) or ws.pings, message="a server ping")
        self.emu.ctl("silent", {"connection": cid})
        n_pings = len(ws.pings)
        ws.ping(b"are-you-there")
        sent = self.emu.ctl("slash", {"text": "quiet"})
        ws.expect_nothing(within=1.0)
        self.assertEqual(ws.pongs, [])
        self.assertLessEqual(len(ws.pings), n_pings + 1)
        self.assertFalse(self.emu.envelope(sent["envelope_id"])["deliveries"])
        self.assertTrue(self.emu.connection(cid)["open"])
        self.emu.ctl("silent", {"connection": cid, "silent": False})
        self.assertEqual(ws.recv()["envelope_id"], sent["envelope_id"])

    def test_pings_both_ways(self):
        ws, _ = self.open()
        cid = self.emu.ctl("connections")["connections"][-1]["id"]
        ws.ping(b"client-ping:1")
        wait_until(lambda: ws.expect_nothing(0.05) or (ws.pongs and len(ws.pings) >= 2), message="pong and pings")
        self.assertEqual(ws.pongs[0], b"client-ping:1")
        wait_until(lambda: self.emu.connection(cid)["pongs"] >= 2, message="our pongs recorded")

    def test_round_robin_and_num_connections(self):
        ws1, h1 = self.open()
        ws2, h2 = self.open()
        self.assertEqual((h1["num_connections"], h2["num_connections"]), (1, 2))
        a = self.emu.ctl("slash", {"text": "a"})
        b = self.emu.ctl("slash", {"text": "b"})
        got = {ws1.recv()["envelope_id"], ws2.recv()["envelope_id"]}
        self.assertEqual(got, {a["envelope_id"], b["envelope_id"]})

    def test_too_many_websockets(self):
        self.emu.ctl("config", {"maxConnections": 1})
        try:
            self.open()
            ws2, hello = self.open()
            self.assertEqual(ws2.recv()["reason"], "too_many_websockets")
        finally:
            self.emu.ctl("config", {"maxConnections": 10})

    def test_tickets_are_single_use_and_required(self):
        url = self.emu.ws_url()
        ws = WSClient(url)
        self.clients.append(ws)
        self.assertEqual(ws.status, 101)
        for bad in (url, url.split("?")[0] + "?ticket=made-up"):
            refused = WSClient(bad)
            refused.sock.close()
            self.assertEqual(refused.status, 401)

    def test_unmasked_client_frame_is_a_protocol_error(self):
        ws, _ = self.open()
        from slackemu.websocket import OP_TEXT, encode_frame
        ws.sock.sendall(encode_frame(OP_TEXT, b'{"envelope_id":"x"}', mask=False))
        self.assertIsNone(ws.recv())
        self.assertEqual(ws.close_code, 1002)

    def test_fragmented_ack(self):
        ws, _ = self.open()
        sent = self.emu.ctl("slash", {"text": "frag"})
        env = ws.recv()
        from slackemu.websocket import OP_CONT, OP_TEXT, encode_frame
        data = ('{"envelope_id": "%s"}' % env["envelope_id"]).encode()
        ws.sock.sendall(encode_frame(OP_TEXT, data[:10], mask=True, fin=False) +
                        encode_frame(OP_CONT, data[10:], mask=True))
        wait_until(lambda: self.emu.envelope(sent["envelope_id"])["acked"], message="the fragmented ack")


if __name__ == "__main__":
    unittest.main()

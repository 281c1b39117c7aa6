"""The OpenAPI schema wrapper and its small draft-4 validator (no emulator process)."""

from __future__ import annotations

import unittest

from slackemu.schema import Schema


class SchemaTests(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.s = Schema()

    def test_loads_all_methods(self):
        self.assertGreaterEqual(len(self.s.methods), 174)
        self.assertTrue(self.s.knows("apps.connections.open"))   # added: newer than the schema

    def test_required_and_unknown_arguments(self):
        self.assertEqual(self.s.check_args("chat.postMessage", {"channel": "C1", "text": "x", "team_id": "T1"}),
                         ([], ["team_id"]))
        self.assertEqual(self.s.check_args("chat.update", {"channel": "C1"}), (["ts"], []))
        self.assertEqual(self.s.check_args("reactions.add", {}), (["channel", "name", "timestamp"], []))

    def test_response_floor(self):
        good = {"ok": True, "channel": "C0DEPLOY01", "ts": "1700000000.000100",
                "message": {"type": "message", "text": "x", "ts": "1700000000.000100", "app_id": "A1"}}
        self.assertEqual(self.s.validate_response("chat.postMessage", good), [])   # app_id tolerated
        bad = {"ok": True, "channel": "nope", "message": {"type": "message", "text": 3}}
        errs = self.s.validate_response("chat.postMessage", bad)
        self.assertIn("$.ts: required but missing", errs)
        self.assertTrue(any(e.startswith("$.channel:") for e in errs))
        self.assertTrue(any(e.startswith("$.message.text:") for e in errs))
        self.assertEqual(self.s.validate_response("chat.postMessage", {"ok": False, "error": "x"}), [])


if __name__ == "__main__":
    unittest.main()

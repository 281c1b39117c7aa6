"""python3 Tests/SlackEmulator/slackemu (or python3 -m slackemu): run the Slack emulator."""

from __future__ import annotations

import argparse
import os
import signal
import sys
import threading

if __package__ in (None, ""):   # run as a directory: python3 Tests/SlackEmulator/slackemu
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    __package__ = "slackemu"

from slackemu.server import make_server  # noqa: E402
from slackemu.state import Config  # noqa: E402


def _write_atomic(path: str, text: str) -> None:
    tmp = f"{path}.tmp.{os.getpid()}"
    with open(tmp, "w") as f:
        f.write(text)
    os.replace(tmp, path)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    d = Config()
    p = argparse.ArgumentParser(prog="slackemu", description="Slack Web API + Socket Mode emulator for tests.")
    p.add_argument("--host", default=d.host, help=f"address to listen on (default {d.host})")
    p.add_argument("--port", type=int, default=0, help="port; 0 picks a free one (default 0)")
    p.add_argument("--port-file", help="write the bound port here once listening (written atomically)")
    p.add_argument("--bot-token", default=d.bot_token, help=f"the only accepted bot token (default {d.bot_token})")
    p.add_argument("--app-token", default=d.app_token,
                   help=f"the only accepted app-level token (default {d.app_token})")
    p.add_argument("--team-id", default=d.team_id)
    p.add_argument("--app-id", default=d.app_id)
    p.add_argument("--ack-timeout", type=float, default=d.ack_timeout,
                   help="seconds before an unacknowledged envelope is redelivered (default 3, as Slack)")
    p.add_argument("--max-retries", type=int, default=d.max_retries,
                   help="redeliveries per envelope before giving up (default 3)")
    p.add_argument("--redeliver-types", default=",".join(d.redeliver_types),
                   help="envelope types that are redelivered when unacknowledged (default all three)")
    p.add_argument("--ping-interval", type=float, default=d.ping_interval,
                   help="seconds between server WebSocket pings; 0 disables (default 5)")
    p.add_argument("--disconnect-close-delay", type=float, default=d.disconnect_close_delay,
                   help="seconds after a disconnect message before the server closes that socket (default 0.2)")
    p.add_argument("--max-connections", type=int, default=d.max_connections, help="default 10, as Slack")
    p.add_argument("--debug-reconnect-interval", type=float, default=d.debug_reconnect_interval,
                   help="seconds before refresh_requested on a ?debug_reconnects=true socket (default 30)")
    p.add_argument("--schema", help="path of the OpenAPI schema (default schema/slack_web_openapi_v2.json.gz)")
    p.add_argument("--verbose", action="store_true", help="log every HTTP request to stderr")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    a = parse_args(argv)
    cfg = Config(host=a.host, port=a.port, bot_token=a.bot_token, app_token=a.app_token, team_id=a.team_id,
                 app_id=a.app_id, ack_timeout=a.ack_timeout, max_retries=a.max_retries,
                 redeliver_types=tuple(t for t in a.redeliver_types.split(",") if t),
                 ping_interval=a.ping_interval, disconnect_close_delay=a.disconnect_close_delay,
                 max_connections=a.max_connections, debug_reconnect_interval=a.debug_reconnect_interval)
    server = make_server(cfg, a.schema, a.verbose)
    port = server.server_address[1]
    server.start_ticker()
    serve = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.2}, name="slackemu-http",
                             daemon=True)
    serve.start()
    if a.port_file:
        _write_atomic(a.port_file, f"{port}\n")
    print(f"slackemu: listening on http://{a.host}:{port} (Web API /api/, Socket Mode /link/, control /_emu/; "
          f"ack timeout {cfg.ack_timeout:g}s, ping every {cfg.ping_interval:g}s)", file=sys.stderr, flush=True)
    done = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: done.set())
    signal.signal(signal.SIGINT, lambda *_: done.set())
    try:
        while not done.wait(1.0):
            pass
    finally:
        server.stopping.set()
        server.state.reset(connections=True)
        server.shutdown()
        server.server_close()
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""The peer scripts/bench-slack measures InferOps against: the smallest Bolt for Python app that answers
`/infer`, written the way a team would write it (slack_bolt 1.30.0, slack_sdk 3.48.0, Bolt's default
Socket Mode adapter on slack_sdk's built-in client, no tuning).

It acks at once, then answers with one ephemeral message to the person who typed the command
(chat.postEphemeral, as InferOps answers a refused command) whose text carries the command's text, so
the bench can tell which command each reply answers. It is pointed at the Slack emulator the same way
Tests/SlackEmulator/bolt_app.py is: only the WebClient's base_url changes.

Run with .tools/slack/bin/python (scripts/install-tools). Environment:
  SLACKEMU_URL     e.g. http://127.0.0.1:PORT (required)
  SLACK_BOT_TOKEN, SLACK_APP_TOKEN (default: the emulator's)
  BOLT_LOG_LEVEL   default WARNING
"""

import logging
import os
import sys

from slack_bolt import App
from slack_bolt.adapter.socket_mode import SocketModeHandler
from slack_sdk import WebClient

logging.basicConfig(level=os.environ.get("BOLT_LOG_LEVEL", "WARNING"), stream=sys.stderr)

base = os.environ["SLACKEMU_URL"].rstrip("/") + "/api/"
app = App(client=WebClient(token=os.environ.get("SLACK_BOT_TOKEN", "xoxb-1-emu-bot"), base_url=base))


@app.command("/infer")
def infer(ack, command, client):
    ack()
    client.chat_postEphemeral(channel=command["channel_id"], user=command["user_id"],
                              text=f"✗ Cannot do `/infer {command.get('text', '')}`.")


if __name__ == "__main__":
    SocketModeHandler(app, os.environ.get("SLACK_APP_TOKEN", "xapp-1-A0EMU0001-1-emu")).start()

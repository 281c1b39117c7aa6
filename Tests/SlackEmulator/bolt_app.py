"""An ordinary Bolt for Python app (slack_bolt 1.30.0, slack_sdk 3.48.0, built-in Socket Mode transport),
pointed at the emulator by the one setting a real app would change: the WebClient's base_url.

Run with .tools/slack/bin/python (scripts/install-tools). Environment:
  SLACKEMU_URL  e.g. http://127.0.0.1:PORT (required)
  SLACK_BOT_TOKEN, SLACK_APP_TOKEN (default: the emulator's defaults)
Behaviour:
  /infer TEXT      ack(text="Queued: TEXT"), post "infer: TEXT" to the channel, then a threaded reply
                   "done: TEXT" (chat.postMessage with thread_ts), then respond() via response_url
  @mention         reactions.add(eyes) on the mention, reply in its thread
  button approve   ack(), chat.update the clicked message to "approved by <@user> (VALUE)"
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
def infer(ack, command, client, respond):
    text = command.get("text", "")
    ack(text=f"Queued: {text}")
    parent = client.chat_postMessage(channel=command["channel_id"], text=f"infer: {text}")
    client.chat_postMessage(channel=command["channel_id"], thread_ts=parent["ts"], text=f"done: {text}")
    respond(text=f"(ephemeral) finished {text}")


@app.event("app_mention")
def mention(event, client, say):
    client.reactions_add(channel=event["channel"], timestamp=event["ts"], name="eyes")
    say(text="status: green", thread_ts=event.get("thread_ts") or event["ts"])


@app.action("approve")
def approve(ack, body, client):
    ack()
    action = body["actions"][0]
    client.chat_update(channel=body["channel"]["id"], ts=body["container"]["message_ts"],
                       text=f"approved by <@{body['user']['id']}> ({action['value']})", blocks=[])


if __name__ == "__main__":
    print("bolt_app: starting", file=sys.stderr, flush=True)
    SocketModeHandler(app, os.environ.get("SLACK_APP_TOKEN", "xapp-1-A0EMU0001-1-emu")).start()

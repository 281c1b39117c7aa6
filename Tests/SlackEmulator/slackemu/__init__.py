"""slackemu: a Slack emulator (Web API + Socket Mode) for InferOps' tests. Python 3.11 stdlib only."""

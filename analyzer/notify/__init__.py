"""Notifiers: where decisions are told (the log now; Slack and webhooks plug in here)."""

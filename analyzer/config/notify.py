"""Where decisions go and who confirms them: secrets, destinations, gates.

Must not: resolve secrets or send anything.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import (
    BeforeValidator,
    Field,
    model_validator,
)

from analyzer.config.base import Duration, RuleModel


def _secret_ref(value: object) -> object:
    if isinstance(value, str):
        raise ValueError(
            "secrets (URLs, tokens, signing keys) are never written inline: "
            "use {env: VARIABLE} or {file: /path/to/mounted/secret}"
        )
    return value


class SecretRef(RuleModel):
    """Where a secret lives: an environment variable or a file (a mounted Kubernetes Secret)."""

    env: str | None = Field(default=None, min_length=1)
    file: str | None = Field(default=None, min_length=1)

    @model_validator(mode="after")
    def _exactly_one(self) -> SecretRef:
        if (self.env is None) == (self.file is None):
            raise ValueError("give exactly one of env or file")
        return self

    @property
    def describe(self) -> str:
        return f"env {self.env}" if self.env else f"file {self.file}"


Secret = Annotated[SecretRef, BeforeValidator(_secret_ref)]
Severity = Literal["info", "warn", "error"]


class _Destination(RuleModel):
    severity: Severity = Field(default="info", description="the least severe decision to send")
    timeout: Duration = 5.0
    retry_for: Duration = Field(
        default=3600.0, ge=0, le=86400, description="how long a notification is retried"
    )
    max_attempts: int | None = Field(
        default=None, ge=1, le=1000, description="also give up after this many tries"
    )
    queue_size: int = Field(default=1000, ge=1, le=100_000)


class SlackDestination(_Destination):
    """Slack: an incoming webhook, or a bot token posting to a channel (threads per rollout)."""

    type: Literal["slack"]
    name: str = Field(default="slack", min_length=1, max_length=63)
    webhook_url: Secret | None = None
    token: Secret | None = None
    channel: str | None = None
    api_url: str = Field(default="https://slack.com/api", description="Web API base URL")

    @model_validator(mode="after")
    def _one_way_in(self) -> SlackDestination:
        if self.webhook_url is None and self.token is None:
            raise ValueError("slack needs webhookUrl, or token and channel")
        if self.token is not None and not self.channel:
            raise ValueError("a slack bot token needs a channel")
        return self


class WebhookDestination(_Destination):
    """A JSON POST per decision, signed with HMAC-SHA256 when a secret is given."""

    type: Literal["webhook"]
    name: str = Field(default="webhook", min_length=1, max_length=63)
    url: Secret
    secret: Secret | None = None


Destination = Annotated[SlackDestination | WebhookDestination, Field(discriminator="type")]


class GateSpec(RuleModel):
    """Asked before the rollout advances (confirm-step) or promotes (confirm-promotion).

    A 2xx answer lets it go on; anything else, an error or a timeout holds it.
    """

    name: str = Field(min_length=1, max_length=63)
    type: Literal["confirm-step", "confirm-promotion"]
    url: Secret
    secret: Secret | None = None
    timeout: Duration = 5.0

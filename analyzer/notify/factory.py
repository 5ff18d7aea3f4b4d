"""Builds a rule's notifier (log + its destinations, each behind a delivery queue).

Must not: keep secrets anywhere but inside the transports that need them.
"""

from __future__ import annotations

from collections.abc import Sequence

from kubernetes_asyncio.client import ApiClient

from analyzer.config import RuleSpec, SlackDestination, WebhookDestination
from analyzer.notify.base import FanoutNotifier, Notifier
from analyzer.notify.delivery import DeliveryQueue, Transport
from analyzer.notify.kubeevents import KubeEventTransport
from analyzer.notify.log import LogNotifier
from analyzer.notify.slack import SlackBotTransport, SlackWebhookTransport
from analyzer.notify.webhook import WebhookTransport
from analyzer.secrets import resolve


def _transport(dest: SlackDestination | WebhookDestination) -> Transport:
    if isinstance(dest, WebhookDestination):
        secret = resolve(dest.secret) if dest.secret else None
        return WebhookTransport(resolve(dest.url), secret, dest.timeout)
    if dest.token is not None:
        assert dest.channel is not None
        return SlackBotTransport(resolve(dest.token), dest.channel, dest.api_url, dest.timeout)
    assert dest.webhook_url is not None
    return SlackWebhookTransport(resolve(dest.webhook_url), dest.timeout)


def make_notifier(
    spec: RuleSpec, api: ApiClient | None = None
) -> tuple[Notifier, list[DeliveryQueue]]:
    """The rule's notifier and its queues (for counters). Raises SecretError if one is missing.

    With a Kubernetes API client, decisions also become Events on the routed object.
    """
    queues = [
        DeliveryQueue(
            d.name,
            _transport(d),
            severity=d.severity,
            max_attempts=d.max_attempts,
            retry_for=d.retry_for,
            queue_size=d.queue_size,
        )
        for d in spec.notify
    ]
    if api is not None:
        queues.append(DeliveryQueue("kubernetes-events", KubeEventTransport(api, spec.target)))
    notifiers: Sequence[Notifier] = [LogNotifier(), *queues]
    return FanoutNotifier(list(notifiers)), queues

"""amqtt's auth plugin for :class:`microbrain.broker.embedded.AmqttBroker`.

In its own module so that importing the embedded brokers does not import amqtt (a dev
extra): amqtt loads this plugin by its dotted path when an AmqttBroker starts.
"""

from __future__ import annotations

from amqtt.plugins.base import BaseAuthPlugin
from amqtt.session import Session


class OpenAuthPlugin(BaseAuthPlugin):  # type: ignore[misc]  # amqtt ships no types: its base is Any
    """Accept every client *without* flagging its session anonymous.

    amqtt's own AnonymousAuthPlugin(allow_anonymous=True) marks every session
    anonymous, and amqtt then never queues QoS 1 messages for an anonymous
    persistent session while it is away: a gateway or ingest worker that reconnects
    would silently miss what was published meanwhile. It checks no password: bind the
    broker to loopback only.
    """

    async def authenticate(self, *, session: Session) -> bool | None:
        session.is_anonymous = False
        return True

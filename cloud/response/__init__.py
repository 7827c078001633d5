"""Smart response (智能回应): what the cloud does when an alert opens.

``playbooks.py`` (the config) → ``respond.py`` (one run per alert: notifications, a work
order with a deadline, a voice warning) → ``deliveries.py`` (rate budgets, digests,
retries, every attempt recorded) through ``channels/`` (webhook, WeCom, DingTalk, Feishu,
SMTP, SMS) and ``announcements.py`` (``cmd/announce``, repeated, quiet hours);
``ack_links.py`` brings a notification's reader back to acknowledge; ``runner.py`` runs it.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy.orm import Session, sessionmaker

from cloud.clock import Clock
from cloud.commands import CommandSender
from cloud.response.channels import make_channel
from cloud.response.channels.base import Channel
from cloud.response.deliveries import DEFAULT_RETRY, Links, RetryPolicy
from cloud.response.messages import Wording
from cloud.response.playbooks import Playbooks, load_playbooks
from cloud.response.runner import Responder
from microbrain.site import Site

__all__ = ["Playbooks", "Responder", "ResponseSetup", "load_response"]


@dataclass(frozen=True, slots=True)
class ResponseSetup:
    """A checked playbook file with its channels made: what a Responder needs."""

    playbooks: Playbooks
    channels: Mapping[str, Channel]
    words: Wording

    def responder(
        self,
        factory: sessionmaker[Session],
        sender: CommandSender | None,
        *,
        secret: str,
        clock: Clock,
        interval_s: float = 0.25,
        retry: RetryPolicy = DEFAULT_RETRY,
    ) -> Responder:
        return Responder(
            factory,
            self.playbooks,
            self.channels,
            sender,
            self.words,
            Links(secret=secret, ttl_s=self.playbooks.book.ack_link_ttl),
            clock=clock,
            interval_s=interval_s,
            retry=retry,
        )


def load_response(
    path: str | Path,
    *,
    site: Site | None,
    environ: Mapping[str, str],
    kind_name: Callable[[str], str] = str,
) -> ResponseSetup:
    """Read the playbook file and make its channels (secrets from ``environ``); raises
    PlaybookError or ChannelConfigError naming what to fix."""
    playbooks = load_playbooks(path, site)
    channels = {c.id: make_channel(c, environ) for c in playbooks.book.channels}
    words = Wording(playbooks.book.console_url, kind_name=kind_name, timezone=playbooks.tz)
    return ResponseSetup(playbooks, channels, words)

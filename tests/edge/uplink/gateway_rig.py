"""An in-process gateway for the drills: outbox + uplink + command handler, the way the
agent wires them, without sensors or video."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from edge.commands import CommandHandler
from edge.outbox import Outbox, OutboxLimits
from edge.uplink import Uplink, UplinkSettings
from microbrain.protocol import Event, GatewayPath, Reply, Severity


@dataclass
class Rig:
    path: GatewayPath
    outbox: Outbox
    uplink: Uplink
    replies: list[Reply] = field(default_factory=list)

    def close(self) -> None:
        self.uplink.stop()
        self.outbox.close()


def make_rig(
    path: GatewayPath,
    db: Path,
    port: int,
    *,
    username: str | None = None,
    password: str | None = None,
    limits: OutboxLimits | None = None,
    resend_after_s: float = 3.0,
    **settings: Any,  # more UplinkSettings fields, each of its own type
) -> Rig:
    outbox = Outbox(db, limits or OutboxLimits())
    replies: list[Reply] = []
    uplink = Uplink(
        path,
        outbox,
        UplinkSettings(
            host="127.0.0.1",
            port=port,
            username=username,
            password=password,
            resend_after_s=resend_after_s,
            backoff_min_s=0.1,
            backoff_max_s=1.0,
            **settings,
        ),
    )

    def reply(r: Reply) -> None:
        replies.append(r)
        uplink.publish_reply(r)

    handler = CommandHandler(path, outbox, reply)
    uplink.on_command = handler.handle
    return Rig(path, outbox, uplink, replies)


def event(n: int) -> Event:
    return Event(
        kind="elevator_fault", source="b1-elevator-a", severity=Severity.CRITICAL, detail={"n": n}
    )

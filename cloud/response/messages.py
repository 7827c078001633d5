"""The words of a notification: one alert's, or a digest of several (zh-CN).

Place and kind are named as people say them (西苑社区 › 一号院 › 3号楼, 电动车飞线充电);
the kind's name comes from the caller (the console's catalogue), so this package needs
no copy of it.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from zoneinfo import ZoneInfo

from sqlalchemy import select
from sqlalchemy.orm import Session

from cloud.db import models as m
from cloud.response.channels.base import Notice
from microbrain.protocol import Severity

SEVERITY_WORDS = {Severity.CRITICAL: "紧急", Severity.WARNING: "警告", Severity.INFO: "提示"}
DIGEST_LISTED = 10
SHANGHAI = ZoneInfo(
    "Asia/Shanghai"
)  # a digest lists this many alerts by name, then counts the rest


@dataclass(frozen=True, slots=True)
class Wording:
    """What the words depend on: the console's address, the kinds' names, the zone."""

    console_url: str
    kind_name: Callable[[str], str] = str
    timezone: ZoneInfo = SHANGHAI


def place_names(session: Session, alert: m.Alert) -> str:
    """``西苑社区 › 一号院 › 3号楼`` (ids where a name is missing)."""
    community = session.scalar(select(m.Community.name).where(m.Community.id == alert.community))
    compound = session.scalar(
        select(m.Compound.name).where(
            m.Compound.community == alert.community, m.Compound.id == alert.compound
        )
    )
    parts = [community or alert.community, compound or alert.compound]
    if alert.building:
        building = session.scalar(
            select(m.Building.name).where(
                m.Building.community == alert.community,
                m.Building.compound == alert.compound,
                m.Building.id == alert.building,
            )
        )
        parts.append(building or alert.building)
    return " › ".join(parts)


def alert_notice(
    session: Session,
    alert: m.Alert,
    words: Wording,
    *,
    link: str | None,
    next_steps: Sequence[str] = (),
    past: Sequence[str] = (),
    mentions: tuple[str, ...] = (),
) -> Notice:
    severity = Severity(alert.severity)
    kind = words.kind_name(alert.kind)
    place = place_names(session, alert)
    opened = alert.opened_at.astimezone(words.timezone).strftime("%m-%d %H:%M")
    lines = [
        f"**{SEVERITY_WORDS[severity]}** · {kind}",
        f"地点：{place}",
        f"时间：{opened}（告警 #{alert.id}，累计 {alert.count} 次）",
    ]
    if alert.message:
        lines.append(f"详情：{alert.message}")
    if next_steps:
        lines.append("建议处置：")
        lines.extend(f"{i}. {step}" for i, step in enumerate(next_steps, 1))
    if past:
        lines.append("以往同类处置：")
        lines.extend(f"- {line}" for line in past)
    if link:
        lines.append(f"[在值班台确认]({link})")
    return Notice(
        title=f"【{SEVERITY_WORDS[severity]}】{kind} · {place}",
        body="\n".join(lines),
        severity=severity,
        alert_ids=(alert.id,),
        link=link,
        mentions=mentions,
    )


def digest_notice(
    session: Session, alerts: Sequence[m.Alert], words: Wording, *, now: datetime
) -> Notice:
    """Several alerts in one message: what the rate budget held back, none dropped."""
    worst = max(Severity(a.severity) for a in alerts)
    by_kind = Counter(words.kind_name(a.kind) for a in alerts)
    lines = [
        (
            f"**{len(alerts)} 条告警汇总**（{now.astimezone(words.timezone):%H:%M}，"
            "发送频率受限，合并发送）"
        ),
        "；".join(f"{kind} {n} 条" for kind, n in by_kind.most_common()),
    ]
    for alert in sorted(alerts, key=lambda a: (-a.severity, a.id))[:DIGEST_LISTED]:
        lines.append(
            f"- {SEVERITY_WORDS[Severity(alert.severity)]} {words.kind_name(alert.kind)} · "
            f"{place_names(session, alert)}（#{alert.id}）"
        )
    if len(alerts) > DIGEST_LISTED:
        lines.append(f"- 另有 {len(alerts) - DIGEST_LISTED} 条，见值班台")
    link = words.console_url.rstrip("/") + "/"
    lines.append(f"[打开值班台]({link})")
    return Notice(
        title=f"【{SEVERITY_WORDS[worst]}】{len(alerts)} 条告警汇总",
        body="\n".join(lines),
        severity=worst,
        alert_ids=tuple(a.id for a in alerts),
        link=link,
    )

"""The escalation policy for a place, and an alert's escalation clock.

The clock is one ``EscalationDeadline`` row: an alert starts it when it opens, any
action on the alert stops it, and :mod:`cloud.escalation` moves it up the levels. It
lives here, below both, so that alerts need not import the escalation that acts on them.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from cloud.db import models as m
from microbrain.protocol import Severity
from microbrain.site import EscalationPolicy, merge_policy


def policy_for(session: Session, community: str, compound: str) -> EscalationPolicy:
    """The district policy with the community's, then the compound's overrides."""
    cfg = session.get(m.SiteConfig, 1)
    policy = EscalationPolicy.model_validate(cfg.escalation) if cfg else EscalationPolicy()
    comm = session.get(m.Community, community)
    policy = merge_policy(policy, comm.escalation if comm else None)
    comp = session.scalars(
        select(m.Compound).where(m.Compound.community == community, m.Compound.id == compound)
    ).one_or_none()
    return merge_policy(policy, comp.escalation if comp else None)


def start_clock(session: Session, alert: m.Alert, now: datetime) -> m.EscalationDeadline:
    """Start the building level's clock for a new alert."""
    policy = policy_for(session, alert.community, alert.compound)
    due = now + timedelta(seconds=policy.deadline("building", Severity(alert.severity)))
    row = m.EscalationDeadline(alert_id=alert.id, level="building", due_at=due)
    session.add(row)
    return row


def stop_clock(session: Session, alert_id: int) -> None:
    """Acting on an alert stops its escalation: its pending deadline goes."""
    session.execute(delete(m.EscalationDeadline).where(m.EscalationDeadline.alert_id == alert_id))

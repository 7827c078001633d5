"""Reads of the links: an alert's linked alerts, for the API and the alert's page."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import or_, select, true
from sqlalchemy.orm import Session

from cloud import auth
from cloud.db import models as m


@dataclass(frozen=True, slots=True)
class Linked:
    """One alert linked with another: the link (its rule, reason, time) and the alert."""

    link: m.AlertLink
    alert: m.Alert


def links_of(session: Session, user: m.User | None, alert_id: int) -> list[Linked]:
    """The alerts linked with ``alert_id``, oldest link first, those in ``user``'s subtree
    only (``None``: unscoped). Rules link alerts of one compound, but a user bound to a
    building does not see the building next door. The caller checks ``alert_id`` is the
    user's to see."""
    links = list(
        session.scalars(
            select(m.AlertLink)
            .where(or_(m.AlertLink.alert_lo == alert_id, m.AlertLink.alert_hi == alert_id))
            .order_by(m.AlertLink.id)
        )
    )
    if not links:
        return []
    others = {ln.alert_hi if ln.alert_lo == alert_id else ln.alert_lo for ln in links}
    found = {
        a.id: a
        for a in session.scalars(
            select(m.Alert).where(
                m.Alert.id.in_(sorted(others)),
                auth.scope_clause(user, m.Alert) if user is not None else true(),
            )
        )
    }
    out = []
    for ln in links:
        other = found.get(ln.alert_hi if ln.alert_lo == alert_id else ln.alert_lo)
        if other is not None:
            out.append(Linked(ln, other))
    return out


__all__ = ["Linked", "links_of"]

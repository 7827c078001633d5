"""An appeal about what a camera or sensor already reports is linked to that alert: an
active alert of a matching kind at the same compound, in the same building when both name
one (an alert of no building, or an appeal of none, matches the compound's)."""

from __future__ import annotations

from sqlalchemy import or_, select
from sqlalchemy.orm import Session

from cloud.db import models as m

# category → the alert kinds that are the same matter
ALERT_KINDS: dict[str, tuple[str, ...]] = {
    "fire-safety": (
        "ebike_charging",
        "ebike_entering_building",
        "ebike_in_elevator",
        "smoke_alarm",
        "fire_door_open",
        "hydrant_pressure_low",
        "hydrant_pressure_drop",
    ),
    "parking": ("illegal_parking",),
    "pets": ("unleashed_dog",),
    "elevator": ("elevator_fault", "ebike_in_elevator"),
    "repairs": ("water_level_high",),
}


def matching_alert(
    session: Session, category: str, *, community: str, compound: str, building: str | None
) -> int | None:
    """The newest active alert that is the same matter at the same place, or None."""
    kinds = ALERT_KINDS.get(category)
    if not kinds:
        return None
    query = select(m.Alert.id).where(
        m.Alert.active.is_(True),
        m.Alert.kind.in_(kinds),
        m.Alert.community == community,
        m.Alert.compound == compound,
    )
    if building is not None:
        query = query.where(or_(m.Alert.building == building, m.Alert.building.is_(None)))
    return session.scalar(query.order_by(m.Alert.opened_at.desc(), m.Alert.id.desc()).limit(1))

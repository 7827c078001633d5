"""The names people call places by (西苑二区, 3号楼), looked up for many places in one
query: the wall, the daily report and their lists name what they count."""

from __future__ import annotations

from sqlalchemy import and_, or_, select
from sqlalchemy.orm import Session

from cloud.db import models as m


def compound_names(session: Session, places: set[tuple[str, str]]) -> dict[tuple[str, str], str]:
    """(community, compound) → name, for those that exist."""
    if not places:
        return {}
    rows = session.execute(
        select(m.Compound.community, m.Compound.id, m.Compound.name).where(
            or_(*(and_(m.Compound.community == c, m.Compound.id == k) for c, k in places))
        )
    )
    return {(c, k): name for c, k, name in rows}


def building_names(
    session: Session, places: set[tuple[str, str, str]]
) -> dict[tuple[str, str, str], str]:
    """(community, compound, building) → name, for those that exist."""
    if not places:
        return {}
    rows = session.execute(
        select(m.Building.community, m.Building.compound, m.Building.id, m.Building.name).where(
            or_(
                *(
                    and_(m.Building.community == c, m.Building.compound == k, m.Building.id == b)
                    for c, k, b in places
                )
            )
        )
    )
    return {(c, k, b): name for c, k, b, name in rows}

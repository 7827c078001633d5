"""Who answers an appeal: by its category's department hint and its place.

1. A building-level matter (:data:`BUILDING_LEVEL`: sanitation, noise, pets) in a
   residential building that has a leader (楼栋长) goes to the building leader.
2. A category whose hint is ``property`` goes to the compound's property company.
3. Otherwise the department the category names, if the site has that department.
4. Otherwise the property company (it knows whom to call).

The party is (kind, id): ``building_leader`` + the building's id, ``property`` + the
compound's id, or ``department`` + the department's id.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from sqlalchemy.orm import Session

from cloud.db import models as m

PartyKind = Literal["department", "property", "building_leader"]

# matters a building leader settles among neighbours before anyone else is called
BUILDING_LEVEL = frozenset({"sanitation", "noise", "pets"})
PROPERTY = "property"


@dataclass(frozen=True, slots=True)
class Party:
    kind: PartyKind
    id: str


def is_residential(building: m.Building) -> bool:
    return building.category.startswith("residential")


def choose(
    category: str,
    department_hint: str | None,
    *,
    compound: str,
    building: m.Building | None,
    departments: frozenset[str],
) -> Party:
    """The rules above, on what the caller looked up (no database: the routing table's
    tests call this directly)."""
    if (
        category in BUILDING_LEVEL
        and building is not None
        and is_residential(building)
        and building.leader
    ):
        return Party("building_leader", building.id)
    if department_hint is None or department_hint == PROPERTY:
        return Party("property", compound)
    if department_hint in departments:
        return Party("department", department_hint)
    return Party("property", compound)


def route(
    session: Session,
    category: str,
    department_hint: str | None,
    *,
    compound: str,
    building: m.Building | None,
) -> Party:
    """:func:`choose` with the site's departments read from the database."""
    departments = frozenset(
        d for d in [department_hint] if d and session.get(m.Department, d) is not None
    )
    return choose(
        category, department_hint, compound=compound, building=building, departments=departments
    )

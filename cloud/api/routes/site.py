from __future__ import annotations

from typing import Any

from fastapi import APIRouter
from sqlalchemy import select

from cloud import auth
from cloud.api.deps import DB, CurrentUser
from cloud.api.responses import documented
from cloud.db import models as m

router = APIRouter(prefix="/api/site", tags=["site"])


@router.get("", responses=documented(401))
def site_tree(db: DB, user: CurrentUser) -> dict[str, Any]:
    """The community → compound → building tree in your area."""
    communities = db.scalars(select(m.Community).order_by(m.Community.id)).all()
    compounds = db.scalars(select(m.Compound).order_by(m.Compound.id)).all()
    buildings = db.scalars(select(m.Building).order_by(m.Building.id)).all()
    tree: list[dict[str, Any]] = []
    for c in communities:
        if user.community not in (None, c.id):
            continue
        node_compounds: list[dict[str, Any]] = []
        node = {"id": c.id, "name": c.name, "contacts": c.contacts, "compounds": node_compounds}
        for k in compounds:
            if k.community != c.id or user.compound not in (None, k.id):
                continue
            node_compounds.append(
                {
                    "id": k.id,
                    "name": k.name,
                    "contacts": k.contacts,
                    "buildings": [
                        {"id": b.id, "name": b.name, "category": b.category}
                        for b in buildings
                        if b.community == c.id
                        and b.compound == k.id
                        and auth.in_scope(user, c.id, k.id, b.id)
                    ],
                }
            )
        tree.append(node)
    departments = [
        {"id": d.id, "name": d.name}
        for d in db.scalars(select(m.Department).order_by(m.Department.id))
    ]
    return {"communities": tree, "departments": departments}

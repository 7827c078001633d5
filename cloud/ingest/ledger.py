"""Phase 3 of a batch: claim each item's id in the ledger, the one dedupe point.

An id already stored is a duplicate (a redelivery or a resend): acknowledged again, not
stored again. A new id is always stored. ``(gateway, epoch, seq)`` is unique in the
ledger as well, so a new id whose seq is already taken in its epoch is noticed: an older
gateway whose outbox was reset (it sends no epoch), or a restored copy of an outbox. It
is counted and logged as a collision and stored all the same, its ledger row without the
seq; discarding it would lose a new item (a reset outbox's 3,019 items, once).

One INSERT … ON CONFLICT DO NOTHING RETURNING for the batch, one select when some ids
were not inserted, one more insert only when seqs collided.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from cloud.db import models as m
from cloud.ingest import metrics
from cloud.ingest.records import Accepted

log = logging.getLogger(__name__)


@dataclass
class Claims:
    """The batch's items after the ledger: stored now, or already stored."""

    fresh: list[Accepted] = field(default_factory=list)  # new ids, now in the ledger
    collided: list[Accepted] = field(default_factory=list)  # of those, seq already taken
    duplicates: list[Accepted] = field(default_factory=list)


def dialect_insert(session: Session, model: type[m.Base]) -> Any:
    """INSERT with ON CONFLICT support for the session's database."""
    dialect = session.get_bind().dialect.name
    return (postgresql.insert if dialect == "postgresql" else sqlite.insert)(model)


def _row(a: Accepted, *, with_seq: bool = True) -> dict[str, Any]:
    return {
        "id": a.item.id,
        "gateway": a.gateway.id,
        "epoch": a.epoch,
        "seq": (a.item.seq or None) if with_seq else None,
        "channel": a.channel,
        "received_at": a.msg.received_at,
    }


def claim(session: Session, items: list[Accepted]) -> Claims:
    """Insert a ledger row per new id; see the module docstring."""
    out = Claims()
    unique: dict[str, Accepted] = {}
    for a in items:
        if a.item.id in unique:
            out.duplicates.append(a)
        else:
            unique[a.item.id] = a
    if not unique:
        return out
    stmt = dialect_insert(session, m.Ledger).on_conflict_do_nothing().returning(m.Ledger.id)
    inserted = set(session.scalars(stmt, [_row(a) for a in unique.values()]).all())
    skipped = [k for k in unique if k not in inserted]
    collided: set[str] = set()
    if skipped:
        known = set(session.scalars(select(m.Ledger.id).where(m.Ledger.id.in_(skipped))))
        clashing = [k for k in skipped if k not in known]
        if clashing:
            # a new id on a taken seq: stored, its ledger row without the seq (a racing
            # worker may have stored the same id meanwhile: then it is a duplicate)
            collided = set(
                session.scalars(stmt, [_row(unique[k], with_seq=False) for k in clashing]).all()
            )
            inserted |= collided
    for key, a in unique.items():
        if key in inserted:
            out.fresh.append(a)
            if key in collided:
                out.collided.append(a)
        else:
            out.duplicates.append(a)
    if out.collided:
        _note_collisions(out.collided)
    return out


def _note_collisions(collided: list[Accepted]) -> None:
    by_gateway: dict[str, list[Accepted]] = defaultdict(list)
    for a in collided:
        by_gateway[a.gateway.id].append(a)
    for gid, clash in by_gateway.items():
        gw = clash[0].gateway
        gw.seq_collisions = (gw.seq_collisions or 0) + len(clash)
        metrics.SEQ_COLLISIONS.labels(gid).inc(len(clash))
        seqs = sorted(a.item.seq for a in clash)
        epochs = sorted({a.item.epoch or "none" for a in clash})
        log.warning(
            "gateway %s: %d new item(s) reuse seq %d..%d (epoch %s) already stored under "
            "other ids: stored all the same (was its outbox reset?)",
            gid,
            len(clash),
            seqs[0],
            seqs[-1],
            ", ".join(epochs),
        )

"""Phase 5 of a batch: outbox epochs and sequence gaps, per gateway.

A gateway's ``seq`` counts within its outbox's *epoch* (made when the outbox file is
created; see ``edge/outbox.py``). An epoch the gateway has not used before (on an item or
in a status) is a new outbox: logged, counted (``mb_ingest_epochs_total``,
``gateways.epochs_seen``), recorded in ``gateway_epochs`` and made current, never taken
for a conflict. Gap tracking (``last_seq``, ``seq_gaps``) follows the current epoch; a
late item of an older epoch is stored and acknowledged but not tracked.

Nothing is read unless an epoch differs from the gateway's current one.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from cloud.db import models as m
from cloud.ingest import metrics
from cloud.ingest.records import Accepted, BatchResult, SeqGap, StatusFrom

log = logging.getLogger(__name__)


def note_epochs(
    session: Session, statuses: list[StatusFrom], items: list[Accepted], now: datetime
) -> None:
    """Record the epochs first seen in this batch; the last one seen becomes current."""
    candidates: dict[str, list[str]] = {}  # gateway → epochs unlike its current, in order
    gateways: dict[str, m.Gateway] = {}
    named = [(s.gateway, s.status.epoch) for s in statuses]
    named += [(a.gateway, a.item.epoch) for a in items]
    for gw, epoch in named:
        if epoch and epoch != gw.epoch and epoch not in candidates.get(gw.id, ()):
            candidates.setdefault(gw.id, []).append(epoch)
            gateways[gw.id] = gw
    if not candidates:
        return
    rows = session.execute(
        select(m.GatewayEpoch.gateway, m.GatewayEpoch.epoch).where(
            m.GatewayEpoch.gateway.in_(sorted(candidates))
        )
    )
    known = {(gid, epoch) for gid, epoch in rows}
    for gid, epochs in candidates.items():
        new = [e for e in epochs if (gid, e) not in known]
        if new:
            _start_epochs(session, gateways[gid], new, now)


def _start_epochs(session: Session, gw: m.Gateway, new: list[str], now: datetime) -> None:
    for epoch in new:
        session.add(m.GatewayEpoch(gateway=gw.id, epoch=epoch, first_seen=now))
        metrics.EPOCHS.labels(gw.id).inc()
    gw.epochs_seen = (gw.epochs_seen or 0) + len(new)
    before, before_seq = gw.epoch, gw.last_seq or 0
    gw.epoch = new[-1]
    if before is None:
        # the gateway's first epoch: new, or an older gateway updated, whose outbox goes
        # on counting where it was; either way the count so far stays the baseline
        log.info("gateway %s: outbox epoch %s (seq so far %d)", gw.id, gw.epoch, before_seq)
        return
    gw.last_seq, gw.seq_gaps = 0, 0
    log.warning(
        "gateway %s: new outbox epoch %s after %s (which reached seq %d): its outbox "
        "was created anew, seq restarts; %d epoch(s) seen",
        gw.id,
        gw.epoch,
        before,
        before_seq,
        gw.epochs_seen,
    )


def track_gaps(stored: list[Accepted], result: BatchResult) -> None:
    """Note gaps in each gateway's sequence of its current epoch."""
    seqs: dict[str, list[int]] = defaultdict(list)
    gateways: dict[str, m.Gateway] = {}
    for a in stored:
        gw = a.gateway
        if a.item.seq and (a.item.epoch or None) == gw.epoch:
            seqs[gw.id].append(a.item.seq)
            gateways[gw.id] = gw
    for gid, gw_seqs in seqs.items():
        gw = gateways[gid]
        prev = gw.last_seq or 0
        for s in sorted(gw_seqs):
            if s > prev + 1:
                # "not received yet": a replay may still fill it, and with several workers
                # sharing the subscription short-lived gaps are normal; gaps − filled is loss
                result.gaps.append(SeqGap(gid, prev + 1, s - 1))
                metrics.SEQ_GAPS.inc()
                metrics.SEQ_MISSING.inc(s - prev - 1)
                gw.seq_gaps = (gw.seq_gaps or 0) + 1
                log.debug("gateway %s: sequence gap %d..%d", gid, prev + 1, s - 1)
            elif s < prev:
                metrics.SEQ_FILLED.inc()
            prev = max(prev, s)
        gw.last_seq = prev

"""The scheduler's "rollouts" step: each active rollout observed (replies are applied by
the ingest, heartbeats here), aborted past its thresholds, promoted past its canary,
its installs claimed and sent (and resent), finished.

Exactly once with several cloud processes: the rollout's row is locked for the step
(PostgreSQL; SQLite has one writer), every move is guarded by the state it moves from,
and each send is claimed by a guarded UPDATE committed *before* the command is
published: a crash in between costs one resend after ``resend_s``, never a double send.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime, timedelta

from prometheus_client import Counter
from sqlalchemy import and_, select, update
from sqlalchemy.orm import Session, sessionmaker

from cloud.commands import CommandSender
from cloud.db import models as m
from cloud.db import rowcount, transaction
from cloud.model_registry import manifests, store
from cloud.model_registry.rollouts import (
    ACTIVE,
    FAILED,
    OPEN,
    GatewayState,
    RolloutState,
    gateway_rows,
    gateways_by_id,
    get_rollout,
    move,
    record_answer,
    version_text,
)
from microbrain.protocol import GatewayPath

log = logging.getLogger(__name__)

COMMANDS = Counter(
    "mb_model_rollout_commands_total", "model installs published to gateways", ["kind"]
)
STEP_FAILURES = Counter(
    "mb_model_rollout_step_failures_total", "rollouts whose scheduler step raised (retried)"
)
# a heartbeat older than this many of its intervals: the gateway is not healthy
_STALE_HEARTBEATS = 3
# events this far before a rollout count for the previous model's false-positive rate
FP_LOOKBACK = timedelta(days=30)


@dataclass(frozen=True, slots=True)
class Send:
    path: GatewayPath
    rollout_id: int
    gateway: str
    resend: bool


def _healthy(gw: m.Gateway, now: datetime) -> bool:
    if gw.state != "online" or gw.last_seen is None:
        return False
    return now - gw.last_seen <= timedelta(seconds=_STALE_HEARTBEATS * gw.heartbeat_s)


def _observe(
    session: Session, rollout: m.ModelRollout, rows: list[m.ModelRolloutGateway],
    gws: dict[str, m.Gateway], now: datetime,
) -> None:  # fmt: skip
    """Heartbeats: a gateway reporting the manifest's serial has installed it (its reply
    may have been lost); the running version is kept up to date for the console."""
    for row in rows:
        gw = gws.get(row.gateway)
        running = store.running_model(gw) if gw else None
        if running is None:
            continue
        version = version_text(*running[:2])
        if row.state in OPEN and running[2] == rollout.serial:
            record_answer(
                session, rollout.id, row.gateway, GatewayState.INSTALLED,
                now=now, reason=None, running=version, via="heartbeat",
            )  # fmt: skip
        elif row.running_version != version and (
            # a heartbeat from before the gateway's answer is older news than the answer
            row.answered_at is None or (gw is not None and (gw.last_seen or now) > row.answered_at)
        ):
            row.running_version = version
    session.flush()
    for row in rows:
        session.refresh(row)


def fp_rates(
    session: Session, rollout: m.ModelRollout, rows: list[m.ModelRolloutGateway]
) -> tuple[tuple[int, int], tuple[int, int]]:
    """((false positives, verdicts) with the new model, (…) with the previous ones) on
    the canary: alerts with a verdict, told apart by the model their events name."""
    canary = [r.gateway for r in rows if r.canary]
    model = session.get(m.ModelVersion, rollout.model_id)
    previous = {r.previous_version for r in rows if r.canary and r.previous_version}
    if not canary or model is None:
        return (0, 0), (0, 0)
    new_name = version_text(model.name, model.version)
    found = session.execute(
        select(m.EventRow.alert_id, m.EventRow.payload, m.AlertVerdict.verdict)
        .join(m.AlertVerdict, m.AlertVerdict.alert_id == m.EventRow.alert_id)
        .where(
            m.EventRow.gateway.in_(canary),
            m.EventRow.ts >= rollout.created_at - FP_LOOKBACK,
        )
    )
    new: dict[int, bool] = {}
    old: dict[int, bool] = {}
    for alert_id, payload, verdict in found:
        ref = payload.get("model") if isinstance(payload, dict) else None
        if not isinstance(ref, dict) or alert_id is None:
            continue
        name = version_text(ref.get("name"), ref.get("version"))
        if name == new_name:
            new[alert_id] = verdict == "false_positive"
        elif name in previous:
            old[alert_id] = verdict == "false_positive"
    return (sum(new.values()), len(new)), (sum(old.values()), len(old))


def _abort_reason(
    session: Session, rollout: m.ModelRollout, rows: list[m.ModelRolloutGateway]
) -> str | None:
    failed = [r for r in rows if r.state in FAILED]
    canary_failed = [r for r in failed if r.canary]
    if len(canary_failed) >= rollout.abort_failures:
        first = canary_failed[0]
        return (
            f"{len(canary_failed)} canary gateway(s) failed (threshold {rollout.abort_failures}); "
            f"{first.gateway} {first.state}: {first.reason}"
        )
    if len(failed) >= rollout.abort_failures_total:
        return (
            f"{len(failed)} gateway(s) failed (threshold {rollout.abort_failures_total}); "
            f"first: {failed[0].gateway} {failed[0].state}: {failed[0].reason}"
        )
    (fp_new, n_new), (fp_old, n_old) = fp_rates(session, rollout, rows)
    if n_new >= rollout.fp_min_verdicts and n_old >= rollout.fp_min_verdicts:
        rate_new, rate_old = fp_new / n_new, fp_old / n_old
        if rate_new > 0 and rate_new > rate_old * rollout.abort_fp_ratio:
            return (
                f"false-positive rate on the canary {rate_new:.2f} ({fp_new} of {n_new} "
                f"verdicts) is above the previous model's {rate_old:.2f} ({fp_old} of {n_old}) "
                f"× {rollout.abort_fp_ratio:g}"
            )
    return None


def _claim(
    session: Session, rollout: m.ModelRollout, rows: list[m.ModelRolloutGateway],
    gws: dict[str, m.Gateway], now: datetime, resend_s: int,
) -> list[Send]:  # fmt: skip
    """The gateways to send to now, each claimed by a guarded UPDATE (another process
    that read the same row finds it claimed and sends nothing)."""
    wanted = [r for r in rows if r.canary] if rollout.state == RolloutState.CANARY else rows
    due_before = now - timedelta(seconds=resend_s)
    sends = []
    for row in wanted:
        gw = gws.get(row.gateway)
        if gw is None or gw.state != "online" or row.state not in OPEN:
            continue
        resend = row.state == GatewayState.SENT
        if resend and row.sent_at is not None and row.sent_at > due_before:
            continue
        guard = m.ModelRolloutGateway.state == row.state
        if row.sent_at is not None:
            guard = and_(guard, m.ModelRolloutGateway.sent_at == row.sent_at)
        claimed = rowcount(
            session.execute(
                update(m.ModelRolloutGateway)
                .where(
                    m.ModelRolloutGateway.rollout_id == rollout.id,
                    m.ModelRolloutGateway.gateway == row.gateway,
                    guard,
                )
                .values(
                    state=GatewayState.SENT.value,
                    sent_at=now,
                    sends=m.ModelRolloutGateway.sends + 1,
                )
                .execution_options(synchronize_session=False)
            )
        )
        if claimed:
            sends.append(
                Send(GatewayPath(gw.community, gw.compound, gw.id), rollout.id, gw.id, resend)
            )
    return sends


def advance(session: Session, rollout_id: int, now: datetime, resend_s: int) -> list[Send]:
    """One rollout's step in the caller's transaction: observe, abort, promote, claim the
    sends, finish. Returns what to publish once the transaction has committed."""
    rollout = get_rollout(session, rollout_id, for_update=True)
    if rollout.state not in ACTIVE:
        return []
    rows = gateway_rows(session, rollout.id)
    gws = gateways_by_id(session, (r.gateway for r in rows))
    _observe(session, rollout, rows, gws, now)
    reason = _abort_reason(session, rollout, rows)
    if reason is not None:
        move(session, rollout, RolloutState.ABORTED, now=now, reason=reason)
        log.warning("rollout %d aborted: %s", rollout.id, reason)
        return []
    if rollout.state == RolloutState.CANARY:
        canary = [r for r in rows if r.canary]
        healthy = all(
            r.state == GatewayState.INSTALLED and _healthy(gws[r.gateway], now) for r in canary
        )
        if not healthy:
            rollout.healthy_since = None
        elif rollout.healthy_since is None:
            rollout.healthy_since = now
        waited = now - (rollout.healthy_since or now)
        if healthy and waited >= timedelta(seconds=rollout.canary_healthy_s):
            move(session, rollout, RolloutState.ROLLING, now=now)
    sends = _claim(session, rollout, rows, gws, now, resend_s)
    if rollout.state == RolloutState.ROLLING:
        session.flush()
        for row in rows:
            session.refresh(row)
        if all(r.state not in OPEN for r in rows):
            move(session, rollout, RolloutState.DONE, now=now)
    return sends


def run_step(
    factory: sessionmaker[Session], sender: CommandSender | None, now: datetime, resend_s: int
) -> int:
    """The scheduler's "rollouts" step: advance every active rollout, each in its own
    transaction, and publish its installs after that commits. Returns the sends."""
    with factory() as s:
        active = list(
            s.scalars(
                select(m.ModelRollout.id)
                .where(m.ModelRollout.state.in_([a.value for a in ACTIVE]))
                .order_by(m.ModelRollout.id)
            )
        )
    sent = 0
    for rid in active:
        try:
            with transaction(factory) as s:
                sends = advance(s, rid, now, resend_s)
                commands = []
                if sends:
                    manifest = s.get(m.ModelManifestRow, get_rollout(s, rid).serial)
                    if manifest is not None:
                        commands = [(x, manifests.install_command(manifest, rid)) for x in sends]
        except Exception:
            # one broken rollout must not hold up the others; it is tried again next tick
            STEP_FAILURES.inc()
            log.exception("rollout %d: step failed; retrying next tick", rid)
            continue
        for send, command in commands:
            if sender is None:
                log.warning("rollout %d: no command sender; %s waits", rid, send.gateway)
                continue
            sender.send(send.path, command)
            COMMANDS.labels("resend" if send.resend else "send").inc()
            sent += 1
    return sent

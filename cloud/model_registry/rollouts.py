"""Rollouts: a signed manifest pushed to a set of gateways, canary first, with abort
thresholds and a signed way back.

A rollout moves ``canary → rolling → done``, or to ``aborted`` (past a failure threshold,
a false-positive rate above the previous model's on the canary, or by hand) and
``rolled_back`` (a new rollout with a new, higher serial and ``rollback=true`` took its
gateways to the previous model). Each gateway of it moves ``pending → sent → installed |
failed | refused``: sent when it is online (again after ``resend_s`` without an answer,
so a gateway offline during the rollout gets it once its retained heartbeat says it is
back), installed on its ``ok`` reply or once its heartbeat reports the manifest's serial.

This module makes, reads and moves rollouts and applies the gateways' replies (from the
ingest); :mod:`cloud.model_registry.step` is the scheduler step that advances them.
Every move is an UPDATE guarded by the state it moves from, so two processes never make
the same move twice.
"""

from __future__ import annotations

import logging
from collections import Counter as Tally
from collections.abc import Iterable, Sequence
from datetime import datetime
from enum import StrEnum
from typing import Literal

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from prometheus_client import Counter
from pydantic import BaseModel, ConfigDict, Field, model_validator
from sqlalchemy import and_, or_, select, update
from sqlalchemy.orm import Session

from cloud import audit, auth
from cloud.db import models as m
from cloud.db import rowcount
from cloud.errors import Conflict, Forbidden, Invalid, NotFound
from cloud.model_registry import manifests, store
from microbrain.model_card import Evaluation, GateReason, gate_findings
from microbrain.protocol import Reply

log = logging.getLogger(__name__)

ROLLOUTS = Counter(
    "mb_model_rollout_rollouts_total",
    "rollouts by what happened to them (created, forced, promoted, done, aborted, rolled_back)",
    ["event"],
)
RESULTS = Counter(
    "mb_model_rollout_gateway_results_total",
    "gateways' outcomes in rollouts (installed, failed, refused), and by which signal",
    ["state", "via"],
)
IGNORED = Counter(
    "mb_model_rollout_replies_ignored_total",
    "model replies not applied (stale: an older manifest's; late: already answered; "
    "foreign: a rollout that does not target the gateway)",
    ["why"],
)


class RolloutState(StrEnum):
    CANARY = "canary"
    ROLLING = "rolling"
    DONE = "done"
    ABORTED = "aborted"
    ROLLED_BACK = "rolled_back"


ACTIVE = (RolloutState.CANARY, RolloutState.ROLLING)
# the allowed moves, as data; one move() applies them
_MOVES: dict[RolloutState, frozenset[RolloutState]] = {
    RolloutState.CANARY: frozenset(
        {RolloutState.ROLLING, RolloutState.ABORTED, RolloutState.ROLLED_BACK}
    ),
    RolloutState.ROLLING: frozenset(
        {RolloutState.DONE, RolloutState.ABORTED, RolloutState.ROLLED_BACK}
    ),
    RolloutState.DONE: frozenset({RolloutState.ROLLED_BACK}),
    RolloutState.ABORTED: frozenset({RolloutState.ROLLED_BACK}),
    RolloutState.ROLLED_BACK: frozenset(),
}


class GatewayState(StrEnum):
    PENDING = "pending"
    SENT = "sent"
    INSTALLED = "installed"
    FAILED = "failed"
    REFUSED = "refused"


OPEN = (GatewayState.PENDING, GatewayState.SENT)
FAILED = (GatewayState.FAILED, GatewayState.REFUSED)


class Target(BaseModel):
    """Which gateways: ids of gateways, of compounds ("community/compound"), of
    communities, or all (in the requesting user's area)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    kind: Literal["gateway", "compound", "community", "all"]
    ids: tuple[str, ...] = Field(default=(), max_length=10_000)

    @model_validator(mode="after")
    def _ids(self) -> Target:
        if self.kind != "all" and not self.ids:
            raise ValueError(f"target: a {self.kind} target names at least one id")
        if self.kind == "compound" and any(i.count("/") != 1 for i in self.ids):
            raise ValueError("target: compounds are named community/compound")
        return self


class RolloutRequest(BaseModel):
    """What ``POST /api/rollouts`` takes."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    model_id: int = Field(ge=1)
    target: Target
    canary: int | tuple[str, ...] = Field(
        default=1, description="canary gateway ids, or how many to pick (0: no canary)"
    )
    canary_healthy_s: int = Field(default=300, ge=0, le=30 * 86_400)
    abort_failures: int = Field(default=1, ge=1, description="canary failures that abort")
    abort_failures_total: int | None = Field(
        default=None, ge=1, description="failures overall that abort; default: a tenth, ≥ 1"
    )
    abort_fp_ratio: float = Field(
        default=1.5,
        gt=0,
        le=100,
        description="abort when the canary's false-positive rate with the new model exceeds "
        "the previous model's times this",
    )
    fp_min_verdicts: int = Field(
        default=5, ge=1, description="verdicts each model needs before their rates compare"
    )
    force: bool = False
    force_reason: str | None = Field(default=None, max_length=2000)

    @model_validator(mode="after")
    def _forced_with_reason(self) -> RolloutRequest:
        if self.force and not (self.force_reason or "").strip():
            raise ValueError("force_reason: say why the gate is overridden (it is recorded)")
        if isinstance(self.canary, int) and self.canary < 0:
            raise ValueError("canary: a count is 0 or more")
        return self


# --- reading -------------------------------------------------------------------------


def get_rollout(session: Session, rollout_id: int, *, for_update: bool = False) -> m.ModelRollout:
    query = select(m.ModelRollout).where(m.ModelRollout.id == rollout_id)
    row = session.scalars(query.with_for_update() if for_update else query).first()
    if row is None:
        raise NotFound(f"rollout {rollout_id} does not exist")
    return row


def gateway_rows(session: Session, rollout_id: int) -> list[m.ModelRolloutGateway]:
    return list(
        session.scalars(
            select(m.ModelRolloutGateway)
            .where(m.ModelRolloutGateway.rollout_id == rollout_id)
            .order_by(m.ModelRolloutGateway.canary.desc(), m.ModelRolloutGateway.gateway)
        )
    )


def gateways_by_id(session: Session, ids: Iterable[str]) -> dict[str, m.Gateway]:
    wanted = list(ids)
    if not wanted:
        return {}
    return {g.id: g for g in session.scalars(select(m.Gateway).where(m.Gateway.id.in_(wanted)))}


def visible(session: Session, rollout: m.ModelRollout, user: m.User) -> list[m.ModelRolloutGateway]:
    """The rollout's gateways in ``user``'s area; NotFound when there are none (a rollout
    elsewhere reads as missing, like every id outside one's area)."""
    rows = gateway_rows(session, rollout.id)
    gws = gateways_by_id(session, (r.gateway for r in rows))
    mine = [r for r in rows if _in_scope(user, gws.get(r.gateway))]
    if user.community is not None and not mine:
        raise NotFound(f"rollout {rollout.id} does not exist")
    return mine if user.community is not None else rows


def list_rollouts(session: Session, user: m.User, limit: int = 100) -> list[m.ModelRollout]:
    query = select(m.ModelRollout).order_by(m.ModelRollout.id.desc())
    if user.community is not None:
        mine = (
            select(m.ModelRolloutGateway.rollout_id)
            .join(m.Gateway, m.Gateway.id == m.ModelRolloutGateway.gateway)
            .where(auth.scope_clause(user, m.Gateway))
        )
        query = query.where(m.ModelRollout.id.in_(mine))
    return list(session.scalars(query.limit(limit)))


def _in_scope(user: m.User, gw: m.Gateway | None) -> bool:
    return gw is not None and auth.in_scope(user, gw.community, gw.compound, gw.building)


def version_text(name: object, version: object) -> str:
    return f"{name}@{version}"


# --- making one ----------------------------------------------------------------------


def _targets(session: Session, target: Target, user: m.User) -> list[m.Gateway]:
    query = select(m.Gateway).order_by(m.Gateway.id)
    if target.kind == "gateway":
        query = query.where(m.Gateway.id.in_(target.ids))
    elif target.kind == "compound":
        pairs = [tuple(i.split("/")) for i in target.ids]
        query = query.where(
            or_(*(and_(m.Gateway.community == c, m.Gateway.compound == k) for c, k in pairs))
        )
    elif target.kind == "community":
        query = query.where(m.Gateway.community.in_(target.ids))
    else:
        query = query.where(auth.scope_clause(user, m.Gateway))
    found = list(session.scalars(query))
    # outside the user's area reads as missing: ids do not tell what exists elsewhere
    outside = [g.id for g in found if not _in_scope(user, g)]
    if target.kind == "gateway":
        known = {g.id for g in found} - set(outside)
        missing = [i for i in target.ids if i not in known]
        if missing:
            raise NotFound(f"gateway {missing[0]!r} does not exist")
    elif outside:
        raise NotFound(f"{target.kind} {target.ids[0]!r} does not exist")
    if not found:
        raise Invalid(f"target: no gateway in {target.kind} {', '.join(target.ids) or '(all)'}")
    return found


def _canaries(request: RolloutRequest, gateways: Sequence[m.Gateway]) -> set[str]:
    ids = {g.id for g in gateways}
    if not isinstance(request.canary, int):
        strangers = sorted(set(request.canary) - ids)
        if strangers:
            raise Invalid(f"canary: {strangers[0]!r} is not one of the rollout's gateways")
        return set(request.canary)
    # online gateways first: a canary that cannot answer only delays the rollout
    ranked = sorted(gateways, key=lambda g: (g.state != "online", g.id))
    return {g.id for g in ranked[: request.canary]}


def _busy(session: Session, ids: Sequence[str]) -> list[tuple[str, int]]:
    return [
        (gw, rid)
        for gw, rid in session.execute(
            select(m.ModelRolloutGateway.gateway, m.ModelRollout.id)
            .join(m.ModelRollout, m.ModelRollout.id == m.ModelRolloutGateway.rollout_id)
            .where(m.ModelRolloutGateway.gateway.in_(ids), m.ModelRollout.state.in_(list(ACTIVE)))
        )
    ]


def _add_gateways(
    session: Session,
    rollout: m.ModelRollout,
    gateways: Sequence[m.Gateway],
    canaries: set[str],
) -> None:
    previous: list[int] = []
    for g in gateways:
        running = store.running_model(g)
        before = store.find_version(session, *running[:2]) if running else None
        if before is not None:
            previous.append(before.id)
        session.add(
            m.ModelRolloutGateway(
                rollout_id=rollout.id,
                gateway=g.id,
                canary=g.id in canaries,
                state=GatewayState.PENDING,
                sends=0,
                previous_version=version_text(*running[:2]) if running else None,
                previous_model_id=before.id if before else None,
                running_version=version_text(*running[:2]) if running else None,
            )
        )
    if rollout.previous_model_id is None and previous:
        rollout.previous_model_id = Tally(previous).most_common(1)[0][0]


def gate_findings_of(model: m.ModelVersion) -> list[GateReason]:
    """Why the model's card keeps it from rolling out (empty: it may), as codes and
    figures a console translates."""
    raw = model.card.get("evaluation")
    return gate_findings(Evaluation.model_validate(raw) if raw else None)


def gate(model: m.ModelVersion) -> list[str]:
    """Why the model's card keeps it from rolling out, in English (empty: it may)."""
    return [str(reason) for reason in gate_findings_of(model)]


def create(
    session: Session,
    key: Ed25519PrivateKey,
    request: RolloutRequest,
    *,
    user: m.User,
    now: datetime,
) -> m.ModelRollout:
    """Make a rollout and sign its manifest; the scheduler step sends it. Conflict (with
    the gate's reasons) when the model's evaluation does not pass and it is not forced,
    or when a targeted gateway is in another active rollout."""
    model = store.get_model(session, request.model_id)
    reasons = gate(model)
    if reasons and not request.force:
        ROLLOUTS.labels("refused").inc()
        raise Conflict(
            f"model {model.name} {model.version} may not roll out: "
            + "; ".join(reasons)
            + " (force it with a reason to override; it is recorded)"
        )
    gateways = _targets(session, request.target, user)
    busy = _busy(session, [g.id for g in gateways])
    if busy:
        gw, rid = busy[0]
        raise Conflict(
            f"gateway {gw!r} is in rollout {rid}, still active: abort it or wait for it "
            f"({len(busy)} gateway(s) busy)"
        )
    canaries = _canaries(request, gateways)
    manifest = manifests.issue(session, key, model, actor=user.username, now=now)
    total = request.abort_failures_total or max(1, len(gateways) // 10)
    rollout = m.ModelRollout(
        model_id=model.id,
        serial=manifest.serial,
        target=request.target.model_dump(mode="json"),
        state=RolloutState.CANARY if canaries else RolloutState.ROLLING,
        canary_healthy_s=request.canary_healthy_s,
        abort_failures=request.abort_failures,
        abort_failures_total=total,
        abort_fp_ratio=request.abort_fp_ratio,
        fp_min_verdicts=request.fp_min_verdicts,
        forced=bool(reasons),
        force_reason=request.force_reason if reasons else None,
        created_by=user.username,
        created_at=now,
        updated_at=now,
    )
    session.add(rollout)
    session.flush()
    _add_gateways(session, rollout, gateways, canaries)
    audit.record(
        session,
        actor=user.username,
        action="model_rollout",
        target=f"rollout:{rollout.id}",
        at=now,
        note=f"{model.name} {model.version} serial {manifest.serial} to {len(gateways)} "
        f"gateway(s), canary {', '.join(sorted(canaries)) or 'none'}",
    )
    if reasons:
        audit.record(
            session,
            actor=user.username,
            action="model_rollout_forced",
            target=f"rollout:{rollout.id}",
            at=now,
            note=f"{request.force_reason} (gate: {'; '.join(reasons)})",
        )
        ROLLOUTS.labels("forced").inc()
    ROLLOUTS.labels("created").inc()
    session.flush()
    return rollout


# --- moves ---------------------------------------------------------------------------


def move(
    session: Session,
    rollout: m.ModelRollout,
    to: RolloutState,
    *,
    now: datetime,
    reason: str | None = None,
) -> bool:
    """Move the rollout if it still is where it was read (False: another process moved
    it first); Conflict when the move is not allowed at all."""
    here = RolloutState(rollout.state)
    if to not in _MOVES[here]:
        raise Conflict(f"rollout {rollout.id} is {here.value}; it cannot become {to.value}")
    values: dict[str, object] = {"state": to.value, "updated_at": now}
    if reason is not None:
        values["reason"] = reason[:4000]
    moved = rowcount(
        session.execute(
            update(m.ModelRollout)
            .where(m.ModelRollout.id == rollout.id, m.ModelRollout.state == here.value)
            .values(**values)
            .execution_options(synchronize_session=False)
        )
    )
    session.refresh(rollout)
    if moved:
        ROLLOUTS.labels({"rolling": "promoted"}.get(to.value, to.value)).inc()
        log.info("rollout %d: %s → %s%s", rollout.id, here, to, f" ({reason})" if reason else "")
    return bool(moved)


def record_answer(
    session: Session,
    rollout_id: int,
    gateway: str,
    state: GatewayState,
    *,
    now: datetime,
    reason: str | None,
    running: str | None,
    via: str,
) -> bool:
    values: dict[str, object] = {"state": state.value, "answered_at": now, "reason": reason}
    if running is not None:
        values["running_version"] = running
    done = rowcount(
        session.execute(
            update(m.ModelRolloutGateway)
            .where(
                m.ModelRolloutGateway.rollout_id == rollout_id,
                m.ModelRolloutGateway.gateway == gateway,
                m.ModelRolloutGateway.state.in_([s.value for s in OPEN]),
            )
            .values(**values)
            .execution_options(synchronize_session=False)
        )
    )
    if done:
        RESULTS.labels(state.value, via).inc()
    return bool(done)


def apply_reply(session: Session, gateway_id: str, reply: Reply, now: datetime) -> str | None:
    """A gateway's answer to ``cmd/model``, in the ingest's transaction; returns why it is
    refused (a reply about a rollout that does not target this gateway), else None."""
    rid = reply.detail.get("rollout")
    if not isinstance(rid, int) or isinstance(rid, bool):
        return None  # a model push outside rollouts: nothing to track
    rollout = session.get(m.ModelRollout, rid)
    row = session.get(m.ModelRolloutGateway, (rid, gateway_id)) if rollout else None
    if rollout is None or row is None:
        IGNORED.labels("foreign").inc()
        return (
            f"gateway {gateway_id!r} answered a model install of rollout {rid}, which does "
            "not target it"
        )
    serial = reply.detail.get("serial")
    if reply.ok and serial != rollout.serial:
        IGNORED.labels("stale").inc()  # an older manifest's "installed" says nothing here
        return None
    if not reply.ok and serial is not None and serial != rollout.serial:
        IGNORED.labels("stale").inc()
        return None
    running = None
    if reply.ok:
        state, reason = GatewayState.INSTALLED, None
        running = version_text(reply.detail.get("model"), reply.detail.get("version"))
    else:
        refused = reply.detail.get("state") == "refused"
        state = GatewayState.REFUSED if refused else GatewayState.FAILED
        reason = reply.reason or "the gateway gave no reason"
        if isinstance(v := reply.detail.get("running_version"), str):
            running = v
    if not record_answer(
        session, rid, gateway_id, state, now=now, reason=reason, running=running, via="reply"
    ):
        IGNORED.labels("late").inc()
    return None


def abort(
    session: Session, rollout_id: int, *, user: m.User, now: datetime, reason: str | None
) -> m.ModelRollout:
    """Stop a rollout by hand: nothing more is sent; installed gateways keep the model
    (roll it back to take them back)."""
    rollout = get_rollout(session, rollout_id, for_update=True)
    _require_all_in_scope(session, rollout, user)
    if rollout.state not in ACTIVE:
        raise Conflict(f"rollout {rollout_id} is {rollout.state}; only an active one aborts")
    text = f"aborted by {user.username}" + (f": {reason}" if reason else "")
    move(session, rollout, RolloutState.ABORTED, now=now, reason=text)
    audit.record(
        session, actor=user.username, action="model_rollout_aborted",
        target=f"rollout:{rollout_id}", at=now, note=reason,
    )  # fmt: skip
    return rollout


def _require_all_in_scope(session: Session, rollout: m.ModelRollout, user: m.User) -> None:
    rows = visible(session, rollout, user)
    if user.community is not None and len(rows) != len(gateway_rows(session, rollout.id)):
        raise Forbidden(
            f"rollout {rollout.id} reaches gateways outside your area; ask a district engineer"
        )


def rollback(
    session: Session,
    key: Ed25519PrivateKey,
    rollout_id: int,
    *,
    user: m.User,
    now: datetime,
    model_id: int | None = None,
) -> m.ModelRollout:
    """Take the rollout's gateways back: a new manifest (a new, higher serial, with
    ``rollback=true``) of the previous model (or ``model_id``), pushed at once (no
    canary) to every gateway the model was sent to; the old rollout becomes rolled_back."""
    rollout = get_rollout(session, rollout_id, for_update=True)
    _require_all_in_scope(session, rollout, user)
    if rollout.state == RolloutState.ROLLED_BACK:
        raise Conflict(f"rollout {rollout_id} is rolled back already")
    back_to = model_id or rollout.previous_model_id
    if back_to is None:
        raise Conflict(
            f"rollout {rollout_id}: its gateways ran no registered model before; give the "
            "model_id to roll back to"
        )
    if back_to == rollout.model_id:
        raise Invalid("model_id: that is the model being rolled back")
    model = store.get_model(session, back_to)
    reached = [
        r.gateway
        for r in gateway_rows(session, rollout.id)
        if r.state in (GatewayState.SENT, GatewayState.INSTALLED)
    ]
    busy = [(gw, rid) for gw, rid in _busy(session, reached) if rid != rollout.id]
    if busy:
        raise Conflict(
            f"gateway {busy[0][0]!r} is in rollout {busy[0][1]}, still active: abort it or "
            "roll that one back instead"
        )
    if rollout.state in ACTIVE:
        move(
            session,
            rollout,
            RolloutState.ABORTED,
            now=now,
            reason=f"rolled back by {user.username}",
        )
    if not reached:
        raise Conflict(
            f"rollout {rollout_id} reached no gateway: nothing to roll back (it is aborted)"
        )
    manifest = manifests.issue(session, key, model, actor=user.username, now=now, rollback=True)
    back = m.ModelRollout(
        model_id=model.id,
        serial=manifest.serial,
        previous_model_id=rollout.model_id,
        rollback_of=rollout.id,
        target={"kind": "gateway", "ids": reached},
        state=RolloutState.ROLLING,
        canary_healthy_s=0,
        abort_failures=rollout.abort_failures,
        abort_failures_total=max(len(reached), 1),  # a way back is not stopped halfway
        abort_fp_ratio=rollout.abort_fp_ratio,
        fp_min_verdicts=rollout.fp_min_verdicts,
        forced=False,
        created_by=user.username,
        created_at=now,
        updated_at=now,
    )
    session.add(back)
    session.flush()
    _add_gateways(session, back, list(gateways_by_id(session, reached).values()), set())
    move(
        session,
        rollout,
        RolloutState.ROLLED_BACK,
        now=now,
        reason=f"rolled back by rollout {back.id}",
    )
    audit.record(
        session,
        actor=user.username,
        action="model_rollback",
        target=f"rollout:{rollout.id}",
        at=now,
        note=f"back to {model.name} {model.version} (serial {manifest.serial}, rollout {back.id})",
    )
    return back

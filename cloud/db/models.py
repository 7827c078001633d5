"""Tables: the site tree, devices, ingest ledger, events, readings, alerts and their
audit, escalation deadlines, work orders, users, gateway credentials, dead letters and
the model registry.

Every row that belongs to a place carries its full path (community, compound,
building) so that scoping, routing and statistics use plain column filters.
"""

from __future__ import annotations

from datetime import date, datetime
from typing import Any, ClassVar

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Date,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
    text,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship
from sqlalchemy.types import TypeEngine

from cloud.db.types import UTCDateTime

# SQLite only autoincrements INTEGER PRIMARY KEY; PostgreSQL gets a bigint
BigId = BigInteger().with_variant(Integer(), "sqlite")

ID = String(64)


class Base(DeclarativeBase):
    # a class attribute SQLAlchemy reads once, when the registry is made
    type_annotation_map: ClassVar[dict[Any, TypeEngine[Any]]] = {
        datetime: UTCDateTime(),
        dict[str, Any]: JSON(),
        list[Any]: JSON(),
    }


# --- the site tree -------------------------------------------------------------------


class Community(Base):
    __tablename__ = "communities"
    id: Mapped[str] = mapped_column(ID, primary_key=True)
    name: Mapped[str] = mapped_column(String(100))
    contacts: Mapped[list[Any]] = mapped_column(default=list)
    escalation: Mapped[dict[str, Any] | None]


class Compound(Base):
    __tablename__ = "compounds"
    __table_args__ = (UniqueConstraint("community", "id", name="uq_compound_path"),)
    pk: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    community: Mapped[str] = mapped_column(ID, ForeignKey("communities.id"))
    id: Mapped[str] = mapped_column(ID)
    name: Mapped[str] = mapped_column(String(100))
    contacts: Mapped[list[Any]] = mapped_column(default=list)
    escalation: Mapped[dict[str, Any] | None]


class Building(Base):
    __tablename__ = "buildings"
    __table_args__ = (UniqueConstraint("community", "compound", "id", name="uq_building_path"),)
    pk: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    community: Mapped[str] = mapped_column(ID)
    compound: Mapped[str] = mapped_column(ID)
    id: Mapped[str] = mapped_column(ID)
    name: Mapped[str] = mapped_column(String(100))
    category: Mapped[str] = mapped_column(String(64))
    leader: Mapped[dict[str, Any] | None]


class Department(Base):
    __tablename__ = "departments"
    id: Mapped[str] = mapped_column(ID, primary_key=True)
    name: Mapped[str] = mapped_column(String(100))
    contacts: Mapped[list[Any]] = mapped_column(default=list)


class SiteConfig(Base):
    """The district-wide settings of the loaded site (one row)."""

    __tablename__ = "site_config"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    district: Mapped[str] = mapped_column(ID)
    name: Mapped[str] = mapped_column(String(100))
    timezone: Mapped[str] = mapped_column(String(64))
    escalation: Mapped[dict[str, Any]]
    loaded_at: Mapped[datetime]
    # where each node was declared, {"community:xiyuan": "configs/demo/site.yaml:100"}
    # (microbrain.site.loader.site_sources); {} when the site was loaded without its file
    sources: Mapped[dict[str, Any]] = mapped_column(default=dict, server_default="{}")


# --- devices -------------------------------------------------------------------------


class Gateway(Base):
    __tablename__ = "gateways"
    id: Mapped[str] = mapped_column(ID, primary_key=True)
    community: Mapped[str] = mapped_column(ID)
    compound: Mapped[str] = mapped_column(ID)
    building: Mapped[str | None] = mapped_column(ID)
    name: Mapped[str | None] = mapped_column(String(100))
    heartbeat_s: Mapped[float] = mapped_column(default=30.0)
    state: Mapped[str] = mapped_column(String(16), default="unknown")
    last_seen: Mapped[datetime | None]
    health: Mapped[dict[str, Any] | None]
    # sequence tracking is per outbox epoch: last_seq and seq_gaps are the current epoch's
    last_seq: Mapped[int] = mapped_column(BigInteger, default=0)
    seq_gaps: Mapped[int] = mapped_column(Integer, default=0)
    # bad messages refused but not kept: over this gateway's dead-letter cap
    dead_letters_dropped: Mapped[int] = mapped_column(BigInteger, default=0, server_default="0")
    epoch: Mapped[str | None] = mapped_column(String(32))  # None: an older gateway, no epochs
    epochs_seen: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    # items stored although their seq was already taken in their epoch by another id
    seq_collisions: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    # items refused because their camera or sensor is not one of this gateway's
    unknown_device_items: Mapped[int] = mapped_column(Integer, default=0, server_default="0")


class GatewayEpoch(Base):
    """Every outbox epoch a gateway has used, so that a late item of an old one is not
    taken for a new outbox."""

    __tablename__ = "gateway_epochs"
    gateway: Mapped[str] = mapped_column(ID, primary_key=True)
    epoch: Mapped[str] = mapped_column(String(32), primary_key=True)
    first_seen: Mapped[datetime]


class GatewayCredential(Base):
    """A gateway's broker login; the hash only (exported for Mosquitto's password file)."""

    __tablename__ = "gateway_credentials"
    gateway: Mapped[str] = mapped_column(ID, ForeignKey("gateways.id"), primary_key=True)
    username: Mapped[str] = mapped_column(String(128), unique=True)
    password_hash: Mapped[str] = mapped_column(String(256))
    created_at: Mapped[datetime]


class Device(Base):
    """A camera or sensor attached to a gateway."""

    __tablename__ = "devices"
    __table_args__ = (UniqueConstraint("gateway", "id", name="uq_device"),)
    pk: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    gateway: Mapped[str] = mapped_column(ID, ForeignKey("gateways.id"))
    id: Mapped[str] = mapped_column(ID)
    type: Mapped[str] = mapped_column(String(16))  # camera | sensor
    kind: Mapped[str | None] = mapped_column(ID)
    name: Mapped[str | None] = mapped_column(String(100))
    building: Mapped[str | None] = mapped_column(ID)
    last_seen: Mapped[datetime | None]


# --- ingest --------------------------------------------------------------------------


class Ledger(Base):
    """One row per stored gateway message: the dedupe point, by id. ``(gateway, epoch,
    seq)`` is unique too, so a seq reused under a new id is noticed; the item is stored
    all the same, its row here without the seq."""

    __tablename__ = "ingest_ledger"
    __table_args__ = (
        UniqueConstraint("gateway", "epoch", "seq", name="uq_ledger_gateway_epoch_seq"),
    )
    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    gateway: Mapped[str] = mapped_column(ID)
    # "" for an older gateway's items (no epoch): NULL would make every seq unique
    epoch: Mapped[str] = mapped_column(String(32), default="", server_default="")
    # None when the gateway sent seq 0, or when the seq collided (see above)
    seq: Mapped[int | None] = mapped_column(BigInteger)
    channel: Mapped[str] = mapped_column(String(16))
    received_at: Mapped[datetime]


class EventRow(Base):
    __tablename__ = "events"
    __table_args__ = (
        Index("ix_events_place_ts", "community", "compound", "ts"),
        Index("ix_events_gateway_ts", "gateway", "ts"),
    )
    pk: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    id: Mapped[str] = mapped_column(String(36), unique=True)
    gateway: Mapped[str] = mapped_column(ID)
    seq: Mapped[int | None] = mapped_column(BigInteger)
    ts: Mapped[datetime]
    received_at: Mapped[datetime]
    community: Mapped[str] = mapped_column(ID)
    compound: Mapped[str] = mapped_column(ID)
    building: Mapped[str | None] = mapped_column(ID)
    kind: Mapped[str] = mapped_column(ID)
    state: Mapped[str] = mapped_column(String(16))
    severity: Mapped[int] = mapped_column(Integer)
    source: Mapped[str] = mapped_column(ID)
    zone: Mapped[str | None] = mapped_column(ID)
    message: Mapped[str | None] = mapped_column(Text)
    payload: Mapped[dict[str, Any]]
    alert_id: Mapped[int | None] = mapped_column(BigInteger, index=True)


class ReadingRow(Base):
    """Sensor time series; indexed by device and time, pruned by retention."""

    __tablename__ = "readings"
    __table_args__ = (
        Index("ix_readings_device_ts", "gateway", "sensor", "ts"),
        Index("ix_readings_ts", "ts"),
    )
    pk: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    id: Mapped[str] = mapped_column(String(36), unique=True)
    gateway: Mapped[str] = mapped_column(ID)
    seq: Mapped[int | None] = mapped_column(BigInteger)
    ts: Mapped[datetime]
    sensor: Mapped[str] = mapped_column(ID)
    kind: Mapped[str] = mapped_column(ID)
    community: Mapped[str] = mapped_column(ID)
    compound: Mapped[str] = mapped_column(ID)
    building: Mapped[str | None] = mapped_column(ID)
    values: Mapped[dict[str, Any]]
    units: Mapped[dict[str, Any]] = mapped_column(default=dict)
    faults: Mapped[list[Any]] = mapped_column(default=list)
    samples: Mapped[int] = mapped_column(Integer, default=1)


class DeadLetter(Base):
    """Every rejected message with its reason: never silently dropped."""

    __tablename__ = "dead_letters"
    __table_args__ = (
        Index("ix_dead_letters_gateway_digest", "gateway", "digest"),
        # the per-gateway cap counts what was kept within a window
        Index("ix_dead_letters_gateway_received", "gateway", "received_at"),
    )
    pk: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    received_at: Mapped[datetime] = mapped_column(index=True)
    topic: Mapped[str] = mapped_column(String(600))
    gateway: Mapped[str | None] = mapped_column(ID)
    reason: Mapped[str] = mapped_column(String(1000))
    field: Mapped[str | None] = mapped_column(String(200))
    payload: Mapped[bytes | None] = mapped_column()
    # the same bad item resent (a gateway's outbox retrying for ever) is one row that
    # counts: sha256 of the whole payload, how often, and when last
    digest: Mapped[str | None] = mapped_column(String(64))
    count: Mapped[int] = mapped_column(Integer, default=1, server_default="1")
    last_seen: Mapped[datetime | None] = mapped_column()


# --- alerts --------------------------------------------------------------------------


class Alert(Base):
    """What people act on: repeated events at one place fold into one alert with a count."""

    __tablename__ = "alerts"
    __table_args__ = (
        # at most one live alert per key; two ingest workers racing to open it collide here
        Index(
            "uq_alerts_active_key",
            "key",
            unique=True,
            sqlite_where=text("active"),
            postgresql_where=text("active"),
        ),
        Index("ix_alerts_place_status", "community", "compound", "building", "status"),
        # the duty console's filters and orders: a kind at a place (and similar past
        # alerts), an opened_at range, the list's newest-change-first order
        Index("ix_alerts_kind_place", "kind", "community", "compound", "building"),
        Index("ix_alerts_opened_at", "opened_at"),
        Index("ix_alerts_updated_at", "updated_at"),
    )
    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    key: Mapped[str] = mapped_column(String(300))
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    kind: Mapped[str] = mapped_column(ID)
    severity: Mapped[int] = mapped_column(Integer)
    status: Mapped[str] = mapped_column(String(16), index=True)
    level: Mapped[str] = mapped_column(String(16), default="building")
    community: Mapped[str] = mapped_column(ID)
    compound: Mapped[str] = mapped_column(ID)
    building: Mapped[str | None] = mapped_column(ID)
    gateway: Mapped[str] = mapped_column(ID)
    source: Mapped[str] = mapped_column(ID)
    zone: Mapped[str | None] = mapped_column(ID)
    count: Mapped[int] = mapped_column(Integer, default=1)
    message: Mapped[str | None] = mapped_column(Text)
    first_ts: Mapped[datetime]
    last_ts: Mapped[datetime]
    opened_at: Mapped[datetime]
    updated_at: Mapped[datetime]
    cleared: Mapped[bool] = mapped_column(Boolean, default=False)
    # loaded when read (one query per alert); list queries load it for all rows at once
    # with ``selectinload(Alert.verdict_row)``
    verdict_row: Mapped[AlertVerdict | None] = relationship(uselist=False)

    # the verdict's fields as the alert's, so that an alert validates into AlertOut
    @property
    def verdict(self) -> str | None:
        return self.verdict_row.verdict if self.verdict_row else None

    @property
    def verdict_by(self) -> str | None:
        return self.verdict_row.actor if self.verdict_row else None

    @property
    def verdict_at(self) -> datetime | None:
        return self.verdict_row.at if self.verdict_row else None


class AlertVerdict(Base):
    """Whether an alert was real (``confirmed``) or a ``false_positive``, by whom and when:
    the latest word replaces the earlier (the alert's log keeps every one)."""

    __tablename__ = "alert_verdicts"
    alert_id: Mapped[int] = mapped_column(BigInteger, ForeignKey("alerts.id"), primary_key=True)
    verdict: Mapped[str] = mapped_column(String(16))
    actor: Mapped[str] = mapped_column(String(128))
    at: Mapped[datetime]
    note: Mapped[str | None] = mapped_column(Text)


class AlertTransition(Base):
    """The audit log of an alert: each change of status, escalation and comment."""

    __tablename__ = "alert_transitions"
    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    alert_id: Mapped[int] = mapped_column(BigInteger, ForeignKey("alerts.id"), index=True)
    action: Mapped[str] = mapped_column(String(32))
    from_status: Mapped[str | None] = mapped_column(String(16))
    to_status: Mapped[str] = mapped_column(String(16))
    actor: Mapped[str] = mapped_column(String(128))
    at: Mapped[datetime]
    note: Mapped[str | None] = mapped_column(Text)


class EscalationDeadline(Base):
    """The pending escalation of an unacknowledged alert: a row, so restarts keep it."""

    __tablename__ = "escalation_deadlines"
    alert_id: Mapped[int] = mapped_column(BigInteger, ForeignKey("alerts.id"), primary_key=True)
    level: Mapped[str] = mapped_column(String(16))
    due_at: Mapped[datetime] = mapped_column(index=True)


class WorkOrder(Base):
    """吹哨报到: a task for a functional department, verified before it closes."""

    __tablename__ = "work_orders"
    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    alert_id: Mapped[int] = mapped_column(BigInteger, ForeignKey("alerts.id"), index=True)
    department: Mapped[str | None] = mapped_column(ID)
    status: Mapped[str] = mapped_column(String(16), index=True)
    community: Mapped[str] = mapped_column(ID)
    compound: Mapped[str] = mapped_column(ID)
    building: Mapped[str | None] = mapped_column(ID)
    reason: Mapped[str] = mapped_column(String(32))  # whistle | dispatch
    created_at: Mapped[datetime]
    updated_at: Mapped[datetime]
    recheck_id: Mapped[str | None] = mapped_column(String(36), unique=True)
    # the gateway the recheck went to: only its reply counts
    recheck_gateway: Mapped[str | None] = mapped_column(ID)
    note: Mapped[str | None] = mapped_column(Text)
    # when the department should be done (a playbook's deadline); None: no deadline
    due_at: Mapped[datetime | None] = mapped_column(index=True)


class WorkOrderTransition(Base):
    __tablename__ = "work_order_transitions"
    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    work_order_id: Mapped[int] = mapped_column(BigInteger, ForeignKey("work_orders.id"), index=True)
    from_status: Mapped[str | None] = mapped_column(String(16))
    to_status: Mapped[str] = mapped_column(String(16))
    actor: Mapped[str] = mapped_column(String(128))
    at: Mapped[datetime]
    note: Mapped[str | None] = mapped_column(Text)


# --- access --------------------------------------------------------------------------


class User(Base):
    """A person bound to one node of the tree; they see and act only below it."""

    __tablename__ = "users"
    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    username: Mapped[str] = mapped_column(String(64), unique=True)
    password_hash: Mapped[str] = mapped_column(String(256))
    role: Mapped[str] = mapped_column(String(16))
    community: Mapped[str | None] = mapped_column(ID)  # None: the whole district
    compound: Mapped[str | None] = mapped_column(ID)
    building: Mapped[str | None] = mapped_column(ID)
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    created_at: Mapped[datetime]


class ApiToken(Base):
    __tablename__ = "api_tokens"
    token_hash: Mapped[str] = mapped_column(String(64), primary_key=True)
    user_id: Mapped[int] = mapped_column(BigInteger, ForeignKey("users.id"), index=True)
    expires_at: Mapped[datetime]


class AuditEntry(Base):
    """Who did what to whom outside an alert's own log (users deactivated, tokens revoked)."""

    __tablename__ = "audit_log"
    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    at: Mapped[datetime] = mapped_column(index=True)
    actor: Mapped[str] = mapped_column(String(128))
    action: Mapped[str] = mapped_column(String(32))
    target: Mapped[str] = mapped_column(String(200), index=True)  # e.g. "user:42"
    note: Mapped[str | None] = mapped_column(Text)


class LoginFailure(Base):
    """Failed logins per key (a user name or a client address, sha256'd so that a
    password typed into the name field is not stored) in the current window; in the
    database so that every cloud process counts against the same limit."""

    __tablename__ = "login_failures"
    key: Mapped[str] = mapped_column(String(64), primary_key=True)
    first_at: Mapped[datetime] = mapped_column(index=True)
    failures: Mapped[int] = mapped_column(Integer)


# --- model registry ------------------------------------------------------------------


class ModelVersion(Base):
    """A model file registered with its card (cloud/model_registry): the file is kept
    content-addressed by ``sha256``; ``card`` holds the detector type, input size, classes,
    minimum gateway version, expiry days, the evaluation and free-text notes."""

    __tablename__ = "model_versions"
    __table_args__ = (UniqueConstraint("name", "version", name="uq_model_version"),)
    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    name: Mapped[str] = mapped_column(String(100))
    version: Mapped[str] = mapped_column(String(64))
    sha256: Mapped[str] = mapped_column(String(64))
    bytes: Mapped[int] = mapped_column(BigInteger)
    card: Mapped[dict[str, Any]] = mapped_column(default=dict)
    signature: Mapped[str | None] = mapped_column(String(1000))  # unused: see ModelManifestRow
    uploaded_by: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime]


class ModelManifestRow(Base):
    """Every manifest the registry signed. Its id *is* the manifest's serial: allocated by
    the database (a sequence on PostgreSQL, the rowid on SQLite, rows never deleted), so
    serials strictly increase across all cloud processes sharing the database."""

    __tablename__ = "model_manifests"
    serial: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    model_id: Mapped[int] = mapped_column(BigInteger, ForeignKey("model_versions.id"), index=True)
    rollback: Mapped[bool] = mapped_column(Boolean, default=False)
    # the canonical signed text and its base64 ed25519 signature; "" only inside the
    # transaction that allocates the serial
    text: Mapped[str] = mapped_column(Text, default="")
    signature: Mapped[str] = mapped_column(String(100), default="")
    issued_at: Mapped[datetime]
    issued_by: Mapped[str] = mapped_column(String(128))


class ModelRollout(Base):
    """One push of a signed manifest to a set of gateways: canary first, then the rest.
    ``state``: canary → rolling → done | aborted | rolled_back (cloud/model_registry/
    rollouts.py holds the moves)."""

    __tablename__ = "model_rollouts"
    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    model_id: Mapped[int] = mapped_column(BigInteger, ForeignKey("model_versions.id"), index=True)
    serial: Mapped[int] = mapped_column(BigInteger, ForeignKey("model_manifests.serial"))
    # the registered model most targeted gateways ran before (None: a model not from the
    # registry): what the false-positive check compares with and a rollback goes back to
    previous_model_id: Mapped[int | None] = mapped_column(
        BigInteger, ForeignKey("model_versions.id")
    )
    rollback_of: Mapped[int | None] = mapped_column(BigInteger)
    target: Mapped[dict[str, Any]] = mapped_column(default=dict)
    state: Mapped[str] = mapped_column(String(16), index=True)
    canary_healthy_s: Mapped[int] = mapped_column(Integer)
    abort_failures: Mapped[int] = mapped_column(Integer)
    abort_failures_total: Mapped[int] = mapped_column(Integer)
    abort_fp_ratio: Mapped[float]
    fp_min_verdicts: Mapped[int] = mapped_column(Integer)
    forced: Mapped[bool] = mapped_column(Boolean, default=False)
    force_reason: Mapped[str | None] = mapped_column(Text)
    # since when every canary gateway has been installed and healthy (None: not yet)
    healthy_since: Mapped[datetime | None]
    reason: Mapped[str | None] = mapped_column(Text)  # why it was aborted
    created_by: Mapped[str] = mapped_column(String(128))
    created_at: Mapped[datetime]
    updated_at: Mapped[datetime]


class ModelRolloutGateway(Base):
    """One gateway's part in a rollout: pending → sent → installed | failed | refused."""

    __tablename__ = "model_rollout_gateways"
    __table_args__ = (Index("ix_model_rollout_gateways_gateway", "gateway"),)
    rollout_id: Mapped[int] = mapped_column(
        BigInteger, ForeignKey("model_rollouts.id"), primary_key=True
    )
    gateway: Mapped[str] = mapped_column(ID, ForeignKey("gateways.id"), primary_key=True)
    canary: Mapped[bool] = mapped_column(Boolean, default=False)
    state: Mapped[str] = mapped_column(String(16))
    reason: Mapped[str | None] = mapped_column(Text)
    sends: Mapped[int] = mapped_column(Integer, default=0)
    sent_at: Mapped[datetime | None]
    answered_at: Mapped[datetime | None]
    # what the gateway ran when the rollout was made (from its heartbeat), and reports now
    previous_version: Mapped[str | None] = mapped_column(String(200))
    previous_model_id: Mapped[int | None] = mapped_column(BigInteger)
    running_version: Mapped[str | None] = mapped_column(String(200))


# --- smart response ------------------------------------------------------------------


class ResponseRun(Base):
    """A playbook applied to an alert, once: the primary key is the exactly-once guard
    when several processes see the same new alert."""

    __tablename__ = "response_runs"
    alert_id: Mapped[int] = mapped_column(BigInteger, ForeignKey("alerts.id"), primary_key=True)
    playbooks: Mapped[str] = mapped_column(String(300))  # ids merged, ',' between; '' none
    at: Mapped[datetime]
    next_steps: Mapped[list[Any]] = mapped_column(default=list)
    # how similar past alerts ended, as offered when this one opened (one line each)
    suggestions: Mapped[list[Any]] = mapped_column(default=list)
    work_order_id: Mapped[int | None] = mapped_column(BigInteger)


class Notification(Base):
    """One alert for one contact through one channel: pending until a delivery carries
    it (alone, or in a digest), failed after its last retry."""

    __tablename__ = "notifications"
    __table_args__ = (Index("ix_notifications_due", "channel", "status", "next_attempt_at"),)
    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    alert_id: Mapped[int] = mapped_column(BigInteger, ForeignKey("alerts.id"), index=True)
    channel: Mapped[str] = mapped_column(ID)
    contact: Mapped[str] = mapped_column(ID)
    user: Mapped[str | None] = mapped_column(String(64))
    mobile: Mapped[str | None] = mapped_column(String(32))
    severity: Mapped[int] = mapped_column(Integer)
    status: Mapped[str] = mapped_column(String(16))  # pending | sent | failed | skipped
    created_at: Mapped[datetime]
    next_attempt_at: Mapped[datetime]
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    sent_at: Mapped[datetime | None]
    last_error: Mapped[str | None] = mapped_column(Text)


class DeliveryAttempt(Base):
    """One message sent to a channel (one alert's, or a digest of several) and how it
    went: what the rate budget counts and what an alert's delivery log shows."""

    __tablename__ = "delivery_attempts"
    __table_args__ = (Index("ix_delivery_attempts_channel_at", "channel", "at"),)
    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    channel: Mapped[str] = mapped_column(ID)
    at: Mapped[datetime]
    ok: Mapped[bool] = mapped_column(Boolean)
    latency_ms: Mapped[int] = mapped_column(Integer)
    error: Mapped[str | None] = mapped_column(Text)
    digest: Mapped[bool] = mapped_column(Boolean, default=False)


class DeliveryAttemptItem(Base):
    """Which notifications an attempt carried (a digest carries many)."""

    __tablename__ = "delivery_attempt_items"
    attempt_id: Mapped[int] = mapped_column(
        BigInteger, ForeignKey("delivery_attempts.id"), primary_key=True
    )
    notification_id: Mapped[int] = mapped_column(
        BigInteger, ForeignKey("notifications.id"), primary_key=True, index=True
    )


class ChannelLease(Base):
    """Who sends on a channel now: one process at a time, so its rate budget holds
    across processes; a lease that is not renewed runs out."""

    __tablename__ = "channel_leases"
    channel: Mapped[str] = mapped_column(ID, primary_key=True)
    holder: Mapped[str] = mapped_column(String(64))
    until: Mapped[datetime]


class Announcement(Base):
    """A voice warning at the spot that repeats while its alert stands."""

    __tablename__ = "announcements"
    alert_id: Mapped[int] = mapped_column(BigInteger, ForeignKey("alerts.id"), primary_key=True)
    community: Mapped[str] = mapped_column(ID)
    compound: Mapped[str] = mapped_column(ID)
    gateway: Mapped[str] = mapped_column(ID)
    text: Mapped[str] = mapped_column(String(200))
    speaker: Mapped[str | None] = mapped_column(ID)
    repeat_s: Mapped[float]
    remaining: Mapped[int] = mapped_column(Integer)
    sent: Mapped[int] = mapped_column(Integer, default=0)
    next_at: Mapped[datetime] = mapped_column(index=True)
    last_error: Mapped[str | None] = mapped_column(Text)


class AckLink(Base):
    """A single-use acknowledgement link sent in a notification, bound to one user and
    one alert; only its token's sha256 is kept."""

    __tablename__ = "ack_links"
    token_sha256: Mapped[str] = mapped_column(String(64), primary_key=True)
    alert_id: Mapped[int] = mapped_column(BigInteger, ForeignKey("alerts.id"), index=True)
    user: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime]
    expires_at: Mapped[datetime]
    used_at: Mapped[datetime | None]


# --- residents' appeals (居民诉求) ----------------------------------------------------


class Appeal(Base):
    """A resident's appeal (or a 12345 hotline work order): classified, routed to whoever
    answers it, due by a deadline, answered and rated. ``ticket`` is what the resident is
    shown; the access key that opens it is kept as its sha256 only."""

    __tablename__ = "appeals"
    __table_args__ = (
        Index("ix_appeals_place_status", "community", "compound", "building", "status"),
        # the scheduler's overdue scan: open appeals past due_at, not yet escalated
        Index("ix_appeals_due", "status", "due_at"),
    )
    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    ticket: Mapped[str] = mapped_column(String(24), unique=True)
    access_sha256: Mapped[str | None] = mapped_column(String(64))  # None: imported
    origin: Mapped[str] = mapped_column(String(16))  # resident | hotline
    # the hotline's own order number ("12345:<no>"): the import's idempotency key
    external_id: Mapped[str | None] = mapped_column(String(100), unique=True)
    community: Mapped[str] = mapped_column(ID)
    compound: Mapped[str] = mapped_column(ID)
    building: Mapped[str | None] = mapped_column(ID)
    category: Mapped[str] = mapped_column(ID)
    category_source: Mapped[str] = mapped_column(String(16))  # resident | text | fallback
    matched: Mapped[list[Any]] = mapped_column(default=list)  # the keywords found
    text: Mapped[str] = mapped_column(Text)
    contact: Mapped[str | None] = mapped_column(String(32))  # the phone, normalised
    # HMAC of the phone under the secret key: the rate limit's and the resident view's key
    contact_sha256: Mapped[str | None] = mapped_column(String(64), index=True)
    status: Mapped[str] = mapped_column(String(16), index=True)
    responsible_kind: Mapped[str] = mapped_column(String(16))  # department|property|building_leader
    responsible_id: Mapped[str] = mapped_column(ID)  # the department, compound or building
    due_at: Mapped[datetime]
    escalated_at: Mapped[datetime | None]
    alert_id: Mapped[int | None] = mapped_column(BigInteger, ForeignKey("alerts.id"), index=True)
    reply: Mapped[str | None] = mapped_column(Text)
    replied_by: Mapped[str | None] = mapped_column(String(128))
    replied_at: Mapped[datetime | None]
    rating: Mapped[int | None] = mapped_column(Integer)
    rating_comment: Mapped[str | None] = mapped_column(Text)
    rated_at: Mapped[datetime | None]
    created_at: Mapped[datetime] = mapped_column(index=True)
    updated_at: Mapped[datetime]


class AppealPhoto(Base):
    """A photo of an appeal, checked (size, sniffed type) and kept on disk."""

    __tablename__ = "appeal_photos"
    __table_args__ = (UniqueConstraint("appeal_id", "n", name="uq_appeal_photo"),)
    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    appeal_id: Mapped[int] = mapped_column(BigInteger, ForeignKey("appeals.id"), index=True)
    n: Mapped[int] = mapped_column(Integer)  # 1, 2, 3 in the order sent
    sha256: Mapped[str] = mapped_column(String(64))
    content_type: Mapped[str] = mapped_column(String(32))
    bytes: Mapped[int] = mapped_column(Integer)
    path: Mapped[str] = mapped_column(String(500))  # relative to the photo directory


class AppealTransition(Base):
    """The audit log of an appeal: intake, each move, escalation, rating."""

    __tablename__ = "appeal_transitions"
    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    appeal_id: Mapped[int] = mapped_column(BigInteger, ForeignKey("appeals.id"), index=True)
    action: Mapped[str] = mapped_column(String(32))
    from_status: Mapped[str | None] = mapped_column(String(16))
    to_status: Mapped[str] = mapped_column(String(16))
    actor: Mapped[str] = mapped_column(String(128))
    at: Mapped[datetime]
    note: Mapped[str | None] = mapped_column(Text)


class AppealIntakeCount(Base):
    """Appeals per contact (its HMAC) in the current window: the per-contact rate limit,
    in the database so that every cloud process counts against the same limit."""

    __tablename__ = "appeal_intake_counts"
    key: Mapped[str] = mapped_column(String(64), primary_key=True)
    first_at: Mapped[datetime] = mapped_column(index=True)
    count: Mapped[int] = mapped_column(Integer)


# --- 24-hour awareness: shift handovers and stored daily reports (交接班、日报) --------


# the daily report's reads (cloud/awareness/report.py), declared here beside its tables:
# every alert-only figure of a day groups the day's alerts by these columns, which this
# index covers (no table lookups: ~5x faster at 100,000 alerts a day); the log's rows by
# action and time (SLA breaches of a day) and by alert and action (the first
# acknowledgement and resolution of each of the day's alerts)
Index(
    "ix_alerts_day_report",
    Alert.opened_at,
    Alert.severity,
    Alert.kind,
    Alert.community,
    Alert.compound,
    Alert.building,
)
Index("ix_alert_transitions_action_at", AlertTransition.action, AlertTransition.at)
Index(
    "ix_alert_transitions_alert_action",
    AlertTransition.alert_id,
    AlertTransition.action,
    AlertTransition.at,
)


class ShiftHandover(Base):
    """One desk's handover at one shift change, made once (unique desk + shift start,
    whichever process inserts first); ``body`` holds its counts and lists as JSON. The
    desk's place is copied from the config so that scoping needs no config."""

    __tablename__ = "shift_handovers"
    __table_args__ = (UniqueConstraint("desk", "shift_start", name="uq_shift_handover"),)
    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    desk: Mapped[str] = mapped_column(ID)
    desk_name: Mapped[str] = mapped_column(String(100))
    community: Mapped[str | None] = mapped_column(ID)  # None: the district
    compound: Mapped[str | None] = mapped_column(ID)
    building: Mapped[str | None] = mapped_column(ID)
    shift_start: Mapped[datetime] = mapped_column(index=True)
    previous_start: Mapped[datetime]
    made_at: Mapped[datetime]
    body: Mapped[dict[str, Any]]


class StoredDailyReport(Base):
    """One desk's daily report of one local day, made once at the report hour; ``body``
    is :meth:`cloud.awareness.report.DailyReport.to_json` (HTML and PDF are rendered from
    it on download)."""

    __tablename__ = "daily_reports"
    __table_args__ = (UniqueConstraint("desk", "day", name="uq_daily_report"),)
    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    desk: Mapped[str] = mapped_column(ID)
    desk_name: Mapped[str] = mapped_column(String(100))
    community: Mapped[str | None] = mapped_column(ID)
    compound: Mapped[str | None] = mapped_column(ID)
    building: Mapped[str | None] = mapped_column(ID)
    day: Mapped[date] = mapped_column(Date, index=True)
    made_at: Mapped[datetime]
    body: Mapped[dict[str, Any]]


# --- awareness: device liveness and flapping ------------------------------------------


class DeviceLiveness(Base):
    """What the awareness loop's liveness sweep knows of one gateway, camera or sensor:
    what it saw last (``observed``, raw by :mod:`cloud.liveness`), the debounced
    ``state`` that alerts follow, the recent down-episodes that tell a flapping device,
    and whether it raised the gateway's ``gateway_offline`` (``alerted``). A gateway's
    own row has ``type`` "gateway" and ``device`` its id."""

    __tablename__ = "device_liveness"
    gateway: Mapped[str] = mapped_column(ID, primary_key=True)
    type: Mapped[str] = mapped_column(String(16), primary_key=True)  # gateway|camera|sensor
    device: Mapped[str] = mapped_column(ID, primary_key=True)
    observed: Mapped[str] = mapped_column(String(8))  # up | down | unknown
    observed_since: Mapped[datetime]
    state: Mapped[str] = mapped_column(String(8))  # online | offline | unknown
    state_since: Mapped[datetime]
    alerted: Mapped[bool] = mapped_column(Boolean, default=False)
    # POSIX seconds of the up → down changes seen within the flapping window
    downs: Mapped[list[Any]] = mapped_column(default=list)
    last_change_at: Mapped[datetime | None]
    flapping: Mapped[bool] = mapped_column(Boolean, default=False)
    flap_count: Mapped[int] = mapped_column(Integer, default=0)
    flapping_since: Mapped[datetime | None]


class LivenessSweep(Base):
    """One row: the latest sweep. Each sweep updates it first, so sweeps in several
    processes run one after another (the row lock), each reading what the last wrote."""

    __tablename__ = "liveness_sweeps"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    last_at: Mapped[datetime]
    sweeps: Mapped[int] = mapped_column(BigInteger, default=0)


# --- hotspots as governance items (治理事项) -------------------------------------------


class GovernanceItem(Base):
    """A hotspot: the same alert kind at the same place (building, or the compound when
    the alerts name none) again and again within a week. It stands as one item with its
    history (:class:`GovernanceItemAlert`) until a supervisor closes it with a note; a
    later crossing of the threshold opens a new item."""

    __tablename__ = "governance_items"
    __table_args__ = (
        # at most one open item per kind and place: two processes crossing at once collide
        Index(
            "uq_governance_items_open_key",
            "key",
            unique=True,
            sqlite_where=text("status = 'open'"),
            postgresql_where=text("status = 'open'"),
        ),
        Index("ix_governance_items_place_status", "community", "compound", "building", "status"),
    )
    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    key: Mapped[str] = mapped_column(String(300))  # kind|community/compound/building-or-"-"
    kind: Mapped[str] = mapped_column(ID)
    community: Mapped[str] = mapped_column(ID)
    compound: Mapped[str] = mapped_column(ID)
    building: Mapped[str | None] = mapped_column(ID)
    status: Mapped[str] = mapped_column(String(16))  # open | closed
    opened_at: Mapped[datetime]
    last_seen: Mapped[datetime]  # the newest alert's opened_at
    count: Mapped[int] = mapped_column(Integer)  # alerts in the history
    closed_at: Mapped[datetime | None]
    closed_by: Mapped[str | None] = mapped_column(String(128))
    close_note: Mapped[str | None] = mapped_column(Text)


class GovernanceItemAlert(Base):
    """An item's history: each alert it stands for, once (the alert is the key, so two
    processes never add one alert twice, nor to two items)."""

    __tablename__ = "governance_item_alerts"
    alert_id: Mapped[int] = mapped_column(BigInteger, ForeignKey("alerts.id"), primary_key=True)
    item_id: Mapped[int] = mapped_column(BigInteger, ForeignKey("governance_items.id"), index=True)
    opened_at: Mapped[datetime]  # the alert's


# --- fusion: links between related alerts (告警关联) -------------------------------------


class AlertLink(Base):
    """Two alerts a fusion rule found related in place and time, linked once: the pair
    is stored lower id first, and its unique constraint is what lets one process of
    several make the link (the others' inserts fail and are undone)."""

    __tablename__ = "alert_links"
    __table_args__ = (UniqueConstraint("alert_lo", "alert_hi", name="uq_alert_links_pair"),)
    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    alert_lo: Mapped[int] = mapped_column(BigInteger, ForeignKey("alerts.id"))
    # the pair's constraint serves lookups by alert_lo; this index those by alert_hi
    alert_hi: Mapped[int] = mapped_column(BigInteger, ForeignKey("alerts.id"), index=True)
    rule: Mapped[str] = mapped_column(ID)
    reason: Mapped[str] = mapped_column(String(200))
    raised_to: Mapped[int | None] = mapped_column(Integer)  # the severity the rule set
    created_at: Mapped[datetime]


# --- early warning: hourly reading rollups ----------------------------------------------


class ReadingSeries(Base):
    """One numeric value of one sensor (gateway, sensor, kind, field): what the hourly
    rollups are keyed by, with the building of its latest reading (the warning's place)
    and its latest rolled hour (the retention prunes series that have none left)."""

    __tablename__ = "reading_series"
    __table_args__ = (
        UniqueConstraint("gateway", "sensor", "kind", "field", name="uq_reading_series"),
        Index("ix_reading_series_kind_field", "kind", "field"),
    )
    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    gateway: Mapped[str] = mapped_column(ID)
    sensor: Mapped[str] = mapped_column(ID)
    kind: Mapped[str] = mapped_column(ID)
    field: Mapped[str] = mapped_column(ID)
    building: Mapped[str | None] = mapped_column(ID)
    last_hour: Mapped[int] = mapped_column(Integer)  # hours since 1970-01-01 UTC


class ReadingRollup(Base):
    """The median of a series' readings in one completed hour (hours since the epoch,
    UTC): the median time and value, as :func:`cloud.warning.trend.downsample` makes
    them, and how many readings. Plain numbers, no datetimes: the early warning reads
    a week of them for every sensor each cycle."""

    __tablename__ = "reading_rollups"
    # SQLite: the primary key is the table (WITHOUT ROWID), so a series' week is one
    # contiguous range, not 168 look-ups through an index
    __table_args__ = (Index("ix_reading_rollups_hour", "hour"), {"sqlite_with_rowid": False})
    series: Mapped[int] = mapped_column(
        BigInteger, ForeignKey("reading_series.id"), primary_key=True
    )
    hour: Mapped[int] = mapped_column(Integer, primary_key=True)
    t: Mapped[float]  # the median reading time, POSIX seconds
    value: Mapped[float]
    n: Mapped[int] = mapped_column(Integer)


class RollupMark(Base):
    """How far the rollup has got: hours before ``through_hour`` are rolled, and readings
    up to ``seen_pk`` were looked at (one later than that for an hour already rolled is
    late, and its hour is rolled again). One row, locked by the process rolling."""

    __tablename__ = "reading_rollup_marks"
    name: Mapped[str] = mapped_column(String(32), primary_key=True)
    through_hour: Mapped[int] = mapped_column(Integer)
    seen_pk: Mapped[int] = mapped_column(BigInteger)
    updated_at: Mapped[datetime]

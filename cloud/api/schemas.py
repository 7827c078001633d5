"""Response and request bodies of the API (the OpenAPI at /docs shows them)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Generic, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field, model_validator

from cloud.alerts import MAX_BULK, Verdict
from cloud.api.params import MAX_DB_INT
from microbrain.protocol import EvidenceRef

T = TypeVar("T")


class Out(BaseModel):
    model_config = ConfigDict(from_attributes=True)


class Page(BaseModel, Generic[T]):
    total: int
    limit: int
    offset: int
    items: list[T]


class AlertOut(Out):
    id: int
    kind: str
    severity: int
    status: str
    level: str
    community: str
    compound: str
    building: str | None
    gateway: str
    source: str
    zone: str | None
    count: int
    message: str | None
    first_ts: datetime
    last_ts: datetime
    opened_at: datetime
    updated_at: datetime
    cleared: bool
    verdict: Verdict | None = Field(None, description="confirmed or false_positive; None: none yet")
    verdict_by: str | None = Field(None, description="who gave the verdict")
    verdict_at: datetime | None = Field(None, description="when the verdict was given")


class SimilarOut(AlertOut):
    match: Literal["place", "compound"] = Field(
        description="place: same kind at the same device or building; compound: elsewhere in it"
    )
    resolved_by: str | None = Field(description="who resolved it last (None: unresolved)")
    resolved_at: datetime | None


class CountsOut(BaseModel):
    total: int
    by_status: dict[str, int]
    by_severity: dict[str, int] = Field(description="keyed by severity (1 … 3)")
    unreviewed: int = Field(description="how many have no verdict yet")


class TransitionOut(Out):
    id: int
    alert_id: int
    action: str
    from_status: str | None
    to_status: str
    actor: str
    at: datetime
    note: str | None


class AlertDetail(AlertOut):
    transitions: list[TransitionOut]


class WorkOrderOut(Out):
    id: int
    alert_id: int
    department: str | None
    status: str
    community: str
    compound: str
    building: str | None
    reason: str
    created_at: datetime
    updated_at: datetime
    note: str | None
    due_at: datetime | None = None


class NotificationOut(Out):
    channel: str
    contact: str
    status: str  # pending | sent | failed | skipped (its alert settled first)
    attempts: int
    last_error: str | None


class DeliveryAttemptOut(Out):
    at: datetime
    channel: str
    contact: str
    ok: bool
    latency_ms: int
    error: str | None
    digest: bool


class ResponseOut(BaseModel):
    """What the playbooks did for an alert: none (``playbooks`` empty, nothing else) or
    the steps, how similar alerts ended, and every notification with its attempts."""

    playbooks: list[str]
    applied_at: datetime | None
    next_steps: list[str]
    suggestions: list[str]
    work_order_id: int | None
    notifications: list[NotificationOut]
    attempts: list[DeliveryAttemptOut]


class NoteIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    note: str | None = Field(default=None, max_length=2000)


class CommentIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    note: str = Field(min_length=1, max_length=2000)


class VerdictIn(NoteIn):
    verdict: Verdict


AlertIds = Annotated[
    list[Annotated[int, Field(ge=1, le=MAX_DB_INT)]],
    Field(min_length=1, max_length=MAX_BULK, description=f"alert ids, 1 … {MAX_BULK}"),
]


class BulkIn(NoteIn):
    ids: AlertIds


class BulkVerdictIn(VerdictIn):
    ids: AlertIds


class BulkResultOut(BaseModel):
    id: int
    ok: bool
    error: Literal["not_found", "conflict", "forbidden", "invalid", "refused"] | None = Field(
        None, description="why not; not_found also for an alert outside your area"
    )
    detail: str | None = None


class BulkOut(BaseModel):
    results: list[BulkResultOut] = Field(description="one per distinct id, in the order asked")


class DispatchIn(NoteIn):
    department: str | None = Field(
        default=None, max_length=64, description="default: the whistle map's"
    )


class TokenOut(BaseModel):
    access_token: str
    token_type: str = "bearer"


class LoginIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    username: str = Field(max_length=64)
    password: str = Field(max_length=256)


class GatewayOut(Out):
    id: str
    community: str
    compound: str
    building: str | None
    name: str | None
    state: str
    last_seen: datetime | None
    alive: bool = False
    last_seq: int = Field(description="highest seq of the current outbox epoch")
    seq_gaps: int = Field(description="gaps seen in the current epoch's sequence")
    epoch: str | None = Field(None, description="current outbox epoch; None: an older gateway")
    epochs_seen: int = Field(0, description="outbox epochs seen; more than one: it was reset")
    seq_collisions: int = Field(0, description="items stored whose seq another id had taken")
    unknown_device_items: int = Field(0, description="items refused: device not declared here")
    health: dict[str, Any] | None


class DeviceOut(Out):
    gateway: str
    id: str
    type: str
    kind: str | None
    name: str | None
    building: str | None
    last_seen: datetime | None


class EventOut(Out):
    id: str
    gateway: str
    seq: int | None
    ts: datetime
    community: str
    compound: str
    building: str | None
    kind: str
    state: str
    severity: int
    source: str
    zone: str | None
    message: str | None
    alert_id: int | None
    evidence: list[EvidenceRef] = Field(
        default_factory=list, description="download: /api/evidence/{id}/{name}"
    )

    @model_validator(mode="before")
    @classmethod
    def _evidence_from_payload(cls, row: Any) -> Any:
        # the stored wire payload keeps the evidence references the gateway declared
        payload = getattr(row, "payload", None)
        if isinstance(payload, dict) and not isinstance(row, dict):
            data = {name: getattr(row, name) for name in cls.model_fields if name != "evidence"}
            data["evidence"] = payload.get("evidence", [])
            return data
        return row


class ReadingOut(Out):
    id: str
    gateway: str
    ts: datetime
    sensor: str
    kind: str
    building: str | None
    values: dict[str, Any]
    faults: list[Any]


class DeadLetterOut(BaseModel):
    id: int
    received_at: datetime
    topic: str
    gateway: str | None
    reason: str
    field: str | None
    size: int
    preview: str = Field(description="the first 200 bytes, as text; JSON-escaped when shown")
    count: int = Field(1, description="how often this same item was refused")
    last_seen: datetime | None = None

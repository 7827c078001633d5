"""Versioned, frozen payload models for every message on the wire.

Each payload carries ``schema`` (the payload version), a globally unique ``id``
(ULID; the cloud dedupes on it) and ``ts`` (UTC). Gateway-originated items that go
through the outbox (events, readings) also carry ``seq``, the gateway's monotonic
sequence number that the cloud acknowledges in ranges on ``cmd/ack``.
"""

from __future__ import annotations

import math
import re
from datetime import UTC, datetime, timedelta
from enum import IntEnum, StrEnum
from typing import Annotated, Any, Final, Literal

from pydantic import (
    AfterValidator,
    AwareDatetime,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StringConstraints,
    field_validator,
    model_validator,
)
from ulid import ULID

from microbrain.protocol.topics import ID_PATTERN

SCHEMA_VERSION: Final = 1
MAX_PAYLOAD_BYTES = 64 * 1024  # evidence images travel separately, over HTTP
# Ranges in one Ack: the largest Ack, with 19-digit (int64) seqs, must still fit in
# MAX_PAYLOAD_BYTES, or the gateway refuses it and its outbox never drains. A cloud
# with more ranges sends several Acks.
MAX_ACK_RANGES = 1_500

# Every number and time is bounded at the door, so nothing valid here fails at insert
# (or in datetime arithmetic) later: one such message used to fail its whole batch.
INT64_MAX = 2**63 - 1  # PostgreSQL bigint, SQLite INTEGER: seq, counters
INT64_MIN = -(2**63)
INT32_MAX = 2**31 - 1  # PostgreSQL integer columns (readings.samples)
# Before 2000 is a gateway clock that was never set (an RTC reset starts at 1970): refused,
# like a time in the future, rather than filed decades back where nobody looks and where
# retention deletes it at once. The upper end leaves a year below Python's last datetime
# so that adding deadlines or windows to any stored time cannot overflow.
TS_MIN = datetime(2000, 1, 1, tzinfo=UTC)
TS_MAX = datetime(9999, 1, 1, tzinfo=UTC)

Id = Annotated[str, StringConstraints(pattern=rf"^{ID_PATTERN}$")]
# ULID (26 Crockford base32) or a canonical UUID
MessageId = Annotated[
    str,
    StringConstraints(
        pattern=r"^([0-9A-HJKMNP-TV-Z]{26}|[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12})$"
    ),
]
Sha256 = Annotated[str, StringConstraints(pattern=r"^[0-9a-f]{64}$")]
# An outbox's epoch: 16 random hex digits made when its file is created. ``seq`` counts
# within an epoch, so a gateway whose outbox was reset (seq back at 1) starts a new one.
Epoch = Annotated[str, StringConstraints(pattern=r"^[0-9a-f]{16}$")]
EPOCH_FIELD = (
    "the outbox's epoch, made with its file; seq counts within it (absent: an older gateway)"
)
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")


def _no_control_chars(value: str) -> str:
    # hostile strings (terminal escapes, NULs) never reach logs or the console
    if _CONTROL.search(value):
        raise ValueError("contains control characters")
    return value


def _in_calendar(value: datetime) -> datetime:
    # compare the wall time first: astimezone(UTC) itself overflows at the calendar's edge
    # (0001-01-01T00:00:00+08:00), and OverflowError is not a validation error
    wall = value.replace(tzinfo=None)
    if not TS_MIN.replace(tzinfo=None) - timedelta(days=1) <= wall <= TS_MAX.replace(tzinfo=None):
        raise ValueError(_calendar_message(value))
    utc = value.astimezone(UTC)
    if not TS_MIN <= utc < TS_MAX:
        raise ValueError(_calendar_message(value))
    return utc


def _calendar_message(value: datetime) -> str:
    return (
        f"{value.isoformat()} is outside {TS_MIN.date()} .. {TS_MAX.date()} UTC; "
        "check the gateway's clock (NTP)"
    )


# an aware time within TS_MIN .. TS_MAX, converted to UTC
Timestamp = Annotated[AwareDatetime, AfterValidator(_in_calendar)]
Seq = Annotated[int, Field(ge=0, le=INT64_MAX)]
Count = Annotated[int, Field(ge=0, le=INT64_MAX)]

# Free text of at most N characters, without control characters. Spelled out one alias per
# length (not made by a function): a type checker reads only a literal Annotated as a type.
Text16 = Annotated[str, StringConstraints(max_length=16), AfterValidator(_no_control_chars)]
Text32 = Annotated[str, StringConstraints(max_length=32), AfterValidator(_no_control_chars)]
Text64 = Annotated[str, StringConstraints(max_length=64), AfterValidator(_no_control_chars)]
Text100 = Annotated[str, StringConstraints(max_length=100), AfterValidator(_no_control_chars)]
Text200 = Annotated[str, StringConstraints(max_length=200), AfterValidator(_no_control_chars)]
Text1000 = Annotated[str, StringConstraints(max_length=1000), AfterValidator(_no_control_chars)]
Text = Annotated[str, StringConstraints(max_length=500), AfterValidator(_no_control_chars)]
"""Free text shown to people: at most 500 characters, without control characters."""
Scalar = float | int | bool | Text200


def new_id() -> str:
    """A new ULID: unique, and sortable by creation time."""
    return str(ULID())


def utc_now() -> datetime:
    return datetime.now(UTC)


class Severity(IntEnum):
    """Severity of an event or alert; higher is more urgent."""

    INFO = 1
    WARNING = 2
    CRITICAL = 3


def _severity_by_name(value: Any) -> Any:
    if isinstance(value, str):
        try:
            return Severity[value.upper()]
        except KeyError:
            names = ", ".join(s.name.lower() for s in Severity)
            raise ValueError(f"{value!r} is not a severity (one of: {names})") from None
    return value


# a severity in a config file: its name ("critical") or its number
SeverityName = Annotated[Severity, BeforeValidator(_severity_by_name)]


class _Payload(BaseModel):
    model_config = ConfigDict(
        frozen=True,
        extra="forbid",
        populate_by_name=True,
        allow_inf_nan=False,
        str_strip_whitespace=True,
    )

    schema_version: Literal[1] = Field(default=SCHEMA_VERSION, alias="schema")
    id: MessageId = Field(default_factory=new_id)
    ts: Timestamp = Field(default_factory=utc_now, description="when it happened, UTC")

    def to_json(self) -> bytes:
        return self.model_dump_json(by_alias=True, exclude_none=True).encode()


def _finite(values: dict[str, Any]) -> dict[str, Any]:
    for key, value in values.items():
        if isinstance(value, float) and not math.isfinite(value):
            raise ValueError(f"{key}: {value} is not a finite number")
        if isinstance(value, int) and not INT64_MIN <= value <= INT64_MAX:
            raise ValueError(
                f"{key}: integer {value} is outside the 64-bit range; send it as a "
                "float or a string"
            )
    return values


class EvidenceKind(StrEnum):
    SNAPSHOT = "snapshot"
    CLIP = "clip"


class EvidenceRef(BaseModel):
    """A file the gateway keeps and uploads over HTTP; the cloud checks the hash."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    kind: EvidenceKind
    # a plain file name: a leading letter or digit rules out ".", ".." and hidden
    # files such as the uploader's own ".upload-*" temporaries
    name: Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")]
    sha256: Sha256
    bytes: int = Field(ge=0, le=512 * 1024 * 1024)
    content_type: Literal["image/jpeg", "video/webm", "video/mp4", "video/x-msvideo"] = "image/jpeg"


class ModelRef(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    name: Text100
    version: Text64


class EventState(StrEnum):
    RAISED = "raised"
    CLEARED = "cleared"


class Event(_Payload):
    """Something a gateway saw or concluded (a violation, a fault, a device gone silent)."""

    type: Literal["event"] = "event"
    seq: Seq = Field(default=0, description="gateway's monotonic sequence; the outbox stamps it")
    epoch: Epoch | None = Field(default=None, description=EPOCH_FIELD)
    kind: Id = Field(description="what happened, e.g. illegal_parking, elevator_fault")
    state: EventState = EventState.RAISED
    severity: Severity = Severity.WARNING
    building: Id | None = None
    source: Id = Field(description="camera or sensor id the event comes from")
    zone: Id | None = None
    track_id: Count | None = None
    object_class: Text64 | None = None
    confidence: float | None = Field(default=None, ge=0.0, le=1.0)
    dwell_s: float | None = Field(default=None, ge=0.0, le=30 * 86400)
    frame_ts: Timestamp | None = Field(default=None, description="time of the evidence frame")
    model: ModelRef | None = None
    evidence: tuple[EvidenceRef, ...] = Field(default=(), max_length=8)
    message: Text | None = None
    detail: dict[Id, Scalar] = Field(default_factory=dict, max_length=32)

    _check_detail = field_validator("detail")(classmethod(lambda cls, v: _finite(v)))


class Reading(_Payload):
    """One sensor sample, normalised from the vendor's payload by the gateway."""

    type: Literal["reading"] = "reading"
    seq: Seq = Field(default=0, description="gateway's monotonic sequence; the outbox stamps it")
    epoch: Epoch | None = Field(default=None, description=EPOCH_FIELD)
    sensor: Id
    kind: Id = Field(description="sensor kind, e.g. hydrant_pressure, elevator")
    building: Id | None = None
    values: dict[Id, float | int | bool] = Field(default_factory=dict, max_length=32)
    units: dict[Id, Text16] = Field(default_factory=dict, max_length=32)
    faults: tuple[Id, ...] = Field(default=(), max_length=16)
    samples: int = Field(
        default=1, ge=1, le=INT32_MAX, description="readings aggregated into this one"
    )

    _check_values = field_validator("values")(classmethod(lambda cls, v: _finite(v)))


class GatewayState(StrEnum):
    ONLINE = "online"
    OFFLINE = "offline"


CameraState = Literal["online", "offline"]


class Health(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid", allow_inf_nan=False)

    cpu_percent: float = Field(ge=0, le=100 * 1024)
    memory_mb: float = Field(ge=0)
    disk_free_mb: float = Field(ge=0)
    cameras: dict[Id, CameraState] = Field(default_factory=dict)
    sensors_silent: tuple[Id, ...] = ()
    model: ModelRef | None = None
    # the serial of the signed manifest the running model came with (None: the model the
    # site file configures, never installed through the registry)
    model_serial: Count | None = None
    outbox_depth: Count = 0
    outbox_oldest_age_s: float = Field(default=0.0, ge=0)
    outbox_evicted: Count = 0
    rejected: Count = Field(default=0, description="bad sensor payloads rejected")


class Status(_Payload):
    """Heartbeat (retained); also the retained last will with ``state=offline``."""

    type: Literal["status"] = "status"
    state: GatewayState
    software: Text32 | None = None
    epoch: Epoch | None = Field(default=None, description=EPOCH_FIELD)
    uptime_s: float | None = Field(default=None, ge=0)
    health: Health | None = None


class _CommandBase(_Payload):
    type: Literal["command"] = "command"
    expires: Timestamp | None = Field(default=None, description="do not run after this")


class Announce(_CommandBase):
    """Play a voice warning at a spot: a prepared clip or offline text-to-speech."""

    name: Literal["announce"] = "announce"
    speaker: Id | None = Field(default=None, description="audio output; default: the gateway's")
    clip: Id | None = None
    text: Text | None = None
    repeat: int = Field(default=1, ge=1, le=10)

    @model_validator(mode="after")
    def _clip_or_text(self) -> Announce:
        if (self.clip is None) == (self.text is None):
            raise ValueError("announce needs exactly one of 'clip' or 'text'")
        return self


class Recheck(_CommandBase):
    """Run a camera rule or read a sensor now, and reply with what is found."""

    name: Literal["recheck"] = "recheck"
    source: Id
    zone: Id | None = None
    kind: Id | None = Field(
        default=None, description="the condition to look for, e.g. elevator_fault"
    )
    alert: Text64 | None = None


class ConfigReload(_CommandBase):
    name: Literal["config_reload"] = "config_reload"


MAX_MANIFEST_BYTES = 8 * 1024
MAX_MODEL_BYTES = 1024 * 1024 * 1024


class ModelManifest(BaseModel):
    """What the cloud's registry signs about one model file (ed25519, see
    :mod:`microbrain.signing`). The gateway checks the signature over the manifest's exact
    bytes *before* parsing them into this, then the file's size and sha256 against it.

    ``serial`` is the registry's counter, one higher for every manifest it signs (a
    rollback to an older model is a new manifest with a new serial). A gateway keeps the
    highest serial it has trusted and refuses any manifest at or below it: an old signed
    manifest replayed by an attacker cannot take it back to a model with a known fault.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: Text100
    version: Text64
    serial: int = Field(ge=1, le=INT64_MAX)
    sha256: Sha256
    bytes: int = Field(ge=1, le=MAX_MODEL_BYTES)
    detector_type: Literal["onnx_yolo", "opencv_tf"] = "onnx_yolo"
    classes: tuple[Text64, ...] = Field(min_length=1, max_length=1000)
    input_size: int = Field(ge=32, le=2048)
    min_gateway_version: Text32 = "0.1.0"
    issued: Timestamp
    expires: Timestamp
    # informational: the registry signed this to take gateways back to an older model
    rollback: bool = False

    @property
    def ref(self) -> ModelRef:
        return ModelRef(name=self.name, version=self.version)


Ed25519Signature = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9+/]{86}==$")]


class ModelInstall(_CommandBase):
    """Download a model, verify it against its signed manifest, smoke-test it, swap it in.

    ``manifest`` is the signed JSON text itself (canonical: sorted keys, no spaces, UTF-8),
    not an object, so the gateway verifies exactly the bytes the registry signed.
    ``url``: where to GET the file, relative to the gateway's ``cloud_api`` (or absolute),
    with the gateway's own credentials; the server honours ``Range`` for resuming.
    """

    name: Literal["model"] = "model"
    manifest: Annotated[str, StringConstraints(min_length=2, max_length=MAX_MANIFEST_BYTES)]
    signature: Ed25519Signature
    url: Text1000
    rollout: Count | None = Field(default=None, description="the registry's rollout id")


SeqRange = tuple[Seq, Seq]


class Ack(_CommandBase):
    """The cloud committed these sequence ranges (inclusive); the outbox may drop them."""

    name: Literal["ack"] = "ack"
    ranges: tuple[SeqRange, ...] = Field(min_length=1, max_length=MAX_ACK_RANGES)
    # the epoch of the acknowledged seqs: an outbox ignores acks of another epoch (meant
    # for the items of a file since deleted, they would delete its new items of equal seq)
    epoch: Epoch | None = Field(default=None, description=EPOCH_FIELD)

    @field_validator("ranges")
    @classmethod
    def _ordered(cls, v: tuple[tuple[int, int], ...]) -> tuple[tuple[int, int], ...]:
        for first, last in v:
            if first > last:
                raise ValueError(f"range ({first}, {last}) runs backwards")
        return v


Command = Annotated[
    Announce | Recheck | ConfigReload | ModelInstall | Ack, Field(discriminator="name")
]
COMMAND_NAMES = ("announce", "recheck", "config_reload", "model", "ack")


class Reply(_Payload):
    """The gateway's answer to a command (also to one it refused)."""

    type: Literal["reply"] = "reply"
    command_id: MessageId | None = None
    name: Id
    ok: bool
    reason: Text | None = None
    detail: dict[Id, Scalar] = Field(default_factory=dict, max_length=32)

    _check_detail = field_validator("detail")(classmethod(lambda cls, v: _finite(v)))

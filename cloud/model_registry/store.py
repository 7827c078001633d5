"""Registered model versions: the file (content-addressed, written atomically), its card,
and which gateways run it.

A file is kept as ``<model_dir>/<sha256>.onnx``: the name is the content, so two
versions with the same bytes share one file, a half-written upload never has a final
name (it is written to a temporary file and renamed once hashed and loaded), and a
gateway's download is always the bytes the manifest's hash names.
"""

from __future__ import annotations

import ast
import hashlib
import json
import logging
import os
import tempfile
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import IO, Any, Literal

from prometheus_client import Counter
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from cloud import auth
from cloud.db import models as m
from cloud.errors import Conflict, Invalid, NotFound
from microbrain.model_card import Evaluation
from microbrain.protocol.payloads import MAX_MODEL_BYTES

log = logging.getLogger(__name__)

UPLOADS = Counter(
    "mb_model_registry_uploads_total",
    "model uploads, by outcome (registered, unloadable, too_large, duplicate, invalid)",
    ["outcome"],
)
_CHUNK = 1024 * 1024


class Card(BaseModel):
    """What an engineer says about a model when registering it (validated at the door)."""

    model_config = ConfigDict(frozen=True, extra="forbid", str_strip_whitespace=True)

    name: str = Field(min_length=1, max_length=100, pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
    version: str = Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9][A-Za-z0-9._+-]*$")
    # the registry checks files with onnxruntime: OpenCV graphs ship with the gateway
    detector_type: Literal["onnx_yolo"] = "onnx_yolo"
    input_size: int | None = Field(default=None, ge=32, le=2048)
    classes: tuple[str, ...] | None = Field(default=None, min_length=1, max_length=1000)
    min_gateway_version: str = Field(default="0.1.0", min_length=1, max_length=32)
    expires_days: int = Field(default=365, ge=1, le=3650)
    evaluation: Evaluation | None = None
    notes: str | None = Field(default=None, max_length=4000)


@dataclass(frozen=True, slots=True)
class OnnxFacts:
    """What the file itself says: class names and input size from its metadata."""

    classes: tuple[str, ...] | None
    input_size: int | None


@dataclass(frozen=True, slots=True)
class Received:
    """An upload on disk under a temporary name, hashed while it was written."""

    path: Path
    sha256: str
    size: int


def receive(model_dir: Path, source: IO[bytes], limit: int = MAX_MODEL_BYTES) -> Received:
    """Copy ``source`` to a temporary file in ``model_dir`` (same disk: the final rename is
    atomic), hashing as it goes; Invalid past ``limit`` bytes or when empty."""
    model_dir.mkdir(parents=True, exist_ok=True)
    digest, size = hashlib.sha256(), 0
    fd, name = tempfile.mkstemp(prefix=".upload-", suffix=".onnx", dir=model_dir)
    path = Path(name)
    try:
        with os.fdopen(fd, "wb") as out:
            while chunk := source.read(_CHUNK):
                size += len(chunk)
                if size > limit:
                    UPLOADS.labels("too_large").inc()
                    raise Invalid(f"file: larger than {limit} bytes, the most a manifest allows")
                digest.update(chunk)
                out.write(chunk)
            out.flush()
            os.fsync(out.fileno())
        if size == 0:
            UPLOADS.labels("invalid").inc()
            raise Invalid("file: empty; upload the exported .onnx file")
    except BaseException:
        path.unlink(missing_ok=True)
        raise
    return Received(path, digest.hexdigest(), size)


def _names(raw: str) -> tuple[str, ...] | None:
    # ultralytics writes a Python dict repr ({0: 'person', ...}); others write JSON lists
    try:
        value: Any = ast.literal_eval(raw)
    except (ValueError, SyntaxError):
        try:
            value = json.loads(raw)
        except ValueError:
            return None
    if isinstance(value, dict):
        try:
            value = [value[k] for k in sorted(value, key=int)]
        except (TypeError, ValueError):
            return None
    if isinstance(value, list | tuple) and value and all(isinstance(v, str) for v in value):
        return tuple(value)
    return None


def _size(raw: str | None, shape: Iterable[Any]) -> int | None:
    if raw:
        try:
            value = ast.literal_eval(raw)
        except (ValueError, SyntaxError):
            value = None
        if isinstance(value, int):
            return value
        if isinstance(value, list | tuple) and value and isinstance(value[0], int):
            return int(max(value))
    dims = list(shape)
    if len(dims) == 4 and isinstance(dims[2], int) and dims[2] == dims[3]:
        return int(dims[2])  # a fixed square input (NCHW)
    return None


def inspect_onnx(path: Path) -> OnnxFacts:
    """Load the file in onnxruntime (Invalid, naming why, when it cannot) and read its
    class names and input size from the metadata ultralytics' export writes."""
    import onnxruntime as ort

    try:
        options = ort.SessionOptions()
        options.intra_op_num_threads = 1
        sess = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    except Exception as err:  # noqa: BLE001 - onnxruntime raises its own, untyped errors
        UPLOADS.labels("unloadable").inc()
        raise Invalid(
            f"file: onnxruntime cannot load it ({str(err)[:300]}); upload the .onnx that "
            "`microbrain model export` wrote"
        ) from None
    meta = sess.get_modelmeta().custom_metadata_map
    inputs = sess.get_inputs()
    return OnnxFacts(
        classes=_names(meta["names"]) if "names" in meta else None,
        input_size=_size(meta.get("imgsz"), inputs[0].shape if inputs else ()),
    )


def model_file(model_dir: Path, sha256: str) -> Path:
    return model_dir / f"{sha256}.onnx"


def register(
    session: Session,
    model_dir: Path,
    received: Received,
    card: Card,
    *,
    actor: str,
    now: datetime,
) -> m.ModelVersion:
    """Check the upload, keep it under its hash and add its version (Conflict when the
    name and version are taken). The temporary file is consumed either way."""
    try:
        facts = inspect_onnx(received.path)
        classes = card.classes or facts.classes
        size = card.input_size or facts.input_size
        if not classes:
            UPLOADS.labels("invalid").inc()
            raise Invalid(
                "classes: the file's metadata has no class names; give them (classes=a,b,…)"
            )
        if size is None:
            UPLOADS.labels("invalid").inc()
            raise Invalid("input_size: the file does not say it; give it (e.g. 640)")
        if session.scalars(
            select(m.ModelVersion.id).where(
                m.ModelVersion.name == card.name, m.ModelVersion.version == card.version
            )
        ).first():
            UPLOADS.labels("duplicate").inc()
            raise Conflict(
                f"model {card.name} {card.version} is registered already; give it a new version"
            )
        final = model_file(model_dir, received.sha256)
        os.replace(received.path, final)  # same bytes under the same name: harmless
    finally:
        received.path.unlink(missing_ok=True)
    body = card.model_dump(mode="json", exclude={"name", "version", "classes", "input_size"})
    body.update(classes=list(classes), input_size=size)
    row = m.ModelVersion(
        name=card.name,
        version=card.version,
        sha256=received.sha256,
        bytes=received.size,
        card=body,
        uploaded_by=actor,
        created_at=now,
    )
    session.add(row)
    try:
        session.flush()
    except IntegrityError:
        UPLOADS.labels("duplicate").inc()
        raise Conflict(f"model {card.name} {card.version} is registered already") from None
    UPLOADS.labels("registered").inc()
    log.info(
        "registered model %s %s (%s, %d bytes)",
        card.name,
        card.version,
        received.sha256,
        received.size,
    )
    return row


def get_model(session: Session, model_id: int) -> m.ModelVersion:
    row = session.get(m.ModelVersion, model_id)
    if row is None:
        raise NotFound(f"model {model_id} does not exist")
    return row


def list_models(session: Session) -> list[m.ModelVersion]:
    return list(session.scalars(select(m.ModelVersion).order_by(m.ModelVersion.id.desc())))


def find_version(session: Session, name: str, version: str) -> m.ModelVersion | None:
    return session.scalars(
        select(m.ModelVersion).where(m.ModelVersion.name == name, m.ModelVersion.version == version)
    ).first()


def running_model(gateway: m.Gateway) -> tuple[str, str, int | None] | None:
    """(name, version, manifest serial) of the model a gateway's last heartbeat reports."""
    health = gateway.health or {}
    model = health.get("model")
    if not isinstance(model, dict):
        return None
    serial = health.get("model_serial")
    return (
        str(model.get("name")),
        str(model.get("version")),
        serial if isinstance(serial, int) else None,
    )


def gateways_running(session: Session, model: m.ModelVersion, user: m.User) -> list[m.Gateway]:
    """The gateways in ``user``'s area whose heartbeat says they run ``model``."""
    rows = session.scalars(
        select(m.Gateway).where(auth.scope_clause(user, m.Gateway)).order_by(m.Gateway.id)
    )
    return [
        g
        for g in rows
        if (r := running_model(g)) is not None and r[:2] == (model.name, model.version)
    ]

"""Signed manifests: one per push, each with a fresh serial, and the install command
that carries one to a gateway.

The serial is the id of the manifest's row, allocated by the database when the row is
inserted: a PostgreSQL sequence or SQLite's rowid (rows are never deleted), so every
cloud process sharing the database draws from one strictly increasing counter and no
two manifests share a serial. The row is inserted, its serial read back, and the signed
text written into it in the same transaction.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from prometheus_client import Counter
from sqlalchemy.orm import Session

from cloud.db import models as m
from cloud.errors import Invalid
from microbrain.protocol import ModelInstall, ModelManifest
from microbrain.protocol.payloads import MAX_MANIFEST_BYTES
from microbrain.signing import sign_manifest

SIGNED = Counter("mb_model_manifests_signed_total", "manifests the registry signed", ["rollback"])


def manifest_of(
    model: m.ModelVersion, *, serial: int, now: datetime, rollback: bool
) -> ModelManifest:
    card = model.card
    return ModelManifest(
        name=model.name,
        version=model.version,
        serial=serial,
        sha256=model.sha256,
        bytes=model.bytes,
        detector_type=card.get("detector_type", "onnx_yolo"),
        classes=tuple(card["classes"]),
        input_size=int(card["input_size"]),
        min_gateway_version=card.get("min_gateway_version", "0.1.0"),
        issued=now,
        expires=now + timedelta(days=int(card.get("expires_days", 365))),
        rollback=rollback,
    )


def issue(
    session: Session,
    key: Ed25519PrivateKey,
    model: m.ModelVersion,
    *,
    actor: str,
    now: datetime,
    rollback: bool = False,
) -> m.ModelManifestRow:
    """Sign a new manifest for ``model`` with the next serial; stored in the caller's
    transaction (a rolled-back transaction leaves a gap in the serials, never a reuse)."""
    row = m.ModelManifestRow(
        model_id=model.id, rollback=rollback, issued_at=now, issued_by=actor, text="", signature=""
    )
    session.add(row)
    session.flush()  # the database allocates the serial here
    text, signature = sign_manifest(
        key, manifest_of(model, serial=row.serial, now=now, rollback=rollback)
    )
    if len(text.encode()) > MAX_MANIFEST_BYTES:
        raise Invalid(
            f"the manifest of model {model.name} {model.version} is {len(text.encode())} bytes, "
            f"over the {MAX_MANIFEST_BYTES} a gateway accepts: shorten its class names"
        )
    row.text, row.signature = text, signature
    SIGNED.labels(str(rollback).lower()).inc()
    return row


def file_url(model_id: int) -> str:
    """Where a gateway downloads the file, relative to its ``cloud_api``."""
    return f"/api/models/{model_id}/file"


def install_command(manifest: m.ModelManifestRow, rollout_id: int) -> ModelInstall:
    """The ``cmd/model`` message for one gateway (the same manifest for every gateway of a
    rollout: resending it is harmless, the gateway answers "installed" again)."""
    return ModelInstall(
        manifest=manifest.text,
        signature=manifest.signature,
        url=file_url(manifest.model_id),
        rollout=rollout_id,
    )

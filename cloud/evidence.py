"""Evidence files (snapshots, clips) uploaded by gateways over HTTP, checked against the
sha256 and size their event declared before they are kept."""

from __future__ import annotations

import hashlib
import os
import tempfile
from collections.abc import Iterable
from pathlib import Path

from prometheus_client import Counter
from sqlalchemy import select
from sqlalchemy.orm import Session

from cloud.db import models as m
from cloud.errors import Forbidden, Invalid, NotFound

UPLOADS = Counter("mb_evidence_uploads_total", "evidence uploads, by outcome", ["outcome"])


def declared(session: Session, event_id: str, name: str) -> tuple[m.EventRow, dict]:
    """The stored event and the evidence reference it declared under ``name``."""
    event = session.scalars(select(m.EventRow).where(m.EventRow.id == event_id)).one_or_none()
    if event is None:
        raise NotFound(f"event {event_id} is not stored (send the event before its evidence)")
    ref = next((e for e in event.payload.get("evidence", []) if e.get("name") == name), None)
    if ref is None:
        raise NotFound(f"event {event_id} declares no evidence named {name!r}")
    return event, ref


def path_for(root: Path, event: m.EventRow, name: str) -> Path:
    # ids and names are slugs checked by the protocol, so the path cannot escape root
    return root / event.gateway / event.id / name


def store(session: Session, root: Path, gateway: m.Gateway, event_id: str, name: str,
          chunks: Iterable[bytes]) -> Path:
    """Write the upload to a temporary file while hashing it; keep it only if the hash
    and size match what the event declared. Re-uploading the same file is harmless."""
    event, ref = declared(session, event_id, name)
    if event.gateway != gateway.id:
        UPLOADS.labels("forbidden").inc()
        raise Forbidden(f"event {event_id} belongs to gateway {event.gateway!r}")
    target = path_for(root, event, name)
    target.parent.mkdir(parents=True, exist_ok=True)
    digest, size, limit = hashlib.sha256(), 0, int(ref["bytes"])
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=".upload-")
    try:
        with os.fdopen(fd, "wb") as out:
            for chunk in chunks:
                size += len(chunk)
                if size > limit:
                    raise Invalid(f"upload is larger than the {limit} bytes the event declared")
                digest.update(chunk)
                out.write(chunk)
        if size != limit or digest.hexdigest() != ref["sha256"]:
            raise Invalid(f"upload does not match the event's evidence (sha256 {digest.hexdigest()[:12]}…, "
                          f"{size} bytes; declared {ref['sha256'][:12]}…, {limit} bytes)")
        os.replace(tmp, target)
    except BaseException:
        UPLOADS.labels("rejected").inc()
        Path(tmp).unlink(missing_ok=True)
        raise
    UPLOADS.labels("stored").inc()
    return target

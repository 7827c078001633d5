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


def prepare(session: Session, root: Path, gateway: m.Gateway, event_id: str,
            name: str) -> tuple[Path, dict]:
    """Where the upload of ``name`` for ``event_id`` goes and what it must match; raises
    NotFound/Forbidden before any of the body is read."""
    event, ref = declared(session, event_id, name)
    if event.gateway != gateway.id:
        UPLOADS.labels("forbidden").inc()
        raise Forbidden(f"event {event_id} belongs to gateway {event.gateway!r}")
    return path_for(root, event, name), ref


class Upload:
    """One upload being received: written to a temporary file next to its target while
    it is hashed (never held in memory), kept only if hash and size match the event."""

    def __init__(self, target: Path, ref: dict) -> None:
        target.parent.mkdir(parents=True, exist_ok=True)
        self.target, self.limit, self.sha256 = target, int(ref["bytes"]), str(ref["sha256"])
        self.digest, self.size = hashlib.sha256(), 0
        fd, self.tmp = tempfile.mkstemp(dir=target.parent, prefix=".upload-")
        self.out = os.fdopen(fd, "wb")

    def write(self, chunk: bytes) -> None:
        self.size += len(chunk)
        if self.size > self.limit:
            raise Invalid(f"upload is larger than the {self.limit} bytes the event declared")
        self.digest.update(chunk)
        self.out.write(chunk)

    def finish(self) -> Path:
        self.out.close()
        if self.size != self.limit or self.digest.hexdigest() != self.sha256:
            raise Invalid(f"upload does not match the event's evidence (sha256 {self.digest.hexdigest()[:12]}…, "
                          f"{self.size} bytes; declared {self.sha256[:12]}…, {self.limit} bytes)")
        os.replace(self.tmp, self.target)
        UPLOADS.labels("stored").inc()
        return self.target

    def discard(self) -> None:
        UPLOADS.labels("rejected").inc()
        self.out.close()
        Path(self.tmp).unlink(missing_ok=True)


def store(session: Session, root: Path, gateway: m.Gateway, event_id: str, name: str,
          chunks: Iterable[bytes]) -> Path:
    """Write the upload to a temporary file while hashing it; keep it only if the hash
    and size match what the event declared. Re-uploading the same file is harmless."""
    target, ref = prepare(session, root, gateway, event_id, name)
    upload = Upload(target, ref)
    try:
        for chunk in chunks:
            upload.write(chunk)
        return upload.finish()
    except BaseException:
        upload.discard()
        raise

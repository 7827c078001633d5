"""Evidence files (snapshots, clips) uploaded by gateways over HTTP, checked before they
are kept: the bytes must be the media type the event declared (JPEG, PNG, MP4 or AVI,
sniffed from their first bytes) and match its sha256 and size."""

from __future__ import annotations

import hashlib
import os
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from prometheus_client import Counter
from sqlalchemy import select
from sqlalchemy.orm import Session

from cloud.db import models as m
from cloud.errors import Invalid, NotFound

UPLOADS = Counter("mb_evidence_uploads_total", "evidence uploads, by outcome", ["outcome"])

# the media types evidence may be kept as (what the bytes must look like); the protocol's
# EvidenceRef.content_type names which one each file is
EVIDENCE_TYPES = frozenset(
    {"image/jpeg", "image/png", "video/webm", "video/mp4", "video/x-msvideo"}
)
# enough of the head to tell every signature below apart (ISO-BMFF's brand ends at 12;
# an EBML header names its DocType, "webm" or "matroska", within its first 40 bytes)
SNIFF_BYTES = 48
UNKNOWN = "application/octet-stream"


@dataclass(frozen=True)
class Signature:
    """Bytes ``magic`` at ``offset`` (and ``also`` at ``also_at``, or anywhere in the head
    when ``also_at`` is None) mean ``media_type``."""

    media_type: str
    magic: bytes
    offset: int = 0
    also: bytes = b""
    also_at: int | None = 0

    def matches(self, head: bytes) -> bool:
        if head[self.offset : self.offset + len(self.magic)] != self.magic:
            return False
        if self.also_at is None:
            return self.also in head
        return head[self.also_at : self.also_at + len(self.also)] == self.also


# first match wins; the non-evidence types are here so a refusal can say what was sent
SIGNATURES: tuple[Signature, ...] = (
    Signature("image/jpeg", b"\xff\xd8\xff"),
    Signature("image/png", b"\x89PNG\r\n\x1a\n"),
    Signature("video/x-msvideo", b"RIFF", also=b"AVI ", also_at=8),
    # EBML (Matroska) whose DocType element (0x4282, 4 bytes) says webm
    Signature("video/webm", b"\x1a\x45\xdf\xa3", also=b"\x42\x82\x84webm", also_at=None),
    Signature("video/x-matroska", b"\x1a\x45\xdf\xa3"),
    Signature("image/webp", b"RIFF", also=b"WEBP", also_at=8),
    Signature("audio/wav", b"RIFF", also=b"WAVE", also_at=8),
    Signature("video/quicktime", b"ftyp", offset=4, also=b"qt  ", also_at=8),
    Signature("image/heic", b"ftyp", offset=4, also=b"heic", also_at=8),
    Signature("image/avif", b"ftyp", offset=4, also=b"avif", also_at=8),
    Signature("video/mp4", b"ftyp", offset=4),  # isom, mp41, mp42, avc1, dash …
    Signature("image/gif", b"GIF87a"),
    Signature("image/gif", b"GIF89a"),
    Signature("image/bmp", b"BM"),
    Signature("application/pdf", b"%PDF-"),
    Signature("application/zip", b"PK\x03\x04"),
    Signature("application/gzip", b"\x1f\x8b"),
    Signature("application/x-executable", b"\x7fELF"),
)


def sniff(head: bytes) -> str:
    """The media type the first bytes of a file look like, ``UNKNOWN`` when none.

    >>> sniff(b"\\xff\\xd8\\xff\\xe0\\x00\\x10JFIF")
    'image/jpeg'
    """
    for signature in SIGNATURES:
        if signature.matches(head):
            return signature.media_type
    text = head.lstrip(b" \t\r\n\xef\xbb\xbf")  # markup, maybe after a UTF-8 BOM
    if text.startswith(b"<"):
        return "text/html"
    if text[:1] in (b"{", b"["):
        return "application/json"
    return UNKNOWN


def describe(head: bytes) -> str:
    """What the bytes look like, for a refusal message: a media type, or the bytes."""
    if not head:
        return "nothing (the file is empty)"
    found = sniff(head)
    if found != UNKNOWN:
        return found
    return f"no known type (first bytes {head[:8].hex(' ')})"


def check_type(declared: str, head: bytes) -> None:
    """Raise Invalid unless ``head`` (the file's first bytes) is the evidence type the
    event declared; the message names what the bytes look like instead."""
    if declared not in EVIDENCE_TYPES:
        raise Invalid(
            f"content_type {declared!r} is not kept as evidence (one of "
            f"{', '.join(sorted(EVIDENCE_TYPES))})"
        )
    if sniff(head) != declared:
        raise Invalid(
            f"upload is not the {declared} its event declared: its bytes look like {describe(head)}"
        )


def declared_type(ref: Mapping[str, Any]) -> str:
    # EvidenceRef's default, for events stored before content_type was always written
    return str(ref.get("content_type") or "image/jpeg")


def find_event(session: Session, event_id: str) -> m.EventRow:
    """The stored event, or NotFound (with the same words an out-of-scope caller gets)."""
    event = session.scalars(select(m.EventRow).where(m.EventRow.id == event_id)).one_or_none()
    if event is None:
        raise not_found(event_id)
    return event


def not_found(event_id: str) -> NotFound:
    """One answer for "no such event" and "not yours", so ids tell nothing."""
    return NotFound(f"event {event_id} does not exist")


def declared(event: m.EventRow, name: str) -> dict[str, Any]:
    """The evidence reference ``event`` declared under ``name`` (ask only once the
    caller is known to be allowed to see the event)."""
    ref = next((e for e in event.payload.get("evidence", []) if e.get("name") == name), None)
    if ref is None:
        raise NotFound(f"event {event.id} declares no evidence named {name!r}")
    return dict(ref)


def path_for(root: Path, event: m.EventRow, name: str) -> Path:
    # ids and names are slugs checked by the protocol, so the path cannot escape root
    return root / event.gateway / event.id / name


@dataclass(frozen=True)
class Target:
    """Where an accepted upload goes and what it must be."""

    path: Path
    media_type: str
    size: int
    sha256: str


def prepare(session: Session, root: Path, gateway: m.Gateway, event_id: str, name: str) -> Target:
    """Where the upload of ``name`` for ``event_id`` goes and what it must match; raises
    NotFound before any of the body is read. Order: the event, then whose it is (another
    gateway's event reads as missing), only then what it declares."""
    event = find_event(session, event_id)
    if event.gateway != gateway.id:
        UPLOADS.labels("not_found").inc()
        raise not_found(event_id)
    ref = declared(event, name)
    return Target(
        path_for(root, event, name), declared_type(ref), int(ref["bytes"]), str(ref["sha256"])
    )


class Upload:
    """One upload being received: written to a temporary file next to its target while
    it is hashed (never held in memory); refused as soon as its first bytes are not the
    declared type or it grows past the declared size; kept only if hash and size match."""

    def __init__(self, target: Target) -> None:
        target.path.parent.mkdir(parents=True, exist_ok=True)
        self.target = target
        self.digest, self.size, self.head = hashlib.sha256(), 0, b""
        self.type_checked = False
        self.outcome = "rejected"  # what discard() counts, unless a check said more
        fd, self.tmp = tempfile.mkstemp(dir=target.path.parent, prefix=".upload-")
        self.out = os.fdopen(fd, "wb")

    def write(self, chunk: bytes) -> None:
        self.size += len(chunk)
        if self.size > self.target.size:
            raise Invalid(f"upload is larger than the {self.target.size} bytes the event declared")
        if not self.type_checked:
            self.head = (self.head + chunk)[:SNIFF_BYTES]
            if len(self.head) >= SNIFF_BYTES:
                self._check_type()
        self.digest.update(chunk)
        self.out.write(chunk)

    def _check_type(self) -> None:
        try:
            check_type(self.target.media_type, self.head)
        except Invalid:
            self.outcome = "wrong_type"
            raise
        self.type_checked = True

    def finish(self) -> Path:
        self.out.close()
        if not self.type_checked:
            self._check_type()  # a file shorter than SNIFF_BYTES
        sha = self.digest.hexdigest()
        if self.size != self.target.size or sha != self.target.sha256:
            raise Invalid(
                f"upload does not match the event's evidence (sha256 {sha[:12]}…, "
                f"{self.size} bytes; declared {self.target.sha256[:12]}…, "
                f"{self.target.size} bytes)"
            )
        os.replace(self.tmp, self.target.path)
        UPLOADS.labels("stored").inc()
        return self.target.path

    def discard(self, outcome: str | None = None) -> None:
        UPLOADS.labels(outcome or self.outcome).inc()
        self.out.close()
        Path(self.tmp).unlink(missing_ok=True)


@dataclass(frozen=True)
class Stored:
    """An uploaded file ready to serve, with the media type its bytes were checked as."""

    path: Path
    media_type: str


def stored_file(root: Path, event: m.EventRow, name: str) -> Stored:
    """The uploaded file of ``name`` (declared by ``event``) and the type to serve it as:
    the declared type when its first bytes are that type, else ``UNKNOWN`` (files kept
    before uploads were type-checked are never served as something they are not)."""
    ref = declared(event, name)
    path = path_for(root, event, name)
    try:
        with path.open("rb") as f:
            head = f.read(SNIFF_BYTES)
    except FileNotFoundError:
        raise NotFound(f"evidence {name!r} of event {event.id} has not been uploaded yet") from None
    media_type = declared_type(ref)
    return Stored(path, media_type if sniff(head) == media_type else UNKNOWN)

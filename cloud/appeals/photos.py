"""An appeal's photos: at most ``max_photos``, each at most ``max_photo_bytes``, and each
a JPEG, PNG or WebP by its bytes (sniffed with :func:`cloud.evidence.sniff`, whatever the
upload's name or declared type say). Kept on disk under the photo directory, in a folder
per ticket; written to a temporary file and renamed, so a half-written photo never shows."""

from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

from cloud.appeals.config import PHOTO_TYPES, AppealSettings
from cloud.errors import Invalid
from cloud.evidence import SNIFF_BYTES, describe, sniff


class PhotoTooLarge(Invalid):
    """A photo past the size limit (the API answers 413)."""


class PhotoWrongType(Invalid):
    """A photo whose bytes are not an accepted image type (the API answers 415)."""


@dataclass(frozen=True, slots=True)
class PhotoIn:
    """A photo as received: its bytes (read up to one past the limit) and its name."""

    data: bytes
    filename: str | None = None


@dataclass(frozen=True, slots=True)
class CheckedPhoto:
    n: int
    data: bytes
    content_type: str
    sha256: str

    @property
    def name(self) -> str:
        return f"{self.n}.{PHOTO_TYPES[self.content_type]}"


def check(photos: list[PhotoIn], settings: AppealSettings) -> list[CheckedPhoto]:
    """The photos checked in order; the first fault raised, naming the photo (1-based)
    and its file name."""
    if len(photos) > settings.max_photos:
        raise Invalid(f"photos: at most {settings.max_photos} per appeal, got {len(photos)}")
    out = []
    for n, photo in enumerate(photos, 1):
        which = f"photo {n}" + (f" ({photo.filename})" if photo.filename else "")
        if len(photo.data) > settings.max_photo_bytes:
            raise PhotoTooLarge(
                f"{which} is larger than the {settings.max_photo_bytes // 1024} KiB allowed"
            )
        kind = sniff(photo.data[:SNIFF_BYTES])
        if kind not in PHOTO_TYPES:
            raise PhotoWrongType(
                f"{which} is not a JPEG, PNG or WebP image: its bytes look like "
                f"{describe(photo.data[:SNIFF_BYTES])}"
            )
        out.append(CheckedPhoto(n, photo.data, kind, hashlib.sha256(photo.data).hexdigest()))
    return out


def folder(ticket: str) -> str:
    """The ticket's folder under the photo directory (by day, then ticket)."""
    return f"{ticket[1:7]}/{ticket}"


def store(root: Path, ticket: str, photos: list[CheckedPhoto]) -> list[str]:
    """Write the photos; returns their paths relative to ``root``. A ticket is checked
    (:data:`cloud.appeals.tokens.TICKET`) before it is ever a path."""
    if not photos:
        return []
    target = root / folder(ticket)
    target.mkdir(parents=True, exist_ok=True)
    paths = []
    for photo in photos:
        fd, tmp = tempfile.mkstemp(dir=target, prefix=".upload-")
        with os.fdopen(fd, "wb") as out:
            out.write(photo.data)
        os.replace(tmp, target / photo.name)
        paths.append(f"{folder(ticket)}/{photo.name}")
    return paths


def discard(root: Path, ticket: str) -> None:
    """Remove a ticket's photos (its appeal was not stored after all)."""
    shutil.rmtree(root / folder(ticket), ignore_errors=True)

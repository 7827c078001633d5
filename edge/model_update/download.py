"""A model file from the cloud over HTTP: resumable, retried, bounded by its manifest.

Bytes go to ``<dest>.part``; an interrupted transfer resumes from that file's size with
``Range: bytes=N-`` (a server that answers 200 instead of 206 sends the whole file again,
and the part file starts over). Nothing more than the manifest's size is ever written,
and the caller renames the file only after checking its size and sha256 — a model
never appears at its final path half-written or unchecked (frigate #19055).
"""

from __future__ import annotations

import base64
import http.client
import logging
import os
import re
import threading
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from prometheus_client import Counter

log = logging.getLogger(__name__)

DOWNLOAD_BYTES = Counter("mb_edge_model_download_bytes_total", "model bytes downloaded")
DOWNLOAD_TRIES = Counter(
    "mb_edge_model_download_attempts_total", "model download requests, by outcome", ["outcome"]
)

CHUNK = 256 * 1024
_CONTENT_RANGE = re.compile(r"^bytes (\d+)-(\d+)/(\d+|\*)$")


class DownloadError(RuntimeError):
    """The file could not be fetched; ``outcome`` is the metric label, ``retry`` whether
    another try could help."""

    def __init__(self, message: str, outcome: str, *, retry: bool) -> None:
        super().__init__(message)
        self.outcome = outcome
        self.retry = retry


@dataclass(frozen=True)
class Credentials:
    username: str
    password: str | None

    @property
    def header(self) -> str:
        token = base64.b64encode(f"{self.username}:{self.password or ''}".encode()).decode()
        return f"Basic {token}"


def part_path(dest: Path) -> Path:
    return dest.with_name(dest.name + ".part")


def download(
    url: str,
    dest: Path,
    size: int,
    credentials: Credentials | None,
    *,
    timeout_s: float = 30.0,
    attempts: int = 5,
    backoff_s: float = 2.0,
    stop: threading.Event | None = None,
    wait: Callable[[float], object] | None = None,
) -> Path:
    """Fetch ``url`` into ``<dest>.part`` until it holds exactly ``size`` bytes; return it.

    Up to ``attempts`` requests, waiting ``backoff_s`` after the first failure and twice
    as long after each next one (``wait``, by default ``stop.wait``: stopping ends the
    waits at once). Raises :class:`DownloadError`.
    """
    part = part_path(dest)
    part.parent.mkdir(parents=True, exist_ok=True)
    halt = stop or threading.Event()
    pause = wait or halt.wait
    last: DownloadError | None = None
    for attempt in range(attempts):
        if attempt:
            pause(backoff_s * 2 ** (attempt - 1))
            if halt.is_set():
                break
        try:
            have = _fetch(url, part, size, credentials, timeout_s)
        except DownloadError as err:
            DOWNLOAD_TRIES.labels(err.outcome).inc()
            if not err.retry:
                raise
            last = err
            log.warning("model download from %s, try %d/%d: %s", url, attempt + 1, attempts, err)
            continue
        if have == size:
            DOWNLOAD_TRIES.labels("complete").inc()
            return part
        DOWNLOAD_TRIES.labels("interrupted").inc()
        last = DownloadError(
            f"the connection closed after {have} of {size} bytes", "interrupted", retry=True
        )
        log.warning("model download from %s, try %d/%d: %s", url, attempt + 1, attempts, last)
    raise DownloadError(
        f"model download from {url} failed after {attempts} tries (last: {last}); the partial "
        "file is kept and the next install of this model resumes it",
        last.outcome if last else "stopped",
        retry=True,
    )


def _fetch(
    url: str, part: Path, size: int, credentials: Credentials | None, timeout_s: float
) -> int:
    """One request; returns how many bytes the part file holds afterwards."""
    have = part.stat().st_size if part.exists() else 0
    if have > size:  # not this file's beginning: start over
        part.unlink()
        have = 0
    if have == size:
        return have  # complete already (the check that follows decides if it is right)
    headers = {"Accept-Encoding": "identity"}
    if credentials is not None:
        headers["Authorization"] = credentials.header
    if have:
        headers["Range"] = f"bytes={have}-"
    request = urllib.request.Request(url, headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=timeout_s) as response:
            mode = "ab"
            if response.status == 206:
                start = _range_start(response.headers.get("Content-Range", ""))
                if start != have:
                    raise DownloadError(
                        f"the server resumed at byte {start}, not at {have}",
                        "bad_range",
                        retry=True,
                    )
            else:
                mode, have = "wb", 0  # 200: the whole file again
            with open(part, mode) as out:
                while chunk := response.read(CHUNK):
                    if have + len(chunk) > size:
                        raise DownloadError(
                            f"the server sent more than the {size} bytes the signed manifest "
                            "declares; the file is not the one the registry signed",
                            "too_large",
                            retry=False,
                        )
                    out.write(chunk)
                    have += len(chunk)
                    DOWNLOAD_BYTES.inc(len(chunk))
                out.flush()
                os.fsync(out.fileno())
    except urllib.error.HTTPError as err:
        if err.code == 416:  # our part file is not a prefix the server knows: start over
            part.unlink(missing_ok=True)
            raise DownloadError(
                "the server refused the resume range", "bad_range", retry=True
            ) from None
        if err.code == 401:
            raise DownloadError(
                "the cloud refused this gateway's credentials (401); check the gateway's "
                "broker password in the cloud (it is also its download password)",
                "unauthorized",
                retry=False,
            ) from None
        if err.code == 403:
            # the login was good: the registry sends a file only to the gateways a rollout
            # of that model targets
            raise DownloadError(
                "the cloud will not give this gateway that model (403): no rollout of it "
                "targets this gateway (any more)",
                "forbidden",
                retry=False,
            ) from None
        if err.code == 404:
            raise DownloadError(
                f"the cloud has no such model file ({url}: 404)", "not_found", retry=False
            ) from None
        raise DownloadError(
            f"HTTP {err.code} from {url}", "http_error", retry=err.code >= 500 or err.code == 429
        ) from None
    except DownloadError:
        raise
    except (OSError, http.client.HTTPException) as err:
        # refused, timed out, reset, or cut short (IncompleteRead): what arrived is kept
        raise DownloadError(
            f"{type(err).__name__}: {err}"[:300], "unreachable", retry=True
        ) from None
    return part.stat().st_size


def _range_start(header: str) -> int | None:
    match = _CONTENT_RANGE.match(header.strip())
    return int(match.group(1)) if match else None

"""Data from the field: the console's verdicts and their evidence become a YOLO dataset.

Over the cloud's HTTP API only (a duty or engineer account, as the console uses it):
``POST /api/auth/token`` for a bearer token, ``GET /api/alerts?reviewed=true`` (paged)
for the alerts with a verdict, ``GET /api/events?alert_id=`` for their events and the
evidence each declares, ``GET /api/evidence/{event}/{name}`` for the files, each checked
against the sha256 and size the gateway declared. A *confirmed* alert's frame is
pre-labelled by the current model; a *false positive*'s frame becomes a background image
(an empty label file: the model should find nothing worth an alert there). Everything is
for a human to review (manifest.jsonl says where each frame came from) before training.

The frame is taken from the event's clip when there is one (raw camera pixels, the
middle frame); else the snapshot, on which the gateway drew boxes, zone and a caption
(``overlay: true`` in the manifest: a reviewer may drop such frames).
"""

from __future__ import annotations

import hashlib
import tempfile
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import cv2
import httpx
import numpy as np

from models.datasets import IMAGE_SUFFIXES, DatasetWriter, pseudo_labels

VERDICTS = ("confirmed", "false_positive")
PAGE = 500  # the alerts list's largest page


class FieldDataError(RuntimeError):
    """The cloud refused or could not be reached; the message names the fix."""


@dataclass
class ExportSummary:
    images: int = 0
    boxes: int = 0
    by_verdict: Counter[str] = field(default_factory=Counter)
    # alerts or evidence left out, by reason (not uploaded, hash mismatch, unreadable …)
    skipped: Counter[str] = field(default_factory=Counter)


class CloudClient:
    """The cloud's API as a console user: logs in once, then GETs with the token."""

    def __init__(self, base_url: str, user: str, password: str, timeout: float = 30.0) -> None:
        self._http = httpx.Client(base_url=base_url.rstrip("/"), timeout=timeout)
        try:
            reply = self._http.post(
                "/api/auth/token", json={"username": user, "password": password}
            )
        except httpx.HTTPError as err:
            self._http.close()
            raise FieldDataError(f"cannot reach the cloud at {base_url}: {err}") from None
        if reply.status_code != 200:
            self._http.close()
            raise FieldDataError(
                f"login as {user!r} at {base_url} refused ({reply.status_code}): "
                f"{_detail(reply)}; check the user name and password"
            )
        self._http.headers["Authorization"] = f"Bearer {reply.json()['access_token']}"

    def close(self) -> None:
        self._http.close()

    def get(self, path: str, **params: Any) -> httpx.Response:
        try:
            return self._http.get(path, params={k: v for k, v in params.items() if v is not None})
        except httpx.HTTPError as err:
            raise FieldDataError(f"GET {path}: {err}") from None

    def json(self, path: str, **params: Any) -> Any:
        reply = self.get(path, **params)
        if reply.status_code != 200:
            raise FieldDataError(f"GET {path}: {reply.status_code} {_detail(reply)}")
        return reply.json()


def _detail(reply: httpx.Response) -> str:
    try:
        body = reply.json()
    except ValueError:
        return reply.text[:200]
    return str(body.get("detail", body) if isinstance(body, dict) else body)[:200]


def reviewed_alerts(client: CloudClient, since: datetime | None = None) -> Iterator[dict[str, Any]]:
    """Every alert with a verdict (oldest page last, as the API orders them)."""
    offset = 0
    while True:
        page = client.json(
            "/api/alerts",
            reviewed="true",
            since=since.isoformat() if since else None,
            limit=PAGE,
            offset=offset,
        )
        yield from page["items"]
        offset += len(page["items"])
        if not page["items"] or offset >= page["total"]:
            return


def middle_frame(video: bytes, suffix: str) -> np.ndarray | None:
    """The middle frame of an evidence clip (None if OpenCV cannot decode it)."""
    with tempfile.NamedTemporaryFile(suffix=suffix) as tmp:
        tmp.write(video)
        tmp.flush()
        cap = cv2.VideoCapture(tmp.name)
        frames = []
        try:
            while True:
                ok, frame = cap.read()
                if not ok:
                    break
                frames.append(frame)
        finally:
            cap.release()
    return frames[len(frames) // 2] if frames else None


_CLIP_SUFFIX = {"video/webm": ".webm", "video/mp4": ".mp4", "video/x-msvideo": ".avi"}


def _pick_evidence(event: dict[str, Any]) -> list[dict[str, Any]]:
    """The event's evidence, clips first (raw pixels), then snapshots."""
    refs = [r for r in event.get("evidence", []) if isinstance(r, dict)]
    return sorted(refs, key=lambda r: 0 if r.get("kind") == "clip" else 1)


def _fetch(client: CloudClient, event_id: str, ref: dict[str, Any]) -> tuple[bytes | None, str]:
    reply = client.get(f"/api/evidence/{event_id}/{ref['name']}")
    if reply.status_code == 404:
        return None, "evidence not uploaded"
    if reply.status_code != 200:
        return None, f"evidence download failed ({reply.status_code})"
    data = reply.content
    if len(data) != ref.get("bytes") or hashlib.sha256(data).hexdigest() != ref.get("sha256"):
        return None, "evidence does not match its declared sha256 and size"
    return data, ""


def export_verdicts(
    client: CloudClient,
    out: Path,
    detector: Any,
    model_name: str,
    since: datetime | None = None,
    on_alert: Callable[[], None] | None = None,
) -> tuple[Path, ExportSummary]:
    """Write the reviewed alerts' frames as a YOLO dataset under ``out``; returns its
    data.yaml and what went in (and what was left out, and why)."""
    writer = DatasetWriter(out)
    summary = ExportSummary()
    seen: set[str] = set()
    for alert in reviewed_alerts(client, since):
        verdict = alert.get("verdict")
        if verdict not in VERDICTS:
            summary.skipped[f"verdict {verdict!r}"] += 1
            continue
        events = client.json("/api/events", alert_id=alert["id"], limit=100)
        for event in events:
            for ref in _pick_evidence(event):
                image, encoded, reason = _frame(client, event["id"], ref)
                if image is None:
                    summary.skipped[reason] += 1
                    continue
                digest = hashlib.sha256(image.tobytes()).hexdigest()
                if digest in seen:
                    summary.skipped["same frame already exported"] += 1
                    break
                seen.add(digest)
                background = verdict == "false_positive"
                boxes = [] if background else pseudo_labels(detector, image)
                record = {
                    "alert_id": alert["id"],
                    "event_id": event["id"],
                    "gateway": event.get("gateway"),
                    "community": event.get("community"),
                    "compound": event.get("compound"),
                    "camera": event.get("source"),
                    "zone": event.get("zone"),
                    "kind": alert.get("kind"),
                    "ts": event.get("ts"),
                    "verdict": verdict,
                    "verdict_by": alert.get("verdict_by"),
                    "evidence": ref["name"],
                    "evidence_sha256": ref["sha256"],
                    "frame_from": ref.get("kind"),
                    "overlay": ref.get("kind") != "clip",
                    "labelled_by": None if background else model_name,
                }
                stem = f"a{alert['id']}-{event['id']}-{Path(ref['name']).stem}"
                writer.add(stem, boxes, record, image=image, encoded=encoded)
                summary.images += 1
                summary.boxes += len(boxes)
                summary.by_verdict[verdict] += 1
                break  # one frame an event: the clip's, else the snapshot's
        if on_alert is not None:
            on_alert()
    return writer.finish(), summary


def _frame(
    client: CloudClient, event_id: str, ref: dict[str, Any]
) -> tuple[np.ndarray | None, bytes | None, str]:
    """(decoded frame, the bytes to store as they are or None to re-encode, skip reason)."""
    data, reason = _fetch(client, event_id, ref)
    if data is None:
        return None, None, reason
    content_type = ref.get("content_type", "image/jpeg")
    if content_type in _CLIP_SUFFIX:
        frame = middle_frame(data, _CLIP_SUFFIX[content_type])
        return (frame, None, "") if frame is not None else (None, None, "clip not decodable")
    image = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
    if image is None:
        return None, None, "snapshot not decodable"
    # a JPEG is stored as uploaded, so its sha256 in the manifest is the evidence's own
    return image, data, ""


def autolabel(
    folder: Path, out: Path, detector: Any, model_name: str, on_image: Callable[[], None] | None
) -> tuple[Path, ExportSummary]:
    """Pre-label every image under ``folder`` (frames collected from gateways) into a
    YOLO dataset at ``out``."""
    writer = DatasetWriter(out)
    summary = ExportSummary()
    files = sorted(p for p in folder.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES)
    for n, path in enumerate(files):
        data = path.read_bytes()
        image = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
        if image is None:
            summary.skipped["not an image OpenCV can read"] += 1
        else:
            boxes = pseudo_labels(detector, image)
            record = {"source": str(path.resolve()), "labelled_by": model_name}
            stem = f"{n:06d}-{path.stem}"[:120]
            writer.add(stem, boxes, record, encoded=data, suffix=path.suffix.lower())
            summary.images += 1
            summary.boxes += len(boxes)
        if on_image is not None:
            on_image()
    return writer.finish(), summary

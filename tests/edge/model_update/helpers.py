"""A real registry's side for the gateway's model manager: signed manifests (ed25519) and
a real HTTP file server on a free port that honours ``Range``, checks Basic auth, and can
cut a response short (the first half, then the connection drops)."""

from __future__ import annotations

import base64
import hashlib
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import numpy as np
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from microbrain.protocol import ModelInstall, ModelManifest, utc_now
from microbrain.signing import public_key_text, sign_manifest
from tests.edge.video import onnx_models

CLASSES = ("person", "car")
USER, PASSWORD = "gw-1", "s3cret"


def tiny_model(
    path: Path, x: float = 160.0, classes: tuple[str, ...] = CLASSES, hit: int = 0
) -> Path:
    """A real ONNX YOLO graph (fixed 320 input) that finds one ``classes[hit]`` at ``x``;
    another ``x`` gives another file (another version)."""
    scores = [[0.05] * len(classes)]
    scores[0][hit] = 0.9
    pred = onnx_models.v8_layout([(x, 160.0, 40.0, 40.0)], scores)
    return onnx_models.build(path, pred, dict(enumerate(classes)), size=320)


def wrong_shape_model(path: Path) -> Path:
    """Loads in onnxruntime, but its output [1, 3, 8] is no YOLO layout for 2 classes."""
    return onnx_models.build(path, np.zeros((1, 3, 8), np.float32), dict(enumerate(CLASSES)))


@dataclass
class Registry:
    """Signs manifests like the cloud's registry: one serial higher each time."""

    key: Ed25519PrivateKey = field(default_factory=Ed25519PrivateKey.generate)
    serial: int = 0

    def key_file(self, directory: Path) -> Path:
        path = directory / "model-key.pub"
        path.write_text(public_key_text(self.key) + "\n")
        return path

    def manifest(self, data: bytes, version: str, **over: object) -> ModelManifest:
        self.serial += 1
        now = utc_now()
        fields: dict[str, object] = {
            "name": "yolo-tiny",
            "version": version,
            "serial": self.serial,
            "sha256": hashlib.sha256(data).hexdigest(),
            "bytes": len(data),
            "classes": CLASSES,
            "input_size": 320,
            "issued": now,
            "expires": now + timedelta(days=30),
        }
        fields.update(over)
        return ModelManifest.model_validate(fields)

    def install(
        self, manifest: ModelManifest, url: str, key: Ed25519PrivateKey | None = None
    ) -> ModelInstall:
        text, signature = sign_manifest(key or self.key, manifest)
        return ModelInstall(manifest=text, signature=signature, url=url, rollout=7)


@dataclass
class Served:
    path: str
    range: str | None
    auth: str | None
    sent: int


class FileServer:
    """``files[url path] = bytes``; ``cut[url path] = n``: the next response for it sends
    only n bytes (with the full Content-Length) and drops the connection."""

    def __init__(self) -> None:
        self.files: dict[str, bytes] = {}
        self.cut: dict[str, int] = {}
        # paths refused to a good login, as the registry refuses a model no rollout sends
        self.forbidden: set[str] = set()
        self.requests: list[Served] = []
        self.auth = "Basic " + base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode()
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: object) -> None:
                pass

            def do_GET(self) -> None:
                auth = self.headers.get("Authorization")
                rng = self.headers.get("Range")
                data = server.files.get(self.path)
                if auth != server.auth or data is None or self.path in server.forbidden:
                    server.requests.append(Served(self.path, rng, auth, 0))
                    refusal = 404 if data is None else 403
                    self.send_response(401 if auth != server.auth else refusal)
                    self.end_headers()
                    return
                start = int(rng.removeprefix("bytes=").rstrip("-")) if rng else 0
                body = data[start:]
                self.send_response(206 if rng else 200)
                if rng:
                    self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                n = server.cut.pop(self.path, None)
                sent = body if n is None else body[:n]
                self.wfile.write(sent)
                self.wfile.flush()
                server.requests.append(Served(self.path, rng, auth, len(sent)))
                if n is not None:
                    self.close_connection = True

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self._thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def publish(self, name: str, data: bytes) -> str:
        path = f"/api/models/{name}/file"
        self.files[path] = data
        return path


@contextmanager
def file_server() -> Iterator[FileServer]:
    server = FileServer()
    server._thread.start()
    try:
        yield server
    finally:
        server.httpd.shutdown()
        server.httpd.server_close()


def later(days: float) -> datetime:
    return utc_now() + timedelta(days=days)


def watch_what_tiny_models_see(camera: dict[str, Any]) -> dict[str, Any]:
    """``camera`` (a site file's camera block) with rules the tiny models can serve
    (people, in each of its zones; no lines): a gateway refuses a model lacking a class
    its cameras watch, and these models know only ``CLASSES``."""
    camera.pop("lines", None)
    for zone in camera.get("zones", []):
        zone["rules"] = [
            {"type": "object_in_zone", "kind": "people", "classes": ["person"], "dwell_s": 5}
        ]
    return camera

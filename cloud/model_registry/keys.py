"""The registry's ed25519 signing key: one file, made on first use, read once a process.

Every cloud process sharing a database must sign with the same key (gateways trust one
public key), so in a multi-process deployment the file lives on shared storage or is
provisioned before the processes start; ``O_EXCL`` creation means two processes starting
together on one disk still end up with one key.
"""

from __future__ import annotations

import threading
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from microbrain.signing import load_or_create_private_key, public_key_text

_lock = threading.Lock()
_keys: dict[Path, Ed25519PrivateKey] = {}


def signing_key(path: Path) -> Ed25519PrivateKey:
    """The private key at ``path`` (made there, mode 0600, when there is none yet)."""
    path = path.resolve()
    with _lock:
        key = _keys.get(path)
        if key is None:
            key = _keys[path] = load_or_create_private_key(path)
        return key


def public_text(path: Path) -> str:
    """The public key as one base64 line: what goes into a gateway's ``model_key`` file."""
    return public_key_text(signing_key(path))

"""Ed25519 signatures over model manifests: the registry signs, gateways verify.

The signed bytes are the manifest's canonical JSON (sorted keys, no spaces, UTF-8), and
they travel as they are: a gateway verifies those exact bytes and only then parses them,
so no re-serialisation can make a valid signature fail or a changed manifest pass.

Keys are files: the private key as PKCS#8 PEM (mode 0600, on the cloud only), the public
key as one line of base64 of its 32 raw bytes (``public_key_text``), short enough to paste
into a gateway's config.
"""

from __future__ import annotations

import base64
import binascii
import json
import os
from pathlib import Path

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import (
    Ed25519PrivateKey,
    Ed25519PublicKey,
)
from pydantic import ValidationError

from microbrain.protocol import ModelManifest


class SignatureError(ValueError):
    """A manifest whose signature does not verify, or a key that cannot be read."""


def canonical_manifest(manifest: ModelManifest) -> str:
    """The manifest's canonical JSON text: what the registry signs and sends."""
    return json.dumps(
        manifest.model_dump(mode="json"), sort_keys=True, separators=(",", ":"), ensure_ascii=False
    )


def sign_manifest(key: Ed25519PrivateKey, manifest: ModelManifest) -> tuple[str, str]:
    """(canonical manifest text, base64 signature over its UTF-8 bytes)."""
    text = canonical_manifest(manifest)
    return text, base64.b64encode(key.sign(text.encode())).decode()


def verify_manifest(public_key: Ed25519PublicKey, text: str, signature: str) -> ModelManifest:
    """Check ``signature`` over ``text`` and return the manifest it holds.

    Raises :class:`SignatureError` when the signature is not the key's over these exact
    bytes, or the signed text is not a valid manifest.
    """
    try:
        raw = base64.b64decode(signature, validate=True)
        public_key.verify(raw, text.encode())
    except (InvalidSignature, binascii.Error, ValueError):
        raise SignatureError(
            "the manifest's signature does not verify with this gateway's model key "
            "(a changed manifest, or signed by another registry)"
        ) from None
    try:
        return ModelManifest.model_validate_json(text)
    except ValidationError as err:
        raise SignatureError(f"the signed manifest is not a valid manifest: {err}") from None


# --- keys --------------------------------------------------------------------------------


def generate_private_key(path: Path) -> Ed25519PrivateKey:
    """Make a new signing key and write it to ``path`` (0600; never overwrites)."""
    key = Ed25519PrivateKey.generate()
    pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as out:
        out.write(pem)
    return key


def load_private_key(path: Path) -> Ed25519PrivateKey:
    try:
        key = serialization.load_pem_private_key(path.read_bytes(), password=None)
    except (OSError, ValueError, TypeError) as err:
        raise SignatureError(f"cannot read the model signing key {str(path)!r}: {err}") from None
    if not isinstance(key, Ed25519PrivateKey):
        raise SignatureError(f"{str(path)!r} is not an Ed25519 private key")
    return key


def load_or_create_private_key(path: Path) -> Ed25519PrivateKey:
    """The key at ``path``, made there first if there is none yet."""
    try:
        return generate_private_key(path)
    except FileExistsError:
        return load_private_key(path)


def public_key_text(key: Ed25519PrivateKey | Ed25519PublicKey) -> str:
    """The public key as one line of base64 (32 raw bytes): what a gateway is given."""
    public = key.public_key() if isinstance(key, Ed25519PrivateKey) else key
    raw = public.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return base64.b64encode(raw).decode()


def parse_public_key(text: str) -> Ed25519PublicKey:
    """A public key from :func:`public_key_text`'s form, or from a PEM block."""
    text = text.strip()
    try:
        if text.startswith("-----BEGIN"):
            key = serialization.load_pem_public_key(text.encode())
            if not isinstance(key, Ed25519PublicKey):
                raise SignatureError("the PEM block is not an Ed25519 public key")
            return key
        return Ed25519PublicKey.from_public_bytes(base64.b64decode(text, validate=True))
    except (ValueError, binascii.Error) as err:
        raise SignatureError(
            f"not an Ed25519 public key (one line of base64 of 32 bytes, or PEM): {err}"
        ) from None


def load_public_key(path: Path) -> Ed25519PublicKey:
    try:
        return parse_public_key(path.read_text())
    except OSError as err:
        raise SignatureError(f"cannot read the model key {str(path)!r}: {err}") from None

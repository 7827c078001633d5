"""What this gateway has trusted: one small JSON file, replaced atomically and fsynced.

``highest_serial`` is the highest manifest serial ever trusted. It only goes up, and it
is on disk *before* the model it came with runs: a restart, a power cut or a resent old
command cannot take the gateway back to a model the registry has replaced (TUF's lesson
against rollback attacks). ``current`` and ``previous`` are the installed model and the
one before it, each with its signed manifest text and signature, so the gateway can
check them again at start and a signed rollback to the previous model needs no download.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from microbrain.protocol import ModelManifest

TRUST_FILE = "trust.json"


class TrustStateError(RuntimeError):
    """The trust state cannot be read or written; the message says what to do."""


class TrustedModel(BaseModel):
    """An installed model: the manifest text exactly as signed, its signature, its file."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    manifest: str
    signature: str
    file: str = Field(pattern=r"^[0-9a-f]{64}\.model$")

    @property
    def parsed(self) -> ModelManifest:
        return ModelManifest.model_validate_json(self.manifest)


class TrustState(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    schema_version: int = 1
    highest_serial: int = Field(default=0, ge=0)
    current: TrustedModel | None = None
    previous: TrustedModel | None = None


class TrustStore:
    """``directory/trust.json``: :meth:`load` and :meth:`save` (atomic, durable)."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.path = directory / TRUST_FILE

    def load(self) -> TrustState:
        """The saved state; a fresh one when there is none yet."""
        try:
            raw = self.path.read_bytes()
        except FileNotFoundError:
            return TrustState()
        except OSError as err:
            raise TrustStateError(f"cannot read the model trust state {self.path}: {err}") from None
        try:
            return TrustState.model_validate_json(raw)
        except ValidationError as err:
            # never guess: an unreadable state could hide the serial that stops a replay
            raise TrustStateError(
                f"the model trust state {self.path} is corrupt ({err.error_count()} error(s): "
                f"{err.errors()[0]['msg']}); model installs are refused until it is fixed: "
                "restore it from a backup, or delete it to trust the next signed model anew"
            ) from None

    def save(self, state: TrustState) -> None:
        """Write ``state`` to a temporary file, fsync it, rename it over the old one and
        fsync the folder: after this returns, a power cut leaves the new state."""
        self.directory.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_suffix(".tmp")
        data = json.dumps(state.model_dump(mode="json"), indent=1).encode()
        try:
            with open(tmp, "wb") as out:
                out.write(data)
                out.flush()
                os.fsync(out.fileno())
            os.replace(tmp, self.path)
            fd = os.open(self.directory, os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
        except OSError as err:
            raise TrustStateError(
                f"cannot write the model trust state {self.path}: {err}; "
                "check the free space and permissions of the gateway's data_dir"
            ) from None

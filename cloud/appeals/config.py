"""The appeals' settings (``MB_CLOUD_APPEALS_*``): where photos go, what a photo may be,
the per-contact rate limit, and the deadline of each category.

Deadlines default to :data:`DEFAULT_DEADLINE_HOURS`; override any of them with
``MB_CLOUD_APPEALS_DEADLINE_HOURS='{"noise": 12, "elevator": 0.25}'`` (hours). A category
missing from both gets ``fallback_deadline_hours``.
"""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

# hours from intake to the answer, by category (configs/appeal_categories.yaml's ids):
# danger to life first, a stuck lift at once, then what spoils daily life, then the rest
DEFAULT_DEADLINE_HOURS: dict[str, float] = {
    "fire-safety": 2,
    "elevator": 0.5,
    "security": 4,
    "repairs": 24,
    "sanitation": 24,
    "noise": 24,
    "parking": 24,
    "pets": 48,
    "property-service": 72,
    "greening": 72,
    "other": 72,
}

# the photo types kept (sniffed from the bytes, whatever the upload claims): what a phone's
# browser sends from its camera or gallery
PHOTO_TYPES: dict[str, str] = {"image/jpeg": "jpg", "image/png": "png", "image/webp": "webp"}


class AppealSettings(BaseSettings):
    """Read once per process (``AppealSettings()``); tests pass their own."""

    model_config = SettingsConfigDict(env_prefix="MB_CLOUD_APPEALS_", extra="ignore")

    photo_dir: Path | None = Field(
        default=None,
        description="where appeal photos go; unset: <MB_CLOUD_EVIDENCE_DIR>/appeals",
    )
    max_photos: int = Field(default=3, ge=0, le=10)
    max_photo_bytes: int = Field(default=5 * 1024 * 1024, ge=1024, le=50 * 1024 * 1024)
    max_text_chars: int = Field(default=2000, ge=10, le=20_000)
    # per contact (phone): this many appeals per window, then 429 until the window ends
    max_per_contact: int = Field(default=5, ge=1, le=10_000)
    contact_window_s: float = Field(default=3600.0, gt=0, le=30 * 86_400)
    deadline_hours: dict[str, float] = Field(default_factory=dict)
    fallback_deadline_hours: float = Field(default=72.0, gt=0)

    def photo_root(self, evidence_dir: Path) -> Path:
        return self.photo_dir if self.photo_dir is not None else evidence_dir / "appeals"

    def deadline(self, category: str) -> timedelta:
        """How long ``category``'s appeals have until they are due."""
        hours = self.deadline_hours.get(
            category, DEFAULT_DEADLINE_HOURS.get(category, self.fallback_deadline_hours)
        )
        return timedelta(hours=hours)

    @property
    def max_body_bytes(self) -> int:
        """The most a whole intake request may be: the photos and room for the fields."""
        return self.max_photos * self.max_photo_bytes + 64 * 1024

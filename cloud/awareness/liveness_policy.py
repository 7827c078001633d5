"""How long a device must be down (or up) before the awareness loop says so, and when
going down and up again becomes one ``device_flapping`` item.

Strict models whose defaults need no file (:data:`DEFAULT_POLICY`); a YAML file is read
through the project's one strict loader (:func:`load_policy`), so an unknown key or a
bad value names the file and its line.

Why the defaults:

- ``offline_after_heartbeats`` 2: :mod:`cloud.liveness` already waits 3 silent
  heartbeats before it says "not alive"; 2 more (a 30 s gateway: 2.5 min without a
  heartbeat in all) lets a gateway that reconnects (a router reboot, a broker restart)
  come back before anyone is called.
- ``online_after_heartbeats`` 2: back only after two heartbeats in a row, so that a
  gateway that says hello once and drops again does not clear its alert.
- ``flap_threshold`` 5 down-episodes in ``flap_window_s`` 1 h: one or two drops an hour
  are Wi-Fi or an update's reboot; five, at least one every 12 minutes, is a loose
  cable, a failing power supply or a watchdog loop, and worth one item. Raw episodes
  count (each change the liveness rule saw), not debounced ones: short drops never raise
  an offline alert, so debounced changes would hide exactly the flapping that matters.
- ``flap_stable_s`` 30 min without a change ends the flapping item.
"""

from __future__ import annotations

from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field

from microbrain.config_files import ConfigFileError, load_yaml


class LivenessPolicyError(ConfigFileError):
    """The liveness policy file cannot be used; names each problem's line."""


class LivenessPolicy(BaseModel):
    """Debounce and flapping settings of the liveness sweep (one for every device)."""

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)

    offline_after_heartbeats: float = Field(
        default=2.0,
        ge=0,
        le=1000,
        description="down this many of its gateway's heartbeat periods, past the liveness "
        "rule's 3, before a device counts offline",
    )
    online_after_heartbeats: float = Field(
        default=2.0,
        ge=0,
        le=1000,
        description="up this many heartbeat periods before an offline device counts online",
    )
    flap_threshold: int = Field(
        default=5, ge=2, le=10_000, description="down-episodes in the window that are flapping"
    )
    flap_window_s: float = Field(
        default=3600.0, ge=60, le=7 * 86400, description="the window episodes are counted in"
    )
    flap_stable_s: float = Field(
        default=1800.0,
        ge=0,
        le=7 * 86400,
        description="no up/down change for this long ends a device's flapping",
    )


DEFAULT_POLICY = LivenessPolicy()


def load_policy(path: str | Path) -> LivenessPolicy:
    """Read a liveness policy file strictly (every key optional; unknown keys refused)."""
    return load_yaml(path, LivenessPolicy, error=LivenessPolicyError)


__all__ = ["DEFAULT_POLICY", "LivenessPolicy", "LivenessPolicyError", "load_policy"]

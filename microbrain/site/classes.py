"""Object classes a detector may name, so that a zone rule's classes can be checked."""

# COCO-80 names as used by ultralytics and (mapped from the 90-id TF label map) by the
# default SSD-MobileNetV2.
COCO_CLASSES: tuple[str, ...] = (
    "person",
    "bicycle",
    "car",
    "motorcycle",
    "airplane",
    "bus",
    "train",
    "truck",
    "boat",
    "traffic light",
    "fire hydrant",
    "stop sign",
    "parking meter",
    "bench",
    "bird",
    "cat",
    "dog",
    "horse",
    "sheep",
    "cow",
    "elephant",
    "bear",
    "zebra",
    "giraffe",
    "backpack",
    "umbrella",
    "handbag",
    "tie",
    "suitcase",
    "frisbee",
    "skis",
    "snowboard",
    "sports ball",
    "kite",
    "baseball bat",
    "baseball glove",
    "skateboard",
    "surfboard",
    "tennis racket",
    "bottle",
    "wine glass",
    "cup",
    "fork",
    "knife",
    "spoon",
    "bowl",
    "banana",
    "apple",
    "sandwich",
    "orange",
    "broccoli",
    "carrot",
    "hot dog",
    "pizza",
    "donut",
    "cake",
    "chair",
    "couch",
    "potted plant",
    "bed",
    "dining table",
    "toilet",
    "tv",
    "laptop",
    "mouse",
    "remote",
    "keyboard",
    "cell phone",
    "microwave",
    "oven",
    "toaster",
    "sink",
    "refrigerator",
    "book",
    "clock",
    "vase",
    "scissors",
    "teddy bear",
    "hair drier",
    "toothbrush",
)

# classes a retrained microbrain model adds (models/); rules use them when present
EXTENDED_CLASSES: tuple[str, ...] = ("ebike", "charging_cable", "leash")

EBIKE, PEDAL_BIKE = "ebike", "pedal_bike"
# what the second stage (edge/video/two_wheelers.py) calls a bicycle/motorcycle track;
# a rule watching one of these matches a two-wheeler with that verdict
VERDICT_CLASSES: tuple[str, ...] = (EBIKE, PEDAL_BIKE)

KNOWN_CLASSES: frozenset[str] = frozenset(COCO_CLASSES + EXTENDED_CLASSES + VERDICT_CLASSES)

VEHICLES = ("car", "bus", "truck", "motorcycle")
TWO_WHEELERS = ("bicycle", "motorcycle", "ebike")
# the detector classes the e-bike second stage judges (edge/video/two_wheelers.py)
SECOND_STAGE_INPUTS: tuple[str, ...] = ("motorcycle", "bicycle")

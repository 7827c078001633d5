"""The site hierarchy: community → compound → building → device, from YAML."""

from microbrain.site.cameras import (
    Camera,
    DetectorConfig,
    EbikeCharging,
    IllegalParking,
    Line,
    NightSchedule,
    ObjectInZone,
    UnleashedDog,
    Zone,
    ZoneRule,
)
from microbrain.site.common import Contact, parse_duration
from microbrain.site.escalation import (
    LEVELS,
    EscalationOverride,
    EscalationPolicy,
    LevelDeadlines,
    LevelOverride,
    merge_policy,
)
from microbrain.site.loader import SiteError, load_camera, load_site
from microbrain.site.model import (
    Building,
    Community,
    Compound,
    Department,
    District,
    Gateway,
    GatewayPlace,
    Site,
)
from microbrain.site.sensors import (
    Fault,
    FaultMap,
    FieldMap,
    RateOfChange,
    Sensor,
    SensorProfile,
    SensorRule,
    Stuck,
    Threshold,
)
from microbrain.site.verify import Problem, verify_camera, verify_site

__all__ = [
    "LEVELS", "Building", "Camera", "Community", "Compound", "Contact", "Department",
    "DetectorConfig", "District", "EbikeCharging", "EscalationOverride", "EscalationPolicy",
    "Fault", "FaultMap", "FieldMap", "Gateway", "GatewayPlace", "IllegalParking",
    "LevelDeadlines", "LevelOverride", "Line",
    "NightSchedule", "ObjectInZone", "Problem", "RateOfChange", "Sensor", "SensorProfile",
    "SensorRule", "Site", "SiteError", "Stuck", "Threshold", "UnleashedDog", "Zone",
    "ZoneRule", "load_camera", "load_site", "merge_policy", "parse_duration",
    "verify_camera", "verify_site",
]

"""Cross-object checks that one model alone cannot make: unique ids, references
that resolve, classes a detector knows, zones that fit the frame, files that exist.

Each ``verify_*`` takes the validated site and yields :class:`Problem`\\ s with the
YAML path of the offending value.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

from microbrain.broker.mosquitto_conf import CLOUD_USER
from microbrain.config_files import Problem as Problem  # noqa: PLC0414 - re-exported
from microbrain.config_files import duplicate_ids
from microbrain.resources import SAMPLE_SCHEME, SAMPLES, USB_SCHEME, usb_device
from microbrain.site.cameras import Camera, EbikeInElevator
from microbrain.site.classes import KNOWN_CLASSES
from microbrain.site.model import Community, Compound, Gateway, Site
from microbrain.site.sensors import Fault, SensorProfile, Threshold
from microbrain.site.standards import HYDRANT_MIN_STATIC_MPA


def _walk(site: Site) -> Iterator[tuple[str, Community, Compound, Gateway]]:
    """(path, community, compound, gateway) for every gateway."""
    for i, community in enumerate(site.communities):
        for j, compound in enumerate(community.compounds):
            for k, gateway in enumerate(compound.gateways):
                path = f"communities[{i}].compounds[{j}].gateways[{k}]"
                yield path, community, compound, gateway


def verify_unique_ids(site: Site) -> Iterator[Problem]:
    yield from duplicate_ids(
        ((f"communities[{i}]", c.id) for i, c in enumerate(site.communities)), "community"
    )
    yield from duplicate_ids(
        (
            (f"communities[{i}].compounds[{j}]", k.id)
            for i, c in enumerate(site.communities)
            for j, k in enumerate(c.compounds)
        ),
        "compound",
    )
    for i, community in enumerate(site.communities):
        for j, compound in enumerate(community.compounds):
            yield from duplicate_ids(
                (
                    (f"communities[{i}].compounds[{j}].buildings[{b}]", x.id)
                    for b, x in enumerate(compound.buildings)
                ),
                "building",
            )
    yield from duplicate_ids(((p, g.id) for p, _, _, g in _walk(site)), "gateway")
    # A gateway id is its broker user name: one named like the cloud's user would log in
    # with the cloud's account (and its ACL) on the cloud broker.
    for p, _, _, g in _walk(site):
        if g.id == CLOUD_USER:
            yield Problem(
                f"{p}.id", f"gateway id {g.id!r} is reserved: it is the cloud's broker user"
            )
    devices: list[tuple[str, str]] = []
    for path, _, _, gateway in _walk(site):
        devices += [(f"{path}.cameras[{n}]", c.id) for n, c in enumerate(gateway.cameras)]
        devices += [(f"{path}.sensors[{n}]", s.id) for n, s in enumerate(gateway.sensors)]
    yield from duplicate_ids(devices, "device (camera or sensor)")
    yield from duplicate_ids(
        ((f"departments[{n}]", d.id) for n, d in enumerate(site.departments)), "department"
    )
    yield from duplicate_ids(
        ((f"sensor_profiles[{n}]", p.id) for n, p in enumerate(site.sensor_profiles)), "profile"
    )


def verify_camera(camera: Camera, path: str, base: Path | None) -> Iterator[Problem]:
    """Checks for one camera; also used for a stand-alone camera file."""
    yield from duplicate_ids(
        ((f"{path}.zones[{n}]", z.id) for n, z in enumerate(camera.zones)), "zone"
    )
    yield from duplicate_ids(
        ((f"{path}.lines[{n}]", x.id) for n, x in enumerate(camera.lines)), "line"
    )
    for n, zone in enumerate(camera.zones):
        for r, rule in enumerate(zone.rules):
            for cls in getattr(rule, "classes", ()):
                if cls not in KNOWN_CLASSES:
                    yield Problem(
                        f"{path}.zones[{n}].rules[{r}].classes",
                        f"unknown class {cls!r}; a detector names COCO classes "
                        "(car, bicycle, dog, …), ebike, charging_cable, leash, or the "
                        "two-wheeler verdict pedal_bike",
                    )
        if camera.frame_size:
            width, height = camera.frame_size
            for p, (x, y) in enumerate(zone.polygon):
                if x > width or y > height:
                    yield Problem(
                        f"{path}.zones[{n}].polygon[{p}]",
                        f"point ({x:g}, {y:g}) lies outside the {width}×{height} frame",
                    )
    for n, line in enumerate(camera.lines):
        for cls in line.classes:
            if cls not in KNOWN_CLASSES:
                yield Problem(f"{path}.lines[{n}].classes", f"unknown class {cls!r}")
    source = camera.source
    if source.startswith(SAMPLE_SCHEME):
        name = source[len(SAMPLE_SCHEME) :]
        if name not in SAMPLES:
            yield Problem(
                f"{path}.source", f"unknown sample {name!r} (known: {', '.join(SAMPLES)})"
            )
    elif source.startswith(USB_SCHEME):
        try:
            usb_device(source)
        except ValueError as err:
            yield Problem(f"{path}.source", str(err))
    elif "://" not in source:
        file = Path(source)
        if not file.is_absolute() and base is not None:
            file = base / file
        if source.startswith("/dev/"):
            yield Problem(
                f"{path}.source",
                f"{source!r} is a device, not a video file: write 'usb:{source}' for a USB camera",
            )
        elif not file.exists():
            yield Problem(f"{path}.source", f"video file {str(file)!r} does not exist")


def verify_references(site: Site, base: Path | None = None) -> Iterator[Problem]:
    profiles = {p.id: p for p in site.sensor_profiles}
    # (rule path) -> (rule, highest GB 50974 limit among the buildings that use it)
    gb_rules: dict[str, tuple[Threshold, float]] = {}
    for path, _, compound, gateway in _walk(site):
        buildings = {b.id: b for b in compound.buildings}
        known = ", ".join(buildings)
        if gateway.building and gateway.building not in buildings:
            yield Problem(
                f"{path}.building",
                f"unknown building {gateway.building!r} "
                f"in compound {compound.id!r} (known: {known})",
            )
        for n, camera in enumerate(gateway.cameras):
            cpath = f"{path}.cameras[{n}]"
            if camera.building and camera.building not in buildings:
                yield Problem(
                    f"{cpath}.building", f"unknown building {camera.building!r} (known: {known})"
                )
            yield from verify_camera(camera, cpath, base)
        # The gateway routes a message to the one sensor on its topic: a second sensor on
        # the same topic would never see a reading.
        topics: dict[str, str] = {}
        for n, sensor in enumerate(gateway.sensors):
            spath = f"{path}.sensors[{n}]"
            if sensor.topic in topics:
                yield Problem(
                    f"{spath}.topic",
                    f"topic {sensor.topic!r} is already used by sensor "
                    f"{topics[sensor.topic]!r} on this gateway",
                )
            else:
                topics[sensor.topic] = sensor.id
            if sensor.building not in buildings:
                yield Problem(
                    f"{spath}.building",
                    f"unknown building {sensor.building!r} "
                    f"in compound {compound.id!r} (known: {known})",
                )
            profile = profiles.get(sensor.profile)
            if profile is None:
                yield Problem(
                    f"{spath}.profile",
                    f"unknown sensor profile {sensor.profile!r} "
                    f"(known: {', '.join(profiles) or 'none'})",
                )
                continue
            fields = {f.name for f in profile.fields}
            rules = sensor.rules if sensor.rules is not None else profile.rules
            where = (
                f"{spath}.rules"
                if sensor.rules is not None
                else f"sensor_profiles[{site.sensor_profiles.index(profile)}].rules"
            )
            for r, rule in enumerate(rules):
                field = getattr(rule, "field", None)
                if field is not None and field not in fields:
                    has = ", ".join(sorted(fields)) or "none"
                    yield Problem(
                        f"{where}[{r}].field",
                        f"profile {profile.id!r} has no field {field!r} (has: {has})",
                    )
                if isinstance(rule, Fault) and profile.faults is None:
                    # fault categories come from the profile's fault code map: without
                    # one the rule can never fire
                    yield Problem(
                        f"{where}[{r}]",
                        "a 'fault' rule needs 'faults:' (a fault "
                        f"code map) in profile {profile.id!r}",
                    )
                if isinstance(rule, Threshold) and rule.below == "gb50974":
                    if profile.kind != "hydrant_pressure":
                        yield Problem(
                            f"{where}[{r}].below",
                            "'gb50974' applies to hydrant_pressure sensors only",
                        )
                    elif sensor.building in buildings:
                        limit = HYDRANT_MIN_STATIC_MPA[buildings[sensor.building].category]
                        _, seen = gb_rules.get(f"{where}[{r}]", (rule, 0.0))
                        gb_rules[f"{where}[{r}]"] = (rule, max(seen, limit))
        yield from _verify_elevator_rules(site, path, gateway, profiles)
    # The limit depends on each sensor's building: clear_at under the highest one would
    # raise and clear in a loop for a value between the two in that building.
    for rpath, (rule, limit) in gb_rules.items():
        if rule.clear_at is not None and rule.clear_at < limit:
            yield Problem(
                f"{rpath}.clear_at",
                f"clear_at {rule.clear_at:g} is below the GB 50974 limit {limit:g} MPa "
                "of a building whose sensor uses this rule; it must be at or above "
                "the limit",
            )


def _verify_elevator_rules(
    site: Site, path: str, gateway: Gateway, profiles: dict[str, SensorProfile]
) -> Iterator[Problem]:
    """An ``ebike_in_elevator`` rule's elevator is an elevator sensor of the same gateway
    with the door field it reads; a controller never commands on a sensor's own topic
    (the gateway would read its own command back as that sensor's reading)."""
    sensors = {s.id: s for s in gateway.sensors}
    topics = {s.topic: s.id for s in gateway.sensors}
    for n, sensor in enumerate(gateway.sensors):
        if sensor.controller is not None and sensor.controller.topic in topics:
            yield Problem(
                f"{path}.sensors[{n}].controller.topic",
                f"topic {sensor.controller.topic!r} is where sensor "
                f"{topics[sensor.controller.topic]!r} publishes its readings; give the "
                "controller the topic the device takes commands on",
            )
    for c, camera in enumerate(gateway.cameras):
        for z, zone in enumerate(camera.zones):
            for r, rule in enumerate(zone.rules):
                if not isinstance(rule, EbikeInElevator) or rule.elevator is None:
                    continue
                rpath = f"{path}.cameras[{c}].zones[{z}].rules[{r}]"
                elevator = sensors.get(rule.elevator)
                if elevator is None:
                    known = ", ".join(sensors) or "none"
                    yield Problem(
                        f"{rpath}.elevator",
                        f"no sensor {rule.elevator!r} on gateway {gateway.id!r} (known: {known})",
                    )
                    continue
                profile = profiles.get(elevator.profile)
                if profile is None:
                    continue  # reported with the sensor
                if profile.kind != "elevator":
                    yield Problem(
                        f"{rpath}.elevator",
                        f"sensor {elevator.id!r} is a {profile.kind!r} sensor, not an elevator",
                    )
                    continue
                if rule.door_field is None:
                    continue
                door = next((f for f in profile.fields if f.name == rule.door_field), None)
                if door is None or door.type != "boolean":
                    have = "has no field" if door is None else "has a number field"
                    yield Problem(
                        f"{rpath}.door_field",
                        f"profile {profile.id!r} {have} {rule.door_field!r}: add a boolean "
                        "field saying the door is open (e.g. {name: door_open, path: "
                        "status.door_open, type: boolean}), or set door_field: null",
                    )


def verify_escalation(site: Site) -> Iterator[Problem]:
    """Every 吹哨 route, at any level, names a known department."""
    departments = {d.id for d in site.departments}
    scopes = [("escalation", site.escalation.whistle)]
    for i, community in enumerate(site.communities):
        if community.escalation and community.escalation.whistle:
            scopes.append((f"communities[{i}].escalation", community.escalation.whistle))
        for j, compound in enumerate(community.compounds):
            if compound.escalation and compound.escalation.whistle:
                scopes.append(
                    (f"communities[{i}].compounds[{j}].escalation", compound.escalation.whistle)
                )
    for path, whistle in scopes:
        for kind, dept in whistle.items():
            if dept not in departments:
                known = ", ".join(sorted(departments)) or "none"
                yield Problem(
                    f"{path}.whistle.{kind}", f"unknown department {dept!r} (known: {known})"
                )


def verify_site(site: Site, base: Path | None = None) -> list[Problem]:
    problems: list[Problem] = []
    problems += verify_unique_ids(site)
    problems += verify_references(site, base)
    problems += verify_escalation(site)
    return problems

"""Playbooks (``configs/playbooks.yaml``): what the cloud does when an alert opens.

A playbook names an alert kind and, optionally, the severities and the place it is for;
it may notify contacts through channels, open a work order for a department with a
deadline, tell the gateway to play a voice warning at the spot (repeated while the
violation stands, silent in quiet hours) and list suggested next steps.

Places inherit down the tree: for an alert in compound ``c`` of community ``k`` the
district's playbook for its kind applies, a community ``k`` playbook for the same kind
overrides the fields it sets, and a compound ``c`` one overrides those again; at each
place, a playbook that names its severities overrides one that does not. A field a more
specific playbook leaves out is inherited, so a compound can change only who is
notified, and a critical alert only its work order's department.

Read strictly, like the site file (:mod:`microbrain.config_files`): an unknown key, a
duplicate id, a contact that names no channel, a department or place the site does not
have — each is an error with its line and path.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, time
from pathlib import Path
from typing import Annotated, Any, Literal
from zoneinfo import ZoneInfo

from pydantic import BeforeValidator, Field, StringConstraints, model_validator

from cloud.response.channels.config import ChannelConfig
from microbrain.config_files import ConfigFileError, Problem, duplicate_ids, read_yaml
from microbrain.protocol import Severity, SeverityName
from microbrain.site import Site
from microbrain.site.common import Duration, Id, Name, Strict

PLAYBOOK_FIELDS = ("notify", "work_order", "announce", "next_steps")


class PlaybookError(ConfigFileError):
    """A playbook file that cannot be used; ``problems`` lists each one with its line."""


_HHMM = re.compile(r"^([01]?\d|2[0-3]):([0-5]\d)$")


def _clock_time(value: Any) -> Any:
    if isinstance(value, str):
        match = _HHMM.match(value.strip())
        if not match:
            raise ValueError(f"{value!r} is not a time of day; write HH:MM, e.g. '22:00'")
        return time(int(match.group(1)), int(match.group(2)))
    if isinstance(value, int):  # YAML 1.1 reads an unquoted 22:00 as sexagesimal 1320
        return time(value // 60 % 24, value % 60)
    return value


ClockTime = Annotated[time, BeforeValidator(_clock_time)]


class QuietHours(Strict):
    """When voice warnings stay silent (local time of the site); may cross midnight."""

    start: ClockTime = Field(description="e.g. '22:00'")
    end: ClockTime = Field(description="e.g. '07:00'")

    def contains(self, moment: datetime, tz: ZoneInfo) -> bool:
        t = moment.astimezone(tz).time()
        if self.start <= self.end:
            return self.start <= t < self.end
        return t >= self.start or t < self.end


class Contact(Strict):
    """Who is told, through which channels; ``user`` is the console user an
    acknowledgement link from this contact's notifications acts as."""

    id: Id
    name: Name
    channels: tuple[Id, ...] = Field(min_length=1)
    user: Annotated[str, StringConstraints(min_length=1, max_length=64)] | None = None
    mobile: Annotated[str, StringConstraints(pattern=r"^\+?[0-9]{5,20}$")] | None = Field(
        default=None, description="@-mentioned by robots that can, texted by SMS"
    )


class WorkOrderStep(Strict):
    department: Id
    deadline: Duration = Field(ge=60, le=30 * 86_400, description="e.g. '2h'")


class AnnounceStep(Strict):
    """A voice warning at the spot, through the gateway (``cmd/announce``)."""

    text: Annotated[str, StringConstraints(min_length=1, max_length=200, strip_whitespace=True)]
    speaker: Id | None = None
    repeat_every: Duration = Field(
        default=300, ge=30, le=86_400, description="again while the violation stands"
    )
    max_times: int = Field(default=6, ge=1, le=100, description="at most this many in all")


class Place(Strict):
    community: Id
    compound: Id | None = None


class Playbook(Strict):
    """What to do for an alert of ``kind`` (at ``severities``, at ``place``)."""

    id: Id
    kind: Id
    severities: tuple[SeverityName, ...] = Field(
        default=tuple(Severity), description="default: every severity"
    )
    place: Place | None = Field(default=None, description="default: the whole district")
    notify: tuple[Id, ...] | None = None
    work_order: WorkOrderStep | None = None
    announce: AnnounceStep | None = None
    next_steps: tuple[Annotated[str, StringConstraints(min_length=1, max_length=300)], ...] = ()

    @property
    def specificity(self) -> tuple[int, bool]:
        """Place depth (0 district, 1 community, 2 compound), then whether it names its
        severities: the more specific overrides what it sets."""
        depth = 0 if self.place is None else (2 if self.place.compound else 1)
        return depth, "severities" in self.model_fields_set


class PlaybookFile(Strict):
    schema_: Literal[1] = Field(alias="schema")
    console_url: Annotated[str, StringConstraints(pattern=r"^https?://\S+$")] = Field(
        default="http://127.0.0.1:8000",
        description="where links in notifications point (the console as staff reach it)",
    )
    ack_link_ttl: Duration = Field(default=24 * 3600, ge=300, le=7 * 86_400)
    quiet_hours: QuietHours | None = None
    channels: tuple[ChannelConfig, ...] = ()
    contacts: tuple[Contact, ...] = ()
    playbooks: tuple[Playbook, ...] = ()

    @model_validator(mode="after")
    def _something_to_do(self) -> PlaybookFile:
        for pb in self.playbooks:
            if not pb.model_fields_set & set(PLAYBOOK_FIELDS):
                raise ValueError(f"playbook {pb.id!r} does nothing: give one of {PLAYBOOK_FIELDS}")
        return self


@dataclass(frozen=True, slots=True)
class Response:
    """The playbook for one alert, its place's overrides merged in."""

    playbooks: tuple[str, ...]  # the ids merged, least specific first
    notify: tuple[Contact, ...]
    work_order: WorkOrderStep | None
    announce: AnnounceStep | None
    next_steps: tuple[str, ...]


class Playbooks:
    """A loaded, checked playbook file; :meth:`for_alert` answers what to do."""

    def __init__(self, book: PlaybookFile, *, timezone: str = "Asia/Shanghai") -> None:
        self.book = book
        self.tz = ZoneInfo(timezone)
        self.contacts = {c.id: c for c in book.contacts}

    def for_alert(
        self, kind: str, severity: Severity, community: str, compound: str
    ) -> Response | None:
        """The merged response for an alert, or None when no playbook covers it."""
        matches = sorted(
            (
                pb
                for pb in self.book.playbooks
                if pb.kind == kind
                and severity in pb.severities
                and (
                    pb.place is None
                    or (pb.place.community == community and pb.place.compound in (None, compound))
                )
            ),
            key=lambda pb: pb.specificity,
        )
        if not matches:
            return None
        merged: dict[str, Any] = {}
        for pb in matches:
            for name in PLAYBOOK_FIELDS:
                if name in pb.model_fields_set:
                    merged[name] = getattr(pb, name)
        return Response(
            playbooks=tuple(pb.id for pb in matches),
            notify=tuple(self.contacts[c] for c in merged.get("notify") or ()),
            work_order=merged.get("work_order"),
            announce=merged.get("announce"),
            next_steps=tuple(merged.get("next_steps") or ()),
        )

    def quiet(self, moment: datetime) -> bool:
        hours = self.book.quiet_hours
        return hours is not None and hours.contains(moment, self.tz)


def verify_playbooks(book: PlaybookFile, site: Site | None) -> Iterator[Problem]:
    """References that must resolve: channels, contacts, and (with a site) departments
    and places. Two playbooks for the same kind, place and severity would leave the
    merge order to chance, so that is an error too."""
    yield from duplicate_ids(
        ((f"channels[{i}]", c.id) for i, c in enumerate(book.channels)), "channel"
    )
    yield from duplicate_ids(
        ((f"contacts[{i}]", c.id) for i, c in enumerate(book.contacts)), "contact"
    )
    yield from duplicate_ids(
        ((f"playbooks[{i}]", p.id) for i, p in enumerate(book.playbooks)), "playbook"
    )
    channels = {c.id for c in book.channels}
    contacts = {c.id for c in book.contacts}
    for i, contact in enumerate(book.contacts):
        for j, ch in enumerate(contact.channels):
            if ch not in channels:
                yield Problem(
                    f"contacts[{i}].channels[{j}]",
                    f"no channel {ch!r} (declared: {', '.join(sorted(channels)) or 'none'})",
                )
    departments = {d.id for d in site.departments} if site else None
    places = (
        {(c.id, None) for c in site.communities}
        | {(c.id, k.id) for c in site.communities for k in c.compounds}
        if site
        else None
    )
    seen: dict[tuple[str, str | None, str | None, Severity, bool], str] = {}
    for i, pb in enumerate(book.playbooks):
        for j, who in enumerate(pb.notify or ()):
            if who not in contacts:
                yield Problem(
                    f"playbooks[{i}].notify[{j}]",
                    f"no contact {who!r} (declared: {', '.join(sorted(contacts)) or 'none'})",
                )
        if (
            departments is not None
            and pb.work_order
            and pb.work_order.department not in departments
        ):
            yield Problem(
                f"playbooks[{i}].work_order.department",
                f"the site has no department {pb.work_order.department!r} "
                f"(it has: {', '.join(sorted(departments))})",
            )
        if (
            places is not None
            and pb.place
            and (pb.place.community, pb.place.compound) not in places
        ):
            where = pb.place.community + (f"/{pb.place.compound}" if pb.place.compound else "")
            yield Problem(f"playbooks[{i}].place", f"the site has no place {where!r}")
        for sev in pb.severities:
            key = (
                pb.kind,
                pb.place.community if pb.place else None,
                pb.place.compound if pb.place else None,
                sev,
                pb.specificity[1],
            )
            if key in seen:
                yield Problem(
                    f"playbooks[{i}].severities",
                    f"{sev.name.lower()} {pb.kind} here is already covered by playbook "
                    f"{seen[key]!r}; give each severity at one place one playbook",
                )
            else:
                seen[key] = pb.id


def load_playbooks(path: str | Path, site: Site | None = None) -> Playbooks:
    """Read, validate and cross-check a playbook file (against ``site`` when given);
    raise :class:`PlaybookError` naming each problem's line and path.

    >>> site = load_site("configs/demo/site.yaml")  # doctest: +SKIP
    >>> book = load_playbooks("configs/playbooks.yaml", site)  # doctest: +SKIP
    """
    doc = read_yaml(path, error=PlaybookError)
    book = doc.validate(PlaybookFile, error=PlaybookError)
    problems = list(verify_playbooks(book, site))
    if problems:
        raise PlaybookError(doc.source, doc.located(problems))
    return Playbooks(book, timezone=site.district.timezone if site else "Asia/Shanghai")

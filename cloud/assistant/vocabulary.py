"""What the assistant knows the words of: the user's places, read from the database with
the forms people say them in, and the topics of ``configs/assistant.yaml``.

A compound called 西苑小区 is also 西苑; a building 3号楼 is also 3栋, 3幢, 3号, 三号楼
and 3号栋. One alias may name several places (every compound has a 3号楼): a question
about 3号楼 counts all of them unless a compound is named as well. Only the user's own
area is loaded, so a name outside it is simply not understood, never counted.
"""

from __future__ import annotations

import re
from collections import defaultdict
from dataclasses import dataclass, field

from sqlalchemy import select
from sqlalchemy.orm import Session

from cloud.analysis.queries import Place
from cloud.assistant.config import AssistantConfig, Topic, normalise
from cloud.db import models as m

# suffixes a place is also called without (西苑小区 → 西苑), longest first
COMPOUND_SUFFIXES = ("小区", "花园", "家园", "公寓", "新村", "园区")
COMMUNITY_SUFFIXES = ("社区", "街道", "居委会", "村")
DIGITS = "零一二三四五六七八九"
_BUILDING_NUMBER = re.compile(r"^(\d{1,3})\s*(?:号楼|号栋|号|栋|幢|座|楼)$")


def chinese_number(n: int) -> str:
    """1-99 in Chinese digits: 3 → 三, 12 → 十二, 20 → 二十."""
    if n < 10:
        return DIGITS[n]
    tens, ones = divmod(n, 10)
    return ("" if tens == 1 else DIGITS[tens]) + "十" + (DIGITS[ones] if ones else "")


def building_forms(name: str) -> list[str]:
    """The ways a building is called: 3号楼 → 3号楼, 3栋, 3幢, 3号, 3号栋, 三号楼, 三栋."""
    forms = [name]
    match = _BUILDING_NUMBER.match(name.strip())
    if match:
        n = int(match.group(1))
        numbers = [str(n)] + ([chinese_number(n)] if n < 100 else [])
        for num in numbers:
            forms += [f"{num}号楼", f"{num}栋", f"{num}幢", f"{num}号栋", f"{num}座"]
        forms.append(f"{n}号")
    return list(dict.fromkeys(forms))


def _stripped(name: str, suffixes: tuple[str, ...]) -> list[str]:
    out = [name]
    for suffix in suffixes:
        if name.endswith(suffix) and len(name) - len(suffix) >= 2:
            out.append(name[: -len(suffix)])
    return out


@dataclass(frozen=True, slots=True)
class PlaceEntry:
    """A place the user may name: its ids, level and the name shown for it."""

    place: Place
    level: str  # community | compound | building
    name: str  # 西苑小区 3号楼


@dataclass
class Vocabulary:
    """Alias → the places it names; word → topic."""

    places: dict[str, list[PlaceEntry]] = field(default_factory=dict)
    topics: dict[str, Topic] = field(default_factory=dict)
    scope_name: str = "全部辖区"

    def words(self) -> list[str]:
        """Every word the tokenizer should keep whole."""
        return [*self.places, *self.topics]


def topic_words(config: AssistantConfig) -> dict[str, Topic]:
    return {normalise(w): t for t in config.topics for w in t.words}


def load_vocabulary(session: Session, user: m.User, config: AssistantConfig) -> Vocabulary:
    """The places of the user's area (three small queries) with their aliases."""
    # alias → its places, in order and once each (a dict as an ordered set)
    places: dict[str, dict[PlaceEntry, None]] = defaultdict(dict)

    def add(alias: str, entry: PlaceEntry) -> None:
        places[normalise(alias)][entry] = None

    community_names: dict[str, str] = {}
    q_comm = select(m.Community.id, m.Community.name)
    if user.community is not None:
        q_comm = q_comm.where(m.Community.id == user.community)
    for cid, name in session.execute(q_comm):
        community_names[cid] = name
        if user.compound is None:  # a compound's user asks about their compound
            entry = PlaceEntry(Place(cid), "community", name)
            for alias in _stripped(name, COMMUNITY_SUFFIXES):
                add(alias, entry)
    compound_names: dict[tuple[str, str], str] = {}
    q_comp = select(m.Compound.community, m.Compound.id, m.Compound.name)
    q_bld = select(m.Building.community, m.Building.compound, m.Building.id, m.Building.name)
    # compounds and buildings name their own id in ``id``: the scope by hand
    if user.community is not None:
        q_comp = q_comp.where(m.Compound.community == user.community)
        q_bld = q_bld.where(m.Building.community == user.community)
    if user.compound is not None:
        q_comp = q_comp.where(m.Compound.id == user.compound)
        q_bld = q_bld.where(m.Building.compound == user.compound)
    if user.building is not None:
        q_bld = q_bld.where(m.Building.id == user.building)
    for cid, kid, name in session.execute(q_comp):
        compound_names[(cid, kid)] = name
        if user.building is None:
            entry = PlaceEntry(Place(cid, kid), "compound", name)
            for alias in _stripped(name, COMPOUND_SUFFIXES):
                add(alias, entry)
    for cid, kid, bid, name in session.execute(q_bld):
        compound = compound_names.get((cid, kid), kid)
        entry = PlaceEntry(Place(cid, kid, bid), "building", f"{compound} {name}")
        for alias in building_forms(name):
            add(alias, entry)
    scope = "全部辖区"
    if user.compound is not None and user.community is not None:
        scope = compound_names.get((user.community, user.compound), user.compound)
    elif user.community is not None:
        scope = community_names.get(user.community, user.community)
    return Vocabulary({k: list(v) for k, v in places.items()}, topic_words(config), scope)

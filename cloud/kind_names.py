"""Names of alert kinds the cloud derives from others, for catalogues that list the base.

Early warning raises ``<condition>_warning`` (a trend heading for the condition's
limit, cloud.warning.service) and ``<kind>_rate_high`` (more of a kind than the place's
baseline, cloud.warning.baseline): a catalogue names the condition and the suffix once,
not every combination a site's rules can make.
"""

from __future__ import annotations

SUFFIXES = ("_warning", "_rate_high")


def split_derived(kind: str) -> tuple[str, str] | None:
    """``("hydrant_pressure_low", "warning")`` for ``hydrant_pressure_low_warning``; None
    for a kind that is not derived."""
    for suffix in SUFFIXES:
        if kind.endswith(suffix) and len(kind) > len(suffix):
            return kind[: -len(suffix)], suffix[1:]
    return None


def kind_name(kind: str, names: dict[str, str], suffix_names: dict[str, str]) -> str:
    """``names[kind]``; else, for a derived kind whose base is named, the base's name with
    the suffix's (``消火栓水压低`` + ``预警``); else the kind itself."""
    if kind in names:
        return names[kind]
    derived = split_derived(kind)
    if derived is not None and derived[0] in names and derived[1] in suffix_names:
        return names[derived[0]] + suffix_names[derived[1]]
    return kind

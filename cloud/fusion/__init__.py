"""Fusion (告警关联): alerts related in place and time are linked, and may be raised.

``rules`` is the rule file (``configs/fusion.yaml``, strict, with lines) and the pure
matching; ``service`` the pass over the live alerts that links each matching pair once
(a unique pair, a savepoint), writes the link on both alerts' logs and raises their
severity where the rule says; ``queries`` the reads for the API and the alert's page.
Beside escalation, response and warning in the layers: it writes through
:mod:`cloud.alerts`' audit and policy.
"""

from __future__ import annotations

from cloud.fusion.queries import Linked, links_of
from cloud.fusion.rules import (
    SHIPPED_RULES,
    FusionRule,
    FusionRules,
    FusionRulesError,
    Seen,
    first_rule,
    load_rules,
)
from cloud.fusion.service import FusionReport, FusionStep, Link, fuse_alerts, link_pair, run

__all__ = [
    "SHIPPED_RULES",
    "FusionReport",
    "FusionRule",
    "FusionRules",
    "FusionRulesError",
    "FusionStep",
    "Link",
    "Linked",
    "Seen",
    "first_rule",
    "fuse_alerts",
    "link_pair",
    "links_of",
    "load_rules",
    "run",
]

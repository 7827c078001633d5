"""Early warning (预警监测): trends of sensor readings towards their limits.

``trend`` is the pure fit (Theil–Sen with its interval, one sensor or thousands at once;
the crossing times), ``config`` the rules (hydrant pressure by default, GB 50974; any
numeric kind from ``configs/warning.yaml``), ``rollup`` the hourly medians of every
numeric reading kept up to date from a watermark, ``service`` the evaluation over them
that raises and clears ``<kind>_trend`` alerts, with hysteresis. Beside escalation and
response in the layers: it folds events through :mod:`cloud.alerts`.
"""

from __future__ import annotations

from cloud.warning.config import (
    DEFAULT_RULES,
    HYDRANT_RULE,
    TrendRule,
    TrendRules,
    TrendRulesError,
    load_rules,
)
from cloud.warning.rollup import RollupReport, catch_up
from cloud.warning.rollup import prune as prune_rollups
from cloud.warning.service import Assessment, TrendReport, evaluate, run

__all__ = [
    "DEFAULT_RULES",
    "HYDRANT_RULE",
    "Assessment",
    "RollupReport",
    "TrendReport",
    "TrendRule",
    "TrendRules",
    "TrendRulesError",
    "catch_up",
    "evaluate",
    "load_rules",
    "prune_rollups",
    "run",
]

"""Early warning (预警监测): trends of sensor readings towards their limits.

``trend`` is the pure fit (Theil–Sen with its interval, the crossing times), ``config``
the rules (hydrant pressure by default, GB 50974), ``service`` the evaluation over the
stored readings that raises and clears ``<kind>_trend`` alerts. Beside escalation and
response in the layers: it folds events through :mod:`cloud.alerts`.
"""

from __future__ import annotations

from cloud.warning.config import DEFAULT_RULES, HYDRANT_RULE, TrendRule, TrendRules
from cloud.warning.service import Assessment, TrendReport, evaluate, run

__all__ = [
    "DEFAULT_RULES",
    "HYDRANT_RULE",
    "Assessment",
    "TrendReport",
    "TrendRule",
    "TrendRules",
    "evaluate",
    "run",
]

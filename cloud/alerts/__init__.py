"""Alerts: events folded by key, a lifecycle, and an audit of every change.

Below :mod:`cloud.work_orders` and :mod:`cloud.escalation` (see the import-linter
contracts in pyproject.toml): alerts import neither.
"""

from cloud.alerts.lifecycle import ACTIVE, Action, AlertStatus
from cloud.alerts.service import (
    acknowledge,
    alert_key,
    close,
    comment,
    fold_event,
    get_alert,
    reopen,
    resolve,
)

__all__ = [
    "ACTIVE",
    "Action",
    "AlertStatus",
    "acknowledge",
    "alert_key",
    "close",
    "comment",
    "fold_event",
    "get_alert",
    "reopen",
    "resolve",
]

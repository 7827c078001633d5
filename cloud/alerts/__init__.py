"""Alerts: events folded by key, a lifecycle, and an audit of every change.

Below :mod:`cloud.work_orders` and :mod:`cloud.escalation` (see the import-linter
contracts in pyproject.toml): alerts import neither.
"""

from cloud.alerts.lifecycle import ACTIVE, Action, AlertStatus
from cloud.alerts.queries import (
    AlertCounts,
    AlertFilter,
    Similar,
    counts,
    list_alerts,
    similar,
    timeline,
)
from cloud.alerts.service import (
    MAX_BULK,
    Outcome,
    acknowledge,
    alert_key,
    bulk_acknowledge,
    close,
    comment,
    fold_event,
    get_alert,
    live_alert,
    reopen,
    resolve,
    scoped_alert,
    store_cloud_event,
)
from cloud.alerts.verdicts import Verdict, bulk_verdict, give_verdict

__all__ = [
    "ACTIVE",
    "MAX_BULK",
    "Action",
    "AlertCounts",
    "AlertFilter",
    "AlertStatus",
    "Outcome",
    "Similar",
    "Verdict",
    "acknowledge",
    "alert_key",
    "bulk_acknowledge",
    "bulk_verdict",
    "close",
    "comment",
    "counts",
    "fold_event",
    "get_alert",
    "give_verdict",
    "list_alerts",
    "live_alert",
    "reopen",
    "resolve",
    "scoped_alert",
    "similar",
    "store_cloud_event",
    "timeline",
]

"""Alerts: events folded by key, a lifecycle, and an audit of every change."""

from cloud.alerts.service import (
    ACTIVE,
    AlertStatus,
    acknowledge,
    alert_key,
    close,
    comment,
    dispatch,
    fold_event,
    get_alert,
    reopen,
    resolve,
)

__all__ = [
    "ACTIVE", "AlertStatus", "acknowledge", "alert_key", "close", "comment", "dispatch",
    "fold_event", "get_alert", "reopen", "resolve",
]

"""Who may do what: one table from role to allowed actions, checked in one place.

Scope (which places a user sees) is the other half of access and lives in
:mod:`cloud.auth`; this module only says what a role may do anywhere in its subtree.
The API checks an action with the ``allowed(Action.X)`` dependency (cloud/api/deps.py)
before a route runs, so a refused role gets the same 403 whatever id it names.
"""

from __future__ import annotations

from collections.abc import Mapping
from enum import StrEnum

from cloud.db import models as m
from cloud.errors import Forbidden


class Role(StrEnum):
    DUTY = "duty"  # works alerts and work orders in their subtree
    SUPERVISOR = "supervisor"  # the same, and closes alerts
    ENGINEER = "engineer"  # reads; manages gateways (their broker credentials)
    ADMIN = "admin"  # everything, and manages users


class Action(StrEnum):
    """Everything beyond reading one's own subtree (which every role may)."""

    ACKNOWLEDGE_ALERT = "acknowledge alerts"
    DISPATCH_ALERT = "dispatch alerts"
    RESOLVE_ALERT = "resolve alerts"
    CLOSE_ALERT = "close alerts"
    COMMENT_ALERT = "comment on alerts"
    GIVE_VERDICT = "give verdicts on alerts"
    ESCALATE_ALERT = "escalate alerts"
    WORK_ON_ORDERS = "work on orders"
    READ_DEAD_LETTERS = "read dead letters"
    MANAGE_GATEWAYS = "manage gateway credentials"
    EXPORT_BROKER_FILES = "export broker files"
    LIST_USERS = "list users"
    MANAGE_USERS = "manage users"
    WORK_ON_APPEALS = "work on residents' appeals"
    IMPORT_APPEALS = "import 12345 hotline orders"
    CLOSE_GOVERNANCE_ITEM = "close governance items (hotspots)"
    # a question reads only, but comes as a POST (a body, not a URL in access logs)
    ASK_ASSISTANT = "ask the question box"
    # register models, roll them out to gateways, abort and roll back (cloud/model_registry)
    MANAGE_MODELS = "manage models and rollouts"


_WORKS_ALERTS = frozenset(
    {
        Action.ACKNOWLEDGE_ALERT,
        Action.DISPATCH_ALERT,
        Action.RESOLVE_ALERT,
        Action.COMMENT_ALERT,
        Action.GIVE_VERDICT,
        Action.ESCALATE_ALERT,
        Action.WORK_ON_ORDERS,
    }
)

ROLE_ACTIONS: Mapping[Role, frozenset[Action]] = {
    Role.DUTY: _WORKS_ALERTS | {Action.WORK_ON_APPEALS, Action.ASK_ASSISTANT},
    Role.SUPERVISOR: _WORKS_ALERTS
    | {
        Action.CLOSE_ALERT,
        Action.WORK_ON_APPEALS,
        Action.IMPORT_APPEALS,
        Action.CLOSE_GOVERNANCE_ITEM,
        Action.ASK_ASSISTANT,
    },
    Role.ENGINEER: frozenset(
        {
            Action.READ_DEAD_LETTERS,
            Action.MANAGE_GATEWAYS,
            Action.ASK_ASSISTANT,
            Action.MANAGE_MODELS,
        }
    ),
    Role.ADMIN: frozenset(Action),
}

# these cover things that have no place (a dead letter from an unregistered gateway, the
# broker's files for every gateway), so only district-level users may do them
DISTRICT_ONLY: frozenset[Action] = frozenset({Action.READ_DEAD_LETTERS, Action.EXPORT_BROKER_FILES})


def allows(role: Role | str, action: Action) -> bool:
    """Whether ``role`` may do ``action`` (an unknown role may do nothing)."""
    try:
        return action in ROLE_ACTIONS[Role(role)]
    except ValueError:
        return False


def require(user: m.User, action: Action) -> None:
    """Raise Forbidden unless the user's role (and, for district-wide actions, their
    node) allows ``action``."""
    if not allows(user.role, action):
        raise Forbidden(f"role {user.role!r} may not {action.value}")
    if action in DISTRICT_ONLY and user.community is not None:
        raise Forbidden(
            f"only district-level users may {action.value}; ask a district "
            f"{' or '.join(r.value for r in Role if allows(r, action))}"
        )


def may_grant(granter: Role | str, role: Role | str) -> bool:
    """A role is no higher than another when it may do nothing the other may not."""
    return ROLE_ACTIONS[Role(role)] <= ROLE_ACTIONS[Role(granter)]

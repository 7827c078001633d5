"""Domain errors: the services raise these, never HTTP errors, so workers reuse them."""

from __future__ import annotations


class DomainError(Exception):
    """Base of the errors a service raises for a request it cannot honour."""


class NotFound(DomainError):
    pass


class Conflict(DomainError):
    """The thing is not in a state that allows this action (the API answers 409)."""


class Forbidden(DomainError):
    """The user may not do this, or not here (the API answers 403)."""


class Invalid(DomainError):
    """The request's content is wrong (a hash that does not match; the API answers 422)."""

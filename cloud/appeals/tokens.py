"""Tickets, access keys and contact keys.

* A ticket (``A`` + the day + 8 random characters of Crockford's base32, e.g.
  ``A261207-7KQ2M9XD``) is what a resident reads out on the phone: 40 random bits, so
  tickets cannot be enumerated, but a ticket alone opens nothing.
* The access key (returned once, at intake, in the resident's private link) opens the
  appeal; only its sha256 is kept.
* The contact key is an HMAC of the normalised phone under the cloud's secret: the rate
  limit's key, and the other way to open one's appeal (ticket + phone), without a table
  of phone hashes anyone could reverse by trying every number.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from datetime import datetime

from cloud.errors import Invalid

_ALPHABET = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"  # Crockford: no I, L, O, U
TICKET = re.compile(r"^A[0-9]{6}-[0-9A-HJKMNP-TV-Z]{8}$")
# a mainland mobile or a landline (area code, optional dashes/spaces), +86 allowed
_PHONE = re.compile(r"^(?:\+?86)?(1[3-9][0-9]{9}|0[1-9][0-9]{1,2}[0-9]{7,8})$")


def new_ticket(now: datetime) -> str:
    tail = "".join(secrets.choice(_ALPHABET) for _ in range(8))
    return f"A{now:%y%m%d}-{tail}"


def new_access_key() -> str:
    return secrets.token_urlsafe(18)


def digest(value: str) -> str:
    return hashlib.sha256(value.encode()).hexdigest()


def normalise_phone(phone: str) -> str:
    """The phone as digits (a mobile's 11, or a landline with its area code); Invalid
    for anything else."""
    digits = re.sub(r"[\s()-]", "", phone)
    found = _PHONE.match(digits)
    if found is None:
        raise Invalid(
            "phone: give a mainland mobile (11 digits, 1…) or a landline with its area code"
        )
    return found.group(1)


def contact_key(secret: str, phone: str) -> str:
    """The HMAC-SHA256 (hex) of a normalised phone under ``secret``."""
    return hmac.new(secret.encode(), f"contact:{phone}".encode(), hashlib.sha256).hexdigest()


def same(a: str | None, b: str) -> bool:
    return a is not None and hmac.compare_digest(a, b)

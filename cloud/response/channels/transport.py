"""HTTP for the robots and the SMS gateway: the one request shape each module builds, and
the one place that turns every way a post can fail into a :class:`DeliveryError`.

A message names the vendor, the host and what went wrong, never the URL's path or query
(a robot's key or token, a signature) nor a secret.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from types import TracebackType
from typing import Literal, Self
from urllib.parse import parse_qsl, urlsplit

import httpx

from cloud.response.channels.base import DeliveryError

log = logging.getLogger(__name__)

JSON_UTF8 = "application/json; charset=utf-8"
_SNIPPET = 200  # characters of an error answer worth quoting to an operator


@dataclass(frozen=True, slots=True)
class OutboundRequest:
    """What a channel sends: built by a pure function, posted by :meth:`HttpChannel.post`."""

    method: Literal["GET", "POST"]
    url: str
    headers: Mapping[str, str] = field(default_factory=dict)
    body: bytes = b""

    @property
    def target(self) -> str:
        """``scheme://host:port``: where it goes, safe to show (the path may hold a token)."""
        parts = urlsplit(self.url)
        return f"{parts.scheme}://{parts.netloc.rpartition('@')[2]}"


def encode_json(payload: Mapping[str, object]) -> bytes:
    """Compact UTF-8 JSON (Chinese as written: the robots count the bytes)."""
    return json.dumps(payload, ensure_ascii=False, separators=(",", ":")).encode()


def _sensitive(request: OutboundRequest, secrets: Iterable[str]) -> list[str]:
    """What must not appear in a message: the URL and any piece of it that may be a key or
    token (robots' keys and tokens are 32 characters or more; 8 spares common words)."""
    parts = urlsplit(request.url)
    pieces = [value for _, value in parse_qsl(parts.query)] + parts.path.split("/")
    words = {request.url, parts.query, *(piece for piece in pieces if len(piece) >= 8)}
    words |= {secret for secret in secrets if len(secret) >= 4}
    # longest first, so a URL is replaced whole before its pieces
    return sorted(words - {""}, key=len, reverse=True)


def redact(text: str, sensitive: Iterable[str]) -> str:
    for word in sensitive:
        text = text.replace(word, "***")
    return text


class HttpChannel:
    """What the HTTP channels share: identity, budget, one client and :meth:`post`."""

    vendor: str = "HTTP endpoint"

    def __init__(self, channel_id: str, budget_per_minute: int, timeout_s: float) -> None:
        self.id = channel_id
        self.budget_per_minute = budget_per_minute
        self.timeout_s = timeout_s
        # no redirects: a robot never redirects, and following one would resend the body
        # (and the signed URL) to wherever it points
        self._client = httpx.Client(timeout=timeout_s, follow_redirects=False)

    def close(self) -> None:
        self._client.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def post(
        self,
        request: OutboundRequest,
        *,
        secrets: Iterable[str] = (),
        ok_status: tuple[int, int] = (200, 299),
    ) -> httpx.Response:
        """Send ``request``; the answer if its status is in ``ok_status``, else
        :class:`DeliveryError`. ``secrets`` are kept out of every message."""
        sensitive = _sensitive(request, secrets)
        where = f"the {self.vendor} at {request.target}"
        try:
            response = self._client.request(
                request.method, request.url, headers=dict(request.headers), content=request.body
            )
        except httpx.TimeoutException as exc:
            raise DeliveryError(
                f"no answer from {where} within {self.timeout_s:g} s ({type(exc).__name__})"
            ) from None
        except (httpx.HTTPError, httpx.InvalidURL) as exc:
            detail = redact(str(exc), sensitive) or type(exc).__name__
            raise DeliveryError(f"could not reach {where}: {detail}") from None
        low, high = ok_status
        if not low <= response.status_code <= high:
            snippet = redact(response.text[:_SNIPPET], sensitive).strip()
            raise DeliveryError(
                f"HTTP {response.status_code} from {where}" + (f": {snippet}" if snippet else "")
            )
        log.debug("channel %s: %s answered %s", self.id, request.target, response.status_code)
        return response

    def scrub(self, request: OutboundRequest, text: str, secrets: Iterable[str] = ()) -> str:
        """``text`` (a vendor's error message, say) without the request's key, token or sign."""
        return redact(text, _sensitive(request, secrets))

    def post_for_json(
        self, request: OutboundRequest, *, secrets: Iterable[str] = ()
    ) -> Mapping[str, object]:
        """:meth:`post`, and the answer's JSON object (the robots report errors in it)."""
        response = self.post(request, secrets=secrets)
        try:
            answer = response.json()
        except ValueError:
            answer = None
        if not isinstance(answer, dict):
            snippet = redact(response.text[:_SNIPPET], _sensitive(request, secrets)).strip()
            raise DeliveryError(
                f"the {self.vendor} at {request.target} answered HTTP {response.status_code} "
                f"without a JSON object: {snippet!r}"
            )
        return answer

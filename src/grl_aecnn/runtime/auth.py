"""Request authentication: a bearer token or an HMAC-SHA256 signature (AuthConfig.scheme)."""

from __future__ import annotations

import hashlib
import hmac
import re
import time
from collections.abc import Mapping

from grl_aecnn.errors import GrlAecnnError

HMAC_SCHEME = "GRL-HMAC-SHA256"
# Request headers that change what the server does with a body: an HMAC signature covers their values
# (absent: empty), so a replayed request cannot carry another deadline or task id.
SIGNED_HEADERS = ("X-Task-Id", "X-Deadline")
_HMAC_HEADER = re.compile(rf"^{HMAC_SCHEME} ts=(?P<ts>[0-9]+(?:\.[0-9]+)?), sig=(?P<sig>[0-9a-f]{{64}})$")


class AuthError(GrlAecnnError):
    """A request carries no credentials, or wrong ones (HTTP 401)."""


def _signature(secret: str, ts: str, method: str, path: str, body: bytes, headers: Mapping[str, str] | None) -> str:
    signed = tuple((headers or {}).get(name, "") for name in SIGNED_HEADERS)
    message = "\n".join((ts, method.upper(), path, hashlib.sha256(body).hexdigest(), *signed))
    return hmac.new(secret.encode(), message.encode("utf-8", "surrogateescape"), hashlib.sha256).hexdigest()


def authorization(scheme: str, secret: str, method: str, path: str, body: bytes, now: float | None = None, *,
                  headers: Mapping[str, str] | None = None) -> str:
    """The Authorization header value for one request that carries `headers` (SIGNED_HEADERS are signed)."""
    if scheme == "bearer":
        return f"Bearer {secret}"
    ts = f"{time.time() if now is None else now:.3f}"
    return f"{HMAC_SCHEME} ts={ts}, sig={_signature(secret, ts, method, path, body, headers)}"


def verify(scheme: str, secret: str, header: str | None, method: str, path: str, body: bytes,
           max_skew_s: float, now: float | None = None, *, headers: Mapping[str, str] | None = None) -> None:
    """AuthError unless `header` authorizes this request with these `headers`. Comparisons are constant-time."""
    if not header:
        raise AuthError("missing Authorization header")
    if scheme == "bearer":
        # aiohttp keeps undecodable header bytes as surrogates; they can never match, but must not crash.
        token = header[7:].encode("utf-8", "surrogateescape")
        if not header.startswith("Bearer ") or not hmac.compare_digest(token, secret.encode()):
            raise AuthError("invalid bearer token")
        return
    match = _HMAC_HEADER.match(header)
    if match is None:
        raise AuthError(f"Authorization must be '{HMAC_SCHEME} ts=<unix seconds>, sig=<64 hex>'")
    # The timestamp bounds how long a captured request can be replayed.
    if abs((time.time() if now is None else now) - float(match["ts"])) > max_skew_s:
        raise AuthError(f"signature timestamp is more than {max_skew_s} s away from the server clock")
    if not hmac.compare_digest(match["sig"], _signature(secret, match["ts"], method, path, body, headers)):
        raise AuthError("invalid signature")

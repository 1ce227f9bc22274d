"""The server's guards: hashed bearer tokens, the browser Origin allowlist, rate limits.

- Tokens are stored only as SHA-256 hex digests (`tokens.txt`: one `client-name digest` per
  line), so a leaked file grants nothing; `new_token` prints a token once and returns the line
  to store. Looking a digest up in a dict is safe against timing probes: the attacker does not
  control the digest's bytes the way they control a raw token's.
- An `Origin` header (sent by browsers) must be on the allowlist; clients that send none
  (curl, SDKs) pass this check and still need a token.
- Rate limits are token buckets per client (its token's name, or its address without auth):
  `rate` requests per second on average, bursts up to `burst`.
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass, field
from pathlib import Path

from ...errors import AgentError, ErrorCode
from ...ports import Clock, LoopClock

TOKEN_PREFIX = "wa_"


def digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def new_token(client: str) -> tuple[str, str]:
    """A fresh token and the `client digest` line that stores it."""
    if not client or any(c.isspace() for c in client):
        raise ValueError("a client name is one word")
    token = TOKEN_PREFIX + secrets.token_urlsafe(32)
    return token, f"{client} {digest(token)}"


@dataclass(slots=True)
class TokenBook:
    """Client names by token digest; empty means authentication is off."""

    clients: dict[str, str] = field(default_factory=dict)

    @classmethod
    def load(cls, path: Path) -> TokenBook:
        book = cls()
        for n, raw in enumerate(path.read_text().splitlines(), 1):
            line = raw.strip()
            if not line or line.startswith("#"):
                continue
            parts = line.split()
            if len(parts) != 2 or len(parts[1]) != 64:
                raise ValueError(f"{path}:{n}: expected 'client sha256-hex-digest'")
            book.clients[parts[1].lower()] = parts[0]
        return book

    @property
    def enabled(self) -> bool:
        return bool(self.clients)

    def client(self, token: str | None) -> str:
        """The client a token belongs to; raises `unauthorized` for a missing or wrong one."""
        if token is None:
            raise AgentError(ErrorCode.UNAUTHORIZED, "a bearer token is required")
        name = self.clients.get(digest(token))
        if name is None:
            raise AgentError(ErrorCode.UNAUTHORIZED, "the bearer token is not valid")
        return name


def bearer(header: str | None) -> str | None:
    if header is None:
        return None
    scheme, _, value = header.partition(" ")
    return value.strip() or None if scheme.lower() == "bearer" else None


@dataclass(frozen=True, slots=True)
class OriginPolicy:
    """Allowed browser origins (`*` allows any)."""

    allowed: frozenset[str] = frozenset()

    def check(self, origin: str | None) -> None:
        if origin is None or "*" in self.allowed or origin.rstrip("/") in self.allowed:
            return
        raise AgentError(ErrorCode.FORBIDDEN_ORIGIN,
                         f"origin {origin} may not use this server; ask its operator to add it "
                         "with --allow-origin")


class RateLimiter:
    """Token buckets per client key; see the module docstring."""

    def __init__(self, rate: float, burst: int, clock: Clock | None = None,
                 max_clients: int = 100_000) -> None:
        self.rate = rate
        self.burst = burst
        self._clock = clock or LoopClock()
        self._buckets: dict[str, tuple[float, float]] = {}
        self._max = max_clients

    def take(self, client: str) -> None:
        """Spend one request for `client`, or raise `rate_limited`."""
        if self.rate <= 0:
            return
        now = self._clock.monotonic()
        tokens, then = self._buckets.get(client, (float(self.burst), now))
        tokens = min(float(self.burst), tokens + (now - then) * self.rate)
        if tokens < 1:
            wait = (1 - tokens) / self.rate
            raise AgentError(ErrorCode.RATE_LIMITED,
                             f"rate limit of {self.rate:g}/s exceeded; retry in {wait:.1f} s")
        if len(self._buckets) >= self._max and client not in self._buckets:
            self._buckets.clear()  # bounded memory under a flood of distinct clients
        self._buckets[client] = (tokens - 1, now)

"""The server's guards as pure logic: hashed tokens, the Origin allowlist, per-client rate limits."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from wasmagent.errors import AgentError, ErrorCode
from wasmagent.hosts.server.security import (
    TOKEN_PREFIX,
    OriginPolicy,
    RateLimiter,
    TokenBook,
    bearer,
    digest,
    new_token,
)

from .test_context import FakeClock


def test_digest_is_sha256_hex() -> None:
    assert digest("abc") == hashlib.sha256(b"abc").hexdigest()
    assert len(digest("wa_x")) == 64


def test_new_tokens_are_fresh_and_only_their_digest_is_stored() -> None:
    token, line = new_token("alice")
    other, _ = new_token("alice")
    assert token.startswith(TOKEN_PREFIX)
    assert len(token) > 40
    assert token != other
    assert line == f"alice {digest(token)}"
    assert token not in line
    for bad in ("", "two words", "tab\tname"):
        with pytest.raises(ValueError, match="one word"):
            new_token(bad)


def test_token_book_maps_tokens_to_clients(tmp_path: Path) -> None:
    alice, alice_line = new_token("alice")
    bob, bob_line = new_token("bob")
    path = tmp_path / "tokens.txt"
    path.write_text(f"# clients\n\n{alice_line}\n  {bob_line.upper().replace('BOB', 'bob')}  \n")
    book = TokenBook.load(path)
    assert book.enabled
    assert book.client(alice) == "alice"
    assert book.client(bob) == "bob"  # upper-case hex digests are accepted too
    for token in (None, "", "wa_wrong", alice + "x", digest(alice)):
        with pytest.raises(AgentError) as info:
            book.client(token)
        assert info.value.code is ErrorCode.UNAUTHORIZED
    assert not TokenBook().enabled


@pytest.mark.parametrize("line", ["alice", "alice abc", f"alice {'0' * 64} extra",
                                  f"alice {'0' * 63}"])
def test_a_malformed_token_file_names_its_line(tmp_path: Path, line: str) -> None:
    path = tmp_path / "tokens.txt"
    path.write_text(f"# ok\n{line}\n")
    with pytest.raises(ValueError, match=r"tokens.txt:2"):
        TokenBook.load(path)


@pytest.mark.parametrize(("header", "token"), [
    (None, None),
    ("Bearer wa_abc", "wa_abc"),
    ("bearer   wa_abc  ", "wa_abc"),
    ("BEARER wa_abc", "wa_abc"),
    ("Bearer ", None),
    ("Basic dXNlcjpwYXNz", None),
    ("wa_abc", None),
])
def test_bearer_reads_the_authorization_header(header: str | None, token: str | None) -> None:
    assert bearer(header) == token


def test_origin_policy_allows_listed_origins_and_clients_without_one() -> None:
    policy = OriginPolicy(frozenset({"http://good.test", "https://app.example"}))
    policy.check(None)  # curl and SDKs send no Origin; they still need a token
    policy.check("http://good.test")
    policy.check("http://good.test/")
    for origin in ("http://evil.test", "https://good.test", "http://good.test:8080", "null",
                   "http://good.test.evil.test"):
        with pytest.raises(AgentError) as info:
            policy.check(origin)
        assert info.value.code is ErrorCode.FORBIDDEN_ORIGIN
    with pytest.raises(AgentError):
        OriginPolicy().check("http://anything.test")
    OriginPolicy(frozenset({"*"})).check("http://anything.test")


def test_rate_limiter_allows_a_burst_then_refills_at_the_rate() -> None:
    clock = FakeClock()
    limiter = RateLimiter(rate=2.0, burst=2, clock=clock)
    limiter.take("a")
    limiter.take("a")
    with pytest.raises(AgentError) as info:
        limiter.take("a")
    assert info.value.code is ErrorCode.RATE_LIMITED
    assert "retry in 0.5 s" in info.value.message
    limiter.take("b")  # buckets are per client
    clock.now += 0.49
    with pytest.raises(AgentError):
        limiter.take("a")
    clock.now += 0.01
    limiter.take("a")
    clock.now += 60
    limiter.take("a")
    limiter.take("a")  # refilled only up to the burst
    with pytest.raises(AgentError):
        limiter.take("a")


def test_a_refused_request_costs_nothing() -> None:
    clock = FakeClock()
    limiter = RateLimiter(rate=1.0, burst=1, clock=clock)
    limiter.take("a")
    for _ in range(5):
        with pytest.raises(AgentError):
            limiter.take("a")
    clock.now += 1.0
    limiter.take("a")


def test_rate_zero_turns_limits_off() -> None:
    limiter = RateLimiter(rate=0, burst=0, clock=FakeClock())
    for _ in range(1000):
        limiter.take("a")


def test_the_bucket_table_stays_bounded() -> None:
    limiter = RateLimiter(rate=1.0, burst=1, clock=FakeClock(), max_clients=10)
    for n in range(100):
        limiter.take(f"client-{n}")
    assert len(limiter._buckets) <= 10

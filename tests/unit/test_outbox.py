"""A client that does not read cannot make the server hold its events without limit."""

from __future__ import annotations

from wasmagent.hosts.server.sessions import Outbox


async def test_unread_events_are_bounded_by_count_and_by_size() -> None:
    by_count = Outbox(limit=3, max_bytes=1 << 20)
    for n in range(5):
        by_count.put(f"event {n}")
    assert by_count.overflowed
    assert by_count.closed
    assert await by_count.take() == []  # a client being disconnected gets nothing more

    by_size = Outbox(limit=10_000, max_bytes=1_000)
    for _ in range(9):
        by_size.put("x" * 100)
    assert not by_size.overflowed
    by_size.put("x" * 200)  # a big `status` result past the byte budget
    assert by_size.overflowed


async def test_events_that_are_read_free_their_budget() -> None:
    outbox = Outbox(limit=10_000, max_bytes=1_000)
    for _ in range(50):  # 5,000 characters in all, never more than 900 waiting
        for _ in range(9):
            outbox.put("y" * 100)
        assert len(await outbox.take()) == 9
    assert not outbox.overflowed

"""Deltas that queued up while a gRPC stream's writer was behind go out as one message."""

from __future__ import annotations

from wasmagent.hosts.server.grpc_api import agent_pb2 as pb
from wasmagent.hosts.server.grpc_api.service import coalesced


def _delta(text: str) -> pb.Event:
    event = pb.Event(id="r1")
    event.delta.text = text
    return event


def test_adjacent_deltas_are_joined_and_everything_else_keeps_its_place() -> None:
    cited = pb.Event(id="r1")
    cited.citation.source = "ferry.md"
    done = pb.Event(id="r1")
    done.done.SetInParent()
    out = coalesced([_delta("The ferry "), _delta("leaves at "), _delta("9 [1]."), cited,
                     _delta(" More."), done])
    assert [e.WhichOneof("kind") for e in out] == ["delta", "citation", "delta", "done"]
    assert out[0].delta.text == "The ferry leaves at 9 [1]."
    assert out[2].delta.text == " More."
    assert all(e.id == "r1" for e in out)


def test_a_writer_that_keeps_up_writes_every_delta_as_it_came() -> None:
    assert [e.delta.text for e in coalesced([_delta("a")])] == ["a"]
    assert coalesced([]) == []

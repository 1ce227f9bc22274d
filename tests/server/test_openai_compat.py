"""wasmagent as an OpenAI model: the official `openai` client against a real server process.

The shared server answers through its (fake) upstream LLM, grounded on the seeded documents;
what a user of the OpenAI client sees: the answer, its numbered sources, the `wasmagent`
extension with the citations, streamed or not, and OpenAI's own exception types on errors.
"""

from __future__ import annotations

from collections.abc import Iterator

import openai
import pytest

from ..support.processes import Server, token_server
from .conftest import QUESTION, RECV_TIMEOUT_S


def client_of(srv: Server, key: str = "unused") -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{srv.http}/v1", api_key=key, max_retries=0,
                         timeout=RECV_TIMEOUT_S)


def test_a_question_gets_a_cited_answer(server: Server) -> None:
    reply = client_of(server).chat.completions.create(
        model="wasmagent", messages=[{"role": "user", "content": QUESTION}])
    text = reply.choices[0].message.content or ""
    assert "service worker" in text
    assert "\n\nSources:\n[1] " in text
    assert "guide/offline.md" in text
    extension = reply.model_dump()["wasmagent"]
    assert extension["citations"][0]["source"] == "guide/offline.md"
    assert extension["route"] in ("llm", "retrieve")
    assert reply.choices[0].finish_reason == "stop"


def test_a_streamed_answer_arrives_in_pieces_and_ends_with_its_sources(server: Server) -> None:
    stream = client_of(server).chat.completions.create(
        model="wasmagent:default", stream=True,
        messages=[{"role": "system", "content": "be brief"},
                  {"role": "user", "content": [{"type": "text", "text": QUESTION}]}])
    chunks = list(stream)
    pieces = [c.choices[0].delta.content or "" for c in chunks]
    assert len([p for p in pieces if p]) > 2, "the text comes as it is written"
    assert chunks[0].choices[0].delta.role == "assistant"
    text = "".join(pieces)
    assert "service worker" in text
    assert "Sources:\n[1] " in text
    last = chunks[-1]
    assert last.choices[0].finish_reason == "stop"
    assert last.model_dump()["wasmagent"]["citations"][0]["source"] == "guide/offline.md"


def test_earlier_messages_are_the_conversation(server: Server) -> None:
    reply = client_of(server).chat.completions.create(model="wasmagent", messages=[
        {"role": "user", "content": "how do I install it?"},
        {"role": "assistant", "content": "Run ./build.sh serve."},
        {"role": "user", "content": QUESTION},
    ])
    assert "Earlier you asked: how do I install it?" in (reply.choices[0].message.content or "")


def test_models_name_each_knowledge_base(server: Server) -> None:
    ids = [m.id for m in client_of(server).models.list()]
    assert ids[0] == "wasmagent"
    assert "wasmagent:default" in ids


def test_requests_it_cannot_take_fail_as_openai_errors(server: Server) -> None:
    client = client_of(server)
    with pytest.raises(openai.NotFoundError, match="no model 'gpt-4o'"):
        client.chat.completions.create(model="gpt-4o",
                                       messages=[{"role": "user", "content": QUESTION}])
    with pytest.raises(openai.BadRequestError, match="last user message"):
        client.chat.completions.create(model="wasmagent",
                                       messages=[{"role": "system", "content": "hello"}])
    with pytest.raises(openai.BadRequestError, match="text"):
        client.chat.completions.create(model="wasmagent",
                                       messages=[{"role": "user", "content": "x" * 5000}])


@pytest.fixture(scope="module")
def guarded(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    with token_server(tmp_path_factory.mktemp("openai-tokens"), ["alice"]) as srv:
        yield srv


def test_the_api_key_is_the_servers_bearer_token(guarded: Server) -> None:
    with pytest.raises(openai.AuthenticationError):
        client_of(guarded, "wa_wrong").models.list()
    ids = [m.id for m in client_of(guarded, guarded.tokens["alice"]).models.list()]
    assert "wasmagent" in ids

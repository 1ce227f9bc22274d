"""`history.list` and `data.clear`: what a client asked, and forgetting all of it."""

from __future__ import annotations

import json
from collections.abc import Callable

from .. import keyspace
from ..errors import AgentError, ErrorCode
from ..pipeline.pipeline import conversation_turns
from ..ports import Store
from ..protocol import DataClear, Event, HistoryList, Result
from ..tenancy import Scope

Emit = Callable[[Event], None]


def need_store(store: Store | None) -> Store:
    if store is None:
        raise AgentError(ErrorCode.STORAGE, "this host has no storage")
    return store


async def history_list(scope: Scope, request: HistoryList, emit: Emit) -> None:
    store = need_store(scope.history)
    if request.conversation is not None:
        turns = await conversation_turns(store, request.conversation, request.limit)
        emit(Result(request.id, {"items": turns}))
        return
    keys = (await store.keys(keyspace.HISTORY))[-request.limit:]
    records = []
    for key in keys:
        raw = await store.get(key)
        if raw is not None:
            records.append(json.loads(raw))
    emit(Result(request.id, {"items": records}))


async def data_clear(scope: Scope, request: DataClear, emit: Emit) -> None:
    """This scope's knowledge bases and history; shared knowledge bases stay."""
    store = need_store(scope.history)
    kbs = await scope.library.clear()
    history = await store.keys(keyspace.HISTORY)
    await store.commit({}, [*history, *await store.keys(keyspace.CONVERSATIONS)])
    emit(Result(request.id, {"knowledge_bases": kbs, "history": len(history)}))

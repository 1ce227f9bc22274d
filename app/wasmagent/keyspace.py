"""The storage key layout: every key the core writes to a `Store`, in one place.

```
kb/<name>/meta                  a knowledge base's meta (knowledge/kb.py owns what is under
kb/<name>/seg/<n>/...           kb/<name>/: segments of chunks and vectors, the BM25 index)
kb/<name>/lexical
history/<at>/<request id>       one answered question, JSON (`at`: wall time, zero-padded, so
                                keys sort in time order)
conv/<conversation>/<at>/<id>   -> the history key of a conversation's turn
wf/job/<job id>                 a durable job's record (workflow/journal.py)
wf/open/<job id>                marks a job that has not finished
t/<tenant>/...                  all of the above for one tenant of the server (tenancy.py)
```
"""

from __future__ import annotations

KB = "kb/"
HISTORY = "history/"
CONVERSATIONS = "conv/"
JOBS = "wf/job/"
OPEN_JOBS = "wf/open/"
TENANTS = "t/"


def kb_prefix(name: str) -> str:
    """Where knowledge base `name` keeps everything."""
    return f"{KB}{name}/"


def kb_meta(name: str) -> str:
    """The key whose presence means knowledge base `name` exists."""
    return f"{KB}{name}/meta"


def kb_name(key: str) -> str | None:
    """The knowledge base a `kb_meta` key names, or None for any other key."""
    parts = key.split("/")
    return parts[1] if len(parts) == 3 and parts[0] + "/" == KB and parts[2] == "meta" else None


def history_key(at: float, request_id: str) -> str:
    return f"{HISTORY}{at:017.6f}/{request_id}"


def conversation_prefix(conversation: str) -> str:
    return f"{CONVERSATIONS}{conversation}/"


def conversation_key(conversation: str, history: str) -> str:
    """The conversation's pointer to the turn saved at history key `history`."""
    return conversation_prefix(conversation) + history.removeprefix(HISTORY)


def history_of(conversation_key_: str, conversation: str) -> str:
    """The history key a conversation pointer key stands for."""
    return HISTORY + conversation_key_.removeprefix(conversation_prefix(conversation))


def tenant_prefix(name: str) -> str:
    """Where tenant `name`'s keys live (`name` already checked: `tenancy.check_tenant`)."""
    return f"{TENANTS}{name}/"

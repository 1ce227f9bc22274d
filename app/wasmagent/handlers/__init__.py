"""Request handlers, grouped by family; `Service.connect` routes each request type to one.

A handler is `async (scope, request, emit)`: it acts within the client's `Scope` (tenant),
emits its events, and raises `AgentError` for a typed failure; the `Agent` sends the terminal
event. `ask` is the pipeline's (`pipeline/`); the rest live here:
- `knowledge`: `kb.list`, `kb.delete`, `kb.passage`, `embed`;
- `jobs`: `ingest` (a durable job) and `jobs.*`;
- `history`: `history.list`, `data.clear`;
- `tools`: `tools.load` (site owners' tools, browser only).
"""

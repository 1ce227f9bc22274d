"""Hosts: everything that touches the outside world, around the one core.

- `browser.py` runs inside Pyodide (onnxruntime-web, IndexedDB, the server link, the local
  model — all through JS);
- `native.py` runs on CPython (onnxruntime, numpy, aiohttp), with a store from `sql.py` (SQLite
  or PostgreSQL);
- `server/` is the optional agent server (FastAPI/uvicorn: WebSocket, SSE, the OpenAI-compatible
  API, gRPC, the static app server) on the native host;
- `cli.py` (with `cli_commands.py`) is `python -m wasmagent`.

The core never imports any of them; each builds the core through `service.Service`.
"""

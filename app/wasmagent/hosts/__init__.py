"""Host adapters: the only modules that touch the outside world.

`browser.py` runs inside Pyodide (onnxruntime-web, IndexedDB, postMessage through JS);
`native.py` runs on CPython (onnxruntime, numpy, httpx) with a store from `sql.py` (SQLite or
PostgreSQL). None of them is imported by the core.
"""

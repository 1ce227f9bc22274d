"""Host adapters: the only modules that touch the outside world.

`browser.py` runs inside Pyodide (onnxruntime-web, IndexedDB, postMessage through JS);
`native.py` runs on CPython (onnxruntime, SQLite). Neither is imported by the core.
"""

// The browser side of the Store port: one IndexedDB object store of byte values keyed by string.
// Values are Uint8Arrays; keys sort as strings, so prefixes work as ranges.
const DB_NAME = "wasmagent";
const STORE = "kv";

function request(req) {
  return new Promise((resolve, reject) => {
    req.onsuccess = () => resolve(req.result);
    req.onerror = () => reject(req.error);
  });
}

export async function openStore(name = DB_NAME) {
  const open = indexedDB.open(name, 1);
  open.onupgradeneeded = () => open.result.createObjectStore(STORE);
  const db = await request(open);

  function tx(mode, fn) {
    return new Promise((resolve, reject) => {
      const t = db.transaction(STORE, mode);
      const result = fn(t.objectStore(STORE));
      t.oncomplete = () => resolve(result.result);
      t.onerror = () => reject(t.error);
      t.onabort = () => reject(t.error || new DOMException("transaction aborted", "AbortError"));
    });
  }

  return {
    // undefined, not null, for a missing key: Pyodide turns undefined into None.
    get: (key) => tx("readonly", (s) => s.get(key)).then((v) => v ?? undefined),
    put: (key, value) => tx("readwrite", (s) => s.put(value, key)).then(() => undefined),
    delete: (key) => tx("readwrite", (s) => s.delete(key)).then(() => undefined),
    keys: (prefix = "") =>
      tx("readonly", (s) =>
        s.getAllKeys(prefix ? IDBKeyRange.bound(prefix, prefix + "\uffff") : undefined),
      ),
    clear: () => tx("readwrite", (s) => s.clear()).then(() => undefined),
    close: () => db.close(),
  };
}

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
    commit: (puts, deletes, expect) => commit(db, puts, deletes, expect),
  };
}

function sameBytes(a, b) {
  if (a == null || b == null) return a == null && b == null;
  if (a.byteLength !== b.byteLength) return false;
  const x = new Uint8Array(a.buffer ?? a, a.byteOffset ?? 0, a.byteLength);
  const y = new Uint8Array(b.buffer ?? b, b.byteOffset ?? 0, b.byteLength);
  for (let i = 0; i < x.length; i++) if (x[i] !== y[i]) return false;
  return true;
}

// The Store port's atomic write: one readwrite transaction checks `expect` (key -> bytes, or
// null for "absent") and then applies deletes and puts; a mismatch aborts it with nothing
// written. IndexedDB runs overlapping readwrite transactions one at a time, so no other tab
// can slip a write between the check and the writes.
function commit(db, puts, deletes, expect) {
  return new Promise((resolve, reject) => {
    const t = db.transaction(STORE, "readwrite");
    const s = t.objectStore(STORE);
    let conflict = null;
    t.oncomplete = () => resolve(undefined);
    t.onerror = () => reject(t.error);
    t.onabort = () => reject(conflict || t.error || new DOMException("transaction aborted", "AbortError"));
    const write = () => {
      for (const key of deletes) s.delete(key);
      for (const [key, value] of Object.entries(puts)) s.put(value, key);
    };
    const expected = Object.entries(expect || {});
    if (!expected.length) return write();
    let pending = expected.length;
    for (const [key, wanted] of expected) {
      s.get(key).onsuccess = (e) => {
        if (conflict) return;
        if (!sameBytes(e.target.result, wanted)) {
          conflict = new DOMException(`${key} was changed by someone else`, "ConflictError");
          t.abort();
          return;
        }
        if (--pending === 0) write();
      };
    }
  });
}

// The browser side of the VectorSearch port: each space is one growing Float32Array searched by
// inner product in a tight JS loop (JIT-compiled; ~1 ns per multiply-add), because the same loop
// in Python under Pyodide would be 100x slower. Top-k uses a small sorted buffer, not a full sort.
const spaces = new Map();

export function add(space, dim, rows) {
  const incoming = rows instanceof Float32Array ? rows : new Float32Array(rows);
  let s = spaces.get(space);
  if (!s) {
    s = { dim, count: 0, data: new Float32Array(Math.max(incoming.length, dim * 1024)) };
    spaces.set(space, s);
  }
  if (s.dim !== dim) throw new Error(`space ${space} holds ${s.dim}-d vectors, not ${dim}-d`);
  const needed = (s.count * dim) + incoming.length;
  if (needed > s.data.length) {
    const grown = new Float32Array(Math.max(needed, s.data.length * 2));
    grown.set(s.data.subarray(0, s.count * dim));
    s.data = grown;
  }
  s.data.set(incoming, s.count * dim);
  s.count += incoming.length / dim;
  return s.count;
}

export function search(space, query, k) {
  const s = spaces.get(space);
  if (!s || k <= 0) return [];
  const { dim, count, data } = s;
  const q = query instanceof Float32Array ? query : new Float32Array(query);
  k = Math.min(k, count);
  const bestIdx = new Int32Array(k).fill(-1);
  const bestScore = new Float32Array(k).fill(-Infinity);
  const tail = dim - (dim % 4);
  for (let row = 0, off = 0; row < count; row++, off += dim) {
    // Four independent sums let the JIT overlap the multiply-adds (~25% faster than one).
    let a = 0, b = 0, c = 0, d = 0;
    for (let j = 0; j < tail; j += 4) {
      a += data[off + j] * q[j];
      b += data[off + j + 1] * q[j + 1];
      c += data[off + j + 2] * q[j + 2];
      d += data[off + j + 3] * q[j + 3];
    }
    for (let j = tail; j < dim; j++) a += data[off + j] * q[j];
    const dot = a + b + (c + d);
    if (dot <= bestScore[k - 1]) continue;
    let pos = k - 1;
    while (pos > 0 && bestScore[pos - 1] < dot) {
      bestScore[pos] = bestScore[pos - 1];
      bestIdx[pos] = bestIdx[pos - 1];
      pos--;
    }
    bestScore[pos] = dot;
    bestIdx[pos] = row;
  }
  const out = [];
  for (let i = 0; i < k; i++) out.push([bestIdx[i], bestScore[i]]);
  return out;
}

export function drop(space) {
  spaces.delete(space);
}

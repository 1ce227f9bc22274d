// The browser side of the VectorSearch port: each space keeps its rows in its own
// WebAssembly.Memory and scores a query against all of them with the SIMD kernel in scores.wasm
// (scores.wat: ~5x faster than V8's best on the same loop, which it does not vectorise). Until
// the kernel has loaded, or where it cannot, the same rows are scored by a plain JS loop: same
// results, slower. Top-k then uses a small sorted buffer, not a full sort.
//
// Layout of a space's memory: the query (stride floats), then the rows (stride floats apart,
// zero-padded past dim), then one score per row. Only the scores region moves as rows arrive.
const PAGE = 65536;
const LANES = 16; // the kernel reads 16 floats per step
const spaces = new Map();
let kernel = null; // the compiled scores.wasm, once loaded
let kernelError = null;

// Started by host.js during boot, beside the runtime's own downloads; it settles before the host
// is handed over to Python. A search before it settles, or after it failed, runs in JS.
export async function useKernel(source) {
  try {
    kernel = await WebAssembly.compileStreaming(source);
  } catch (err) {
    kernelError = err?.message || String(err);
    console.warn(`vector search runs in plain JS (scores.wasm: ${kernelError})`);
  }
}

// What searches run on: for the worker's status and the benchmarks.
export function engine() {
  return { kernel: kernel ? "wasm-simd" : "js", error: kernelError };
}

export function add(space, dim, rows) {
  const incoming = rows instanceof Float32Array ? rows : new Float32Array(rows);
  let s = spaces.get(space);
  if (!s) {
    const stride = Math.ceil(dim / LANES) * LANES;
    s = { dim, stride, count: 0, memory: new WebAssembly.Memory({ initial: 1 }), instance: null };
    spaces.set(space, s);
  }
  if (s.dim !== dim) throw new Error(`space ${space} holds ${s.dim}-d vectors, not ${dim}-d`);
  const n = incoming.length / dim;
  reserve(s, s.count + n);
  const { stride, count } = s;
  const stored = new Float32Array(s.memory.buffer, (1 + count) * stride * 4, n * stride);
  if (stride === dim) stored.set(incoming);
  else for (let i = 0; i < n; i++) stored.set(incoming.subarray(i * dim, (i + 1) * dim), i * stride);
  s.count += n;
  return s.count;
}

// Grows the memory (at least doubling) so that `rows` rows and their scores fit.
function reserve(s, rows) {
  const bytes = (1 + rows) * s.stride * 4 + rows * 4;
  const have = s.memory.buffer.byteLength;
  if (bytes <= have) return;
  s.memory.grow(Math.ceil((Math.max(bytes, have * 2) - have) / PAGE));
}

export function search(space, query, k) {
  const s = spaces.get(space);
  if (!s || k <= 0 || s.count === 0) return [];
  const q = query instanceof Float32Array ? query : new Float32Array(query);
  new Float32Array(s.memory.buffer, 0, s.dim).set(q.subarray(0, s.dim));
  const scores = score(s);
  k = Math.min(k, s.count);
  const bestIdx = new Int32Array(k).fill(-1);
  const bestScore = new Float32Array(k).fill(-Infinity);
  for (let row = 0; row < scores.length; row++) {
    const dot = scores[row];
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

// One score per row, written to and read from the scores region of the space's memory.
function score(s) {
  const { stride, count, memory } = s;
  const rowsAt = stride * 4;
  const scoresAt = (1 + count) * stride * 4;
  if (kernel) {
    s.instance ??= new WebAssembly.Instance(kernel, { env: { memory } });
    s.instance.exports.scores(0, rowsAt, count, stride, scoresAt);
    return new Float32Array(memory.buffer, scoresAt, count);
  }
  const data = new Float32Array(memory.buffer, 0, (1 + count) * stride);
  const scores = new Float32Array(memory.buffer, scoresAt, count);
  for (let row = 0, off = stride; row < count; row++, off += stride) {
    // Four independent sums let the JIT overlap the multiply-adds (~25% faster than one).
    let a = 0, b = 0, c = 0, d = 0;
    for (let j = 0; j < stride; j += 4) {
      a += data[off + j] * data[j];
      b += data[off + j + 1] * data[j + 1];
      c += data[off + j + 2] * data[j + 2];
      d += data[off + j + 3] * data[j + 3];
    }
    scores[row] = a + b + (c + d);
  }
  return scores;
}

export function drop(space) {
  spaces.delete(space);
}

// The one module that owns onnxruntime-web in the worker (as transformers.js backends/onnx.js
// does): it creates each session once, runs them one at a time, and converts tensors.
import * as ort from "../ort/ort.wasm.min.mjs";

const base = new URL("../", import.meta.url); // the app root
// Always point ORT at our own copy of its wasm files: its default is a CDN.
ort.env.wasm.wasmPaths = new URL("./ort/", base).href;
// One thread by default, even when crossOriginIsolated: measured on 2 cores, 2 threads raise
// batch throughput ~25% but make single queries' tail latency worse (batch-1 p95 44 ms vs
// 28 ms; ask p95 63 ms vs 47 ms), and answering fast is what the app is for. Pages opt in
// with ?threads=N (bridge.js passes it here), which needs crossOriginIsolated.
ort.env.wasm.numThreads = 1;

// Choose the thread count before the first session exists (ORT-web fixes it at init).
export function configure({ threads } = {}) {
  if (threads && sessions.size === 0) {
    ort.env.wasm.numThreads = self.crossOriginIsolated ? Math.max(1, Math.min(8, threads)) : 1;
  }
}

// MiniLM's graph in dist/ is optimised at build time (models/optimize_minilm.py), so its session is
// created with optimisation off: measured 110-310 ms instead of 470-620 ms with "all" on the
// plain file, same vectors. The 16 KB intent head is optimised here, in no time.
const MODELS = {
  minilm: { path: "models/all-minilm-l6-v2/model.int8.onnx", optimization: "disabled" },
  intent: { path: "models/intent/intent.onnx", optimization: "all" },
};

const sessions = new Map();
let queue = Promise.resolve();

export function threads() {
  return ort.env.wasm.numThreads;
}

export function knownModels() {
  return Object.keys(MODELS);
}

// `after`: the session is created (a few hundred ms of synchronous wasm on this thread) only
// once it resolves, while its bytes are fetched at once.
async function session(name, fetchBytes, after = null) {
  if (!sessions.has(name)) {
    const model = MODELS[name];
    if (!model) throw Object.assign(new Error(`unknown model ${name}`), { code: "not_found" });
    const pending = Promise.all([fetchBytes(new URL(model.path, base).href), after]).then(([bytes]) =>
      ort.InferenceSession.create(bytes, {
        executionProviders: ["wasm"],
        graphOptimizationLevel: model.optimization,
      }),
    );
    sessions.set(name, pending);
    pending.catch(() => sessions.delete(name));
  }
  return sessions.get(name);
}

const CTORS = { int64: BigInt64Array, float32: Float32Array };

// feeds: {name: {dtype, dims, data}} with data a typed array matching dtype.
// Returns the same shape of object for every output.
export function run(name, feeds, fetchBytes) {
  const job = queue.then(async () => {
    const s = await session(name, fetchBytes);
    const inputs = {};
    for (const [key, t] of Object.entries(feeds)) {
      const Ctor = CTORS[t.dtype];
      const data = t.data instanceof Ctor ? t.data : new Ctor(t.data);
      inputs[key] = new ort.Tensor(t.dtype, data, Array.from(t.dims));
    }
    const out = await s.run(inputs);
    const result = {};
    for (const [key, t] of Object.entries(out)) {
      result[key] = { dtype: t.type, dims: t.dims, data: t.data };
    }
    return result;
  });
  queue = job.catch(() => {});
  return job;
}

export function warm(name, fetchBytes, { after = null } = {}) {
  return session(name, fetchBytes, after);
}

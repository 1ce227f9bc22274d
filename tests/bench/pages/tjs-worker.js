// transformers.js (the real npm package) running our exported MiniLM from local files only.
import { AutoModel, AutoTokenizer, env } from "./tjs/transformers.min.js";

env.allowRemoteModels = false;
env.allowLocalModels = true;
// A path, not a full URL: transformers.js treats http(s) URLs as remote (and remote is off).
env.localModelPath = new URL("./tjs-models/", import.meta.url).pathname;
env.backends.onnx.wasm.wasmPaths = new URL("./tjs-ort/", import.meta.url).href;
env.backends.onnx.wasm.numThreads = self.crossOriginIsolated ? 2 : 1;

const tokenizer = await AutoTokenizer.from_pretrained("minilm");
const model = await AutoModel.from_pretrained("minilm", { dtype: "q8", device: "wasm" });

self.onmessage = async ({ data: { id, texts } }) => {
  try {
    const inputs = tokenizer(texts, { padding: true, truncation: true, max_length: 256 });
    const out = await model(inputs);
    const emb = out.sentence_embedding;
    postMessage({ id, dims: emb.dims, first: Array.from(emb.data.slice(0, 384)) });
  } catch (err) {
    postMessage({ id, error: String(err) });
  }
};
postMessage({ ready: true });

// Generate dist/sw.js with Workbox: precache every file of dist/ with a revision hash, so the
// app boots and answers with the network off after one visit. Run by wasm_pkg/build.py.
import { generateSW } from "workbox-build";

const dist = process.argv[2];
const { count, size, warnings } = await generateSW({
  globDirectory: dist,
  globPatterns: ["**/*.{html,js,mjs,css,json,wasm,zip,bin,onnx,txt,kv,png,svg,webmanifest}"],
  // widget.js runs on other sites' pages; embed.json (the embed allowlist) must never be stale.
  // The app boots from wasmagent-stdlib.zip and snapshot.bin: the plain stdlib, the wheels and
  // the lock are there for site owners' own Pyodide, never fetched by the app.
  // The PyScript example and what a PyScript page loads (PyScript, the wheels, the plain stdlib,
  // the lock) are not the app: cached when first used (runtimeCaching below), not installed.
  globIgnores: ["sw.js", "workbox-*.js", "bench/**", "widget.js", "embed.json", "**/*.gz",
                "pyodide/python_stdlib.zip", "pyodide/pyodide-lock.json", "examples/**",
                "pyscript/**"],
  runtimeCaching: [{
    urlPattern: /\/(examples|pyscript)\/|\/pyodide\/(python_stdlib\.zip|pyodide-lock\.json|[^/]+\.whl)$/,
    // Fresh when online, the last copy offline: a page that worked once keeps working.
    handler: "NetworkFirst",
    options: { cacheName: "wasmagent-pyscript", networkTimeoutSeconds: 10 },
  }],
  swDest: `${dist}/sw.js`,
  // The runtime, the model and the Python stdlib are large; all are needed offline.
  maximumFileSizeToCacheInBytes: 64 * 1024 * 1024,
  // One file: sw.js must sit at the root for root scope, and a single file is simplest to serve.
  inlineWorkboxRuntime: true,
  // A new version waits until the user accepts the reload the page offers (SKIP_WAITING).
  skipWaiting: false,
  clientsClaim: true,
  cleanupOutdatedCaches: true,
  navigateFallback: "index.html",
  navigateFallbackDenylist: [/^\/widget/, /\/examples\//],
  // ?threads=N (onnxruntime-web threads), ?kb=NAME (the knowledge base a worker installs) and
  // ?llm=off (no local model) on the worker URL select behaviour, not different files; ?v=
  // versions a file whose precache revision already tracks its content.
  ignoreURLParametersMatching: [/^utm_/, /^threads$/, /^kb$/, /^llm$/, /^v$/],
  sourcemap: false,
  mode: "production",
});
for (const w of warnings) console.warn(`workbox: ${w}`);
console.log(`service worker precaches ${count} files, ${(size / 1048576).toFixed(1)} MB`);

import { loadPyodide } from "./pyodide/pyodide.mjs";
const pyodide = await loadPyodide({ indexURL: new URL("./pyodide/", import.meta.url).href });
await pyodide.loadPackage("wasmagent", { messageCallback: () => {} });
const version = pyodide.runPython("import wasmagent; wasmagent.__version__");
new BroadcastChannel("boot-bench").postMessage({ kind: "module-worker", version });

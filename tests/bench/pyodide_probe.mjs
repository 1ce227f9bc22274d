// Runs one Python probe file (tests/bench/*.py, with an async `measure(rounds)`) inside
// Pyodide under Node, with wasmagent installed from dist/'s own lock, and prints its JSON.
//   node tests/bench/pyodide_probe.mjs tests/bench/loop_probe.py 30
import { readFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { loadPyodide } from "pyodide";

const root = join(dirname(fileURLToPath(import.meta.url)), "..", "..");
const [file, rounds = "30"] = process.argv.slice(2);
const pyodide = await loadPyodide({
  indexURL: join(root, "dist", "pyodide") + "/",
  lockFileURL: join(root, "dist", "pyodide", "pyodide-lock.json"),
});
await pyodide.loadPackage(["micropip"], { messageCallback: () => {} });
await pyodide.runPythonAsync(`
import micropip
await micropip.install("wasmagent")
`);
pyodide.FS.writeFile("/tmp/probe.py", readFileSync(file, "utf8"));
const result = await pyodide.runPythonAsync(`
import sys, json
sys.path.insert(0, "/tmp")
import probe
json.dumps(await probe.measure(${Number(rounds)}))
`);
process.stdout.write(result + "\n");

// Runs one Python probe file (tests/bench/*.py, with an async `measure(rounds)`) inside
// Pyodide under Node, with wasmagent installed from dist/'s own lock, and prints its JSON.
//   node tests/bench/pyodide_probe.mjs tests/bench/loop_probe.py 30
import { readFileSync } from "node:fs";
import { loadWasmagent } from "../pyodide/load.mjs";

const [file, rounds = "30"] = process.argv.slice(2);
const pyodide = await loadWasmagent();
pyodide.FS.writeFile("/tmp/probe.py", readFileSync(file, "utf8"));
const result = await pyodide.runPythonAsync(`
import sys, json
sys.path.insert(0, "/tmp")
import probe
json.dumps(await probe.measure(${Number(rounds)}))
`);
process.stdout.write(result + "\n");

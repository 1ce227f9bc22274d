// Runs the shared core tests (tests/pyodide/core_tests.txt) inside Pyodide under Node, with the
// wasmagent wheel and micropip loaded from dist/'s own pyodide-lock.json — the same files the
// browser gets — and proves micropip installs from that lock offline.
import { readFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { loadWasmagent, root } from "./load.mjs";

const here = dirname(fileURLToPath(import.meta.url));
// `node tests/pyodide/run.mjs test_batcher test_pool` runs just those modules.
const modules = process.argv.length > 2 ? process.argv.slice(2) : readFileSync(join(here, "core_tests.txt"), "utf8")
  .split("\n")
  .map((l) => l.trim())
  .filter((l) => l && !l.startsWith("#"));

const pyodide = await loadWasmagent();

pyodide.FS.mkdirTree("/repo");
pyodide.FS.mount(pyodide.FS.filesystems.NODEFS, { root }, "/repo");
pyodide.runPython(`
import sys
sys.path[:0] = ["/repo/tests/pyodide", "/repo/tests", "/repo"]
`);
const runner = pyodide.pyimport("runner");
const report = (await runner.run(pyodide.toPy(modules))).toJs({ dict_converter: Object.fromEntries });
for (const [name, tb] of report.failed) console.log(`FAILED ${name}\n${tb}`);
for (const name of report.missing_modules) console.log(`FAILED ${name}: listed in core_tests.txt but not found`);
const version = pyodide.runPython("import sys, wasmagent; f'{sys.version.split()[0]} wasmagent {wasmagent.__version__}'");
console.log(`Pyodide (Python ${version}): ${report.passed.length} core tests in ${report.seconds}s`);
console.log(`${report.passed.length} passed, ${report.failed.length} failed`);
process.exit(report.failed.length || report.missing_modules.length || !report.passed.length ? 1 : 0);

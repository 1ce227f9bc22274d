// Build-time boot artefacts, made by the very Pyodide the browser will run (run by build.py):
//   node wasm_pkg/runtime.mjs PYODIDE_DIR APP_DIR OUT_ZIP OUT_SNAPSHOT
// 1. OUT_ZIP: Pyodide's python_stdlib.zip with every module compiled to .pyc, plus wasmagent
//    itself (.pyc and .py, so tracebacks through our code still show source lines). The shipped
//    zip holds only .py, so each boot recompiled ~200 modules; and the package no longer needs
//    a wheel install at boot. The .pyc are unchecked hash-based: zipimport uses them without
//    comparing against a source file or a timestamp.
// 2. OUT_SNAPSHOT: a memory snapshot of that interpreter right after
//    `import wasmagent.hosts.browser`, loaded by web/worker/worker.js with `_loadSnapshot`. It is
//    taken before any JS object is handed to Python (browser.boot runs later, in the worker).
// `_makeSnapshot` / `makeMemorySnapshot` / `_loadSnapshot` are private Pyodide options, pinned
// by the exact pyodide version in package-lock.json and exercised by tests/e2e/test_boot.py.
import { readFileSync, readdirSync, statSync, writeFileSync } from "node:fs";
import { join, relative } from "node:path";
import { pathToFileURL } from "node:url";

const [pyodideDir, appDir, outZip, outSnapshot] = process.argv.slice(2);
const { loadPyodide } = await import(pathToFileURL(join(pyodideDir, "pyodide.mjs")).href);

function pythonFiles(dir) {
  return readdirSync(dir).flatMap((name) => {
    const path = join(dir, name);
    if (statSync(path).isDirectory()) return name === "__pycache__" ? [] : pythonFiles(path);
    return name.endsWith(".py") || name === "py.typed" ? [path] : [];
  });
}

const COMPILE = `
import importlib.util, zipfile
from importlib._bootstrap_external import _code_to_hash_pyc

STDLIB = "/lib/python%d%d.zip" % __import__("sys").version_info[:2]
# Fixed timestamps: the same inputs give the same bytes (and the same precache revision).
EPOCH = (1980, 1, 1, 0, 0, 0)

def pyc(name, source):
    # co_filename is the path the module would have if it were imported from source.
    code = compile(source, f"{STDLIB}/{name}", "exec", dont_inherit=True)
    return _code_to_hash_pyc(code, importlib.util.source_hash(source), checked=False)

def add(out, name, data):
    info = zipfile.ZipInfo(name, EPOCH)
    info.compress_type = zipfile.ZIP_DEFLATED
    out.writestr(info, data)

with zipfile.ZipFile(STDLIB) as src, zipfile.ZipFile("/tmp/out.zip", "w") as out:
    for item in src.infolist():
        if item.is_dir():
            continue
        data = src.read(item)
        if item.filename.endswith(".py"):
            add(out, item.filename + "c", pyc(item.filename, data))
        else:
            add(out, item.filename, data)
    for name in sorted(own):
        data = open("/tmp/app/" + name, "rb").read()
        add(out, name, data)
        if name.endswith(".py"):
            add(out, name + "c", pyc(name, data))
`;

const indexURL = pyodideDir.endsWith("/") ? pyodideDir : `${pyodideDir}/`;
const quiet = { stdout: () => {}, stderr: (line) => console.error(line) };

// 1. the precompiled stdlib with wasmagent inside
{
  const pyodide = await loadPyodide({ indexURL, ...quiet });
  const own = pythonFiles(join(appDir, "wasmagent")).map((p) => relative(appDir, p));
  for (const name of own) {
    pyodide.FS.mkdirTree(join("/tmp/app", name, ".."));
    pyodide.FS.writeFile(join("/tmp/app", name), readFileSync(join(appDir, name)));
  }
  pyodide.globals.set("own", pyodide.toPy(own));
  pyodide.runPython(COMPILE);
  writeFileSync(outZip, pyodide.FS.readFile("/tmp/out.zip"));
}

// 2. the snapshot, booted from that zip exactly as the worker boots
{
  const pyodide = await loadPyodide({
    indexURL,
    stdLibURL: outZip,
    lockFileContents: JSON.parse(readFileSync(join(pyodideDir, "pyodide-lock.json"), "utf8")),
    _makeSnapshot: true,
    ...quiet,
  });
  pyodide.runPython("import wasmagent.hosts.browser");
  writeFileSync(outSnapshot, pyodide.makeMemorySnapshot());
}

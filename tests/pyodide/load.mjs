// Pyodide under Node with wasmagent installed the way a site owner's page gets it: micropip
// and the wheel from dist/'s own pyodide-lock.json (no index, no network).
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { loadPyodide } from "pyodide";

export const root = join(dirname(fileURLToPath(import.meta.url)), "..", "..");

export async function loadWasmagent() {
  const pyodide = await loadPyodide({
    indexURL: join(root, "dist", "pyodide") + "/",
    lockFileURL: join(root, "dist", "pyodide", "pyodide-lock.json"),
  });
  await pyodide.loadPackage(["micropip"], { messageCallback: () => {} });
  await pyodide.runPythonAsync(`
import micropip
await micropip.install("wasmagent")
assert "wasmagent" in micropip.list(), "micropip did not install wasmagent from the lock"
`);
  return pyodide;
}

// Compile web/worker/scores.wat (the vector search kernel) to wasm with wabt. Run by
// wasm_pkg/build.py: `node scores.mjs SOURCE.wat OUT.wasm`.
import { readFile, writeFile } from "node:fs/promises";
import initWabt from "wabt";

const [source, out] = process.argv.slice(2);
const wabt = await initWabt();
const module = wabt.parseWat(source, await readFile(source, "utf8"), { simd: true });
module.validate();
const { buffer } = module.toBinary({});
await writeFile(out, buffer);
console.log(`${out}: ${buffer.length} bytes`);

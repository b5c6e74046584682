// Run the pure core's unit tests (tests/core/test_*.py) under MicroPython
// 1.27's WebAssembly port in Node (DESIGN.md §2: the core runs on both
// interpreters from the first issue).
//
// The wasm interpreter sees only its own in-memory file system, so the
// repository's src/spin_lite, tests/core and tests/data are copied into it
// under /repo with the same layout, the working directory is /repo (as for
// pytest under `make test`), and tests/mpy/runner.py imports and runs them.
//
//   node tests/mpy/run.mjs [test_module ...]
//
// Prints one line per test and "N passed, N failed"; exits 1 when a test
// failed or none ran, 2 when MicroPython itself could not be loaded.
import fs from "node:fs";
import path from "node:path";
import { fileURLToPath } from "node:url";

const REPO = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "../..");
const ROOT = "/repo"; // the repository's place inside the wasm file system
const HEAP = Number(process.env.MPY_HEAP || 16 * 1024 * 1024);

let loadMicroPython;
try {
    ({ loadMicroPython } = await import("@micropython/micropython-webassembly-pyscript"));
} catch (e) {
    console.error("run.mjs: cannot load @micropython/micropython-webassembly-pyscript " +
                  "(run `sh tools/deps.sh` or `npm install`): " + e.message);
    process.exit(2);
}

const mp = await loadMicroPython({
    heapsize: HEAP,
    stdout: (line) => process.stdout.write(line + "\n"),
    stderr: (line) => process.stderr.write(line + "\n"),
});

// Copy a directory tree (files only, no caches) from the repository into
// the interpreter; a missing directory is reported by the caller.
function copyTree(rel, keep = () => true) {
    const src = path.join(REPO, rel);
    if (!fs.existsSync(src)) return false;
    mp.FS.mkdirTree(ROOT + "/" + rel);
    for (const entry of fs.readdirSync(src, { withFileTypes: true })) {
        const child = rel + "/" + entry.name;
        if (entry.isDirectory()) {
            if (entry.name !== "__pycache__") copyTree(child, keep);
        } else if (keep(entry.name)) {
            mp.FS.writeFile(ROOT + "/" + child, fs.readFileSync(path.join(REPO, child)));
        }
    }
    return true;
}

const py = (name) => name.endsWith(".py");
copyTree("src/spin_lite", py);
copyTree("tests/mpy", py);
copyTree("tests/data");
if (!copyTree("tests/core", py)) {
    console.error("run.mjs: no tests/core directory: nothing to run");
    process.exit(1);
}

const only = process.argv.slice(2).map((a) => path.basename(a).replace(/\.py$/, ""));
let passed, failed;
try {
    mp.runPython(`
import os, sys
os.chdir(${JSON.stringify(ROOT)})
sys.path[:0] = [${JSON.stringify(ROOT + "/tests/core")}, ${JSON.stringify(ROOT + "/src")},
                ${JSON.stringify(ROOT + "/tests/mpy")}]
import runner
_result = runner.main(${JSON.stringify(ROOT + "/tests/core")}, ${JSON.stringify(only)})
`);
    [passed, failed] = mp.globals.get("_result");
} catch (e) {
    // the runner catches test failures; this is the runner itself failing
    console.error("run.mjs: the MicroPython runner failed:\n" + e.message);
    process.exit(1);
}
process.exit(failed === 0 && passed > 0 ? 0 : 1);

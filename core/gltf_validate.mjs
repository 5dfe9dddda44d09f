// Validate one glTF/GLB with the Khronos glTF-Validator and print its report as JSON.
//
// Usage: node gltf_validate.mjs NODE_MODULES_DIR MAX_ISSUES < asset.glb
// The package is resolved from NODE_MODULES_DIR (given by core/validate.py), so the script
// works wherever the Python package is installed.
import { createRequire } from "node:module";
import path from "node:path";

const [nodeModules, maxIssuesArg] = process.argv.slice(2);
if (!nodeModules) {
  console.error("usage: node gltf_validate.mjs NODE_MODULES_DIR [MAX_ISSUES] < asset.glb");
  process.exit(2);
}
const require = createRequire(path.join(path.resolve(nodeModules), "_resolve_from_here.js"));
const validator = require("gltf-validator");

const chunks = [];
for await (const chunk of process.stdin) chunks.push(chunk);
const data = new Uint8Array(Buffer.concat(chunks));

try {
  const report = await validator.validateBytes(data, {
    maxIssues: Number(maxIssuesArg ?? 200),
    // a GLB must be self-contained: any external reference is reported, never fetched
    externalResourceFunction: (uri) => Promise.reject(new Error(`external resource ${uri}`)),
  });
  process.stdout.write(JSON.stringify(report));
} catch (err) {
  console.error(String(err && err.message ? err.message : err));
  process.exit(1);
}

// Validate glTF/GLB with the Khronos glTF-Validator and print its report as JSON.
//
// One file:  node gltf_validate.mjs NODE_MODULES_DIR MAX_ISSUES < asset.glb
// Served:    node gltf_validate.mjs NODE_MODULES_DIR --serve
//   reads frames from stdin (uint32 LE payload length, uint32 LE max issues, payload) and
//   answers each with a frame (uint32 LE length, JSON: the report or {"error": message}), so
//   one Node process validates many files (starting Node costs ~0.2 s per file otherwise).
// The package is resolved from NODE_MODULES_DIR (given by core/validate.py), so the script
// works wherever the Python package is installed.
import { createRequire } from "node:module";
import path from "node:path";

const [nodeModules, second] = process.argv.slice(2);
if (!nodeModules) {
  console.error("usage: node gltf_validate.mjs NODE_MODULES_DIR [MAX_ISSUES | --serve]");
  process.exit(2);
}
const require = createRequire(path.join(path.resolve(nodeModules), "_resolve_from_here.js"));
const validator = require("gltf-validator");

function validate(data, maxIssues) {
  return validator.validateBytes(data, {
    maxIssues,
    // a GLB must be self-contained: any external reference is reported, never fetched
    externalResourceFunction: (uri) => Promise.reject(new Error(`external resource ${uri}`)),
  });
}

function frame(obj) {
  const body = Buffer.from(JSON.stringify(obj));
  const head = Buffer.alloc(4);
  head.writeUInt32LE(body.length, 0);
  return Buffer.concat([head, body]);
}

if (second === "--serve") {
  let pending = Buffer.alloc(0);
  let queue = Promise.resolve();
  process.stdin.on("data", (chunk) => {
    pending = Buffer.concat([pending, chunk]);
    while (pending.length >= 8) {
      const size = pending.readUInt32LE(0);
      if (pending.length < 8 + size) break;
      const maxIssues = pending.readUInt32LE(4);
      const data = new Uint8Array(pending.subarray(8, 8 + size));
      pending = pending.subarray(8 + size);
      queue = queue.then(async () => {
        let answer;
        try {
          answer = await validate(data, maxIssues);
        } catch (err) {
          answer = { error: String(err && err.message ? err.message : err) };
        }
        process.stdout.write(frame(answer));
      });
    }
  });
  process.stdin.on("end", () => queue.then(() => process.exit(0)));
} else {
  const chunks = [];
  for await (const chunk of process.stdin) chunks.push(chunk);
  try {
    const report = await validate(new Uint8Array(Buffer.concat(chunks)), Number(second ?? 200));
    process.stdout.write(JSON.stringify(report));
  } catch (err) {
    console.error(String(err && err.message ? err.message : err));
    process.exit(1);
  }
}

// Checks that what is committed is what the sources build: the browser
// bundle that WebLink embeds and serves to the demo page
// (core/weblink/web/longlink.min.js, so that `go run ./cmd/longlink dev`
// needs no Node.js), the socket.io-client bundle it serves beside it, and the
// API reference generated from the types
// (docs/api). `npm run build` then `npm run sync` rewrites both.
import { execFileSync } from "node:child_process";
import { copyFileSync, mkdtempSync, readFileSync, readdirSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

const root = join(dirname(fileURLToPath(import.meta.url)), "..");
const embedded = join(root, "..", "..", "weblink", "web", "longlink.min.js");
const fix = process.argv.includes("--fix");
let stale = [];

// WebLink also serves socket.io-client's own browser bundle, copied from
// the same pinned package.
const copies = [
  [join(root, "dist", "longlink.min.js"), embedded],
  [join(root, "node_modules", "socket.io-client", "dist", "socket.io.min.js"), join(dirname(embedded), "socket.io.min.js")],
];
for (const [from, to] of copies) {
  if (fix) copyFileSync(from, to);
  else if (!readFileSync(to).equals(readFileSync(from))) stale.push(to);
}

const out = fix ? join(root, "docs", "api") : mkdtempSync(join(tmpdir(), "websdk-docs-"));
try {
  execFileSync(join(root, "node_modules", ".bin", "typedoc"), ["--out", out, "--logLevel", "Warn"], { cwd: root, stdio: "inherit" });
  if (!fix) {
    const committed = join(root, "docs", "api");
    const names = readdirSync(out).sort();
    if (names.join() !== readdirSync(committed).sort().join()) stale.push(committed);
    else for (const n of names) if (!readFileSync(join(out, n)).equals(readFileSync(join(committed, n)))) stale.push(join(committed, n));
  }
} finally {
  if (!fix) rmSync(out, { recursive: true, force: true });
}
if (stale.length) {
  console.error(`not what the sources build: ${stale.join(", ")}\nrun: npm run build && npm run sync (in core/sdk/web), and commit`);
  process.exit(1);
}
console.log(fix ? "wrote the embedded bundles and docs/api" : "embedded bundles and docs/api match the sources");

// The bundle size budget (gzip -9 bytes), checked by `npm run ci`, which
// `make test` runs: the browser bundle as WebLink serves it (socket.io-client
// inside), and the SDK's own code as a bundler adds it to an app that
// already has socket.io-client (the ESM build, minified).
import { transform } from "esbuild";
import { readFileSync } from "node:fs";
import { gzipSync } from "node:zlib";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

const root = join(dirname(fileURLToPath(import.meta.url)), "..");
const budgets = JSON.parse(readFileSync(join(root, "package.json"), "utf8")).sizeBudget;
const gz = (b) => gzipSync(b, { level: 9 }).length;

const figures = {
  "longlink.min.js": gz(readFileSync(join(root, "dist/longlink.min.js"))),
  "sdk-only.min.js": gz((await transform(readFileSync(join(root, "dist/index.js"), "utf8"), { minify: true, format: "esm" })).code),
};
let over = false;
for (const [name, size] of Object.entries(figures)) {
  const budget = budgets[name];
  const ok = size <= budget;
  over ||= !ok;
  console.log(`${ok ? "ok  " : "OVER"} ${name} ${size} B gzip (budget ${budget} B, ${((100 * size) / budget).toFixed(0)} %)`);
  console.log(`RESULT websdk_${name.replace(/[.-]/g, "_")}_gzip_bytes ${size} B`);
}
if (over) {
  console.error("bundle size budget exceeded: make it smaller, or raise the budget in package.json with the reason in BENCHMARKS.md");
  process.exit(1);
}

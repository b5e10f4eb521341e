// Builds the package: ESM and CommonJS for bundlers and Node.js (with
// socket.io-client as a dependency), the browser bundle (one minified IIFE
// with socket.io-client inside, global `Longlink`; WebLink serves it at
// /sdk/longlink.min.js), and the type declarations (tsc). esbuild's output
// is byte-for-byte the same for the same sources and versions, which the
// committed copy in core/weblink/web relies on (scripts/check.mjs).
import { build } from "esbuild";
import { execFileSync } from "node:child_process";
import { readFileSync, rmSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

const root = join(dirname(fileURLToPath(import.meta.url)), "..");
process.chdir(root);
const pkg = JSON.parse(readFileSync("package.json", "utf8"));
rmSync("dist", { recursive: true, force: true });

const common = { entryPoints: ["src/index.ts"], bundle: true, target: "es2020", logLevel: "warning", legalComments: "none" };
await Promise.all([
  build({ ...common, format: "esm", platform: "neutral", external: ["socket.io-client"], outfile: "dist/index.js" }),
  build({ ...common, format: "cjs", platform: "node", external: ["socket.io-client"], outfile: "dist/index.cjs" }),
  build({
    ...common,
    format: "iife",
    globalName: "Longlink",
    platform: "browser",
    minify: true,
    legalComments: "eof",
    banner: {
      js: `/*! @longlink/web-sdk ${pkg.version} (Apache-2.0), with socket.io-client ${pkg.dependencies["socket.io-client"]} (MIT). Built from core/sdk/web by \`npm run build\`: do not edit. */`,
    },
    outfile: "dist/longlink.min.js",
  }),
]);
execFileSync(join("node_modules", ".bin", "tsc"), ["-p", "tsconfig.json"], { stdio: "inherit" });

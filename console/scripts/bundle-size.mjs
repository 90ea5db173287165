// Measure the initial JavaScript of the built console (the entry chunk and every chunk it
// imports statically, as index.html loads them), gzipped, and fail above the budget.
// Writes dist/bundle-size.json. Usage: node scripts/bundle-size.mjs [--budget-kb 250]
import { readFileSync, writeFileSync } from "node:fs";
import { gzipSync } from "node:zlib";
import { join } from "node:path";

const dist = new URL("../dist/", import.meta.url).pathname;
const budgetArg = process.argv.indexOf("--budget-kb");
const budgetKb = budgetArg > 0 ? Number(process.argv[budgetArg + 1]) : 250;

const html = readFileSync(join(dist, "index.html"), "utf8");
const entries = [...html.matchAll(/<script[^>]+src="\/([^"]+\.js)"/g), ...html.matchAll(/<link[^>]+rel="modulepreload"[^>]+href="\/([^"]+\.js)"/g)].map((m) => m[1]);

/** Static imports of a chunk: `import ... from "./x.js"` and bare `import "./x.js"` (not import()). */
function staticImports(file) {
  const code = readFileSync(join(dist, file), "utf8");
  const found = new Set();
  for (const m of code.matchAll(/(?:^|[;\s}])import\s*(?:[\w*{}\s,$]+from\s*)?["']\.\/([^"']+\.js)["']/g)) {
    found.add(join(file, "..", m[1]));
  }
  return found;
}

const initial = new Set();
const queue = [...entries];
while (queue.length) {
  const file = queue.shift();
  if (initial.has(file)) continue;
  initial.add(file);
  queue.push(...staticImports(file));
}

const files = [...initial].map((file) => {
  const bytes = readFileSync(join(dist, file));
  return { file, bytes: bytes.length, gzip: gzipSync(bytes, { level: 9 }).length };
});
const total = files.reduce((sum, f) => sum + f.gzip, 0);
const report = { budget_kb: budgetKb, initial_js_gzip_bytes: total, initial_js_gzip_kb: +(total / 1024).toFixed(1), files };
writeFileSync(join(dist, "bundle-size.json"), JSON.stringify(report, null, 2) + "\n");
for (const f of files) console.log(`  ${f.file}  ${(f.bytes / 1024).toFixed(1)} KB, ${(f.gzip / 1024).toFixed(1)} KB gzip`);
console.log(`initial JS: ${report.initial_js_gzip_kb} KB gzipped (budget ${budgetKb} KB)`);
if (total > budgetKb * 1024) {
  console.error(`bundle-size: initial JavaScript ${report.initial_js_gzip_kb} KB gzipped exceeds the budget of ${budgetKb} KB`);
  process.exit(1);
}

// The core does not import a feature: nothing under runtime/ imports analysis/ (the report, the
// comparisons, the runs listing build on finished runs; a run never needs them). The one
// exception is the runtime's entry, which supplies the report to execute() and loads it lazily.

import assert from "node:assert/strict";

const RUNTIME = new URL("../../runtime/", import.meta.url);
const ANALYSIS = new URL("../../analysis/", import.meta.url).href;

/** Every module specifier in `source`: static, side-effect, re-export, dynamic, and worker URLs. */
function specifiers(source: string): { specifier: string; dynamic: boolean }[] {
  const found: { specifier: string; dynamic: boolean }[] = [];
  const patterns: [RegExp, boolean][] = [
    [/\b(?:import|export)\s+(?:type\s+)?[^;"'`]*?\bfrom\s*["']([^"']+)["']/g, false],
    [/\bimport\s*["']([^"']+)["']/g, false],
    [/\bimport\(\s*["']([^"']+)["']\s*\)/g, true],
    [/\bnew URL\(\s*["']([^"']+)["']\s*,\s*import\.meta\.url\s*\)/g, true],
  ];
  for (const [pattern, dynamic] of patterns) {
    for (const m of source.matchAll(pattern)) found.push({ specifier: m[1]!, dynamic });
  }
  return found;
}

/** The TypeScript modules under `dir`, as file URLs. */
async function modules(dir: URL): Promise<string[]> {
  const found: string[] = [];
  for await (const entry of Deno.readDir(dir)) {
    const url = new URL(entry.name + (entry.isDirectory ? "/" : ""), dir);
    if (entry.isDirectory) found.push(...await modules(url));
    else if (entry.name.endsWith(".ts")) found.push(url.href);
  }
  return found;
}

Deno.test("runtime/ imports nothing under analysis/ but the entry's lazy report", async () => {
  const files = await modules(RUNTIME);
  assert.ok(files.length > 50 && files.some((f) => f.endsWith("/run/execute.ts")));
  const reached: string[] = [];
  for (const file of files) {
    const source = await Deno.readTextFile(new URL(file));
    for (const { specifier, dynamic } of specifiers(source)) {
      if (!specifier.startsWith(".")) continue;
      const target = new URL(specifier, file).href;
      if (target.startsWith(ANALYSIS)) {
        reached.push(
          `${file.slice(RUNTIME.href.length)} → ${target.slice(ANALYSIS.length)}` +
            (dynamic ? " (lazy)" : ""),
        );
      }
    }
  }
  assert.deepEqual(reached, ["mod.ts → report/mod.ts (lazy)"]);
});

Deno.test("the import scan finds each form of import", () => {
  const source = [
    'import { a } from "./a.ts";',
    'import type {\n  B,\n} from "../b.ts";',
    'export * from "./c.ts";',
    'import "./d.ts";',
    'const e = await import("./e.ts");',
    'new Worker(new URL("./f.ts", import.meta.url), { type: "module" });',
  ].join("\n");
  assert.deepEqual(specifiers(source).map((s) => [s.specifier, s.dynamic]), [
    ["./a.ts", false],
    ["../b.ts", false],
    ["./c.ts", false],
    ["./d.ts", false],
    ["./e.ts", true],
    ["./f.ts", true],
  ]);
});

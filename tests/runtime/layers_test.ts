// The core does not import a feature: nothing under runtime/ imports analysis/ (the report, the
// comparisons, the runs listing build on finished runs; a run never needs them). The one
// exception is the runtime's entry, which supplies the report to execute() and loads it lazily.

import assert from "node:assert/strict";
import { moduleReferences, sourceFiles } from "../_imports.ts";

const ROOT = new URL("../../", import.meta.url);
const RUNTIME = new URL("runtime/", ROOT);
const ANALYSIS = new URL("analysis/", ROOT).href;

Deno.test("runtime/ imports nothing under analysis/ but the entry's lazy report", async () => {
  const files = (await sourceFiles(ROOT))
    .filter((f) => f.startsWith("runtime/"))
    .map((f) => new URL(f, ROOT).href);
  assert.ok(files.length > 50 && files.some((f) => f.endsWith("/run/execute.ts")));
  const reached: string[] = [];
  for (const file of files) {
    const source = await Deno.readTextFile(new URL(file));
    for (const { specifier, lazy } of moduleReferences(source)) {
      if (!specifier.startsWith(".")) continue;
      const target = new URL(specifier, file).href;
      if (target.startsWith(ANALYSIS)) {
        reached.push(
          `${file.slice(RUNTIME.href.length)} → ${target.slice(ANALYSIS.length)}` +
            (lazy ? " (lazy)" : ""),
        );
      }
    }
  }
  assert.deepEqual(reached, ["mod.ts → report/mod.ts (lazy)"]);
});

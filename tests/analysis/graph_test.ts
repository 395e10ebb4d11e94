/**
 * analysis/ reads finished runs and does no tensor work: the module graphs of its entry points
 * (`deno info --json`) hold no TensorFlow.js and reach every module under analysis/. (No import
 * cycle anywhere, analysis/ included: tests/imports_test.ts.)
 */

import assert from "node:assert/strict";
import { moduleGraph } from "../_entry.ts";
import { sourceFiles } from "../_imports.ts";

const ROOT = new URL("../../", import.meta.url);
/** What imports analysis/: the report, the comparison and the runs listing. */
const ENTRIES = ["analysis/report/mod.ts", "analysis/compare/mod.ts", "analysis/runs.ts"];
const TFJS = /tensorflow|tfjs/i;

Deno.test("analysis/ loads no TensorFlow.js, from any of its entry points", async () => {
  const reached = new Set<string>();
  for (const entry of ENTRIES) {
    const graph = await moduleGraph(entry);
    assert.deepEqual(graph.modules.filter((m) => TFJS.test(m)), [], `${entry} loads TensorFlow.js`);
    assert.deepEqual(graph.imports.filter((s) => TFJS.test(s)), [], `${entry} imports it`);
    for (const m of graph.modules) reached.add(m);
  }
  // The entry points reach every module under analysis/, so the check covers them all.
  for (const file of await sourceFiles(ROOT)) {
    if (file.startsWith("analysis/")) assert.ok(reached.has(new URL(file, ROOT).href), file);
  }
});

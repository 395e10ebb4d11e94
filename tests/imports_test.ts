// No import cycles anywhere: a cycle makes the order modules initialise in depend on which one a
// program imports first (a value read before its module ran is undefined), and ties modules that
// should be read one at a time. This builds the static import graph of every .ts file of the
// repository (static, re-exported, side-effect and dynamic imports, types included) and names
// each cycle it finds.

import assert from "node:assert/strict";
import { importCycles, importGraph, moduleReferences, sourceFiles } from "./_imports.ts";

const ROOT = new URL("../", import.meta.url);

Deno.test("importCycles() names each cycle as its path of files, and finds none in a tree", () => {
  const graph = new Map([
    ["a.ts", ["b.ts", "d.ts"]],
    ["b.ts", ["c.ts"]],
    ["c.ts", ["a.ts", "d.ts"]],
    ["d.ts", []],
    ["e.ts", ["e.ts"]],
    ["f.ts", ["a.ts"]],
  ]);
  assert.deepEqual(importCycles(graph), [["a.ts", "b.ts", "c.ts", "a.ts"], ["e.ts", "e.ts"]]);
  graph.set("c.ts", ["d.ts"]);
  graph.set("e.ts", []);
  assert.deepEqual(importCycles(graph), []);
});

Deno.test("no module of the repository imports itself through others", async () => {
  const files = await sourceFiles(ROOT);
  assert.ok(files.includes("runtime/engine/backend.ts") && files.includes("mod.ts"));
  assert.ok(!files.some((f) => f.startsWith("node_modules/")));
  const graph = await importGraph(ROOT, files);
  const edges = [...graph.values()].reduce((n, targets) => n + targets.length, 0);
  assert.ok(edges > 500, `only ${edges} imports found: is the scanner still working?`);
  const cycles = importCycles(graph).map((cycle) => cycle.join(" → "));
  assert.deepEqual(cycles, [], `import cycles:\n${cycles.join("\n")}`);
});

Deno.test("moduleReferences() finds each form of import, and which load lazily", () => {
  const source = [
    'import { a } from "./a.ts";',
    'import type {\n  B,\n} from "../b.ts";',
    'export * from "./c.ts";',
    'import "./d.ts";',
    'const e = await import("./e.ts");',
    'new Worker(new URL("./f.ts", import.meta.url), { type: "module" });',
  ].join("\n");
  assert.deepEqual(moduleReferences(source).map((s) => [s.specifier, s.lazy]), [
    ["./a.ts", false],
    ["../b.ts", false],
    ["./c.ts", false],
    ["./d.ts", false],
    ["./e.ts", true],
    ["./f.ts", true],
  ]);
});

/**
 * analysis/ reads finished runs and does no tensor work: the module graphs of its entry points
 * (`deno info --json`) hold no TensorFlow.js, reach every module under analysis/, and have no
 * import cycle among them (type-only imports included).
 */

import assert from "node:assert/strict";

const ROOT = new URL("../../", import.meta.url);
const ANALYSIS = new URL("analysis/", ROOT);
/** What imports analysis/: the report, the comparison and the runs listing. */
const ENTRIES = ["analysis/report/mod.ts", "analysis/compare/mod.ts", "analysis/runs.ts"];

interface Module {
  specifier: string;
  dependencies?: { code?: { specifier: string }; type?: { specifier: string } }[];
}

/** The modules of `path`'s graph, as `deno info --json` lists them. */
async function graph(path: string): Promise<Module[]> {
  const { code, stdout } = await new Deno.Command(Deno.execPath(), {
    args: ["info", "--json", new URL(path, ROOT).href],
    stdout: "piped",
    stderr: "null",
  }).output();
  assert.equal(code, 0, `deno info ${path}`);
  return (JSON.parse(new TextDecoder().decode(stdout)) as { modules: Module[] }).modules;
}

function tfjs(modules: readonly Module[]): string[] {
  return modules.map((m) => m.specifier).filter((s) => s.includes("@tensorflow/"));
}

/** Every `.ts` file under `dir`, as file URLs. */
async function files(dir: URL): Promise<string[]> {
  const out: string[] = [];
  for await (const entry of Deno.readDir(dir)) {
    if (entry.isDirectory) out.push(...await files(new URL(`${entry.name}/`, dir)));
    else if (entry.name.endsWith(".ts")) out.push(new URL(entry.name, dir).href);
  }
  return out;
}

/** A cycle of `edges` (its nodes, the first repeated at the end), or null when there is none. */
function findCycle(edges: ReadonlyMap<string, readonly string[]>): string[] | null {
  const state = new Map<string, "open" | "done">();
  const path: string[] = [];
  const visit = (node: string): string[] | null => {
    if (state.get(node) === "done") return null;
    if (state.get(node) === "open") return [...path.slice(path.indexOf(node)), node];
    state.set(node, "open");
    path.push(node);
    for (const next of edges.get(node) ?? []) {
      const cycle = visit(next);
      if (cycle !== null) return cycle;
    }
    path.pop();
    state.set(node, "done");
    return null;
  };
  for (const node of edges.keys()) {
    const cycle = visit(node);
    if (cycle !== null) return cycle;
  }
  return null;
}

Deno.test("findCycle() finds a cycle through type imports too, and none in a tree", () => {
  const tree = new Map([["a", ["b", "c"]], ["b", ["c"]], ["c", []]]);
  assert.equal(findCycle(tree), null);
  const cyclic = new Map([["mod", ["sections"]], ["sections", ["html", "mod"]], ["html", []]]);
  assert.deepEqual(findCycle(cyclic), ["mod", "sections", "mod"]);
});

Deno.test("analysis/ loads no TensorFlow.js and imports no module of its own in a cycle", async () => {
  const modules = new Map<string, Module>();
  for (const entry of ENTRIES) {
    const found = await graph(entry);
    assert.deepEqual(tfjs(found), [], `${entry} loads TensorFlow.js`);
    for (const m of found) modules.set(m.specifier, m);
  }
  // The entry points reach every module under analysis/, so the check covers them all.
  const own = (s: string) => s.startsWith(ANALYSIS.href);
  for (const file of await files(ANALYSIS)) assert.ok(modules.has(file), `${file} unreached`);

  const edges = new Map<string, string[]>();
  for (const m of modules.values()) {
    if (!own(m.specifier)) continue;
    const targets = (m.dependencies ?? []).flatMap((d) => [d.code?.specifier, d.type?.specifier]);
    edges.set(m.specifier, targets.filter((s): s is string => s !== undefined && own(s)));
  }
  const cycle = findCycle(edges);
  assert.equal(
    cycle,
    null,
    `an import cycle: ${cycle?.map((s) => s.slice(ROOT.href.length)).join(" → ")}`,
  );
});

Deno.test("the TensorFlow.js check sees it in the runtime's graph", async () => {
  // The check above looks for these specifiers; the runtime's entry point loads them.
  assert.ok(tfjs(await graph("runtime/mod.ts")).length > 0);
});

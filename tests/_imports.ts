/**
 * The static import graph of the repository's TypeScript, for the tests that hold rules about it
 * (no import cycles; `dsl/` never imports TensorFlow.js).
 *
 * @module
 */

/** A module a source file refers to. */
export interface ModuleReference {
  specifier: string;
  /** Loaded on demand, not as the file loads: a dynamic `import()`, or a worker's module. */
  lazy: boolean;
  /** Started as a worker (`new URL("./x.ts", import.meta.url)`) rather than imported. */
  worker: boolean;
}

/** The forms of a reference: a pattern whose first group is the specifier, and what it is. */
const REFERENCES: [RegExp, Omit<ModuleReference, "specifier">][] = [
  [/\b(?:import|export)\s[^;]*?\sfrom\s*["']([^"']+)["']/g, { lazy: false, worker: false }],
  [/\bimport\s*["']([^"']+)["']/g, { lazy: false, worker: false }],
  [/\bimport\s*\(\s*["']([^"']+)["']\s*\)/g, { lazy: true, worker: false }],
  [/\bnew URL\(\s*["']([^"']+\.ts)["']\s*,\s*import\.meta\.url\s*\)/g, {
    lazy: true,
    worker: true,
  }],
];

/**
 * Every module a source file imports, re-exports, loads with `import()` or names by a URL of its
 * own (a worker's), comments left out.
 */
export function moduleReferences(source: string): ModuleReference[] {
  const code = source.replace(/\/\*[\s\S]*?\*\//g, "").replace(/^\s*\/\/.*$/gm, "");
  return REFERENCES.flatMap(([pattern, kind]) =>
    [...code.matchAll(pattern)].map((m) => ({ specifier: m[1]!, ...kind }))
  );
}

/** Every module specifier a source file imports or re-exports, statically or dynamically. */
export function importsOf(source: string): string[] {
  return moduleReferences(source).filter((r) => !r.worker).map((r) => r.specifier);
}

/** Directories never scanned: dependencies, hidden ones, and what deno.json excludes. */
const SKIPPED = new Set(["node_modules", "runs", "compare", "scratch"]);

/** The repository's .ts files under `root`, as paths relative to it (sorted). */
export async function sourceFiles(root: URL): Promise<string[]> {
  const found: string[] = [];
  const walk = async (dir: string) => {
    for await (const entry of Deno.readDir(new URL(dir, root))) {
      if (entry.name.startsWith(".") || SKIPPED.has(entry.name)) continue;
      const path = `${dir}${entry.name}`;
      if (entry.isDirectory) await walk(`${path}/`);
      else if (entry.isFile && entry.name.endsWith(".ts")) found.push(path);
    }
  };
  await walk("");
  return found.sort();
}

/**
 * The import graph of `files` (paths relative to `root`): each file's imports of the other files,
 * by relative path. Packages, URLs and non-TypeScript files are left out.
 */
export async function importGraph(
  root: URL,
  files: readonly string[],
): Promise<Map<string, string[]>> {
  const known = new Set(files);
  const graph = new Map<string, string[]>();
  for (const file of files) {
    const url = new URL(file, root);
    const targets = importsOf(await Deno.readTextFile(url))
      .filter((s) => s.startsWith("./") || s.startsWith("../"))
      .map((s) => new URL(s, url).href.slice(root.href.length))
      .filter((path) => known.has(path));
    graph.set(file, [...new Set(targets)]);
  }
  return graph;
}

/**
 * The import cycles of `graph`: one per strongly connected component of more than one file (or a
 * file importing itself), as the path of files around it from its first file in order, repeated at
 * the end; sorted by that file.
 */
export function importCycles(graph: ReadonlyMap<string, readonly string[]>): string[][] {
  // Tarjan's strongly connected components.
  let counter = 0;
  const index = new Map<string, number>();
  const low = new Map<string, number>();
  const stack: string[] = [];
  const onStack = new Set<string>();
  const components: string[][] = [];
  const connect = (v: string) => {
    index.set(v, counter);
    low.set(v, counter);
    counter++;
    stack.push(v);
    onStack.add(v);
    for (const w of graph.get(v) ?? []) {
      if (!index.has(w)) {
        connect(w);
        low.set(v, Math.min(low.get(v)!, low.get(w)!));
      } else if (onStack.has(w)) {
        low.set(v, Math.min(low.get(v)!, index.get(w)!));
      }
    }
    if (low.get(v) !== index.get(v)) return;
    const component: string[] = [];
    let w: string;
    do {
      w = stack.pop()!;
      onStack.delete(w);
      component.push(w);
    } while (w !== v);
    if (component.length > 1 || (graph.get(v) ?? []).includes(v)) components.push(component);
  };
  for (const v of [...graph.keys()].sort()) if (!index.has(v)) connect(v);
  // One cycle through each component, from its first file in order, by a search inside it.
  const cycles = components.map((component) => {
    const inside = new Set(component);
    const start = [...component].sort()[0]!;
    const path = [start];
    const seen = new Set<string>();
    const search = (v: string): boolean => {
      for (const w of graph.get(v) ?? []) {
        if (w === start) return true;
        if (!inside.has(w) || seen.has(w)) continue;
        seen.add(w);
        path.push(w);
        if (search(w)) return true;
        path.pop();
      }
      return false;
    };
    search(start);
    return [...path, start];
  });
  return cycles.sort((a, b) => a[0]!.localeCompare(b[0]!));
}

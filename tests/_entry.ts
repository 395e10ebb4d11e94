/**
 * What the tests of the two entry points (`mod.ts`, `runtime/mod.ts`) read from Deno's own tools:
 * an entry's module graph (`deno info --json`) and its exported symbols with their JSDoc
 * (`deno doc --json`).
 *
 * @module
 */

const ROOT = new URL("../", import.meta.url);

async function denoJson(args: string[]): Promise<unknown> {
  const out = await new Deno.Command(Deno.execPath(), {
    args: [...args, "--config", new URL("deno.json", ROOT).pathname],
    cwd: ROOT.pathname,
    stdout: "piped",
    stderr: "piped",
  }).output();
  if (out.code !== 0) {
    throw new Error(`deno ${args.join(" ")} failed: ${new TextDecoder().decode(out.stderr)}`);
  }
  return JSON.parse(new TextDecoder().decode(out.stdout));
}

/** An entry's module graph: every module and every specifier any module imports. */
export interface ModuleGraph {
  /** Specifiers of the graph's modules (files, `npm:` packages, `node:` builtins). */
  modules: string[];
  /** Every specifier imported by a module of the graph, as code or as a type only. */
  imports: string[];
  /** The sum of the local modules' sizes in bytes (npm packages not counted). */
  localBytes: number;
}

interface InfoDependency {
  specifier: string;
  code?: { specifier: string };
  type?: { specifier: string };
}

interface InfoModule {
  specifier: string;
  size?: number;
  dependencies?: InfoDependency[];
}

/** The module graph of `entry` (a path from the repository root), from `deno info --json`. */
export async function moduleGraph(entry: string): Promise<ModuleGraph> {
  const info = await denoJson(["info", "--json", entry]) as { modules: InfoModule[] };
  const imports = info.modules.flatMap((m) =>
    (m.dependencies ?? []).flatMap((d) =>
      [d.specifier, d.code?.specifier, d.type?.specifier].filter((s) => s !== undefined)
    )
  );
  return {
    modules: info.modules.map((m) => m.specifier),
    imports,
    localBytes: info.modules.reduce((sum, m) => sum + (m.size ?? 0), 0),
  };
}

/** One exported symbol of an entry: its name, and whether its JSDoc has text and an example. */
export interface ExportDoc {
  name: string;
  /** Where it is declared, relative to the repository root. */
  file: string;
  documented: boolean;
  example: boolean;
}

interface DocTag {
  kind: string;
}

interface DocDeclaration {
  location: { filename: string };
  jsDoc?: { doc?: string; tags?: DocTag[] };
}

/** The exported symbols of `entry`, from `deno doc --json`. */
export async function exportDocs(entry: string): Promise<ExportDoc[]> {
  const doc = await denoJson(["doc", "--json", entry]) as {
    nodes: Record<string, { symbols: { name: string; declarations: DocDeclaration[] }[] }>;
  };
  const node = Object.values(doc.nodes)[0];
  if (node === undefined) throw new Error(`deno doc gave no module for ${entry}`);
  return node.symbols.map((symbol) => {
    // An overloaded function carries its JSDoc on its first signature.
    const docs = symbol.declarations.map((d) => d.jsDoc).filter((j) => j !== undefined);
    return {
      name: symbol.name,
      file: (symbol.declarations[0]?.location.filename ?? "").replace(ROOT.href, ""),
      documented: docs.some((j) => (j.doc ?? "").trim() !== ""),
      example: docs.some((j) => (j.tags ?? []).some((t) => t.kind === "example")),
    };
  });
}

/** `name (file) lacks …` for each export without a doc comment or an @example. */
export function undocumented(exports: readonly ExportDoc[]): string[] {
  return exports.flatMap((e) => {
    const missing = [
      ...(e.documented ? [] : ["a doc comment"]),
      ...(e.example ? [] : ["an @example"]),
    ];
    return missing.length === 0 ? [] : [`${e.name} (${e.file}) lacks ${missing.join(" and ")}`];
  });
}

// dsl/ must never import TensorFlow.js (docs/architecture.md): everything in it runs without a tensor. This
// scans every import of every file under dsl/ and allows only files inside dsl/ and a short list
// of packages, so a new import of tfjs, or of runtime/ that would bring it, fails here.

import assert from "node:assert/strict";
import { importsOf } from "../_imports.ts";

const DSL = new URL("../../dsl/", import.meta.url);
const ALLOWED_PACKAGES = new Set([
  "@sinclair/typebox",
  "ajv/dist/2020",
  "node:crypto",
  "node:path",
  "node:url",
]);

function problems(file: URL, specifiers: readonly string[]): string[] {
  return specifiers.flatMap((s) => {
    if (/tensorflow|tfjs/i.test(s)) return [`${file.pathname} imports TensorFlow.js (${s})`];
    if (s.startsWith(".")) {
      const target = new URL(s, file);
      return target.href.startsWith(DSL.href)
        ? []
        : [`${file.pathname} imports ${s}, outside dsl/`];
    }
    return ALLOWED_PACKAGES.has(s) ? [] : [`${file.pathname} imports the package ${s}`];
  });
}

Deno.test("importsOf() finds static, re-exported, side-effect and dynamic imports", () => {
  const source =
    `import { a } from "./a.ts";\nimport type {\n  B,\n} from "npm:@tensorflow/tfjs";\n` +
    `export * from "../runtime/mod.ts";\nimport "./side.ts";\nconst m = await import("./lazy.ts");\n` +
    `/** @example\n * import { x } from "./in_a_comment.ts";\n */\n// import "./commented_out.ts";`;
  assert.deepEqual(importsOf(source).sort(), [
    "../runtime/mod.ts",
    "./a.ts",
    "./lazy.ts",
    "./side.ts",
    "npm:@tensorflow/tfjs",
  ]);
  const file = new URL("x.ts", DSL);
  assert.equal(problems(file, importsOf(source)).length, 2);
});

Deno.test("dsl/ imports nothing but dsl/ and its allowed packages (no TensorFlow.js)", async () => {
  let scanned = 0;
  const found: string[] = [];
  for await (const entry of Deno.readDir(DSL)) {
    if (!entry.isFile || !entry.name.endsWith(".ts")) continue;
    const file = new URL(entry.name, DSL);
    const specifiers = importsOf(await Deno.readTextFile(file));
    scanned += specifiers.length;
    found.push(...problems(file, specifiers));
  }
  assert.ok(scanned > 20, `only ${scanned} imports found: is the scanner still working?`);
  assert.deepEqual(found, []);
});

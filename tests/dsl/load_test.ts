/**
 * Tests of `loadRecipe()`: every kind of recipe file it reads (a module's default export or its
 * `recipe` export, a JSON recipe, a plan file, a URL to a JSON or TypeScript recipe), and every way
 * it refuses one, each refusal a `RecipeLoadError` whose message is a single line
 * `<specifier>: <problem>`.
 *
 * Files are written to a fresh temporary directory per test; URLs are served by a `Deno.serve` on
 * 127.0.0.1 with an ephemeral port.
 */

import assert from "node:assert/strict";
import { withTempDir } from "../_helpers.ts";
import { loadRecipe, RecipeLoadError } from "../../dsl/load.ts";

/** A small recipe-shaped value; `loadRecipe()` does not validate, so it need not be complete. */
const RECIPE = { name: "tiny", seed: 7, group: { size: 4, prompts: 2 }, steps: 3 };

/** Asserts that loading `specifier` fails with a one-line `RecipeLoadError`, and returns it. */
async function loadError(specifier: string): Promise<RecipeLoadError> {
  try {
    await loadRecipe(specifier);
  } catch (e) {
    assert.ok(e instanceof RecipeLoadError, `expected a RecipeLoadError, got ${e}`);
    assert.ok(!e.message.includes("\n"), `not one line: ${JSON.stringify(e.message)}`);
    assert.ok(e.message.startsWith(`${specifier}: `), `does not name the file: ${e.message}`);
    assert.equal(e.message, `${specifier}: ${e.problem}`);
    return e;
  }
  assert.fail(`expected loading ${specifier} to fail`);
}

Deno.test("loadRecipe() reads a .ts module's default export", async () => {
  await withTempDir(async (dir) => {
    const path = `${dir}/r.ts`;
    await Deno.writeTextFile(path, `export default ${JSON.stringify(RECIPE)};\n`);
    const loaded = await loadRecipe(path);
    assert.equal(loaded.format, "module");
    assert.equal(loaded.specifier, path);
    assert.equal(loaded.url.protocol, "file:");
    assert.deepEqual(loaded.input, RECIPE);
    assert.equal("planHash" in loaded, false);
  });
});

Deno.test("loadRecipe() reads a module that exports only `recipe`", async () => {
  await withTempDir(async (dir) => {
    const path = `${dir}/named.ts`;
    await Deno.writeTextFile(path, `export const recipe = ${JSON.stringify(RECIPE)};\n`);
    const loaded = await loadRecipe(path);
    assert.equal(loaded.format, "module");
    assert.deepEqual(loaded.input, RECIPE);
  });
});

Deno.test("loadRecipe() reads the committed front door by file URL", async () => {
  const url = new URL("../../recipes/addition_gift.ts", import.meta.url).href;
  const loaded = await loadRecipe(url);
  assert.equal(loaded.format, "module");
  assert.equal(loaded.url.href, url);
  assert.equal((loaded.input as { name?: unknown }).name, "addition-gift");
});

Deno.test("loadRecipe() rejects a module with neither export, naming its exports", async () => {
  await withTempDir(async (dir) => {
    const some = `${dir}/some.ts`;
    await Deno.writeTextFile(some, "export const foo = 1;\nexport const bar = { a: 2 };\n");
    const e = await loadError(some);
    assert.equal(
      e.problem,
      "no recipe exported: expected a default export or an export named 'recipe' " +
        "(it exports bar, foo)",
    );

    const none = `${dir}/none.ts`;
    await Deno.writeTextFile(none, "const unused = 1;\nvoid unused;\nexport {};\n");
    assert.match((await loadError(none)).problem, /\(it exports nothing\)$/);
  });
});

Deno.test("loadRecipe() turns a module that throws at import into one line", async () => {
  await withTempDir(async (dir) => {
    const throws = `${dir}/throws.ts`;
    await Deno.writeTextFile(
      throws,
      'throw new Error("boom\\nat a second line");\nexport default {};\n',
    );
    assert.equal((await loadError(throws)).problem, "cannot load the module: boom");

    // A syntax error: Deno's message is several lines with a code frame; only the first is kept.
    const broken = `${dir}/broken.ts`;
    await Deno.writeTextFile(broken, "export default {\n");
    assert.match((await loadError(broken)).problem, /^cannot load the module: \S/);
  });
});

Deno.test("loadRecipe() reads a .json recipe", async () => {
  await withTempDir(async (dir) => {
    const path = `${dir}/r.json`;
    await Deno.writeTextFile(path, JSON.stringify(RECIPE, null, 2));
    const loaded = await loadRecipe(path);
    assert.equal(loaded.format, "json");
    assert.deepEqual(loaded.input, RECIPE);
    assert.equal("planHash" in loaded, false);
  });
});

Deno.test("loadRecipe() reads a plan file's recipe and records its hash", async () => {
  await withTempDir(async (dir) => {
    const path = `${dir}/plan.json`;
    const plan = {
      hash: "0123456789abcdef",
      format: "giftwrap.plan/1",
      name: "tiny",
      recipe: RECIPE,
    };
    await Deno.writeTextFile(path, JSON.stringify(plan, null, 2));
    const loaded = await loadRecipe(path);
    assert.equal(loaded.format, "plan");
    assert.deepEqual(loaded.input, RECIPE);
    assert.equal(loaded.planHash, "0123456789abcdef");

    // A hash that is not a string is not recorded; the recipe is still read.
    const odd = `${dir}/odd.json`;
    await Deno.writeTextFile(odd, JSON.stringify({ ...plan, hash: 42 }));
    const oddLoaded = await loadRecipe(odd);
    assert.equal(oddLoaded.format, "plan");
    assert.equal("planHash" in oddLoaded, false);

    // Another format tag is an ordinary JSON recipe.
    const other = `${dir}/other.json`;
    await Deno.writeTextFile(other, JSON.stringify({ ...plan, format: "giftwrap.plan/0" }));
    assert.equal((await loadRecipe(other)).format, "json");
  });
});

Deno.test("loadRecipe() rejects a missing file", async () => {
  await withTempDir(async (dir) => {
    for (const name of ["missing.json", "missing.ts"]) {
      const specifier = `${dir}/${name}`;
      const e = await loadError(specifier);
      assert.equal(e.message, `${specifier}: cannot read: no such file`);
    }
  });
});

Deno.test("loadRecipe() rejects a directory", async () => {
  await withTempDir(async (dir) => {
    const json = `${dir}/looks_like.json`;
    await Deno.mkdir(json);
    assert.equal((await loadError(json)).problem, "cannot read: it is a directory");
    assert.equal((await loadError(dir)).problem, "expected a .ts, .js or .json recipe");
  });
});

Deno.test("loadRecipe() rejects an unknown extension", async () => {
  await withTempDir(async (dir) => {
    const path = `${dir}/r.yaml`;
    await Deno.writeTextFile(path, "name: tiny\n");
    const e = await loadError(path);
    assert.equal(e.message, `${path}: expected a .ts, .js or .json recipe`);
  });
});

Deno.test("loadRecipe() locates invalid JSON by line and column", async () => {
  await withTempDir(async (dir) => {
    // Line 3 is `  "seed": 1,,`: two spaces, `"seed":` (columns 3-9), a space, `1` (11), `,` (12);
    // the second comma, at column 13, is where a property name was expected.
    const doubled = `${dir}/doubled.json`;
    await Deno.writeTextFile(doubled, '{\n  "name": "x",\n  "seed": 1,,\n  "steps": 3\n}\n');
    const e = await loadError(doubled);
    assert.match(e.message, /invalid JSON at line 3, column 13\b/);
    assert.equal(
      e.problem,
      "invalid JSON at line 3, column 13: expected a double-quoted key, found ','",
    );

    // A trailing comma: the parser fails on the `}` that opens line 4.
    const trailing = `${dir}/trailing.json`;
    await Deno.writeTextFile(trailing, '{\n  "name": "x",\n  "seed": 1,\n}\n');
    assert.equal(
      (await loadError(trailing)).problem,
      "invalid JSON at line 4, column 1: expected a double-quoted key, found '}'",
    );

    // Mistakes for which JSON.parse names no position: a single-quoted string, a bare word.
    const quoted = `${dir}/quoted.json`;
    await Deno.writeTextFile(quoted, `{\n  "name": 'x'\n}\n`);
    assert.equal(
      (await loadError(quoted)).problem,
      `invalid JSON at line 2, column 11: expected a value, found '''`,
    );
    const bare = `${dir}/bare.json`;
    await Deno.writeTextFile(bare, '{\n  "name": "x",\n  "seed": tru\n}\n');
    assert.equal(
      (await loadError(bare)).problem,
      "invalid JSON at line 3, column 11: expected a value, found 't'",
    );
    const open = `${dir}/open.json`;
    await Deno.writeTextFile(open, '{ "name": "x');
    assert.equal(
      (await loadError(open)).problem,
      "invalid JSON at line 1, column 11: a string that never ends",
    );
  });
});

/** A handler serving a JSON recipe and a 404 for anything else. */
function recipeServer(request: Request): Response {
  const { pathname } = new URL(request.url);
  if (pathname === "/r.json") {
    return new Response(JSON.stringify(RECIPE), {
      headers: { "content-type": "application/json" },
    });
  }
  return new Response("not here", { status: 404 });
}

Deno.test("loadRecipe() reads a JSON recipe by URL and reports an HTTP error", async () => {
  const server = Deno.serve({ hostname: "127.0.0.1", port: 0, onListen() {} }, recipeServer);
  try {
    const base = `http://127.0.0.1:${server.addr.port}`;
    const loaded = await loadRecipe(`${base}/r.json`);
    assert.equal(loaded.format, "json");
    assert.equal(loaded.url.href, `${base}/r.json`);
    assert.deepEqual(loaded.input, RECIPE);

    const missing = `${base}/missing.json`;
    const e = await loadError(missing);
    assert.match(e.message, /: cannot fetch: HTTP 404\b/);
    assert.equal(e.message, `${missing}: cannot fetch: HTTP 404 Not Found`);
  } finally {
    await server.shutdown();
  }
});

Deno.test("loadRecipe() reads a TypeScript recipe by URL, fresh each time, leaving deno.lock alone", async () => {
  let name = "first";
  const server = Deno.serve({ hostname: "127.0.0.1", port: 0, onListen() {} }, (request) => {
    if (new URL(request.url).pathname !== "/r.ts") return new Response("not here", { status: 404 });
    return new Response(`export default ${JSON.stringify({ ...RECIPE, name })};\n`, {
      headers: { "content-type": "application/typescript" },
    });
  });
  const lock = new URL("../../deno.lock", import.meta.url);
  const before = await Deno.readTextFile(lock);
  try {
    const url = `http://127.0.0.1:${server.addr.port}/r.ts`;
    const first = await loadRecipe(url);
    assert.equal(first.format, "module");
    assert.deepEqual(first.input, { ...RECIPE, name: "first" });
    name = "second";
    assert.deepEqual((await loadRecipe(url)).input, { ...RECIPE, name: "second" });
    assert.equal(await Deno.readTextFile(lock), before);
  } finally {
    await server.shutdown();
  }
});

Deno.test("loadRecipe() refuses a recipe that is a FIFO or a link to /dev/zero, without reading it", async () => {
  await withTempDir(async (dir) => {
    const made = await new Deno.Command("mkfifo", { args: [`${dir}/fifo.json`] }).output();
    assert.equal(made.code, 0);
    await Deno.symlink("/dev/zero", `${dir}/zero.ts`);
    assert.equal(
      (await loadError(`${dir}/fifo.json`)).problem,
      "cannot read: it is a FIFO, not a regular file",
    );
    assert.equal(
      (await loadError(`${dir}/zero.ts`)).problem,
      "cannot read: it is a character device, not a regular file",
    );
  });
});

Deno.test("loadRecipe() stops reading a recipe URL past maxBytes", async () => {
  let made = 0;
  const server = Deno.serve({ hostname: "127.0.0.1", port: 0, onListen() {} }, () =>
    new Response(
      new ReadableStream<Uint8Array>({
        pull(controller) {
          if (made++ === 1024) return controller.close(); // 64 MiB at most
          controller.enqueue(new Uint8Array(65_536).fill(0x20));
        },
      }, { highWaterMark: 1 }),
    ));
  try {
    const url = `http://127.0.0.1:${server.addr.port}/big.json`;
    const error = await loadRecipe(url, { maxBytes: 1_000_000 }).catch((e) => e);
    assert.ok(error instanceof RecipeLoadError);
    assert.equal(error.message, `${url}: cannot fetch: the response is over 1000000 bytes`);
    // What fits in the limit and the buffers on the way, far from all 1024.
    assert.ok(made < 512, `made ${made} chunks of 64 KiB`);
  } finally {
    await server.shutdown();
  }
});

Deno.test("loadRecipe() copies a module's export as plain data, naming a field whose getter throws", async () => {
  await withTempDir(async (dir) => {
    await Deno.writeTextFile(
      `${dir}/ok.ts`,
      "let reads = 0;\nconst shared = { size: 4, prompts: 2 };\n" +
        "export default { get name() { return `read ${++reads}`; }, group: shared, " +
        'more: [shared], "a b": NaN };\n',
    );
    const loaded = await loadRecipe(`${dir}/ok.ts`);
    const group = { size: 4, prompts: 2 };
    assert.deepEqual(loaded.input, { name: "read 1", group, more: [group], "a b": NaN });
    // Read once: the copy is plain data, no getter left behind.
    assert.equal((loaded.input as { name: string }).name, "read 1");
    await Deno.writeTextFile(
      `${dir}/throws.ts`,
      'export default { steps: 3, eval: { get ["every n"]() { throw new RangeError("no"); } } };\n',
    );
    assert.equal(
      (await loadError(`${dir}/throws.ts`)).problem,
      'reading export default.eval["every n"] threw: no',
    );
    await Deno.writeTextFile(
      `${dir}/cycle.ts`,
      "const r: any = { a: {} };\nr.a.b = r;\nexport default r;\n",
    );
    assert.equal(
      (await loadError(`${dir}/cycle.ts`)).problem,
      "export default.a.b refers back to one of its parents: a recipe is plain data",
    );
  });
});

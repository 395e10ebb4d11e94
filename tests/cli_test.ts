/**
 * Tests of the command line (`cli.ts`) as a user meets it: a subprocess, its exit code, stdout and
 * stderr. Exit codes: 0 success; 2 an invalid recipe or invalid usage, one line per problem on
 * stderr and never a stack trace; 1 an internal error.
 *
 * Each subprocess is a fresh `deno run` (about 0.3 s); independent ones run in parallel.
 */

import assert from "node:assert/strict";
import {
  assertNoStack,
  assertUsageError,
  giftwrap,
  lines,
  RUN_PERMISSIONS,
  withTempDir,
  writeRecipeModule,
} from "./_helpers.ts";

const ROOT = new URL("../", import.meta.url);

/** The hash in the first line of the text plan, `plan <name> · hash <16 hex digits>`. */
function textHash(stdout: string): string {
  const match = /^plan addition-gift · hash ([0-9a-f]{16})$/m.exec(stdout);
  assert.ok(match !== null, `no plan line in:\n${stdout}`);
  return match[1]!;
}

/** The front door as JSON, with one change; `loadRecipe()` reads JSON without a cache. */
async function frontDoorWith(change: Record<string, unknown>): Promise<string> {
  const text = await Deno.readTextFile(new URL("recipes/addition_gift.json", ROOT));
  return JSON.stringify({ ...JSON.parse(text), ...change }, null, 2);
}

Deno.test("giftwrap plan prints the plan and its hash, as text and as JSON", async () => {
  const [text, json, twin] = await Promise.all([
    giftwrap(["plan", "recipes/addition_gift.ts"]),
    giftwrap(["plan", "recipes/addition_gift.ts", "--json"]),
    giftwrap(["plan", "recipes/addition_gift.json", "--json"]),
  ]);
  assert.equal(text.code, 0, text.stderr);
  assert.equal(json.code, 0, json.stderr);
  assert.equal(twin.code, 0, twin.stderr);
  const hash = textHash(text.stdout);

  const plan = JSON.parse(json.stdout);
  assert.equal(plan.hash, hash);
  assert.equal(plan.format, "giftwrap.plan/1");
  assert.equal(plan.shapes.prompts, 16);
  assert.equal(plan.shapes.groupSize, 8);
  assert.equal(plan.shapes.rows, 128); // B = P·G = 16 · 8

  // The JSON twin compiles to the same plan.
  assert.equal(JSON.parse(twin.stdout).hash, hash);
});

Deno.test("giftwrap validate --format json prints the JSON twin", async () => {
  const [outcome, twinText] = await Promise.all([
    giftwrap(["validate", "recipes/addition_gift.ts", "--format", "json"]),
    Deno.readTextFile(new URL("recipes/addition_gift.json", ROOT)),
  ]);
  assert.equal(outcome.code, 0, outcome.stderr);
  const { $schema, ...twin } = JSON.parse(twinText);
  assert.equal($schema, "../recipe.schema.json");
  assert.deepEqual(JSON.parse(outcome.stdout), twin);
});

Deno.test("giftwrap plan reads back its own --json output with the same hash", async () => {
  await withTempDir(async (dir) => {
    const first = await giftwrap(["plan", "recipes/addition_gift.ts", "--json"]);
    assert.equal(first.code, 0, first.stderr);
    const hash = JSON.parse(first.stdout).hash;
    await Deno.writeTextFile(`${dir}/plan.json`, first.stdout);

    const [text, json] = await Promise.all([
      giftwrap(["plan", "plan.json"], dir),
      giftwrap(["plan", "plan.json", "--json"], dir),
    ]);
    assert.equal(text.code, 0, text.stderr);
    assert.equal(textHash(text.stdout), hash);
    assert.equal(text.stderr, "", "a warning about the recorded hash");
    assert.equal(json.code, 0, json.stderr);
    assert.equal(JSON.parse(json.stdout).hash, hash);
    assert.equal(json.stderr, "");
  });
});

Deno.test("giftwrap reports usage errors as one line with exit code 2", async () => {
  await withTempDir(async (dir) => {
    await Deno.writeTextFile(`${dir}/broken.json`, '{\n  "name": "x",\n  "seed": 1,,\n}\n');
    const [noRecipe, unknownCommand, typo, badBackend, missing, broken] = await Promise.all([
      giftwrap(["plan"]),
      giftwrap(["frobnicate", "recipes/addition_gift.ts"]),
      giftwrap(["plna", "recipes/addition_gift.ts"]),
      giftwrap(["plan", "recipes/addition_gift.ts", "--backend", "gpu"]),
      giftwrap(["plan", "missing.json"], dir),
      giftwrap(["validate", "broken.json"], dir),
    ]);
    assertUsageError(noRecipe, "no recipe argument");
    assert.match(noRecipe.stderr, /recipe/);
    assertUsageError(unknownCommand, "unknown command");
    assert.match(unknownCommand.stderr, /frobnicate/);
    assertUsageError(typo, "a misspelt command");
    assert.equal(typo.stderr, "error: unknown command 'plna' (did you mean plan?)\n");
    assertUsageError(badBackend, "--backend gpu");
    assert.match(badBackend.stderr, /gpu/);
    assertUsageError(missing, "missing file");
    assert.equal(missing.stderr, "missing.json: cannot read: no such file\n");
    assertUsageError(broken, "invalid JSON");
    assert.equal(
      broken.stderr,
      "broken.json: invalid JSON at line 3, column 13: expected a double-quoted key, found ','\n",
    );
  });
});

Deno.test("giftwrap validate reports an invalid recipe, one line per problem naming the file", async () => {
  await withTempDir(async (dir) => {
    // Schema problems: a misspelt key, a number out of range.
    const schema = await frontDoorWith({ group: { szie: 8, prompts: 16 }, steps: -1 });
    await Deno.writeTextFile(`${dir}/bad_schema.json`, schema);
    // A compiler problem: eval.every of 0.
    await Deno.writeTextFile(
      `${dir}/bad_compile.json`,
      await frontDoorWith({ eval: { every: 0 } }),
    );
    // A module that throws when imported.
    await Deno.writeTextFile(`${dir}/throws.ts`, 'throw new Error("boom");\n');

    const [badSchema, badCompile, throws] = await Promise.all([
      giftwrap(["validate", "bad_schema.json"], dir),
      giftwrap(["plan", "bad_compile.json"], dir),
      giftwrap(["validate", "throws.ts"], dir),
    ]);
    for (
      const [name, outcome] of [["bad_schema.json", badSchema], [
        "bad_compile.json",
        badCompile,
      ]] as const
    ) {
      assert.equal(outcome.code, 2, outcome.stderr);
      assert.equal(outcome.stdout, "");
      assert.ok(lines(outcome.stderr).length >= 1);
      for (const line of lines(outcome.stderr)) assert.ok(line.startsWith(`${name}: `), line);
      assertNoStack(outcome.stderr);
    }
    assert.match(badSchema.stderr, /^bad_schema\.json: group\.szie: .*did you mean 'group\.size'/m);
    assert.match(badSchema.stderr, /^bad_schema\.json: steps: .*got -1/m);
    // A misspelt key is one problem: no second line for the missing group.size.
    assert.equal(lines(badSchema.stderr).length, 2, badSchema.stderr);
    assert.match(badCompile.stderr, /^bad_compile\.json: eval\.every: /m);

    assertUsageError(throws, "a module that throws");
    assert.equal(throws.stderr, "throws.ts: cannot load the module: boom\n");
  });
});

Deno.test("giftwrap validate --strict fails on a warning", async () => {
  await withTempDir(async (dir) => {
    // eval.every beyond steps compiles, with a warning.
    await Deno.writeTextFile(
      `${dir}/late_eval.json`,
      await frontDoorWith({ steps: 5, checkpoint: {} }),
    );
    const [lenient, strict] = await Promise.all([
      giftwrap(["validate", "late_eval.json"], dir),
      giftwrap(["validate", "late_eval.json", "--strict"], dir),
    ]);
    assert.equal(lenient.code, 0, lenient.stderr);
    assert.match(lenient.stdout, /^late_eval\.json: ok · plan [0-9a-f]{16} · 1 warning$/m);
    assert.match(lenient.stderr, /^late_eval\.json: warning: eval\.every: /);

    assert.equal(strict.code, 2, strict.stderr);
    assert.equal(strict.stdout, "");
    assert.equal(lines(strict.stderr).length, 1, strict.stderr);
    assert.match(strict.stderr, /^late_eval\.json: warning: eval\.every: /);
    assertNoStack(strict.stderr);
  });
});

Deno.test("giftwrap schema --out writes the committed recipe.schema.json", async () => {
  await withTempDir(async (dir) => {
    const [written, stdout, committed] = await Promise.all([
      giftwrap(["schema", "--out", `${dir}/s.json`]),
      giftwrap(["schema", "--out", "-"]),
      Deno.readTextFile(new URL("recipe.schema.json", ROOT)),
    ]);
    assert.equal(written.code, 0, written.stderr);
    assert.equal(written.stdout, `wrote ${dir}/s.json\n`);
    assert.equal(await Deno.readTextFile(`${dir}/s.json`), committed);
    assert.equal(stdout.code, 0, stdout.stderr);
    assert.equal(stdout.stdout, committed);
    assert.deepEqual(
      (await Array.fromAsync(Deno.readDir(dir))).map((e) => e.name),
      ["s.json"],
      "a temporary file left behind",
    );
  });
});

Deno.test("giftwrap schema --out reports an unwritable path and leaves no temporary file", async () => {
  await withTempDir(async (dir) => {
    // The temporary file is written, then the rename onto a directory fails.
    await Deno.mkdir(`${dir}/taken.json`);
    const [nowhere, taken] = await Promise.all([
      giftwrap(["schema", "--out", "/nonexistent-dir/s.json"], dir),
      giftwrap(["schema", "--out", "taken.json"], dir),
    ]);
    assertUsageError(nowhere, "a missing directory");
    assert.equal(
      nowhere.stderr,
      "/nonexistent-dir/s.json: cannot write: its directory does not exist\n",
    );
    assertUsageError(taken, "a directory in the way");
    assert.equal(taken.stderr, "taken.json: cannot write: it is a directory\n");
    const left = (await Array.fromAsync(Deno.readDir(dir))).map((e) => e.name);
    assert.deepEqual(left, ["taken.json"], "a temporary file left behind");
    assert.deepEqual(await Array.fromAsync(Deno.readDir(`${dir}/taken.json`)), []);
  });
});

Deno.test("giftwrap run --backend tensorflow, absent here, exits 2 naming libtensorflow", async () => {
  await withTempDir(async (dir) => {
    const run = await giftwrap([
      "run",
      "recipes/addition_gift.ts",
      "--backend",
      "tensorflow",
      "--runs-dir",
      dir,
    ]);
    assert.equal(run.code, 2, run.stderr);
    assert.equal(lines(run.stderr).length, 1, run.stderr);
    assert.match(
      run.stderr,
      /^giftwrap: backend 'tensorflow' needs the native library libtensorflow/,
    );
    assert.match(run.stderr, /@tensorflow\/tfjs-node/);
    assertNoStack(run.stderr);
    assert.deepEqual(await Array.fromAsync(Deno.readDir(dir)), [], "a run directory was created");
  });
});

Deno.test("giftwrap run names an objective module that does not load in one line, exit 2", async () => {
  await withTempDir(async (dir) => {
    const path = await writeRecipeModule(dir, "custom", {
      ...JSON.parse(await Deno.readTextFile(new URL("recipes/addition_gift.json", ROOT))),
      objective: { kind: "custom", module: "./missing_objective.ts", reads: { reference: false } },
      reference: "none",
    });
    const run = await giftwrap(["run", path, "--runs-dir", dir]);
    assertUsageError(run, "an objective module that does not load");
    assert.match(
      run.stderr,
      /^giftwrap: Cannot load objective \.\/missing_objective\.ts#default: /,
    );
  });
});

Deno.test("giftwrap run trains a recipe end to end and names its run directory", async () => {
  await withTempDir(async (dir) => {
    const { TINY } = await import("./runtime/_tiny.ts");
    const path = `${dir}/tiny.json`;
    await Deno.writeTextFile(path, JSON.stringify({ ...TINY, steps: 2 }));
    const run = await giftwrap(["run", path, "--runs-dir", `${dir}/runs`]);
    assert.equal(run.code, 0, run.stderr);
    assertNoStack(run.stderr);
    const out = lines(run.stdout);
    assert.match(
      out[0]!,
      /^run tiny · plan [0-9a-f]{16} · wasm \(SIMD, 1 thread\)( · matmul: [^·]+)? · [\d,]+ parameters → /,
    );
    assert.ok(out.some((l) => /^eval step 0 · accuracy \d+\.\d% \(\d+\/20\)$/.test(l)), run.stdout);
    assert.deepEqual(out.filter((l) => l.startsWith("step ")).map((l) => l.split(" · ")[0]), [
      "step 1/2",
      "step 2/2",
    ]);
    const last = out[out.length - 1]!;
    assert.match(last, /^accuracy \d+\.\d% → \d+\.\d% \([+-]\d+\.\d points\) after 2 steps · /);
    const runDir = last.split(" · ").pop()!;
    assert.ok((await Deno.stat(`${runDir}/checkpoints/final/model.safetensors`)).isFile);

    // `runs` lists it; `report` draws its page again.
    // With the permissions of their tasks: runs reads, report reads and writes.
    const READ = ["--allow-read"];
    const READ_WRITE = ["--allow-read", "--allow-write"];
    const listed = await giftwrap(["runs", "--runs-dir", `${dir}/runs`], undefined, READ);
    assert.equal(listed.code, 0, listed.stderr);
    const [header, row, ...rest] = lines(listed.stdout);
    assert.match(header!, /^dir +recipe +status +steps +accuracy +reward +started$/);
    assert.match(
      row!,
      /^tiny-\d{8}-\d{6} +tiny +finished +2\/2 +\d+\.\d% → \d+\.\d% +\d\.\d{3} +\d{4}-/,
    );
    assert.deepEqual(rest, []);
    const json = await giftwrap(["runs", "--runs-dir", `${dir}/runs`, "--json"], undefined, READ);
    const [summary] = JSON.parse(json.stdout);
    assert.deepEqual([summary.dir, summary.status, summary.step], [runDir, "finished", 2]);
    await Deno.remove(`${runDir}/report.html`);
    const report = await giftwrap(["report", runDir], undefined, READ_WRITE);
    assert.deepEqual([report.code, report.stdout], [0, `wrote ${runDir}/report.html\n`]);
    assert.ok((await Deno.readTextFile(`${runDir}/report.html`)).includes("<svg"));
    assertUsageError(
      await giftwrap(["report", `${dir}/nowhere`], undefined, READ_WRITE),
      "report of no run",
    );
    assert.equal(
      (await giftwrap(["runs", "--runs-dir", `${dir}/nowhere`], undefined, READ)).stdout,
      `no runs in ${dir}/nowhere\n`,
    );
  });
});

Deno.test("giftwrap run reads a JSON recipe's reward module relative to the recipe", async () => {
  await withTempDir(async (dir) => {
    const { TINY } = await import("./runtime/_tiny.ts");
    await Deno.mkdir(`${dir}/recipes`);
    await Deno.writeTextFile(
      `${dir}/recipes/reward.ts`,
      "export function score(s: { completion: string; answer: string }): number {\n" +
        "  return s.completion === s.answer ? 1 : 0;\n}\n",
    );
    const recipe = {
      ...TINY,
      steps: 1,
      rewards: [{ source: { kind: "fn", module: "./reward.ts", export: "score" } }],
      eval: { metric: { kind: "numericAnswer" } },
    };
    await Deno.writeTextFile(`${dir}/recipes/tiny.json`, JSON.stringify(recipe));
    const run = await giftwrap(["run", `${dir}/recipes/tiny.json`, "--runs-dir", `${dir}/runs`]);
    assert.equal(run.code, 0, run.stderr);
    assertNoStack(run.stderr);
    assert.match(lines(run.stdout).pop()!, /^accuracy .* after 1 step · /);
  });
});

Deno.test("giftwrap run stops on a failing reward endpoint in one line, exit 1", async () => {
  await withTempDir(async (dir) => {
    const { TINY } = await import("./runtime/_tiny.ts");
    const recipe = {
      ...TINY,
      steps: 2,
      rewards: [{ source: { kind: "http", url: "http://127.0.0.1:9/score", retries: 0 } }],
      eval: { metric: { kind: "numericAnswer" } },
    };
    await Deno.writeTextFile(`${dir}/tiny.json`, JSON.stringify(recipe));
    const run = await giftwrap(["run", `${dir}/tiny.json`, "--runs-dir", `${dir}/runs`]);
    assert.equal(run.code, 1, run.stderr);
    assert.equal(lines(run.stderr).length, 1, run.stderr);
    assert.match(
      run.stderr,
      /^giftwrap: reward 'http' failed on 16 of 16 samples: http:\/\/127\.0\.0\.1:9\/score: /,
    );
    assertNoStack(run.stderr);
  });
});

Deno.test("deno.json's run task grants what compare gives each run, and compare adds --allow-run", async () => {
  const { tasks } = JSON.parse(await Deno.readTextFile(new URL("deno.json", ROOT)));
  const flags = (task: string) => task.split(" ").filter((w) => w.startsWith("--"));
  assert.deepEqual(flags(tasks.run), [...RUN_PERMISSIONS]);
  // compare's --allow-run covers the runs' --allow-run=sh (Deno takes the first of the two)
  const widened = RUN_PERMISSIONS.map((flag) => flag === "--allow-run=sh" ? "--allow-run" : flag);
  assert.deepEqual(flags(tasks.compare).sort(), [...widened].sort());
});

Deno.test("giftwrap exits 2 naming a recipe URL that drips, within GIFTWRAP_FETCH_TIMEOUT", async () => {
  // The start of a JSON recipe, then a byte a second for ever: only a deadline ends the fetch.
  const stop = new AbortController();
  const server = Deno.serve({ hostname: "127.0.0.1", port: 0, onListen() {} }, () =>
    new Response(
      new ReadableStream<Uint8Array>({
        async pull(controller) {
          if (stop.signal.aborted) return controller.close();
          controller.enqueue(new TextEncoder().encode(" "));
          await new Promise((resolve) => {
            const timer = setTimeout(resolve, 1000);
            stop.signal.addEventListener("abort", () => resolve(clearTimeout(timer)));
          });
        },
      }, { highWaterMark: 0 }),
      { headers: { "content-type": "application/json" } },
    ));
  try {
    const url = `http://127.0.0.1:${server.addr.port}/drip.json`;
    const started = performance.now();
    const [drip, badTimeout] = await Promise.all([
      giftwrap(["plan", url], ROOT, RUN_PERMISSIONS, { GIFTWRAP_FETCH_TIMEOUT: "2" }),
      giftwrap(["plan", url], ROOT, RUN_PERMISSIONS, { GIFTWRAP_FETCH_TIMEOUT: "soon" }),
    ]);
    const seconds = (performance.now() - started) / 1000;
    assertUsageError(drip, "a dripping recipe URL");
    assert.equal(drip.stderr, `${url}: cannot fetch: no complete response within 2 s\n`);
    assert.ok(seconds < 20, `took ${seconds.toFixed(1)} s`);
    assertUsageError(badTimeout, "a bad GIFTWRAP_FETCH_TIMEOUT");
    assert.equal(
      badTimeout.stderr,
      "giftwrap: GIFTWRAP_FETCH_TIMEOUT: expected seconds > 0, got 'soon'\n",
    );
  } finally {
    stop.abort();
    await server.shutdown();
  }
});

Deno.test("giftwrap exits 2 naming the field when reading a recipe export throws", async () => {
  await withTempDir(async (dir) => {
    const front = await frontDoorWith({});
    await Deno.writeTextFile(
      `${dir}/getter.ts`,
      `const base = ${front};\n` +
        'export default { ...base, get name() { throw new Error("no name\\ntoday"); } };\n',
    );
    await Deno.writeTextFile(
      `${dir}/nested.ts`,
      `const base = ${front};\n` +
        "export const recipe = { ...base, rewards: [{ source: { get kind() { throw 42; } } }] };\n",
    );
    const [getter, nested] = await Promise.all([
      giftwrap(["validate", "getter.ts"], dir),
      giftwrap(["run", "nested.ts"], dir),
    ]);
    assertUsageError(getter, "a throwing getter");
    assert.equal(getter.stderr, "getter.ts: reading export default.name threw: no name\n");
    assertUsageError(nested, "a nested throwing getter");
    assert.equal(
      nested.stderr,
      "nested.ts: reading export recipe.rewards[0].source.kind threw: 42\n",
    );
  });
});

// A data file's content is part of what a run is: a run records its hash, a resume refuses an
// edited file in one line, and the warm-start cache is keyed by it.

import assert from "node:assert/strict";
import { planHash, withInputs } from "../../../mod.ts";
import { execute, RunSetupError } from "../../../runtime/mod.ts";
import { DataError } from "../../../runtime/data/jsonl.ts";
import { loadTask } from "../../../runtime/data/task.ts";
import { Rng } from "../../../runtime/engine/random.ts";
import { warmStartKey } from "../../../runtime/rl/warm_start.ts";
import { withTempDir } from "../../_helpers.ts";
import { tinyPlan } from "../_tiny.ts";

/** `n` rows `{"q": "a+b", "a": "sum"}`, one per line, from row `from`. */
function sums(n: number, from = 0): string {
  return Array.from({ length: n }, (_, k) => {
    const i = from + k;
    const [a, b] = [i % 7, (i * 3) % 5];
    return JSON.stringify({ q: `${a}+${b}`, a: `${a + b}` }) + "\n";
  }).join("");
}

/** The tiny recipe on `data/sums.jsonl`, checkpointing every step, with `changes`. */
function jsonlPlan(changes: Record<string, unknown> = {}) {
  return tinyPlan({
    data: {
      kind: "jsonl",
      path: "data/sums.jsonl",
      prompt: "q",
      answer: "a",
      template: "{prompt}=",
      eval: 4,
      maxPromptTokens: 8,
    },
    sampling: { maxNewTokens: 3 },
    steps: 3,
    checkpoint: { every: 1 },
    ...changes,
  } as never);
}

/** The SHA-256 of a file, in hex. */
async function sha256(path: string): Promise<string> {
  const digest = await crypto.subtle.digest("SHA-256", await Deno.readFile(path));
  return Array.from(new Uint8Array(digest), (b) => b.toString(16).padStart(2, "0")).join("");
}

Deno.test("execute() refuses to resume a run whose data file changed, naming the file", async () => {
  await withTempDir(async (dir) => {
    await Deno.mkdir(`${dir}/data`);
    const file = `${dir}/data/sums.jsonl`;
    await Deno.writeTextFile(file, sums(30));
    const baseUrl = new URL(`file://${dir}/`);
    const plan = jsonlPlan();
    // Stopped after step 1, as Ctrl-C would: a checkpoint to resume from.
    const stop = new AbortController();
    const first = await execute(plan, {
      runsDir: `${dir}/runs`,
      baseUrl,
      log: () => {},
      signal: stop.signal,
      onStep: () => stop.abort(),
    });
    assert.equal(first.status, "interrupted");
    // The run's hash covers the data: it is the hash the command line prints for this recipe.
    assert.equal(first.hash, planHash(await withInputs(plan, baseUrl)));
    assert.notEqual(first.hash, planHash(plan));
    const recorded = JSON.parse(await Deno.readTextFile(`${first.dir}/plan.json`));
    const then = await sha256(file);
    assert.deepEqual(recorded.inputs, [
      { field: "data.path", path: "data/sums.jsonl", bytes: sums(30).length, sha256: then },
    ]);

    // Rows added, or rows removed: either is refused before anything loads.
    for (const edited of [sums(30) + sums(5, 30), sums(20)]) {
      await Deno.writeTextFile(file, edited);
      const now = await sha256(file);
      await assert.rejects(
        () => execute(plan, { runsDir: `${dir}/runs`, baseUrl, log: () => {}, resume: first.dir }),
        (e: Error) => {
          assert.ok(e instanceof RunSetupError, e.stack);
          assert.equal(
            e.message,
            `Cannot resume '${first.dir}': data/sums.jsonl changed since the run started ` +
              `(sha256 ${then.slice(0, 12)}… then, ${now.slice(0, 12)}… now); resume with the ` +
              "same file, or start a new run",
          );
          return true;
        },
      );
    }
    // With the file it started with, it resumes and finishes.
    await Deno.writeTextFile(file, sums(30));
    const resumed = await execute(plan, {
      runsDir: `${dir}/runs`,
      baseUrl,
      log: () => {},
      resume: first.dir,
    });
    assert.deepEqual([resumed.status, resumed.dir, resumed.hash], [
      "finished",
      first.dir,
      first.hash,
    ]);
  });
});

Deno.test("warmStartKey() changes with the data file's content, and not for data in no file", async () => {
  // Recorded before the data's hash was part of the key: a recipe naming no file keeps its cache.
  assert.equal(warmStartKey(tinyPlan()), "93c94d6103fce7b6");
  assert.equal(warmStartKey(tinyPlan(), "openblas"), "dbbf439fc7acd631");
  await withTempDir(async (dir) => {
    await Deno.mkdir(`${dir}/data`);
    const baseUrl = new URL(`file://${dir}/`);
    await Deno.writeTextFile(`${dir}/data/sums.jsonl`, sums(30));
    const before = warmStartKey(await withInputs(jsonlPlan(), baseUrl));
    await Deno.writeTextFile(`${dir}/data/sums.jsonl`, sums(30) + sums(1, 30));
    const after = warmStartKey(await withInputs(jsonlPlan(), baseUrl));
    assert.notEqual(after, before);
    // A reward module is no input of the warm start: changing it keeps the key.
    await Deno.writeTextFile(`${dir}/r.ts`, "export default () => 1;\n");
    const rewarded = jsonlPlan({
      rewards: [
        { source: { kind: "numericAnswer" } },
        { source: { kind: "fn", module: "./r.ts" }, weight: 0 },
      ],
      eval: { every: 2, metric: { kind: "numericAnswer" } },
    });
    const key = warmStartKey(await withInputs(rewarded, baseUrl));
    await Deno.writeTextFile(`${dir}/r.ts`, "export default () => 0;\n");
    assert.equal(warmStartKey(await withInputs(rewarded, baseUrl)), key);
  });
});

Deno.test("loadTask() refuses a data file whose content is not the one its plan recorded", async () => {
  await withTempDir(async (dir) => {
    await Deno.mkdir(`${dir}/data`);
    const file = `${dir}/data/sums.jsonl`;
    const baseUrl = new URL(`file://${dir}/`);
    await Deno.writeTextFile(file, sums(30));
    const plan = await withInputs(jsonlPlan(), baseUrl);
    const then = await sha256(file);
    assert.equal((await loadTask(plan, new Rng(1), baseUrl)).splits.eval.length, 4);
    await Deno.writeTextFile(file, sums(29));
    const now = await sha256(file);
    await assert.rejects(
      () => loadTask(plan, new Rng(1), baseUrl),
      (e: Error) => {
        assert.ok(e instanceof DataError);
        assert.equal(
          e.message,
          `${file}: changed since the plan was made (sha256 ${then.slice(0, 12)}… then, ` +
            `${now.slice(0, 12)}… now)`,
        );
        return true;
      },
    );
  });
});

Deno.test("execute() refuses a plan whose files changed since it recorded them, before any run directory", async () => {
  await withTempDir(async (dir) => {
    await Deno.mkdir(`${dir}/data`);
    const file = `${dir}/data/sums.jsonl`;
    const baseUrl = new URL(`file://${dir}/`);
    await Deno.writeTextFile(file, sums(30));
    const plan = await withInputs(jsonlPlan(), baseUrl);
    const then = await sha256(file);
    await Deno.writeTextFile(file, sums(31));
    const now = await sha256(file);
    await assert.rejects(
      () => execute(plan, { runsDir: `${dir}/runs`, baseUrl, log: () => {} }),
      (e: Error) => {
        assert.ok(e instanceof RunSetupError, e.stack);
        assert.equal(
          e.message,
          `Cannot run plan ${planHash(plan)}: data/sums.jsonl changed since the plan was made ` +
            `(sha256 ${then.slice(0, 12)}… then, ${
              now.slice(0, 12)
            }… now); compile the recipe again`,
        );
        return true;
      },
    );
    await assert.rejects(() => Deno.stat(`${dir}/runs`), Deno.errors.NotFound);
  });
});

import assert from "node:assert/strict";
import { bytesText } from "../../../dsl/format.ts";
import { stagePeaks } from "../../../dsl/memory.ts";
import { compile, gift, jsonl, recipe, rewards, tinyGpt } from "../../../mod.ts";
import {
  isOutOfMemory,
  outOfMemory,
  OutOfMemoryError,
  STEP_STAGES,
} from "../../../runtime/run/out_of_memory.ts";
import { assertNoStack, giftwrap, lines, withTempDir } from "../../_helpers.ts";
import { TINY } from "../_tiny.ts";

const GiB = 2 ** 30;

/** JSON Lines data of 512-token sequences, a warm-start batch of 8 rows: it fits wasm's heap. */
const PLAN = compile(recipe({
  name: "long",
  policy: tinyGpt({ warmStart: { sftSteps: 20, batchSize: 8 } }),
  data: jsonl("./data.jsonl", { eval: 20 }),
  rewards: [{ source: rewards.numericAnswer() }],
  group: { size: 8, prompts: 8 },
  objective: gift(),
  optimizer: { lr: 3e-5 },
  steps: 3,
}));

/** What `handler` throws for `error`. */
function thrown(handler: (error: unknown) => never, error: unknown): unknown {
  try {
    handler(error);
  } catch (e) {
    return e;
  }
  assert.fail("the handler returned");
}

Deno.test("isOutOfMemory() knows allocation failures, and a wasm trap only with a full heap", () => {
  for (
    const message of [
      "Array buffer allocation failed",
      "WebAssembly.Memory.grow(): Maximum memory size exceeded",
      "Invalid typed array length: 1234567890123",
    ]
  ) assert.equal(isOutOfMemory(new RangeError(message), null), true, message);
  assert.equal(isOutOfMemory(new RangeError("Invalid count value: -1"), null), false);
  const aborted = new WebAssembly.RuntimeError("Aborted(). Build with -sASSERTIONS for more info.");
  assert.equal(isOutOfMemory(aborted, 3.9 * GiB), true);
  assert.equal(
    isOutOfMemory(new WebAssembly.RuntimeError("memory access out of bounds"), 2 * GiB),
    true,
  );
  assert.equal(isOutOfMemory(aborted, 64 * 2 ** 20), false); // a small heap: another fault
  assert.equal(isOutOfMemory(aborted, null), false); // not on wasm
  assert.equal(isOutOfMemory(new Error("Array buffer allocation failed"), null), false);
});

Deno.test("outOfMemory() turns a stage's allocation failure into one line with its budget and fix", () => {
  const failure = new RangeError("Array buffer allocation failed");
  const warm = thrown(outOfMemory(PLAN, "warm start", ["warm start"]), failure);
  assert.ok(warm instanceof OutOfMemoryError);
  assert.equal(warm.stage, "warm start");
  assert.equal(warm.cause, failure);
  const peaks = new Map(stagePeaks(PLAN).map((p) => [p.stage, p.bytes]));
  const shorter = "shorten sequences of 512 tokens with data.maxPromptTokens (256) or " +
    "sampling.maxNewTokens (256), or use backend 'cpu' (no heap limit, slower)";
  // The fix aims at half the estimate of 440 MiB: a batch of 3 needs 169 MiB, one of 4 223 MiB.
  assert.equal(
    warm.message,
    `warm start ran out of memory on wasm (estimated peak ${
      bytesText(peaks.get("warm start")!)
    } of wasm's 4 GiB heap): fix: set policy.warmStart.batchSize to 3 or less, ${shorter}`,
  );
  assert.equal(bytesText(peaks.get("warm start")!), "440 MiB");
  // A step names the largest of its stages: here the update, of 32 rows (1.74 GB). Half of it is
  // 913 MB; 16 rows would need 917 MB (the weights do not halve), so 8 mini-batches of 8 rows,
  // or the same update in 4 micro-batches of 8 rows (activation checkpointing alone is not enough).
  const step = thrown(outOfMemory(PLAN, "step 3", STEP_STAGES), failure) as Error;
  assert.equal(
    step.message,
    `step 3 ran out of memory on wasm (estimated peak ${
      bytesText(peaks.get("update")!)
    } of wasm's 4 GiB heap, in the update): fix: set microBatches to 4 (8 rows at a time), ` +
      `set miniBatches to 8 (8 rows per update), ${shorter}`,
  );
  // Anything else passes through as it was.
  const other = new Error("a bug");
  assert.equal(thrown(outOfMemory(PLAN, "eval", ["eval"]), other), other);
});

Deno.test("giftwrap run: an allocation failure in a step is one line naming it, exit 1", async () => {
  await withTempDir(async (dir) => {
    // An objective whose loss fails as a backend does when its memory is full.
    await Deno.writeTextFile(
      `${dir}/hog.ts`,
      'export const hog = { name: "hog", needs: { reference: false }, loss() {\n' +
        '  throw new RangeError("Array buffer allocation failed");\n} };\n',
    );
    const path = `${dir}/tiny.json`;
    await Deno.writeTextFile(
      path,
      JSON.stringify({
        ...TINY,
        steps: 2,
        reference: "none",
        objective: {
          kind: "custom",
          module: "./hog.ts",
          export: "hog",
          reads: { reference: false },
        },
      }),
    );
    const run = await giftwrap(["run", path, "--runs-dir", `${dir}/runs`]);
    assert.equal(run.code, 1, run.stderr);
    assertNoStack(run.stderr);
    assert.deepEqual(lines(run.stderr).length, 1, run.stderr);
    assert.match(
      run.stderr,
      /^giftwrap: step 1 ran out of memory on wasm \(estimated peak [\d.]+ [KM]iB of wasm's 4 GiB heap, in the update\): fix: set miniBatches to /,
    );
    // The run directory records the failure.
    const [runDir] = await Array.fromAsync(Deno.readDir(`${dir}/runs`), (e) => e.name)
      .then((names) => names.filter((n) => n.startsWith("tiny-")));
    const info = JSON.parse(await Deno.readTextFile(`${dir}/runs/${runDir}/run.json`));
    assert.equal(info.status, "failed");
    assert.match(info.error, /^step 1 ran out of memory on wasm /);
  });
});

import assert from "node:assert/strict";
import {
  activationBytes,
  EVAL_BATCH,
  floatBytes,
  forwardBytes,
  samplingBytes,
} from "../../dsl/budget.ts";
import { memoryLimit, stagePeaks } from "../../dsl/memory.ts";
import { bytesText } from "../../dsl/format.ts";
import {
  compile,
  formatIssue,
  gift,
  jsonl,
  recipe,
  rewards,
  safeCompile,
  tinyGpt,
} from "../../mod.ts";

const GiB = 2 ** 30;

/**
 * A JSON Lines recipe with the defaults a new user gets (context 256 + 256 tokens, warm-start
 * batch 64): the plan's per-step peak says 1.7 GiB, and on wasm the warm start ran out of memory.
 */
const LONG = recipe({
  name: "long",
  policy: tinyGpt({ warmStart: { sftSteps: 20 } }),
  data: jsonl("./data.jsonl", { eval: 20 }),
  rewards: [{ source: rewards.numericAnswer() }],
  group: { size: 8, prompts: 8 },
  objective: gift(),
  optimizer: { lr: 3e-5 },
  steps: 3,
});

/** LONG with a warm-start batch of `batchSize` rows. */
function warmBatch(batchSize: number): typeof LONG {
  return { ...LONG, policy: tinyGpt({ warmStart: { sftSteps: 20, batchSize } }) };
}

const SHORTER = "shorten sequences of 512 tokens with data.maxPromptTokens (256) or " +
  "sampling.maxNewTokens (256)";

Deno.test("stagePeaks() adds each stage's tensors to the weights and AdamW's state", () => {
  const plan = compile(LONG, { backend: "cpu" }); // no limit known: it compiles
  const m = plan.model;
  const w = floatBytes(m.params);
  // The weights, gradients and AdamW's two moments, and the frozen reference ("initial").
  const resident = w + 3 * w + w;
  const decode = (rows: number) =>
    resident + forwardBytes(m, rows, 256) + samplingBytes(m, rows, 512);
  assert.deepEqual(stagePeaks(plan), [
    { stage: "warm start", bytes: 4 * w + 2 * activationBytes(m, 64, 512), rows: 64, tokens: 512 },
    { stage: "eval", bytes: decode(20), rows: 20, tokens: 512 },
    { stage: "sample", bytes: decode(64), rows: 64, tokens: 512 },
    { stage: "log-probs", bytes: resident + forwardBytes(m, 32, 512), rows: 32, tokens: 512 },
    { stage: "update", bytes: plan.budget.perStep.peakBytes.total, rows: 32, tokens: 512 },
  ]);
  assert.equal(bytesText(plan.budget.perStep.peakBytes.total), "1.7 GiB");
  // Evaluation decodes at most EVAL_BATCH problems at once.
  const many = compile({ ...LONG, data: jsonl("./data.jsonl", { eval: 2000 }) }, {
    backend: "cpu",
  });
  assert.equal(stagePeaks(many).find((p) => p.stage === "eval")!.rows, EVAL_BATCH);
});

Deno.test("memoryLimit() is wasm's heap, or the machine's memory where it is smaller", () => {
  assert.deepEqual(memoryLimit("wasm"), { bytes: 4 * GiB, what: "wasm's 4 GiB heap" });
  assert.deepEqual(memoryLimit("wasm", 64 * GiB), memoryLimit("wasm"));
  assert.deepEqual(memoryLimit("wasm", 2 * GiB), {
    bytes: 2 * GiB,
    what: "this machine's 2 GiB of memory",
  });
  assert.deepEqual(memoryLimit("cpu", 16 * GiB), {
    bytes: 16 * GiB,
    what: "this machine's 16 GiB of memory",
  });
  assert.equal(memoryLimit("cpu"), null);
  assert.equal(memoryLimit("webgpu", 16 * GiB), null);
});

Deno.test("compile() refuses a warm start that overflows wasm's heap, with the batch that fits", () => {
  const result = safeCompile(LONG);
  assert.equal(result.ok, false);
  assert.deepEqual(!result.ok && result.issues.map(formatIssue), [
    "policy.warmStart.batchSize: the warm start's estimated peak of 3.39 GiB (64 rows of 512 " +
    "tokens) does not fit wasm's 4 GiB heap once a run's memory fragments (up to 1.3× the " +
    `estimate); fix: set policy.warmStart.batchSize to 37 or less, ${SHORTER}, or use backend ` +
    "'cpu' (no heap limit, slower)",
  ]);
  // 37 is the largest batch that clears the check: 38 is over half the heap.
  assert.deepEqual(compile(warmBatch(37)).warnings, []);
  assert.deepEqual(compile(warmBatch(38)).warnings.map((w) => w.path), [
    "policy.warmStart.batchSize",
  ]);
});

Deno.test("compile() refuses an update that overflows wasm's heap, with the mini-batches that fit", () => {
  const wide = { ...warmBatch(16), group: { size: 8, prompts: 16 } };
  const result = safeCompile({ ...wide, miniBatches: 2 });
  assert.deepEqual(!result.ok && result.issues.map(formatIssue), [
    "miniBatches: the update's estimated peak of 3.39 GiB (64 rows of 512 tokens) does not fit " +
    "wasm's 4 GiB heap once a run's memory fragments (up to 1.3× the estimate); fix: set " +
    `miniBatches to 4 (32 rows per update), ${SHORTER}, or use backend 'cpu' (no heap limit, ` +
    "slower)",
  ]);
  // With 4, the update fits; sampling 128 rows of 256-token prompts is over half the heap.
  assert.deepEqual(compile({ ...wide, miniBatches: 4 }).warnings.map(formatIssue), [
    "group: sampling's estimated peak of 2.1 GiB (128 rows of 512 tokens) is over half of " +
    "wasm's 4 GiB heap, and a run's memory fragments to up to 1.3× the estimate: it may run " +
    `out; fix: lower group.prompts (16) or group.size (8), ${SHORTER}, or use backend 'cpu' ` +
    "(no heap limit, slower)",
  ]);
});

Deno.test("compile() warns of a stage over half of wasm's heap, with the fix", () => {
  // 48 rows: 2.54 GiB, over 2 GiB; × 1.3 = 3.3 GiB, under 4 GiB.
  const plan = compile(warmBatch(48));
  assert.deepEqual(plan.warnings.map(formatIssue), [
    "policy.warmStart.batchSize: the warm start's estimated peak of 2.54 GiB (48 rows of 512 " +
    "tokens) is over half of wasm's 4 GiB heap, and a run's memory fragments to up to 1.3× the " +
    `estimate: it may run out; fix: set policy.warmStart.batchSize to 37 or less, ${SHORTER}, ` +
    "or use backend 'cpu' (no heap limit, slower)",
  ]);
});

Deno.test("compile() holds the machine's memory only when told it, and suggests no backend it lacks", () => {
  assert.equal(safeCompile(LONG, { backend: "cpu" }).ok, true);
  const cpu = safeCompile(LONG, { backend: "cpu", machineMemory: 4 * GiB });
  assert.deepEqual(!cpu.ok && cpu.issues.map(formatIssue), [
    "policy.warmStart.batchSize: the warm start's estimated peak of 3.39 GiB (64 rows of 512 " +
    "tokens) does not fit this machine's 4 GiB of memory once a run's memory fragments (up to " +
    `1.3× the estimate); fix: set policy.warmStart.batchSize to 37 or less, or ${SHORTER}`,
  ]);
  // On wasm, a machine smaller than the heap is the limit, and cpu would not hold the stage.
  const small = safeCompile(warmBatch(8), { machineMemory: GiB });
  assert.deepEqual(!small.ok && small.issues.map((i) => [i.path, i.hint]), [
    ["group", `lower group.prompts (8) or group.size (8), or ${SHORTER}`],
    ["miniBatches", `set miniBatches to 8 (8 rows per update), or ${SHORTER}`],
  ]);
});

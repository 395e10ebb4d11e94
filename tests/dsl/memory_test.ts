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
  tasks,
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
    // One block's intermediates at a time (forward() frees each when it is done) beside the
    // residual stream.
    {
      stage: "log-probs",
      bytes: resident + forwardBytes({ ...m, layers: 1 }, 32, 512) +
        floatBytes(32 * 512 * m.dModel),
      rows: 32,
      tokens: 512,
    },
    { stage: "update", bytes: plan.budget.perStep.peakBytes.total, rows: 32, tokens: 512 },
  ]);
  assert.equal(bytesText(plan.budget.perStep.peakBytes.total), "1.7 GiB");
  // Evaluation decodes at most EVAL_BATCH problems at once.
  const many = compile({ ...LONG, data: jsonl("./data.jsonl", { eval: 2000 }) }, {
    backend: "cpu",
  });
  assert.equal(stagePeaks(many).find((p) => p.stage === "eval")!.rows, EVAL_BATCH);
});

Deno.test("memoryLimit() is wasm's heap, or the machine's memory where it is smaller or on other backends", () => {
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
  // webgpu's device memory is not visible to the compiler: the machine's is held, and said so.
  assert.deepEqual(memoryLimit("webgpu", 16 * GiB), {
    bytes: 16 * GiB,
    what: "this machine's 16 GiB of memory (webgpu's device memory is not known here)",
  });
  assert.equal(memoryLimit("webgpu"), null);
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
    "gradientCheckpointing: true, set microBatches to 2 (32 rows at a time), set miniBatches " +
    `to 4 (32 rows per update), ${SHORTER}, or use backend 'cpu' (no heap limit, slower)`,
  ]);
  // Each fix the hint names brings the update under half the heap, by the estimate, and the
  // recipe compiles; the log-probability pass over the same rows, a block at a time, is under
  // half too (sampling 128 rows is not: its warning is the only one).
  for (const fixed of [{ gradientCheckpointing: true }, { microBatches: 2 }]) {
    const plan = compile({ ...wide, miniBatches: 2, ...fixed });
    const peaks = stagePeaks(plan).filter((p) => p.stage === "update" || p.stage === "log-probs");
    assert.equal(peaks.length, 2);
    for (const peak of peaks) {
      assert.ok(peak.bytes <= 2 * GiB, `${JSON.stringify(fixed)}: ${bytesText(peak.bytes)}`);
    }
    assert.deepEqual(plan.warnings.map((w) => w.path), ["group"]);
  }
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
    // Micro-batches too: the log-probability passes run a micro-batch of rows at a time.
    [
      "miniBatches",
      `set microBatches to 4 (8 rows at a time), set miniBatches to 8 (8 rows per update), or ${SHORTER}`,
    ],
  ]);
});

/**
 * Completions of 21,845 tokens on the default tiny model, 8 × 16 rows at once: an update
 * estimated at 3.85 TiB, which once printed "warnings: none" on a machine of 16 GiB and died two
 * minutes later in V8's out-of-memory.
 */
const HUGE = recipe({
  name: "huge",
  policy: tinyGpt({ layers: 2, dModel: 128, heads: 4 }),
  reference: "rollout",
  data: tasks.addition({ digits: 2, train: 5000, eval: 500 }),
  rewards: [{ source: rewards.numericAnswer() }],
  group: { size: 8, prompts: 16 },
  sampling: { maxNewTokens: 21845 },
  objective: gift(),
  optimizer: { lr: 3e-5 },
  steps: 5,
});

/** The runtime tests' tiny recipe (tests/runtime/_tiny.ts), on wasm. */
const TINY_LIKE = recipe({
  name: "tiny",
  policy: tinyGpt({ layers: 1, dModel: 32, heads: 2, warmStart: { sftSteps: 20, batchSize: 16 } }),
  data: tasks.addition({ digits: 1, train: 60, eval: 20 }),
  rewards: [{ source: rewards.numericAnswer() }],
  group: { size: 4, prompts: 4 },
  objective: gift(),
  optimizer: { lr: 1e-3 },
  steps: 5,
  backend: "wasm",
});

/** HUGE with completions of at most `n` tokens. */
function newTokens(n: number): typeof HUGE {
  return { ...HUGE, sampling: { maxNewTokens: n } };
}

Deno.test("compile() refuses completions too long for any batch on every backend, in one line", () => {
  const plan = compile(HUGE, { backend: "cpu" }); // no machine given: nothing is held
  // By hand: 2 layers, d 128, 4 heads, ffn 352, vocab 15, 403,968 parameters; 7 prompt tokens
  // + 21,845 = 21,852; 64 rows per update (16 × 8 rows in the default 2 mini-batches).
  const m = plan.model;
  assert.deepEqual([m.layers, m.dModel, m.heads, m.ffnDim, m.vocab, m.params], [
    2,
    128,
    4,
    352,
    15,
    403968,
  ]);
  assert.deepEqual([plan.shapes.sequenceTokens, plan.shapes.miniBatchRows], [21852, 64]);
  const perToken = 2 * (10 * 128 + 4 * 352 + 2 * 4 * 21852) + 3 * 15; // floats kept per token
  const activations = 2 * 4 * 64 * 21852 * perToken; // forward and backward, float32
  assert.equal(perToken, 355053);
  assert.equal(activations, 3_972_412_495_872);
  // The rollout reference is no frozen copy: weights, gradients and AdamW's moments.
  assert.equal(plan.budget.perStep.peakBytes.total, activations + 4 * 4 * 403968);
  assert.equal(bytesText(plan.budget.perStep.peakBytes.total), "3.61 TiB");
  for (const backend of ["wasm", "cpu", "tensorflow", "webgpu"] as const) {
    const result = safeCompile(HUGE, { backend, machineMemory: 16 * GiB });
    assert.equal(result.ok, false, backend);
    assert.equal(!result.ok && result.issues.length, 1, backend);
    assert.equal(!result.ok && result.issues[0]!.path, "sampling.maxNewTokens", backend);
  }
  const webgpu = safeCompile(HUGE, { backend: "webgpu", machineMemory: 16 * GiB });
  assert.deepEqual(!webgpu.ok && webgpu.issues.map(formatIssue), [
    "sampling.maxNewTokens: the update's estimated peak of 3.61 TiB (64 rows of 21852 tokens) " +
    "does not fit this machine's 16 GiB of memory (webgpu's device memory is not known here) " +
    "once a run's memory fragments (up to 1.3× the estimate), even one group at a time with " +
    "sequences of 21852 tokens; fix: set sampling.maxNewTokens to 861 or less (sequences of " +
    "868 tokens at these batch sizes)",
  ]);
});

Deno.test("compile() passes the longest completions its fix names, and warns one token past", () => {
  // 861: every stage is at most half of 16 GiB (the fix aims there); the update, the largest,
  // by hand: 2·4·64·868·(2·(1280 + 1408 + 8·868) + 45) bytes of activations and 16·403,968 of
  // weights, gradients and moments: 8,587,692,032 of 8,589,934,592. At 862, 8,604,697,088.
  const plan = compile(newTokens(861), { backend: "cpu", machineMemory: 16 * GiB });
  assert.deepEqual(plan.warnings, []);
  const update = 2 * 4 * 64 * 868 * (2 * (1280 + 1408 + 8 * 868) + 45) + 16 * 403968;
  assert.equal(update, 8_587_692_032);
  assert.equal(plan.budget.perStep.peakBytes.total, update);
  const past = compile(newTokens(862), { backend: "cpu", machineMemory: 16 * GiB });
  assert.equal(past.budget.perStep.peakBytes.total, 8_604_697_088);
  assert.deepEqual(past.warnings.map((w) => w.path), ["miniBatches"]);
});

Deno.test("compile() refuses maxNewTokens 131072 in one line naming it, with the length that fits", () => {
  // The runtime tests' tiny model (1 layer, d 32, 2 heads, ffn 96): its warm start of 16 rows of
  // 5 + 131,072 tokens is the largest stage, by hand 2·4·16·131077·(320 + 384 + 4·131077 + 45)
  // bytes of activations and the weights, gradients and moments, 4·4·13,888.
  const warm = 2 * 4 * 16 * 131077 * (320 + 384 + 4 * 131077 + 45) + 16 * 13888;
  assert.equal(bytesText(warm), "8.01 TiB");
  const result = safeCompile({ ...TINY_LIKE, sampling: { maxNewTokens: 131072 } });
  assert.deepEqual(!result.ok && result.issues.map(formatIssue), [
    "sampling.maxNewTokens: the warm start's estimated peak of 8.01 TiB (16 rows of 131077 " +
    "tokens) does not fit wasm's 4 GiB heap once a run's memory fragments (up to 1.3× the " +
    "estimate), even one row at a time with sequences of 131077 tokens; fix: set " +
    "sampling.maxNewTokens to 1951 or less (sequences of 1956 tokens at these batch sizes)",
  ]);
  assert.deepEqual(compile({ ...TINY_LIKE, sampling: { maxNewTokens: 1951 } }).warnings, []);
});

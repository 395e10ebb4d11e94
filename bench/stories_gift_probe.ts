/**
 * A hand-written GIFT loop on stories260K with the stories front door's data and reward, built
 * from the runtime's pieces without a recipe: the feasibility check, and the settings, that the
 * front door recipe starts from. It is what a run does, cut down: sample a group of stories per
 * opening, score them (recipes/rewards/story.ts), then GIFT with the rollout policy as the
 * reference, in `--mini-batches` AdamW updates per sampled batch (each on whole groups), and
 * greedy accuracy on held-out openings before, every `--every` steps and at the end. With each
 * evaluation it prints how far the policy has drifted from stories260K on the batch it last
 * sampled: the mean over its tokens of log π − log π₀ (an estimate of KL(π‖π₀) per token, in nats),
 * and how often the stories name their thing (mentions per story).
 *
 * The held-out openings are the first `--eval` of the file after a seeded shuffle (as the JSON
 * Lines loader holds them out), or with `--hold-words w1,w2,…` every opening of those words,
 * none of which is then trained on: whether the policy learns to come back to the opening's
 * thing, rather than to favour the words it was trained on.
 *
 *   deno run --allow-read --allow-env --allow-ffi bench/stories_gift_probe.ts --lr 1e-4 --steps 30
 *   deno run --allow-read --allow-env --allow-ffi bench/stories_gift_probe.ts \
 *     --hold-words cat,boat,cookie,truck,tree,duck
 *
 * @module
 */

import { parseArgs } from "node:util";
import { type BackendName, tf, useBackend } from "../runtime/engine/backend.ts";
import { weightsToTensors } from "../runtime/engine/model/checkpoint.ts";
import { loadHfModel } from "../runtime/engine/model/hf.ts";
import { loadHfTokenizer } from "../runtime/engine/model/hf_tokenizer.ts";
import { tokenLogProbs } from "../runtime/engine/model/transformer.ts";
import { adamW, adamWStep } from "../runtime/engine/optim.ts";
import { Rng } from "../runtime/engine/random.ts";
import { objectives } from "../runtime/rl/objectives/mod.ts";
import { sampleRow } from "../runtime/rl/sample_token.ts";
import { mentionsAnswer } from "../recipes/rewards/story.ts";

const { values: args } = parseArgs({
  args: Deno.args,
  options: {
    data: { type: "string", default: "recipes/data/stories.jsonl" },
    model: { type: "string", default: "models/stories260K" },
    backend: { type: "string", default: "wasm" },
    lr: { type: "string", default: "1e-4" },
    steps: { type: "string", default: "30" },
    group: { type: "string", default: "8" },
    prompts: { type: "string", default: "8" },
    "max-new-tokens": { type: "string", default: "48" },
    temperature: { type: "string", default: "1" },
    "mini-batches": { type: "string", default: "2" },
    eval: { type: "string", default: "64" },
    "hold-words": { type: "string", default: "" },
    every: { type: "string", default: "10" },
    seed: { type: "string", default: "1" },
  },
});
const lr = Number(args.lr);
const steps = Number(args.steps);
const G = Number(args.group);
const prompts = Number(args.prompts);
const C = Number(args["max-new-tokens"]);
const temperature = Number(args.temperature);
const miniBatches = Number(args["mini-batches"]);
if (prompts % miniBatches !== 0) {
  throw new Error(
    `--mini-batches: expected a divisor of --prompts (${prompts}), got ${miniBatches}`,
  );
}

const started = performance.now();
const seconds = () => ((performance.now() - started) / 1000).toFixed(0);
const { kernels, description } = await useBackend(args.backend as BackendName);
const { config, weights } = await loadHfModel(args.model, kernels.layout);
const tok = await loadHfTokenizer(args.model);
const params = weightsToTensors(weights, true);
const initial = weightsToTensors(weights, false); // π₀, for the drift
const stopIds = new Set(tok.stopIds);
if (tok.bosId !== null) stopIds.add(tok.bosId);

interface Row {
  prompt: string;
  answer: string;
}
const rows: Row[] = (await Deno.readTextFile(args.data)).split("\n").filter((l) => l.trim())
  .map((l) => JSON.parse(l));
const rng = new Rng(Number(args.seed));
const order = rows.map((_, i) => i);
const shuffle = rng.fork("data");
for (let i = order.length - 1; i > 0; i--) {
  const j = shuffle.int(i + 1);
  [order[i], order[j]] = [order[j]!, order[i]!];
}
const shuffled = order.map((i) => rows[i]!);
const held = args["hold-words"].split(",").filter((w) => w !== "");
const evalRows = held.length > 0
  ? shuffled.filter((r) => held.includes(r.answer))
  : shuffled.slice(0, Number(args.eval));
const trainRows = held.length > 0
  ? shuffled.filter((r) => !held.includes(r.answer))
  : shuffled.slice(Number(args.eval));

/** A sampled batch: ids [B, P + C] (left-padded prompts), mask and sampling log-probs [B, C]. */
interface Batch {
  ids: Int32Array;
  mask: Float32Array;
  logp: Float32Array;
  padding: number[];
  promptLength: number;
  rows: number;
  texts: string[];
  rewards: number[];
}

/** `group` stories for each of `batchRows` (temperature 0: greedy), scored by the reward. */
async function sample(batchRows: Row[], group: number, t: number, r: Rng): Promise<Batch> {
  const encoded = batchRows.flatMap((row) =>
    Array.from({ length: group }, () => tok.encode(row.prompt, { addSpecialTokens: true }))
  );
  const B = encoded.length;
  const P = Math.max(...encoded.map((p) => p.length));
  const W = P + C;
  const padding = encoded.map((p) => P - p.length);
  const ids = new Int32Array(B * W); // padding and the tail after a stop are masked out
  encoded.forEach((p, b) => ids.set(p, b * W + padding[b]!));
  const first = new Int32Array(B * P);
  encoded.forEach((p, b) => first.set(p, b * P + padding[b]!));
  const mask = new Float32Array(B * C);
  const logp = new Float32Array(B * C);
  const generated: number[][] = encoded.map(() => []);
  const done = new Array<boolean>(B).fill(false);
  const decoder = await kernels.decoder(params, config, B, padding, P + C - 1);
  try {
    let input = first;
    for (let step = 0; step < C && done.includes(false); step++) {
      const active = done.flatMap((d, b) => d ? [] : [b]);
      const logits = await decoder.next(input, step === 0 ? P : 1, active);
      input = new Int32Array(B);
      for (const b of active) {
        const drawn = sampleRow(logits, b, config.vocab, { temperature: t, topK: 0, topP: 1 }, r);
        input[b] = drawn.token;
        generated[b]!.push(drawn.token);
        ids[b * W + P + step] = drawn.token;
        mask[b * C + step] = 1;
        logp[b * C + step] = drawn.logp;
        if (stopIds.has(drawn.token)) done[b] = true;
      }
    }
  } finally {
    decoder.dispose();
  }
  const texts = generated.map((g, b) => {
    const body = done[b] ? g.slice(0, -1) : g;
    const before = tok.decode(encoded[b]!);
    const whole = tok.decode([...encoded[b]!, ...body]);
    return whole.startsWith(before) ? whole.slice(before.length) : tok.decode(body);
  });
  const rewards = texts.map((completion, b) =>
    mentionsAnswer({ completion, answer: batchRows[Math.floor(b / group)]!.answer })
  );
  return { ids, mask, logp, padding, promptLength: P, rows: B, texts, rewards };
}

const mean = (xs: number[]) => xs.reduce((a, b) => a + b, 0) / xs.length;

/** Mean over the batch's tokens of log π − log π₀ (π: the sampler's log-probs). */
async function drift(batch: Batch): Promise<number> {
  const W = batch.promptLength + C;
  const ids = tf.tensor2d(batch.ids, [batch.rows, W], "int32");
  const before = tf.tidy(() =>
    tokenLogProbs(kernels, initial, config, ids, batch.promptLength, temperature, batch.padding)
  );
  const logp0 = await before.data();
  tf.dispose([ids, before]);
  let [sum, tokens] = [0, 0];
  batch.mask.forEach((m, i) => {
    if (m === 0) return;
    sum += batch.logp[i]! - logp0[i]!;
    tokens++;
  });
  return sum / tokens;
}

/** How many times each story names its thing, on average. */
function mentions(batch: Batch, batchRows: Row[]): number {
  return mean(batch.texts.map((text, b) => {
    const word = batchRows[Math.floor(b / G)]!.answer;
    return (text.match(new RegExp(`(?<!\\p{L})${word}(?:s|es)?(?!\\p{L})`, "giu")) ?? []).length;
  }));
}
async function heldOut(): Promise<string> {
  const batch = await sample(evalRows, 1, 0, new Rng(0)); // greedy draws nothing
  return `${(100 * mean(batch.rewards)).toFixed(1)}%`;
}

const optimizer = adamW(params, {
  lr,
  betas: [0.9, 0.999],
  eps: 1e-8,
  weightDecay: 0,
  clipGradNorm: 1,
  warmupSteps: 0,
  schedule: "constant",
}, steps * miniBatches);
console.log(
  `${args.model} on ${description}: ${trainRows.length} train, ${evalRows.length} held-out ` +
    `openings; G ${G} × ${prompts} prompts, ${C} tokens, temperature ${temperature}, lr ${lr}, ` +
    `${miniBatches} updates per batch`,
);
const baseline = await sample(trainRows.slice(0, prompts), G, temperature, rng.fork("baseline"));
console.log(
  `step 0: held-out ${await heldOut()}; reward ${mean(baseline.rewards).toFixed(3)}, ` +
    `${mentions(baseline, trainRows.slice(0, prompts)).toFixed(2)} mentions per story`,
);
const sampling = rng.fork("sample");
let [sampleSeconds, trainSeconds] = [0, 0];
for (let step = 1; step <= steps; step++) {
  const batchRows = Array.from(
    { length: prompts },
    (_, i) => trainRows[((step - 1) * prompts + i) % trainRows.length]!,
  );
  let clock = performance.now();
  const batch = await sample(batchRows, G, temperature, sampling);
  sampleSeconds += (performance.now() - clock) / 1000;
  clock = performance.now();
  const W = batch.promptLength + C;
  const per = batch.rows / miniBatches;
  for (let m = 0; m < miniBatches; m++) {
    const [lo, hi] = [m * per, (m + 1) * per];
    const ids = tf.tensor2d(batch.ids.slice(lo * W, hi * W), [per, W], "int32");
    const mask = tf.tensor2d(batch.mask.slice(lo * C, hi * C), [per, C]);
    const oldLogp = tf.tensor2d(batch.logp.slice(lo * C, hi * C), [per, C]);
    const rewards = tf.tensor1d(batch.rewards.slice(lo, hi));
    const vars = Object.values(params);
    const { value, grads } = tf.variableGrads(() =>
      tf.tidy(() => {
        const padding = batch.padding.slice(lo, hi);
        const logp = tokenLogProbs(
          kernels,
          params,
          config,
          ids,
          batch.promptLength,
          temperature,
          padding,
        );
        return objectives.gift.loss({ logp, oldLogp, mask, rewards, groupSize: G }, {}).loss;
      }), vars);
    const byName = Object.fromEntries(
      Object.keys(params).map((n, i) => [n, grads[vars[i]!.name]!]),
    );
    await adamWStep(kernels, optimizer, params, byName);
    tf.dispose([value, ...Object.values(grads), ids, mask, oldLogp, rewards]);
  }
  trainSeconds += (performance.now() - clock) / 1000;
  if (step % Number(args.every) === 0 || step === steps) {
    console.log(
      `step ${step}: reward ${mean(batch.rewards).toFixed(3)}, held-out ${await heldOut()}, ` +
        `${mentions(batch, batchRows).toFixed(2)} mentions per story, drift ` +
        `${(await drift(batch)).toFixed(3)} nats/token; ` +
        `${seconds()} s (sampling ${sampleSeconds.toFixed(0)} s, updates ${
          trainSeconds.toFixed(0)
        } s)` +
        `\n  ${JSON.stringify(batchRows[0]!.prompt)} →${JSON.stringify(batch.texts[0])}`,
    );
  }
}
tf.dispose([...Object.values(params), ...Object.values(initial)]);

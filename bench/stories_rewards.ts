/**
 * Base rates of candidate rewards on stories260K's own stories, and its sampling speed: what the
 * stories front door's reward, token budget, temperature and group size were chosen from.
 *
 * It samples `--group` stories for each opening of a JSON Lines file (default
 * recipes/data/stories.jsonl) at each `--temperatures` (0: greedy, one story per opening, as
 * evaluation decodes), up to the largest `--budgets` token count, with the KV-cache decoder of the
 * `cpu` kernel set (OpenBLAS where it loads), stopping a row at `<s>` or `</s>` as llama2.c does.
 * A shorter budget is the same stories cut at that many tokens (the first n tokens of a story are
 * drawn the same way whatever comes after), so one sampling run serves every budget. For each
 * temperature and budget it prints the share of stories that:
 *
 * - `answer`: name the opening's thing again (recipes/rewards/story.ts, the front door's reward);
 * - `name`: name the opening's child again;
 * - `stop`: end (emit `<s>`) within the budget;
 * - `stop+sentence`: end within the budget on '.', '!' or '?' (a quote may follow);
 * - `sentence`: stop or not, whose text ends so (a cut story rarely does);
 *
 * then, for the first temperature and the largest budget up to 48, the answer rate by template and
 * by word, and the sampling throughput at each `--shapes` (groups × prompts).
 *
 *   deno run --allow-read --allow-env --allow-ffi bench/stories_rewards.ts
 *   deno run --allow-read --allow-env --allow-ffi bench/stories_rewards.ts --temperatures 1 \
 *     --budgets 48 --group 8 --shapes 8x8,8x16,16x16
 *
 * @module
 */

import { parseArgs } from "node:util";
import { tf, useBackend } from "../runtime/engine/backend.ts";
import type { KernelSet } from "../runtime/engine/kernels/types.ts";
import { weightsToTensors } from "../runtime/engine/model/checkpoint.ts";
import type { ModelConfig, Params } from "../runtime/engine/model/config.ts";
import { loadHfModel } from "../runtime/engine/model/hf.ts";
import { type HfTokenizer, loadHfTokenizer } from "../runtime/engine/model/hf_tokenizer.ts";
import { Rng } from "../runtime/engine/random.ts";
import { sampleRow } from "../runtime/rl/sample_token.ts";
import { mentionsAnswer } from "../recipes/rewards/story.ts";

/** One opening of the data file. */
interface Row {
  prompt: string;
  answer: string;
  name: string;
  template: number;
}

/** One sampled story. */
interface Story {
  row: Row;
  /** Generated ids, the stop id last when it stopped. */
  ids: number[];
  stopped: boolean;
}

/** The model, ready to sample. */
interface Model {
  kernels: KernelSet;
  config: ModelConfig;
  params: Params;
  tok: HfTokenizer;
  stopIds: Set<number>;
}

/**
 * `group` stories for each of `rows`, of at most `maxNew` tokens each, in one batch: prompts
 * left-padded, one decoder call per token, finished rows skipped.
 */
async function sampleStories(
  model: Model,
  rows: readonly Row[],
  group: number,
  maxNew: number,
  temperature: number,
  rng: Rng,
): Promise<{ stories: Story[]; tokens: number; seconds: number }> {
  const { kernels, config, params, tok, stopIds } = model;
  const prompts = rows.flatMap((row) =>
    Array.from({ length: group }, () => tok.encode(row.prompt, { addSpecialTokens: true }))
  );
  const B = prompts.length;
  const P = Math.max(...prompts.map((p) => p.length));
  const padding = prompts.map((p) => P - p.length);
  const first = new Int32Array(B * P); // padded positions are masked: their id does not matter
  prompts.forEach((p, b) => first.set(p, b * P + padding[b]!));
  const generated: number[][] = prompts.map(() => []);
  const done = new Array<boolean>(B).fill(false);
  const sampling = { temperature, topK: 0, topP: 1 };
  const start = performance.now();
  let tokens = 0;
  const decoder = await kernels.decoder(params, config, B, padding, P + maxNew - 1);
  try {
    let input = first;
    for (let t = 0; t < maxNew && done.includes(false); t++) {
      const active = done.flatMap((d, b) => d ? [] : [b]);
      const logits = await decoder.next(input, t === 0 ? P : 1, active); // [B, V]
      input = new Int32Array(B);
      for (const b of active) {
        const { token } = sampleRow(logits, b, config.vocab, sampling, rng);
        input[b] = token;
        generated[b]!.push(token);
        tokens++;
        if (stopIds.has(token)) done[b] = true;
      }
    }
  } finally {
    decoder.dispose();
  }
  const seconds = (performance.now() - start) / 1000;
  const stories = generated.map((ids, b) => ({
    row: rows[Math.floor(b / group)]!,
    ids,
    stopped: done[b]!,
  }));
  return { stories, tokens, seconds };
}

/** The text of the story's first `budget` tokens (the stop id left out), as the trainer cuts it. */
function storyText(tok: HfTokenizer, story: Story, budget: number): string {
  const ids = story.ids.slice(0, budget);
  const body = ids.length > 0 && story.stopped && ids.length === story.ids.length
    ? ids.slice(0, -1)
    : ids;
  const prompt = tok.encode(story.row.prompt, { addSpecialTokens: true });
  const before = tok.decode(prompt);
  const whole = tok.decode([...prompt, ...body]);
  return whole.startsWith(before) ? whole.slice(before.length) : tok.decode(body);
}

const SENTENCE_END = /[.!?]["']?\s*$/;

/** Per-story outcomes of each candidate reward at `budget` tokens. */
function outcomes(tok: HfTokenizer, story: Story, budget: number): Record<string, boolean> {
  const text = storyText(tok, story, budget);
  const stop = story.stopped && story.ids.length <= budget;
  return {
    answer: mentionsAnswer({ completion: text, answer: story.row.answer }) === 1,
    name: new RegExp(`(?<!\\p{L})${story.row.name}(?!\\p{L})`, "u").test(text),
    stop,
    "stop+sentence": stop && SENTENCE_END.test(text),
    sentence: SENTENCE_END.test(text),
  };
}

function percent(part: number, whole: number): string {
  return `${(100 * part / whole).toFixed(1)}%`;
}

/** The share of `stories` for which `test` holds, by `key`. */
function byKey(
  stories: readonly Story[],
  key: (s: Story) => string,
  test: (s: Story) => boolean,
): string {
  const counts = new Map<string, [number, number]>();
  for (const s of stories) {
    const c = counts.get(key(s)) ?? [0, 0];
    c[0] += test(s) ? 1 : 0;
    c[1]++;
    counts.set(key(s), c);
  }
  return [...counts].sort((a, b) => b[1][0] / b[1][1] - a[1][0] / a[1][1])
    .map(([k, [n, of]]) => `${k} ${Math.round(100 * n / of)}%`).join(", ");
}

const { values: args } = parseArgs({
  args: Deno.args,
  options: {
    data: { type: "string", default: "recipes/data/stories.jsonl" },
    model: { type: "string", default: "models/stories260K" },
    temperatures: { type: "string", default: "1,0.7,0" },
    budgets: { type: "string", default: "32,48,64,96,128" },
    group: { type: "string", default: "4" },
    shapes: { type: "string", default: "8x8,8x16,16x16" },
    seed: { type: "string", default: "1" },
  },
});
const numbers = (s: string) => s.split(",").map(Number);
const temperatures = numbers(args.temperatures);
const budgets = numbers(args.budgets).sort((a, b) => a - b);
const group = Number(args.group);
const rng = new Rng(Number(args.seed));

const { kernels, description } = await useBackend("cpu");
const { config, weights } = await loadHfModel(args.model, kernels.layout);
const tok = await loadHfTokenizer(args.model);
const params = weightsToTensors(weights, false);
const stopIds = new Set(tok.stopIds);
if (tok.bosId !== null) stopIds.add(tok.bosId);
const model: Model = { kernels, config, params, tok, stopIds };
const rows: Row[] = (await Deno.readTextFile(args.data)).split("\n").filter((l) => l.trim())
  .map((l) => JSON.parse(l));
console.log(`${args.model} on ${description}; ${rows.length} openings from ${args.data}`);

const maxNew = budgets[budgets.length - 1]!;
let first: Story[] | null = null;
for (const temperature of temperatures) {
  const g = temperature === 0 ? 1 : group;
  const { stories, tokens, seconds } = await sampleStories(
    model,
    rows,
    g,
    maxNew,
    temperature,
    rng.fork(`t${temperature}`),
  );
  first ??= stories;
  console.log(
    `\ntemperature ${temperature}: ${stories.length} stories (${g} per opening), ` +
      `${tokens} tokens in ${seconds.toFixed(1)} s`,
  );
  for (const budget of budgets) {
    const all = stories.map((s) => outcomes(tok, s, budget));
    const shares = Object.keys(all[0]!).map((k) =>
      `${k} ${percent(all.filter((o) => o[k]).length, all.length)}`
    );
    console.log(`  ${String(budget).padStart(3)} tokens: ${shares.join(", ")}`);
  }
}
if (first !== null) {
  const budget = Math.max(budgets[0]!, ...budgets.filter((b) => b <= 48));
  const answered = (s: Story) => outcomes(tok, s, budget).answer === true;
  console.log(`\nanswer rate at temperature ${temperatures[0]}, ${budget} tokens`);
  console.log(`  by template: ${byKey(first, (s) => String(s.row.template), answered)}`);
  console.log(`  by word: ${byKey(first, (s) => s.row.answer, answered)}`);
  const shown = first.filter((_, i) => i % (group * 40) === 0).slice(0, 6);
  for (const s of shown) {
    console.log(`  ${JSON.stringify(s.row.prompt)} →${JSON.stringify(storyText(tok, s, budget))}`);
  }
}

console.log(
  `\nsampling throughput (temperature 1, ${budgets.filter((b) => b <= 48).pop()} tokens)`,
);
for (const shape of args.shapes.split(",")) {
  const [g, p] = shape.split("x").map(Number) as [number, number];
  const new_ = Math.max(budgets[0]!, ...budgets.filter((b) => b <= 48));
  await sampleStories(model, rows.slice(0, p), g, 4, 1, rng.fork("warm")); // first-call costs
  const { tokens, seconds } = await sampleStories(
    model,
    rows.slice(0, p),
    g,
    new_,
    1,
    rng.fork(shape),
  );
  console.log(
    `  ${g} × ${p} = ${g * p} rows: ${tokens} tokens in ${seconds.toFixed(2)} s = ` +
      `${Math.round(tokens / seconds)} tokens/s`,
  );
}
tf.dispose(Object.values(params));

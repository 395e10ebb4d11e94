/**
 * The benchmark's configurations and their batches, shared by bench/bench.ts and
 * bench/check_reference.ts.
 *
 * - `front-door`: recipes/addition_gift.ts compiled (its model, optimiser, GIFT options and
 *   shapes: B = P·G = 16·8 = 128 rows of 7 prompt + 4 new tokens). The recipe splits each batch
 *   into two mini-batches of 64 rows; here one update covers all 128 rows.
 * - `large`: 6 layers, d 384, 6 heads of 64, vocab 64, 64 prompt + 192 new tokens, P 2 × G 8.
 * - `large-b8`: the same with one group (P 1 × G 8): the largest batch whose train step fitted in
 *   the wasm backend's 4 GiB heap before runtime/engine/tape.ts freed memory during the backward pass;
 *   kept to compare with earlier results.
 * - `gqa-untied` (check only): a small model with grouped-query attention (4 heads over 2 key/value
 *   heads), an untied output head and weight decay, the paths the other two do not take.
 * - `smollm-135m`: SmolLM2-135M's shapes (30 layers, d 576, 9 heads over 3 key/value heads, FFN
 *   1536, vocab 49,152, tied) with random weights; full fine-tuning; P 4 × G 4, 64 prompt + 128
 *   new tokens.
 * - `qwen-0.5b-lora`: Qwen2.5-0.5B's shapes (24 layers, d 896, 14 heads over 2 key/value heads,
 *   FFN 4864, vocab 151,936, tied, q/k/v biases) with random weights; LoRA of rank 16 on q, k, v
 *   and o; the same batch.
 *
 * The two real-size configurations run giftwrap's update in micro-batches of one group (4 rows)
 * with activation checkpointing, as a recipe at these sizes would (`microBatches`,
 * `gradientCheckpointing`): the same update, in the memory it needs. PyTorch runs the whole batch.
 *
 * @module
 */

import { compile } from "../mod.ts";
import { loraParamCount, type LoraTarget, parameterCount } from "../dsl/budget.ts";
import type { MemoryInputs } from "../dsl/memory.ts";
import frontDoorRecipe from "../recipes/addition_gift.ts";
import { modelConfig } from "../runtime/engine/model/transformer.ts";
import { Rng } from "../runtime/engine/random.ts";
import type { WorkerConfig } from "./_protocol.ts";

/** The special tokens every tokenizer starts with (`<pad>`, `<bos>`, `<eos>`). */
const SPECIALS = 3;

/** A named configuration: a worker's setup config, less the per-process fields. */
export interface BenchConfig {
  name: string;
  setup: Omit<WorkerConfig, "backend" | "threads" | "weights">;
  /**
   * Why giftwrap cannot run this configuration's step yet, when it cannot: the bench then times
   * PyTorch alone (with its own initial weights, the same distributions) and prints no ratio.
   */
  giftwrapUnavailable?: string;
  /**
   * What the memory estimate (dsl/memory.ts's `processPeakBytes`) assumes of giftwrap's worker on
   * this configuration, printed beside its measured peak; absent where none is made.
   */
  estimate?: MemoryInputs;
}

/** The configurations by name, in the order the bench runs them. */
export const CONFIG_NAMES = [
  "front-door",
  "large",
  "large-b8",
  "gqa-untied",
  "smollm-135m",
  "qwen-0.5b-lora",
] as const;
export type ConfigName = typeof CONFIG_NAMES[number];

/** The feed-forward width tinyGpt defaults to (dsl/compile.ts): 8d/3 rounded up to 32. */
function ffnDim(dModel: number): number {
  return Math.ceil((8 * dModel) / 3 / 32) * 32;
}

/** The first code point of UTF-16's surrogates, which are no characters, and how many they are. */
const SURROGATES = [0xd800, 0x800] as const;

/**
 * `count` distinct printable characters: a tokenizer alphabet for a vocabulary of count + 3. Code
 * points from 33 on, skipping the surrogates (Qwen's vocabulary runs past 16 bits).
 */
function alphabet(count: number): string {
  return Array.from({ length: count }, (_, i) => {
    const point = 33 + i;
    return String.fromCodePoint(point < SURROGATES[0] ? point : point + SURROGATES[1]);
  }).join("");
}

/**
 * A batch of P prompts × G completions, B = P·G rows of P + C tokens (each group's rows share
 * their prompt, no special tokens), rewards uniform in [0, 1), all from `seed`.
 */
function batch(
  vocab: number,
  prompts: number,
  group: number,
  prompt: number,
  completion: number,
  seed: number,
) {
  const rng = new Rng(seed).fork("bench-batch");
  const token = () => SPECIALS + rng.int(vocab - SPECIALS);
  const ids: number[] = [];
  for (let p = 0; p < prompts; p++) {
    const shared = Array.from({ length: prompt }, token);
    for (let g = 0; g < group; g++) {
      ids.push(...shared, ...Array.from({ length: completion }, token));
    }
  }
  const rewards = Array.from({ length: prompts * group }, () => rng.uniform());
  return { ids, rewards, refLogp: -Math.log(vocab) };
}

/** Real models' shapes: SmolLM2-135M's and Qwen2.5-0.5B's `config.json`, context cut to P + C. */
const REAL_MODELS = {
  "smollm-135m": {
    vocab: 49_152,
    dModel: 576,
    layers: 30,
    heads: 9,
    kvHeads: 3,
    headDim: 64,
    ffnDim: 1536,
    tiedEmbeddings: true,
    ropeTheta: 100_000,
    normEps: 1e-5,
  },
  "qwen-0.5b-lora": {
    vocab: 151_936,
    dModel: 896,
    layers: 24,
    heads: 14,
    kvHeads: 2,
    headDim: 64,
    ffnDim: 4864,
    tiedEmbeddings: true,
    ropeTheta: 1_000_000,
    normEps: 1e-6,
    attentionBias: true,
  },
} as const;

/**
 * The memory estimate's inputs for a real model's configuration, as giftwrap's worker runs it: one
 * update over the whole batch (no reference model, no π_old pass: the worker's reference
 * log-probabilities are constants) in micro-batches of one group with activation checkpointing,
 * then sampling the batch. Change them here where the worker runs otherwise.
 */
function realEstimate(
  model: typeof REAL_MODELS[keyof typeof REAL_MODELS],
  shapes: { rows: number; groupSize: number; promptTokens: number; newTokens: number },
  lora: { rank: number; targets: readonly LoraTarget[] } | null,
): MemoryInputs {
  // Qwen2's q, k and v biases, which parameterCount() leaves out.
  const biases = "attentionBias" in model
    ? model.layers * (model.heads + 2 * model.kvHeads) * model.headDim
    : 0;
  return {
    model: { ...model, params: parameterCount(model) + biases },
    lora: lora === null ? null : { ...lora, params: loraParamCount(model, lora) },
    referenceCopy: false,
    rows: shapes.rows,
    updateRows: shapes.rows,
    passRows: shapes.groupSize,
    microBatches: shapes.rows / shapes.groupSize,
    promptTokens: shapes.promptTokens,
    newTokens: shapes.newTokens,
    gradientCheckpointing: true,
  };
}

/** The configuration called `name`. */
export function benchConfig(name: ConfigName, seed = 1): BenchConfig {
  const plan = compile(frontDoorRecipe);
  const { maxSkippedUpdates: _, ...optimizer } = plan.optimizer;
  const { betaC, stdEpsilon } = plan.objective.options as { betaC: number; stdEpsilon: number };
  const objective = { betaC, stdEpsilon };
  const base = modelConfig(plan.model);
  switch (name) {
    case "front-door": {
      const { prompts, groupSize, rows, promptTokens, newTokens } = plan.shapes;
      return {
        name,
        setup: {
          model: base,
          shapes: { rows, groupSize, promptTokens, newTokens },
          optimizer,
          objective,
          ...batch(base.vocab, prompts, groupSize, promptTokens, newTokens, seed),
          seed,
          alphabet: plan.tokenizer.kind === "char" ? plan.tokenizer.alphabet : "",
        },
      };
    }
    case "large":
    case "large-b8": {
      const [vocab, d, P, C, G] = [64, 384, 64, 192, 8];
      const prompts = name === "large" ? 2 : 1;
      const model = {
        ...base,
        vocab,
        dModel: d,
        layers: 6,
        heads: 6,
        kvHeads: 6,
        headDim: 64,
        ffnDim: ffnDim(d),
        contextLength: P + C,
      };
      return {
        name,
        setup: {
          model,
          shapes: { rows: prompts * G, groupSize: G, promptTokens: P, newTokens: C },
          optimizer,
          objective,
          ...batch(vocab, prompts, G, P, C, seed),
          seed,
          alphabet: alphabet(vocab - SPECIALS),
        },
      };
    }
    case "gqa-untied": {
      const [vocab, d, P, C, prompts, G] = [20, 64, 6, 6, 4, 4];
      const model = {
        ...base,
        vocab,
        dModel: d,
        layers: 2,
        heads: 4,
        kvHeads: 2,
        headDim: 16,
        ffnDim: ffnDim(d),
        contextLength: P + C,
        tiedEmbeddings: false,
      };
      return {
        name,
        setup: {
          model,
          shapes: { rows: prompts * G, groupSize: G, promptTokens: P, newTokens: C },
          optimizer: { ...optimizer, lr: 1e-3, weightDecay: 0.1 },
          objective,
          ...batch(vocab, prompts, G, P, C, seed),
          seed,
          alphabet: alphabet(vocab - SPECIALS),
        },
      };
    }
    case "smollm-135m":
    case "qwen-0.5b-lora": {
      const [P, C, prompts, G] = [64, 128, 4, 4];
      const model = { ...REAL_MODELS[name], contextLength: P + C };
      const lora = name === "qwen-0.5b-lora"
        ? { lora: { rank: 16, alpha: 32, targets: ["q_proj", "k_proj", "v_proj", "o_proj"] } }
        : {};
      const shapes = { rows: prompts * G, groupSize: G, promptTokens: P, newTokens: C };
      const adapters = lora.lora
        ? { rank: 16, targets: ["q_proj", "k_proj", "v_proj", "o_proj"] as LoraTarget[] }
        : null;
      return {
        name,
        setup: {
          model,
          shapes: { rows: prompts * G, groupSize: G, promptTokens: P, newTokens: C },
          optimizer,
          objective,
          ...batch(model.vocab, prompts, G, P, C, seed),
          seed,
          // the sampler draws only ids its tokenizer has: one character per id
          alphabet: alphabet(model.vocab - SPECIALS),
          ...lora,
          microBatchRows: G,
          gradientCheckpointing: true,
        },
        estimate: realEstimate(REAL_MODELS[name], shapes, adapters),
      };
    }
  }
}

/** The backend `auto` picks for the front door (the plan's). */
export function autoBackend(): WorkerConfig["backend"] {
  return compile(frontDoorRecipe).backend.name;
}

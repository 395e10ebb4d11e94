/**
 * The plan: what `compile()` makes of a recipe. Plain, printable data with every default resolved,
 * the backend, the tensor shapes, the stages in execution order and their budgets, and the
 * warnings. `planHash()` is its stable content hash, recorded with every run.
 *
 * @module
 */

import { createHash } from "node:crypto";
import type { Issue } from "./issues.ts";
import type { ObjectiveAxes, Resolved, ResolvedObjective } from "./objectives.ts";
import type {
  Backend,
  EvalSplit,
  LORA_TARGETS,
  Optimizer,
  Recipe,
  RewardOnError,
  RewardSource,
  Sampling,
  Verifier,
  WarmStart,
} from "./schema.ts";

/** The format tag of a plan; it changes when the plan's layout does. */
export const PLAN_FORMAT = "giftwrap.plan/1";

/** A concrete backend (what `auto` resolves to). */
export type BackendName = Exclude<Backend, "auto">;

/**
 * A file a plan names, and its content hash.
 *
 * @example
 * ```ts
 * const input: PlanInput = {
 *   field: "data.path",
 *   path: "data/train.jsonl",
 *   bytes: 52_144,
 *   sha256: "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08",
 * };
 * ```
 */
export interface PlanInput {
  /** The recipe's field that brings it in: `data.path`, `rewards[1].source.module`, … */
  field: string;
  /**
   * The file as the recipe writes it; a module's import, relative to the recipe's directory.
   */
  path: string;
  /** Its size. */
  bytes: number;
  /** The SHA-256 of its content, 64 hex digits. */
  sha256: string;
}

/** The dimensions every model has, resolved. */
export interface ModelShapeSpec {
  layers: number;
  dModel: number;
  heads: number;
  kvHeads: number;
  headDim: number;
  ffnDim: number;
  vocab: number;
  contextLength: number;
  tiedEmbeddings: boolean;
  ropeTheta: number;
  normEps: number;
  /** Every parameter of the model. */
  params: number;
}

/** The model built from the recipe's seed, every dimension resolved. */
export interface TinyGptSpec extends ModelShapeSpec {
  kind: "tinyGpt";
  warmStart: Resolved<WarmStart> | null;
}

/** Llama 3.1/3.2's RoPE frequency scaling, as `config.json` gives it. */
export interface RopeScalingSpec {
  type: "llama3";
  factor: number;
  lowFreqFactor: number;
  highFreqFactor: number;
  originalMaxPositions: number;
}

/** A Hugging Face checkpoint, as read from its directory before `compile()`. */
export interface HfModelSpec extends ModelShapeSpec {
  kind: "hfModel";
  /** The directory as the recipe writes it (relative to the recipe). */
  path: string;
  /** `config.json`'s `model_type`: llama, mistral, qwen2 or qwen3. */
  modelType: string;
  /** `config.json`'s `architectures`, e.g. `["Qwen3ForCausalLM"]`. */
  architectures: string[];
  /** The dtype the weights are stored in: "F32", "BF16", "F16" (mixed: "BF16+F32"). */
  dtype: string;
  /** What the saved checkpoints are written in. */
  saveDtype: "F32" | "F16" | "BF16";
  /** SHA-256 of the directory's model and tokenizer files (see `resolveModels`). */
  sha256: string;
  /** `max_position_embeddings`. */
  maxPositions: number;
  /** Qwen2: biases on the q, k and v projections. */
  attentionBias: boolean;
  /** Qwen3: RMSNorm over each head of q and k. */
  qkNorm: boolean;
  ropeScaling: RopeScalingSpec | null;
  /** A Hugging Face model is never warm-started: it is trained already. */
  warmStart: null;
  /**
   * LoRA adapters, when the recipe asks for them: then only they train. Absent without LoRA (so
   * that plans made before LoRA keep their hashes).
   */
  lora?: LoraSpec;
}

/** A policy's LoRA adapters, resolved (PEFT's semantics). */
export interface LoraSpec {
  rank: number;
  alpha: number;
  /** alpha / rank: the update's scale. */
  scale: number;
  dropout: number;
  /** The projections adapted in every layer, in `LORA_TARGETS` order. */
  targets: LoraTargetName[];
  /** The adapters' parameters: A and B of every adapted projection, the only ones trained. */
  params: number;
  /** The PEFT adapter training starts from (its directory as the recipe writes it), or null. */
  adapter: { path: string; sha256: string } | null;
  /** Whether `<run>/model` also gets the merged full weights. */
  saveMerged: boolean;
}

/** A projection a LoRA adapter may target. */
export type LoraTargetName = (typeof LORA_TARGETS)[number];

/**
 * Evaluation by the recipe's success reward when it is not a built-in verifier (a function, an
 * endpoint): a greedy completion succeeds when that reward scores it 1.
 */
export interface SuccessRewardMetric {
  kind: "successReward";
  /** The reward's name (`rewards[i].name`). */
  name: string;
}

/** The model, every dimension resolved. */
export type ModelSpec = TinyGptSpec | HfModelSpec;

/** The character tokenizer of the synthetic tasks. */
export interface CharTokenizerSpec {
  kind: "char";
  specials: string[];
  alphabet: string;
  vocab: number;
}

/** A Hugging Face tokenizer (`tokenizer.json`), as read before `compile()`. */
export interface HfTokenizerSpec {
  kind: "hf";
  /** One more than its largest id (at most the model's embedding rows). */
  vocab: number;
  bosId: number | null;
  eosId: number | null;
  padId: number | null;
  padSource: "pad_token" | "eos_token" | null;
  /** Ids that end a completion: the generation config's end ids, the end token, and `bosId`. */
  stopIds: number[];
  /** Whether a plain prompt is encoded with the begin token first. */
  addBos: boolean;
  /** Whether prompts are rendered with the model's chat template. */
  chatTemplate: boolean;
  system: string | null;
  templateArgs: Record<string, string | number | boolean | null>;
  /** One prompt of the data, rendered as the model reads it, with its token count. */
  example: { text: string; tokens: number } | null;
}

/**
 * What reading a recipe's Hugging Face model directory found: what `compile()` needs of it and
 * cannot read itself, being pure. The runtime's `resolveModels()` makes it.
 */
export interface HfModelFacts {
  modelType: string;
  architectures: string[];
  dtype: string;
  sha256: string;
  parameters: number;
  maxPositions: number;
  shape: Omit<ModelShapeSpec, "params" | "contextLength">;
  attentionBias: boolean;
  qkNorm: boolean;
  ropeScaling: RopeScalingSpec | null;
  tokenizer: Omit<HfTokenizerSpec, "chatTemplate" | "system" | "templateArgs" | "example"> & {
    /** Whether the tokenizer has a chat template. */
    hasChatTemplate: boolean;
  };
  /**
   * The PEFT adapter `policy.lora.adapter` names, as read from its `adapter_config.json`, when
   * the recipe names one.
   */
  adapter?: AdapterFacts;
  /** The first data row's prompt rendered with the recipe's chat settings, when there is one. */
  example: { text: string; tokens: number } | null;
  /** Why the first data row could not be rendered, when it could not. */
  exampleError?: string;
}

/** What was read of a PEFT adapter directory before compiling. */
export interface AdapterFacts {
  /** The directory as the recipe writes it. */
  path: string;
  rank: number;
  alpha: number;
  dropout: number;
  /** `target_modules`, as written. */
  targets: string[];
  /** SHA-256 of `adapter_config.json` and `adapter_model.safetensors`. */
  sha256: string;
}

/** One reward source, resolved. */
export interface RewardSpec {
  /** Its name in the logs. */
  name: string;
  source: RewardSource;
  weight: number;
  /** Whether this is the success signal (accuracy, DAPO's filtering). */
  success: boolean;
  /** The range its scores fall in; null when the source does not declare one. */
  range: [number, number] | null;
  /**
   * What a failing score does: "fail" stops the run with one line, "zero" scores 0, "skip-group"
   * leaves the sample's whole group out of the update.
   */
  onError: RewardOnError;
}

/** One stage of execution, in order. */
export interface Stage {
  /** Once before training, in every step, every `every` steps, or once at the end. */
  when: "setup" | "step" | "periodic" | "end";
  name: string;
  detail: string;
  /** Tensor shapes the stage produces or works on, by name. */
  shapes: Record<string, number[]>;
  /** Estimated FLOPs of one occurrence. */
  flops: number;
  /** For periodic stages: every how many steps. */
  every?: number;
}

/**
 * The plan of a recipe: plain data, every default resolved. Share it as JSON (`deno task plan
 * --json`); `planHash()` names its content.
 *
 * @example
 * ```ts
 * const plan: Plan = compile(recipe);
 * console.log(plan.shapes.rows, plan.objective.formula, plan.stages.map((s) => s.name));
 * ```
 */
export interface Plan {
  format: typeof PLAN_FORMAT;
  name: string;
  seed: number;
  /** The recipe with every default written out; itself a valid recipe. */
  recipe: Recipe;
  backend: { name: BackendName; requested: Backend; reason: string };
  model: ModelSpec;
  tokenizer: CharTokenizerSpec | HfTokenizerSpec;
  data: {
    kind: string;
    description: string;
    train: number | null;
    eval: number | null;
    distinctProblems: number | null;
  };
  /**
   * The files the plan names (its JSON Lines data, `fn` reward modules and their relative imports,
   * a custom objective's module) with their SHA-256 hashes, so that the plan hash covers what is
   * in them. `compile()` reads no file: `withInputs()` records them (dsl/inputs.ts), as the
   * command line and `execute()` do. Absent when the plan names no file.
   */
  inputs?: PlanInput[];
  reference: {
    kind: "initial" | "rollout" | "none" | "checkpoint";
    checkpoint: string | null;
    /** Whether the objective reads it (otherwise it is not computed). */
    used: boolean;
  };
  rewards: RewardSpec[];
  objective: {
    kind: ResolvedObjective["kind"];
    options: ResolvedObjective;
    axes: ObjectiveAxes;
    formula: string;
  };
  sampling: Resolved<Sampling>;
  optimizer: Resolved<Optimizer>;
  shapes: {
    /** P */
    prompts: number;
    /** G */
    groupSize: number;
    /** B = P·G */
    rows: number;
    promptTokens: number;
    newTokens: number;
    /** T = promptTokens + newTokens */
    sequenceTokens: number;
    vocab: number;
    miniBatchRows: number;
    miniBatchGroups: number;
  };
  schedule: {
    steps: number;
    miniBatches: number;
    epochs: number;
    optimizerStepsPerBatch: number;
    evalEvery: number | null;
    /** The split evaluation decodes (`evalProblems` of it). */
    evalSplit: EvalSplit;
    evalProblems: number;
    evalMetric: Verifier | SuccessRewardMetric | null;
    /** Evaluations in the run: at step 0, every `evalEvery` steps, and at the end. */
    evaluations: number;
    checkpointEvery: number | null;
    checkpointKeep: number;
    /** samples.jsonl: `sampleGroups` groups at step 1, every `samplesEvery` steps and the last. */
    samplesEvery: number;
    sampleGroups: number;
  };
  /**
   * How each update is computed, when the recipe sets `microBatches` or `gradientCheckpointing`;
   * absent otherwise (one pass over each mini-batch, every activation kept), so that plans made
   * before these options keep their hashes.
   */
  update?: {
    /** Micro-batches per mini-batch, whole groups each, their gradients accumulated. */
    microBatches: number;
    /** Rows of one micro-batch: miniBatchRows / microBatches. */
    microBatchRows: number;
    /** Recompute each transformer block in the backward pass. */
    gradientCheckpointing: boolean;
  };
  stages: Stage[];
  budget: {
    perStep: {
      /** B · newTokens: an upper bound, as completions may stop early. */
      tokensSampled: number;
      /** Model calls while sampling: one prefill, then one per further token. */
      samplingCalls: number;
      /** Forward passes over the batch outside sampling (old, reference, update). */
      forwardPasses: number;
      backwardPasses: number;
      optimizerSteps: number;
      flops: { sample: number; oldLogp: number; reference: number; update: number; total: number };
      peakBytes: {
        weights: number;
        /**
         * Gradients and AdamW's two moments of the trained parameters (the adapters' alone with
         * LoRA), and with micro-batches the gradients' running sum.
         */
        optimizer: number;
        reference: number;
        /**
         * The update's differentiated pass (dsl/budget.ts's `updateActivations`: every block's
         * activations, or with checkpointing the blocks' inputs and one block; the
         * log-probabilities' backward peak, the logits, the softmax recomputed from them and their
         * gradient, with no one-hot) or sampling's KV cache, the larger.
         */
        activations: number;
        total: number;
      };
    };
    run: {
      tokensSampled: number;
      flops: { warmStart: number; train: number; eval: number; total: number };
    };
  };
  warnings: Issue[];
}

/**
 * The log-probability passes a step makes before its update, each shown as a stage of the printed
 * plan ("old log-probs", "reference log-probs"). The runtime reads these, never the stage names.
 * A function of the plan rather than a field of it, so that plans and their hashes stay as they
 * are.
 */
export interface LogProbPasses {
  /**
   * log π_old gets a pass of its own: the loss reads it (a ratio, or the reference under
   * 'rollout') and the batch has several optimiser steps. With one step, π_old is π detached.
   */
  old: boolean;
  /** log π_ref gets a pass under a frozen reference ('initial' or a checkpoint). */
  reference: boolean;
}

/**
 * Which log-probability passes each step of `plan` makes before its update.
 *
 * @example
 * ```ts
 * logProbPasses(compile(recipe({ ...base, objective: grpo(), miniBatches: 2 })));
 * // { old: true, reference: true }
 * ```
 */
export function logProbPasses(
  plan: Pick<Plan, "objective" | "reference" | "schedule">,
): LogProbPasses {
  const { objective, reference, schedule } = plan;
  const readsOld = objective.axes.readsOld || reference.kind === "rollout";
  return {
    old: readsOld && schedule.optimizerStepsPerBatch > 1,
    reference: reference.kind === "initial" || reference.kind === "checkpoint",
  };
}

/** JSON with object keys sorted at every depth: the same data always gives the same text. */
export function canonicalJson(value: unknown): string {
  return JSON.stringify(value, (_key, v) => {
    if (v === null || typeof v !== "object" || Array.isArray(v)) return v;
    return Object.fromEntries(
      Object.keys(v).sort().map((k) => [k, (v as Record<string, unknown>)[k]]),
    );
  });
}

/**
 * A stable content hash of a plan: the first 16 hex digits of the SHA-256 of its canonical JSON.
 * Two recipes with the same content (a TypeScript recipe and its JSON twin) have the same hash.
 *
 * @example
 * ```ts
 * planHash(compile(recipe)); // "5d0c2a4b9e1f3a77"
 * ```
 */
export function planHash(plan: Plan): string {
  return createHash("sha256").update(canonicalJson(plan)).digest("hex").slice(0, 16);
}

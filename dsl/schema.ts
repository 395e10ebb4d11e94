/**
 * The recipe's schema: one TypeBox definition is both the TypeScript types (`Static<…>`) and the
 * JSON Schema (draft 2020-12) that `deno task schema` writes and ajv validates against. Nothing
 * here is written twice: a field's type, range, default and documentation live on one line.
 *
 * Defaults that are constants sit here as `default` annotations and are filled in by `compile()`.
 * Defaults that depend on other fields (the number of mini-batches for GIFT, the completion length
 * of a task, the feed-forward width of a model) are described here and computed by `compile()`.
 *
 * Every node of a union carries a `kind` tag, so a recipe is plain data that survives
 * `JSON.parse(JSON.stringify(recipe))` and a misplaced option is an error in the editor and in JSON.
 *
 * @module
 */

import {
  type Static,
  type TObject,
  type TProperties,
  type TSchema,
  type TUnion,
  Type,
} from "@sinclair/typebox";

// ---------------------------------------------------------------------------------------------
// Small schema helpers (kept local: they exist to keep the field lists below one line each).

/** A closed object: unknown keys are errors. */
function section<P extends TProperties>(properties: P, description: string): TObject<P> {
  return Type.Object(properties, { additionalProperties: false, description });
}

/** A closed object tagged with `kind`, one variant of a tagged union. */
function variant<K extends string, P extends TProperties>(
  kind: K,
  properties: P,
  description: string,
) {
  return Type.Object({ kind: Type.Literal(kind), ...properties }, {
    additionalProperties: false,
    description,
  });
}

/**
 * A union discriminated by `kind`. Emitted as `oneOf` with ajv's `discriminator` keyword, so the
 * validator checks only the branch the tag names and its errors speak of that branch alone.
 */
function tagged<T extends TObject[]>(variants: [...T], description: string) {
  return Type.Unsafe<Static<TUnion<T>>>({
    type: "object",
    description,
    oneOf: variants,
    discriminator: { propertyName: "kind" },
  });
}

/** A string from a fixed list, emitted as a plain `enum` (clearer errors than a union of consts). */
function choice<const T extends readonly string[]>(
  values: T,
  options: { description: string; default?: T[number] },
) {
  return Type.Unsafe<T[number]>({ type: "string", enum: [...values], ...options });
}

function int(
  options: { minimum?: number; maximum?: number; default?: number; description: string },
) {
  return Type.Integer(options);
}

function num(options: {
  minimum?: number;
  maximum?: number;
  exclusiveMinimum?: number;
  exclusiveMaximum?: number;
  default?: number;
  description: string;
}) {
  return Type.Number(options);
}

const opt = Type.Optional;

/** A pair of numbers, emitted the draft 2020-12 way (`prefixItems`); TypeBox emits draft 7's. */
function pair(
  first: TSchema,
  second: TSchema,
  options: { description: string; default?: [number, number] },
) {
  return Type.Unsafe<[number, number]>({
    type: "array",
    prefixItems: [first, second],
    items: false,
    minItems: 2,
    maxItems: 2,
    ...options,
  });
}

/** A `[low, high]` range of reward values. */
const Range = pair(Type.Number(), Type.Number(), {
  description: "The range [low, high] the source's scores fall in.",
});

// ---------------------------------------------------------------------------------------------
// Policy

/** Supervised warm start on the task's reference answers, before any RL update. */
export const WarmStartSchema = section({
  sftSteps: int({ minimum: 0, maximum: 1_000_000, description: "Supervised steps." }),
  lr: opt(num({
    exclusiveMinimum: 0,
    maximum: 1,
    default: 1e-3,
    description: "Learning rate of the warm start (AdamW).",
  })),
  batchSize: opt(int({
    minimum: 1,
    maximum: 65_536,
    default: 64,
    description: "Problems per supervised step.",
  })),
}, "Supervised fine-tuning on the task's reference answers before RL; cached by content hash.");

/** A small Llama-style causal transformer trained from the recipe's seed. */
export const TinyGptSchema = variant("tinyGpt", {
  layers: opt(int({ minimum: 1, maximum: 128, default: 2, description: "Transformer blocks." })),
  dModel: opt(int({ minimum: 8, maximum: 16_384, default: 128, description: "Model width." })),
  heads: opt(int({ minimum: 1, maximum: 256, default: 4, description: "Attention heads." })),
  kvHeads: opt(int({
    minimum: 1,
    maximum: 256,
    description: "Key/value heads (grouped-query attention). Default: `heads`.",
  })),
  ffnDim: opt(int({
    minimum: 1,
    maximum: 131_072,
    description: "SwiGLU hidden width. Default: 8/3 · dModel rounded up to a multiple of 32.",
  })),
  contextLength: opt(int({
    minimum: 2,
    maximum: 131_072,
    description:
      "Longest sequence the model accepts. Default: prompt tokens + sampling.maxNewTokens.",
  })),
  tiedEmbeddings: opt(Type.Boolean({
    default: true,
    description: "Share the token embedding and the output projection.",
  })),
  ropeTheta: opt(num({
    exclusiveMinimum: 0,
    default: 10_000,
    description: "Base of the rotary position embedding.",
  })),
  normEps: opt(num({ exclusiveMinimum: 0, maximum: 1, default: 1e-5, description: "RMSNorm ε." })),
  warmStart: opt(WarmStartSchema),
}, "A small Llama-style transformer (RMSNorm, RoPE, SwiGLU) with a character tokenizer.");

/** How prompts are rendered for a model with a chat template. */
export const ChatSchema = section({
  template: opt(Type.Boolean({
    default: true,
    description: "Render each prompt with the tokenizer's chat template (add_generation_prompt " +
      "on) when it has one; false: encode the plain text, as for a base model.",
  })),
  system: opt(Type.String({
    description: "A system prompt, put first unless a row's messages start with one. " +
      "Needs a chat template.",
  })),
  args: opt(Type.Record(
    Type.String({ pattern: "^[A-Za-z_][A-Za-z0-9_]*$" }),
    Type.Union([Type.String(), Type.Number(), Type.Boolean(), Type.Null()]),
    { description: "More template variables, e.g. { enable_thinking: false } for Qwen3." },
  )),
}, "How prompts become text: the chat template, a system prompt and template arguments.");

/** The projections a LoRA adapter may target, by Hugging Face's module names. */
export const LORA_TARGETS = [
  "q_proj",
  "k_proj",
  "v_proj",
  "o_proj",
  "gate_proj",
  "up_proj",
  "down_proj",
] as const;

/** Low-rank adapters on a Hugging Face policy: only they train; the base weights stay frozen. */
export const LoraSchema = section({
  rank: opt(int({
    minimum: 1,
    maximum: 4096,
    description: "The rank r of each adapter (PEFT's r). Default: 8, or the adapter's.",
  })),
  alpha: opt(num({
    exclusiveMinimum: 0,
    maximum: 1_000_000,
    description: "The update is scaled by alpha / rank (PEFT's lora_alpha). Default: the rank, " +
      "or the adapter's.",
  })),
  dropout: opt(num({
    minimum: 0,
    exclusiveMaximum: 1,
    description: "Dropout on the adapters' input (PEFT's lora_dropout). Default: 0.",
  })),
  targets: opt(Type.Array(choice(LORA_TARGETS, { description: "A projection's module name." }), {
    minItems: 1,
    maxItems: LORA_TARGETS.length,
    uniqueItems: true,
    description: "The projections adapted in every layer. Default: q_proj and v_proj (PEFT's " +
      "for Llama and Qwen), or the adapter's.",
  })),
  adapter: opt(Type.String({
    minLength: 1,
    description: "An existing PEFT adapter directory (adapter_config.json, " +
      "adapter_model.safetensors) to start from, relative to the recipe.",
  })),
  saveMerged: opt(Type.Boolean({
    description: "Also save the merged full weights (W + alpha/r · B·A) as a Hugging Face " +
      "checkpoint in <run>/model. Default: false (the adapter alone, in <run>/adapter).",
  })),
}, "LoRA adapters (PEFT's format) on the policy's projections.");

/** A pretrained Hugging Face checkpoint directory. */
export const HfModelSchema = variant(
  "hfModel",
  {
    path: Type.String({
      minLength: 1,
      description:
        "A Hugging Face model directory (config.json, model.safetensors or its shards, " +
        "tokenizer.json), relative to the recipe.",
    }),
    contextLength: opt(int({
      minimum: 2,
      maximum: 1_048_576,
      description: "Longest sequence trained and sampled. Default: prompt tokens + " +
        "sampling.maxNewTokens; at most config.json's max_position_embeddings.",
    })),
    chat: opt(ChatSchema),
    saveDtype: opt(choice(["source", "float32", "float16", "bfloat16"] as const, {
      default: "source",
      description: "The dtype of the saved Hugging Face checkpoints: the source's (BF16 stays " +
        "BF16) or another.",
    })),
    lora: opt(LoraSchema),
  },
  "A pretrained Hugging Face checkpoint (llama, mistral, qwen2, qwen3) with its own tokenizer " +
    "and chat template.",
);

export const PolicySchema = tagged([TinyGptSchema, HfModelSchema], "The policy being trained.");

/** What the implicit reward and the KL penalty are measured against. */
export const ReferenceSchema = Type.Union([
  choice(["initial", "rollout", "none"] as const, {
    description: "initial: a frozen copy of the starting policy; " +
      "rollout: the policy that sampled the batch; none: no reference.",
  }),
  section({
    checkpoint: Type.String({ minLength: 1, description: "A checkpoint directory." }),
  }, "A frozen policy loaded from a checkpoint."),
], {
  description: "The reference policy π_ref. Default: 'initial' when the objective reads a " +
    "reference (an implicit reward or a KL coefficient above 0), else 'none'.",
});

// ---------------------------------------------------------------------------------------------
// Data

export const AdditionSchema = variant("addition", {
  digits: opt(int({ minimum: 1, maximum: 9, default: 2, description: "Digits per operand." })),
  train: opt(
    int({ minimum: 1, maximum: 10_000_000, default: 5000, description: "Train problems." }),
  ),
  eval: opt(int({ minimum: 0, maximum: 1_000_000, default: 500, description: "Eval problems." })),
}, "Synthetic addition 'a+b=' with answer 'c'; the splits never share a problem.");

export const JsonlSchema = variant("jsonl", {
  path: Type.String({ minLength: 1, description: "A JSON Lines file, one problem per line." }),
  prompt: opt(Type.String({
    minLength: 1,
    default: "prompt",
    description: "The field holding the prompt.",
  })),
  answer: opt(Type.String({
    minLength: 1,
    default: "answer",
    description: "The field holding the reference answer.",
  })),
  template: opt(Type.String({
    pattern: "\\{prompt\\}",
    description: "A prompt template containing '{prompt}'.",
  })),
  eval: opt(int({
    minimum: 0,
    maximum: 1_000_000,
    default: 0,
    description: "Rows held out for evaluation, after shuffling with the seed.",
  })),
  maxPromptTokens: opt(int({
    minimum: 1,
    maximum: 131_072,
    default: 256,
    description: "Longest prompt in tokens; a longer one is an error when the data loads.",
  })),
  tooLong: opt(choice(["error", "skip", "truncate-left"] as const, {
    description: "A prompt over maxPromptTokens: error (names file:line), skip the row, or " +
      "truncate-left (keep its last tokens). Default: error.",
  })),
  maxBytes: opt(int({
    minimum: 1,
    maximum: 17_179_869_184,
    default: 268_435_456,
    description: "Largest file in bytes (256 MiB); a larger one is refused before it is read, " +
      "as every row is held in memory.",
  })),
}, "Problems read from a JSON Lines file.");

export const MultiplicationSchema = variant(
  "multiplication",
  {
    digits: opt(int({
      minimum: 1,
      maximum: 6,
      default: 2,
      description: "Digits per operand; both are zero-padded to this width.",
    })),
    train: opt(
      int({ minimum: 1, maximum: 10_000_000, default: 5000, description: "Train problems." }),
    ),
    eval: opt(int({ minimum: 0, maximum: 1_000_000, default: 500, description: "Eval problems." })),
  },
  "Synthetic multiplication 'a*b=' (operands zero-padded) with answer 'c'; the splits never " +
    "share a problem.",
);

export const SortingSchema = variant("sorting", {
  length: opt(int({ minimum: 2, maximum: 20, default: 5, description: "Values per list." })),
  maxValue: opt(int({
    minimum: 1,
    maximum: 999,
    default: 9,
    description: "Largest value; values run from 0, written without padding.",
  })),
  train: opt(
    int({ minimum: 1, maximum: 10_000_000, default: 5000, description: "Train problems." }),
  ),
  eval: opt(int({ minimum: 0, maximum: 1_000_000, default: 500, description: "Eval problems." })),
}, "Synthetic sorting '3,1,4,1,5=' with answer '1,1,3,4,5'; the splits never share a problem.");

export const CountdownSchema = variant(
  "countdown",
  {
    numbers: opt(int({ minimum: 2, maximum: 6, default: 4, description: "Numbers per problem." })),
    maxNumber: opt(int({ minimum: 1, maximum: 999, default: 25, description: "Largest number." })),
    maxTarget: opt(
      int({ minimum: 1, maximum: 100_000, default: 100, description: "Largest target." }),
    ),
    train: opt(
      int({ minimum: 1, maximum: 10_000_000, default: 5000, description: "Train problems." }),
    ),
    eval: opt(int({ minimum: 0, maximum: 1_000_000, default: 500, description: "Eval problems." })),
  },
  "Synthetic countdown '3,7,25,4|24=': reach the target with + - * / and parentheses over the " +
    "numbers, each used at most once; the answer is a reference expression.",
);

export const DataSchema = tagged(
  [AdditionSchema, MultiplicationSchema, SortingSchema, CountdownSchema, JsonlSchema],
  "The problems to train on.",
);

// ---------------------------------------------------------------------------------------------
// Rewards

export const ExactMatchSchema = variant("exactMatch", {
  trim: opt(Type.Boolean({ default: true, description: "Ignore leading/trailing whitespace." })),
  caseSensitive: opt(Type.Boolean({ default: true, description: "Compare letter case." })),
  collapseWhitespace: opt(Type.Boolean({
    default: false,
    description: "Treat runs of whitespace as one space.",
  })),
}, "1 when the completion equals the reference answer, else 0.");

export const NumericAnswerSchema = variant(
  "numericAnswer",
  {
    tolerance: opt(num({
      minimum: 0,
      default: 0,
      description: "Largest absolute difference still counted as correct.",
    })),
  },
  "1 when the completion's answer (the last number, '#### n' or '\\boxed{n}') equals the reference.",
);

export const RegexFormatSchema = variant("regexFormat", {
  pattern: Type.String({ minLength: 1, description: "A JavaScript regular expression." }),
  flags: opt(Type.String({ pattern: "^[imsu]*$", default: "", description: "Regex flags." })),
}, "1 when the completion matches the pattern, else 0.");

export const OverlongPenaltySchema = variant("overlongPenalty", {
  buffer: int({ minimum: 1, maximum: 131_072, description: "L_cache: the soft buffer in tokens." }),
  maxTokens: opt(int({
    minimum: 1,
    maximum: 131_072,
    description: "L_max. Default: sampling.maxNewTokens.",
  })),
}, "DAPO's soft overlong penalty: 0, then linear down to -1 over the buffer, -1 beyond L_max.");

export const CountdownVerifierSchema = variant(
  "countdown",
  {},
  "1 when the completion is an arithmetic expression (+ − × ÷, parentheses) over the problem's " +
    "numbers, each used at most once, whose value is the target; else 0.",
);

export const FnSchema = variant("fn", {
  module: Type.String({ minLength: 1, description: "Module specifier (relative to the recipe)." }),
  export: opt(Type.String({ minLength: 1, default: "default", description: "Export name." })),
  range: opt(Range),
  sandbox: opt(Type.Boolean({
    default: true,
    description: "Run in a subprocess with no permissions; false runs it in the trainer's process.",
  })),
  timeoutMs: opt(int({
    minimum: 1,
    maximum: 3_600_000,
    default: 10_000,
    description: "Per call; a call that takes longer fails.",
  })),
}, "A TypeScript function (sample) => number | Promise<number>, by module and export name.");

export const HttpSchema = variant("http", {
  url: Type.String({ pattern: "^https?://", description: "Endpoint receiving batched POSTs." }),
  timeoutMs: opt(
    int({ minimum: 1, maximum: 3_600_000, default: 30_000, description: "Per request." }),
  ),
  retries: opt(int({ minimum: 0, maximum: 100, default: 2, description: "Retries with backoff." })),
  batchSize: opt(
    int({ minimum: 1, maximum: 65_536, default: 64, description: "Samples per POST." }),
  ),
  concurrency: opt(
    int({ minimum: 1, maximum: 1024, default: 4, description: "Requests in flight." }),
  ),
  maxResponseBytes: opt(int({
    minimum: 1,
    maximum: 1_073_741_824,
    default: 16_777_216,
    description: "The most bytes of a response read; a longer one is an error.",
  })),
  followRedirects: opt(Type.Boolean({
    default: false,
    description: "Follow 307 and 308 redirects to the endpoint's own origin; never another one.",
  })),
  range: opt(Range),
}, "A remote scorer: batched JSON POST of samples, scores back.");

export const RewardModelSchema = variant("rewardModel", {
  checkpoint: Type.String({
    minLength: 1,
    description: "A reward model directory with a scalar head (score.weight [1, d]): a giftwrap " +
      "checkpoint, or a Hugging Face *ForSequenceClassification directory (llama, mistral, " +
      "qwen2, qwen3) with its tokenizer.",
  }),
  batchSize: opt(
    int({ minimum: 1, maximum: 65_536, default: 64, description: "Samples per forward pass." }),
  ),
  range: opt(Range),
}, "A learned reward model: a transformer checkpoint with a scalar head scores each sample.");

export const VerifierSchema = tagged(
  [ExactMatchSchema, NumericAnswerSchema, RegexFormatSchema, CountdownVerifierSchema],
  "A rule-based check of a completion against the problem: its reference answer, or (countdown) " +
    "its numbers and target.",
);

export const RewardSourceSchema = tagged(
  [
    ExactMatchSchema,
    NumericAnswerSchema,
    RegexFormatSchema,
    CountdownVerifierSchema,
    OverlongPenaltySchema,
    FnSchema,
    HttpSchema,
    RewardModelSchema,
  ],
  "Where a reward comes from: a built-in verifier, user code, a remote endpoint or a reward model.",
);

/** What a reward source's failing score does to the run. */
export const REWARD_ON_ERROR = ["fail", "zero", "skip-group"] as const;

export const RewardSchema = section({
  source: RewardSourceSchema,
  weight: opt(num({ default: 1, description: "The reward is the weighted sum of the sources." })),
  success: opt(Type.Boolean({
    description: "The success signal, used for accuracy and DAPO's filtering (at most one). " +
      "Default: the only source, when there is one.",
  })),
  name: opt(Type.String({
    pattern: "^[A-Za-z][A-Za-z0-9_-]*$",
    description: "Name in the logs. Default: the source's kind (numbered when repeated).",
  })),
  onError: opt(choice(REWARD_ON_ERROR, {
    default: "fail",
    description: "What a failing score does: fail stops the run with one line, zero scores 0, " +
      "skip-group leaves the sample's whole group out of the update.",
  })),
}, "One reward source with its weight, role and error policy.");

// ---------------------------------------------------------------------------------------------
// Objectives (docs/objectives.md). Each accepts only its own options.

const beta = (value: number, what: string) =>
  opt(num({ minimum: 0, maximum: 100, default: value, description: what }));
const epsilon = (value: number) =>
  opt(num({
    minimum: 0,
    exclusiveMaximum: 1,
    default: value,
    description: "Lower clip: ratios below 1 − epsilon are clipped.",
  }));
const epsilonHigh = (value?: number) =>
  opt(num({
    minimum: 0,
    maximum: 10,
    ...(value === undefined ? {} : { default: value }),
    description: value === undefined
      ? "Upper clip: ratios above 1 + epsilonHigh are clipped. Default: epsilon."
      : "Upper clip: ratios above 1 + epsilonHigh are clipped.",
  }));
const klBeta = (value: number) => beta(value, "Coefficient of the k3 KL to the reference.");

export const GiftSchema = variant("gift", {
  betaC: opt(num({
    exclusiveMinimum: 0,
    maximum: 100,
    default: 1,
    description: "β_c scaling the standardised implicit reward (the paper's form is 1).",
  })),
  stdEpsilon: opt(num({
    exclusiveMinimum: 0,
    maximum: 1,
    default: 1e-6,
    description: "ε added to both group standard deviations.",
  })),
}, "GIFT: match group-standardised implicit rewards to group-standardised rewards.");

export const GrpoSchema = variant("grpo", {
  beta: klBeta(0.04),
  epsilon: epsilon(0.2),
  epsilonHigh: epsilonHigh(),
}, "GRPO: group-standardised advantages, token-level clipped ratio, k3 KL in the loss.");

export const DrGrpoSchema = variant("drGrpo", {
  beta: klBeta(0),
  epsilon: epsilon(0.2),
  epsilonHigh: epsilonHigh(),
}, "Dr. GRPO: GRPO without the std scaling and with a constant normaliser.");

export const DapoSchema = variant("dapo", {
  beta: klBeta(0),
  epsilon: epsilon(0.2),
  epsilonHigh: epsilonHigh(0.28),
  dynamicSampling: opt(Type.Boolean({
    default: true,
    description: "Drop groups whose success rewards are all equal and sample more prompts.",
  })),
  maxSamplingRounds: opt(int({
    minimum: 1,
    maximum: 1000,
    default: 10,
    description: "Sampling rounds allowed to fill one batch before the run stops with an error.",
  })),
  maskTruncated: opt(Type.Boolean({
    default: false,
    description: "Exclude completions cut at maxNewTokens from the loss.",
  })),
}, "DAPO: clip-higher, token-mean aggregation, dynamic sampling.");

export const GspoSchema = variant("gspo", {
  beta: klBeta(0),
  epsilon: epsilon(3e-4),
  epsilonHigh: epsilonHigh(4e-4),
}, "GSPO: a length-normalised sequence-level ratio, clipped.");

export const RlooSchema = variant("rloo", {
  beta: beta(0.05, "Coefficient of the KL to the reference, subtracted from the reward."),
  epsilon: epsilon(0.2),
}, "RLOO: leave-one-out baseline, sequence-level clipped ratio, KL in the reward.");

export const OnlineDpoSchema = variant("onlineDpo", {
  beta: opt(num({
    exclusiveMinimum: 0,
    maximum: 100,
    default: 0.1,
    description: "DPO temperature β.",
  })),
}, "Online DPO: the best against the worst completion of each group; ties skipped.");

export const UnaSchema = variant("una", {
  beta: opt(num({
    exclusiveMinimum: 0,
    maximum: 100,
    default: 0.03,
    description: "Temperature of the sigmoid on the implicit reward.",
  })),
}, "UNA: (σ(β·u) − σ(r))², u the summed log-ratio to the reference.");

/** A JSON value: what `JSON.parse(JSON.stringify(x))` gives back unchanged. */
export type JsonValue = null | boolean | number | string | JsonValue[] | JsonObject;

/** A JSON object, such as the free-form options of a custom objective. */
export type JsonObject = { [key: string]: JsonValue };

/** What the batch of a custom objective carries beyond the current log-probs. */
export const CustomReadsSchema = section({
  reference: opt(Type.Boolean({
    default: true,
    description: "The loss reads refLogp, so the batch carries log-probs under the recipe's " +
      "reference (which then defaults to 'initial').",
  })),
  old: opt(Type.Boolean({
    default: false,
    description: "The loss reads oldLogp, so with several optimiser steps per batch the trainer " +
      "computes π_old in a separate pass.",
  })),
}, "What the loss reads besides logp, mask and rewards.");

export const CustomSchema = variant("custom", {
  module: Type.String({ minLength: 1, description: "Module specifier (relative to the recipe)." }),
  export: opt(Type.String({
    minLength: 1,
    default: "default",
    description: "Export name of an Objective { name, loss(batch, options) }.",
  })),
  options: opt(Type.Unsafe<JsonObject>({
    type: "object",
    default: {},
    description: "Free-form JSON passed to loss() as its options.",
  })),
  reads: opt(CustomReadsSchema),
}, "Your own objective: a TypeScript module implementing the runtime's Objective contract.");

export const ObjectiveSchema = tagged(
  [
    GiftSchema,
    GrpoSchema,
    DrGrpoSchema,
    DapoSchema,
    GspoSchema,
    RlooSchema,
    OnlineDpoSchema,
    UnaSchema,
    CustomSchema,
  ],
  "The training objective.",
);

// ---------------------------------------------------------------------------------------------
// The rest of the recipe

export const GroupSchema = section({
  size: int({ minimum: 1, maximum: 4096, description: "G: completions sampled per prompt." }),
  prompts: int({ minimum: 1, maximum: 65_536, description: "P: prompts per step." }),
}, "Each step samples G completions for each of P prompts: B = P·G rows.");

export const SamplingSchema = section({
  temperature: opt(
    num({ exclusiveMinimum: 0, maximum: 100, default: 1, description: "Softmax T." }),
  ),
  topP: opt(num({ exclusiveMinimum: 0, maximum: 1, default: 1, description: "Nucleus mass." })),
  topK: opt(int({ minimum: 0, maximum: 1_000_000, default: 0, description: "0 turns top-k off." })),
  maxNewTokens: opt(int({
    minimum: 1,
    maximum: 131_072,
    description: "Longest completion. Default: the task's longest answer plus the stop token.",
  })),
  stop: opt(Type.Array(Type.String({ minLength: 1 }), {
    maxItems: 16,
    description: "Strings that end a completion (EOS always does).",
  })),
}, "How completions are sampled.");

export const OptimizerSchema = section({
  lr: num({ exclusiveMinimum: 0, maximum: 1, description: "Learning rate (AdamW)." }),
  betas: opt(pair(
    num({ minimum: 0, exclusiveMaximum: 1, description: "β1" }),
    num({ minimum: 0, exclusiveMaximum: 1, description: "β2" }),
    { default: [0.9, 0.999], description: "AdamW's (β1, β2)." },
  )),
  eps: opt(num({ exclusiveMinimum: 0, maximum: 1, default: 1e-8, description: "AdamW's ε." })),
  weightDecay: opt(num({ minimum: 0, maximum: 10, default: 0, description: "Decoupled decay." })),
  clipGradNorm: opt(num({
    minimum: 0,
    default: 1,
    description: "Clip the global gradient norm to this; 0 turns clipping off.",
  })),
  warmupSteps: opt(int({ minimum: 0, default: 0, description: "Linear warm-up, in updates." })),
  schedule: opt(choice(["constant", "linear", "cosine"] as const, {
    default: "constant",
    description: "Learning-rate schedule after the warm-up.",
  })),
  maxSkippedUpdates: opt(int({
    minimum: 1,
    maximum: 1_000_000,
    default: 3,
    description: "Updates skipped in a row for a non-finite loss or gradient before the run stops.",
  })),
}, "The optimiser: AdamW with gradient-norm clipping.");

export const EvalSchema = section(
  {
    every: opt(int({
      minimum: 0,
      maximum: 10_000_000,
      description: "Evaluate every N steps (always at step 0 and at the end).",
    })),
    limit: opt(
      int({ minimum: 1, description: "Evaluate on the first N problems of the split only." }),
    ),
    metric: opt(VerifierSchema),
    split: opt(choice(["eval", "train"] as const, {
      default: "eval",
      description: "Which split evaluation decodes: the held-out problems, or the train problems.",
    })),
  },
  "Greedy decoding of the eval split, or the train split. Without it: at step 0 and the end only.",
);

export const CheckpointSchema = section({
  every: opt(int({ minimum: 0, maximum: 10_000_000, description: "Checkpoint every N steps." })),
  keep: opt(int({ minimum: 1, maximum: 1000, default: 3, description: "Checkpoints kept." })),
}, "Checkpoints (the final one is always written).");

export const LogSchema = section({
  samplesEvery: opt(int({
    minimum: 0,
    maximum: 10_000_000,
    default: 10,
    description: "Write a few groups to samples.jsonl every N steps (and at the first and last).",
  })),
  sampleGroups: opt(int({
    minimum: 1,
    maximum: 1024,
    default: 2,
    description: "Groups written to samples.jsonl each time.",
  })),
}, "What the run directory records besides metrics.");

/** The backends a recipe may name. */
export const BACKENDS = ["auto", "wasm", "cpu", "webgpu", "tensorflow"] as const;

export const BackendSchema = choice(BACKENDS, {
  default: "auto",
  description: "The TensorFlow.js backend; auto picks the fastest one present.",
});

/** A whole recipe. */
export const RecipeSchema = Type.Object({
  $schema: opt(Type.String({ description: "The JSON Schema this file follows (ignored)." })),
  name: Type.String({
    pattern: "^[A-Za-z0-9][A-Za-z0-9._-]*$",
    maxLength: 80,
    description: "Names the run directory: letters, digits, '.', '_' and '-'.",
  }),
  description: opt(Type.String({ description: "Free text." })),
  seed: opt(int({
    minimum: 0,
    maximum: 4_294_967_295,
    default: 0,
    description: "Every random choice flows from this seed.",
  })),
  policy: PolicySchema,
  reference: opt(ReferenceSchema),
  data: DataSchema,
  rewards: Type.Array(RewardSchema, {
    minItems: 1,
    maxItems: 32,
    description: "The reward sources; the reward is their weighted sum.",
  }),
  group: GroupSchema,
  sampling: opt(SamplingSchema),
  objective: ObjectiveSchema,
  optimizer: OptimizerSchema,
  steps: int({ minimum: 1, maximum: 10_000_000, description: "RL steps (sampled batches)." }),
  miniBatches: opt(int({
    minimum: 1,
    maximum: 65_536,
    description: "Optimiser steps per sampled batch, each on whole groups. " +
      "Default: 1; for GIFT the smallest divisor of group.prompts above 1, so that u moves.",
  })),
  epochs: opt(int({
    minimum: 1,
    maximum: 1000,
    default: 1,
    description: "Passes over each sampled batch.",
  })),
  microBatches: opt(int({
    minimum: 1,
    maximum: 65_536,
    description: "Split each mini-batch's update into this many micro-batches of whole groups, " +
      "their gradients accumulated: the same update, one micro-batch's activations alive at a " +
      "time. Default: 1.",
  })),
  gradientCheckpointing: opt(Type.Boolean({
    description: "Keep only each transformer block's input in the update's forward pass and " +
      "recompute the block in the backward pass: the same gradients, less memory, about a third " +
      "more compute. Default: false.",
  })),
  eval: opt(EvalSchema),
  checkpoint: opt(CheckpointSchema),
  log: opt(LogSchema),
  backend: opt(BackendSchema),
}, {
  additionalProperties: false,
  title: "giftwrap recipe",
  description: "A giftwrap recipe: policy, reference, data, rewards, group and objective.",
});

// ---------------------------------------------------------------------------------------------
// Types (derived, never written by hand)

/**
 * A recipe: policy, reference, data, rewards, group, objective, optimiser and schedule, as plain
 * data (derived from `RecipeSchema`). Build it with `recipe()` and the builders, or write its JSON.
 *
 * @example
 * ```ts
 * const base: Recipe = JSON.parse(await Deno.readTextFile("recipes/addition_gift.json"));
 * const variant: Recipe = { ...base, name: "addition-grpo", objective: grpo() };
 * ```
 */
export type Recipe = Static<typeof RecipeSchema>;
export type Policy = Static<typeof PolicySchema>;
export type TinyGpt = Static<typeof TinyGptSchema>;
export type HfModel = Static<typeof HfModelSchema>;
export type Chat = Static<typeof ChatSchema>;
export type Lora = Static<typeof LoraSchema>;
export type WarmStart = Static<typeof WarmStartSchema>;
export type Reference = Static<typeof ReferenceSchema>;
export type Data = Static<typeof DataSchema>;
export type Addition = Static<typeof AdditionSchema>;
export type Multiplication = Static<typeof MultiplicationSchema>;
export type Sorting = Static<typeof SortingSchema>;
export type Countdown = Static<typeof CountdownSchema>;
export type Jsonl = Static<typeof JsonlSchema>;
export type RewardSource = Static<typeof RewardSourceSchema>;
export type Verifier = Static<typeof VerifierSchema>;
export type Reward = Static<typeof RewardSchema>;
export type RewardOnError = (typeof REWARD_ON_ERROR)[number];
export type EvalSplit = NonNullable<Static<typeof EvalSchema>["split"]>;
export type Objective = Static<typeof ObjectiveSchema>;
export type ObjectiveKind = Objective["kind"];
export type CustomObjective = Static<typeof CustomSchema>;
export type CustomReads = Static<typeof CustomReadsSchema>;
export type Group = Static<typeof GroupSchema>;
export type Sampling = Static<typeof SamplingSchema>;
export type Optimizer = Static<typeof OptimizerSchema>;
export type Eval = Static<typeof EvalSchema>;
export type Checkpoint = Static<typeof CheckpointSchema>;
export type Backend = Static<typeof BackendSchema>;

/** The variant of a tagged union whose `kind` is `K`. */
export type KindOf<U extends { kind: string }, K extends U["kind"]> = Extract<U, { kind: K }>;

/** The options of a tagged node: everything but its `kind`. */
export type OptionsOf<T extends { kind: string }> = Omit<T, "kind">;

/**
 * The JSON Schema (draft 2020-12) of a recipe, as plain JSON: what `deno task schema` writes to
 * `recipe.schema.json`.
 *
 * @example
 * ```ts
 * await Deno.writeTextFile("recipe.schema.json", JSON.stringify(recipeJsonSchema(), null, 2));
 * ```
 */
export function recipeJsonSchema(): Record<string, unknown> {
  const plain = JSON.parse(JSON.stringify(RecipeSchema)) as Record<string, unknown>;
  return { $schema: "https://json-schema.org/draft/2020-12/schema", ...plain };
}

/**
 * `compile()`: lowers a recipe to a `Plan`. Pure and deterministic: the same recipe and options
 * give the same plan, with no I/O and no tensors. It validates the recipe, resolves every default,
 * computes the shapes, the stages in execution order and their budgets, and rejects inconsistent
 * recipes before any tensor exists, each problem with a suggested fix. Legal but doubtful recipes
 * compile with warnings.
 *
 * @module
 */

import {
  DEFAULT_LORA,
  forwardFlops,
  headDim,
  loraParamCount,
  type ModelShape,
  parameterCount,
  samplingFlops,
  trainFlops,
} from "./budget.ts";
import { fillDefaults, type SchemaLike, unionKinds } from "./_schema_walk.ts";
import { num, plural } from "./format.ts";
import { type Issue, RecipeError } from "./issues.ts";
import {
  atRollout,
  defaultMiniBatches,
  lossFormula,
  type ObjectiveAxes,
  objectiveAxes,
  type Resolved,
  type ResolvedObjective,
  resolveObjective,
  usesReference,
} from "./objectives.ts";
import {
  type BackendName,
  type HfModelFacts,
  type HfModelSpec,
  type HfTokenizerSpec,
  logProbPasses,
  type LoraSpec,
  type Plan,
  PLAN_FORMAT,
  type RewardSpec,
  type Stage,
  type SuccessRewardMetric,
  type TinyGptSpec,
} from "./plan.ts";
import {
  type Backend,
  type Data,
  type EvalSplit,
  LORA_TARGETS,
  type Recipe,
  RecipeSchema,
  type RewardSource,
  type Sampling,
  type Verifier,
  VerifierSchema,
} from "./schema.ts";
import {
  charVocabSize,
  DEFAULT_MAX_NEW_TOKENS,
  SPECIAL_TOKENS,
  type TaskSpec,
  taskSpec,
} from "./tasks.ts";
import { validateRecipe } from "./validate.ts";
import { memoryInputs, memoryIssues, updatePeakBytes } from "./memory.ts";

/**
 * Options of `compile()`.
 *
 * @example
 * ```ts
 * const options: CompileOptions = { backend: "auto", available: ["webgpu", "wasm", "cpu"] };
 * compile(recipe, options).backend.name; // "webgpu"
 * ```
 */
export interface CompileOptions {
  /**
   * Overrides the recipe's `backend`, as the CLI's `--backend` does.
   * @default the recipe's backend
   */
  backend?: Backend;
  /**
   * Backends present on the machine, from which `auto` picks the fastest. The compiler does not
   * probe (it is pure); the runtime passes what it found.
   * @default ["wasm", "cpu"], which need nothing but the npm packages
   */
  available?: readonly BackendName[];
  /**
   * Bytes of memory on the machine, which the runtime reads (`Deno.systemMemoryInfo().total`):
   * each stage's estimated peak is held against it as well as against the backend's own limit
   * (wasm's 4 GiB heap). The compiler does not probe (it is pure).
   * @default unknown: only the backend's own limit
   */
  machineMemory?: number;
  /**
   * What was read of each Hugging Face model directory the recipe names (`hfModel({ path })`),
   * by the path as the recipe writes it: the runtime's `resolveModels()` reads them, as the
   * compiler does no I/O. A recipe with an `hfModel` policy does not compile without it.
   * @default none
   */
  models?: Readonly<Record<string, HfModelFacts>>;
  /**
   * Whether a stage whose estimated peak does not fit the backend (or `machineMemory`) fails the
   * compile. False for a plan that runs elsewhere (an export to verl, a reward server): such a
   * stage is then no error, and a plan that passes the check is the same plan, hash included.
   * @default true
   */
  checkMemory?: boolean;
}

/**
 * The outcome of `safeCompile()`.
 *
 * @example
 * ```ts
 * const result: CompileResult = safeCompile(input);
 * console.log(result.ok ? planHash(result.plan) : result.issues.map(formatIssue));
 * ```
 */
export type CompileResult = { ok: true; plan: Plan } | { ok: false; issues: Issue[] };

/** Backends in order of speed, fastest first, for `auto`. */
export const BACKEND_PREFERENCE: readonly BackendName[] = ["tensorflow", "webgpu", "wasm", "cpu"];

const DEFAULT_AVAILABLE: readonly BackendName[] = ["wasm", "cpu"];
const SCHEMA = RecipeSchema as unknown as SchemaLike;
const VERIFIER_KINDS = unionKinds(VerifierSchema as unknown as SchemaLike);

/**
 * Compiles a recipe to its plan, or throws a `RecipeError` listing every problem.
 *
 * @example
 * ```ts
 * const plan = compile(recipe);
 * console.log(formatPlan(plan));
 * ```
 */
export function compile(recipe: Recipe, options: CompileOptions = {}): Plan {
  const result = safeCompile(recipe, options);
  if (!result.ok) throw new RecipeError(result.issues);
  return result.plan;
}

/**
 * Validates and compiles any value, returning the plan or every problem as data.
 *
 * @example
 * ```ts
 * const result = safeCompile(JSON.parse(text));
 * if (!result.ok) for (const issue of result.issues) console.error(formatIssue(issue));
 * ```
 */
export function safeCompile(input: unknown, options: CompileOptions = {}): CompileResult {
  const validated = validateRecipe(input);
  if (!validated.ok) return validated;
  const given = validated.recipe;
  const r = fillDefaults(SCHEMA, given) as Recipe;
  const d: Diagnostics = { errors: [], warnings: [] };

  const task = resolveTask(r, d);
  const sampling = resolveSampling(r, task);
  const model = r.policy.kind === "hfModel"
    ? resolveHfModel(r, task, sampling, options.models, d)
    : resolveModel(r, task, sampling, d);
  const objective = resolveObjective(r.objective) as ResolvedObjective;
  const axes = objectiveAxes(objective);
  const reference = resolveReference(given, objective, axes, d);
  const rewards = resolveRewards(r, sampling, axes, d);
  const updates = resolveUpdates(given, r, objective, axes, reference.kind, d);
  const evaluation = resolveEval(r, task, rewards, d);
  const checkpoint = resolveCheckpoint(r, d);
  if (d.errors.length > 0) return { ok: false, issues: d.errors };

  const recipe = fillDefaults(SCHEMA, {
    ...r,
    $schema: undefined,
    policy: r.policy.kind === "hfModel" ? { ...r.policy, contextLength: model.contextLength } : {
      ...r.policy,
      kvHeads: model.kvHeads,
      ffnDim: model.ffnDim,
      contextLength: model.contextLength,
    },
    reference: reference.kind === "checkpoint"
      ? { checkpoint: reference.checkpoint! }
      : reference.kind,
    rewards: rewards.map(({ source, weight, success, name, onError }) => ({
      source,
      weight,
      success,
      name,
      onError,
    })),
    sampling,
    objective,
    miniBatches: updates.miniBatches,
    // An override is part of what runs, so the plan's recipe carries it.
    backend: options.backend ?? r.backend,
  }) as Recipe;

  const P = r.group.prompts;
  const G = r.group.size;
  const shapes = {
    prompts: P,
    groupSize: G,
    rows: P * G,
    promptTokens: task.promptTokens,
    newTokens: sampling.maxNewTokens,
    sequenceTokens: task.promptTokens + sampling.maxNewTokens,
    vocab: model.vocab,
    miniBatchRows: (P / updates.miniBatches) * G,
    miniBatchGroups: P / updates.miniBatches,
  };
  const update = resolveUpdateOptions(given, shapes, axes, d);
  if (d.errors.length > 0) return { ok: false, issues: d.errors };
  const schedule = {
    steps: r.steps,
    miniBatches: updates.miniBatches,
    epochs: updates.epochs,
    optimizerStepsPerBatch: updates.miniBatches * updates.epochs,
    evalEvery: evaluation.every,
    evalSplit: evaluation.split,
    evalProblems: evaluation.problems,
    evalMetric: evaluation.metric,
    evaluations: evaluation.count,
    checkpointEvery: checkpoint.every,
    checkpointKeep: checkpoint.keep,
    ...resolveLog(r, d),
  };
  const plan: Omit<Plan, "stages" | "budget"> = {
    format: PLAN_FORMAT,
    name: r.name,
    seed: r.seed!,
    recipe,
    backend: resolveBackend(recipe.backend ?? "auto", options),
    model,
    tokenizer: model.kind === "hfModel" ? hfTokenizerSpec(r, options.models![model.path]!) : {
      kind: "char",
      specials: [...SPECIAL_TOKENS],
      alphabet: task.alphabet,
      vocab: model.vocab,
    },
    data: {
      kind: r.data.kind,
      description: task.description,
      train: task.train,
      eval: task.eval,
      distinctProblems: task.distinctProblems,
    },
    reference,
    rewards,
    objective: {
      kind: objective.kind,
      options: objective,
      axes,
      formula: lossFormula(objective, axes),
    },
    sampling,
    optimizer: r.optimizer as Resolved<Recipe["optimizer"]>,
    shapes,
    schedule,
    ...(update ? { update } : {}),
    warnings: d.warnings,
  };
  const lowered = { ...plan, ...lower(plan) };
  // Each stage's estimated peak against what the backend holds (dsl/memory.ts).
  const memory = memoryIssues(lowered, options.machineMemory);
  if (memory.errors.length > 0 && options.checkMemory !== false) {
    return { ok: false, issues: memory.errors };
  }
  lowered.warnings.push(...memory.warnings);
  return { ok: true, plan: lowered };
}

// ---------------------------------------------------------------------------------------------
// Resolution and cross-field checks. Each function resolves one part of the recipe and records
// the problems it finds; `compile()` fails if any error was recorded. They read the recipe after
// fillDefaults(), so a field with a schema default is present: `!` says so, and no default is
// written here a second time (tests/dsl/schema_test.ts checks the resolved values).

interface Diagnostics {
  errors: Issue[];
  warnings: Issue[];
}

function resolveTask(r: Recipe, d: Diagnostics): TaskSpec {
  const task = taskSpec(r.data);
  const wanted = (task.train ?? 0) + (task.eval ?? 0);
  if (task.distinctProblems !== null && wanted > task.distinctProblems) {
    const space = problemSpace(r.data, wanted);
    d.errors.push({
      path: "data.train",
      message: `${space.what} has ${task.distinctProblems} distinct problems, ` +
        `but train ${task.train} + eval ${task.eval} = ${wanted} were asked for`,
      hint: `${space.raise}, or ask for at most ${task.distinctProblems} problems`,
    });
  }
  return task;
}

/**
 * A synthetic task's problem space in words, and the smallest change of its options that holds
 * `wanted` distinct problems (within the schema's bounds).
 */
function problemSpace(data: Data, wanted: number): { what: string; raise: string } {
  // The smallest value from `from` to `to` at which `fits` holds, if any.
  const least = (from: number, to: number, fits: (x: number) => boolean) => {
    for (let x = from; x <= to; x++) if (fits(x)) return x;
    return undefined;
  };
  switch (data.kind) {
    case "addition":
    case "multiplication": {
      const digits = data.digits!;
      const max = data.kind === "addition" ? 9 : 6;
      const enough = least(digits + 1, max, (k) => 10 ** (2 * k) >= wanted) ?? max;
      return {
        what: `${data.kind} of ${digits}-digit numbers`,
        raise: `raise data.digits to ${enough}`,
      };
    }
    case "sorting": {
      const length = data.length!;
      const maxValue = data.maxValue!;
      const byValue = least(maxValue + 1, 999, (m) => (m + 1) ** length >= wanted);
      const byLength = least(length + 1, 20, (l) => (maxValue + 1) ** l >= wanted);
      const options = [
        ...(byLength === undefined ? [] : [`data.length to ${byLength}`]),
        ...(byValue === undefined ? [] : [`data.maxValue to ${byValue}`]),
      ];
      return {
        what: `sorting ${length} numbers from 0 to ${maxValue}`,
        raise: options.length === 0
          ? "raise data.length and data.maxValue"
          : `raise ${options.join(" or ")}`,
      };
    }
    default:
      return { what: `${data.kind} data`, raise: "draw from a larger space" };
  }
}

function resolveSampling(r: Recipe, task: TaskSpec): Resolved<Sampling> {
  const s = r.sampling!;
  return {
    temperature: s.temperature!,
    topP: s.topP!,
    topK: s.topK!,
    maxNewTokens: s.maxNewTokens ?? task.answerTokens ?? DEFAULT_MAX_NEW_TOKENS,
    stop: s.stop ?? [],
  };
}

/** Refuses a policy context shorter than the longest prompt plus the new tokens. */
function checkContextLength(
  contextLength: number,
  task: TaskSpec,
  sampling: Resolved<Sampling>,
  d: Diagnostics,
): void {
  const needed = task.promptTokens + sampling.maxNewTokens;
  if (contextLength < needed) {
    d.errors.push({
      path: "policy.contextLength",
      message: `expected at least ${needed} (${task.promptTokens} prompt tokens + ` +
        `${sampling.maxNewTokens} new tokens), got ${contextLength}`,
      hint: `raise policy.contextLength to ${needed}, or lower sampling.maxNewTokens`,
    });
  }
}

function resolveModel(
  r: Recipe,
  task: TaskSpec,
  sampling: Resolved<Sampling>,
  d: Diagnostics,
): TinyGptSpec {
  const p = r.policy as Extract<Recipe["policy"], { kind: "tinyGpt" }>;
  const layers = p.layers!;
  const dModel = p.dModel!;
  const heads = p.heads!;
  const kvHeads = p.kvHeads ?? heads;
  const ffnDim = p.ffnDim ?? Math.ceil((8 * dModel) / 3 / 32) * 32;
  const vocab = charVocabSize(task.alphabet);
  const needed = task.promptTokens + sampling.maxNewTokens;
  const contextLength = p.contextLength ?? needed;
  if (dModel % heads !== 0) {
    d.errors.push({
      path: "policy.heads",
      message: `expected a divisor of policy.dModel (${dModel}), got ${heads}`,
      hint: `use one of ${divisors(dModel).filter((h) => h <= 64).join(", ")}`,
    });
  } else if ((dModel / heads) % 2 !== 0) {
    d.errors.push({
      path: "policy.heads",
      message:
        `rotary embeddings need an even head width, but dModel / heads = ${dModel} / ${heads} ` +
        `= ${dModel / heads}`,
      hint: "choose heads so that dModel / heads is even",
    });
  }
  if (heads % kvHeads !== 0) {
    d.errors.push({
      path: "policy.kvHeads",
      message: `expected a divisor of policy.heads (${heads}), got ${kvHeads}`,
      hint: `use one of ${divisors(heads).join(", ")}`,
    });
  }
  checkContextLength(contextLength, task, sampling, d);
  if (sampling.topK >= vocab) {
    d.warnings.push({
      path: "sampling.topK",
      message:
        `top-k of ${sampling.topK} keeps the whole vocabulary of ${vocab}, so it filters nothing`,
      hint: "omit sampling.topK, or set it below the vocabulary size",
    });
  }
  const shape: ModelShape = {
    layers,
    dModel,
    heads,
    kvHeads,
    ffnDim,
    vocab,
    tiedEmbeddings: p.tiedEmbeddings!,
  };
  const w = p.warmStart;
  return {
    kind: "tinyGpt",
    ...shape,
    headDim: headDim(shape),
    contextLength,
    ropeTheta: p.ropeTheta!,
    normEps: p.normEps!,
    params: parameterCount(shape),
    warmStart: w === undefined
      ? null
      : { sftSteps: w.sftSteps, lr: w.lr!, batchSize: w.batchSize! },
  };
}

/** The dtypes a saved checkpoint may be written in, by the recipe's name for them. */
const SAVE_DTYPES = { float32: "F32", float16: "F16", bfloat16: "BF16" } as const;

/**
 * A Hugging Face policy from what `resolveModels()` read of its directory: the dimensions of its
 * `config.json`, the context the recipe's prompts and completions need (within
 * `max_position_embeddings`), and a tokenizer that fits the embedding.
 */
function resolveHfModel(
  r: Recipe,
  task: TaskSpec,
  sampling: Resolved<Sampling>,
  models: CompileOptions["models"],
  d: Diagnostics,
): HfModelSpec {
  const p = r.policy as Extract<Recipe["policy"], { kind: "hfModel" }>;
  const facts = models?.[p.path];
  const needed = task.promptTokens + sampling.maxNewTokens;
  const contextLength = p.contextLength ?? needed;
  if (facts === undefined) {
    d.errors.push({
      path: "policy.path",
      message: `the model directory '${p.path}' was not read before compiling`,
      hint: "compile through the CLI, or pass resolveModels()'s result as the models option",
    });
  } else {
    if (r.data.kind !== "jsonl") {
      d.errors.push({
        path: "data.kind",
        message: `a Hugging Face policy reads text prompts: expected 'jsonl', got '${r.data.kind}'`,
        hint: "give the problems as JSON Lines (tasks.jsonl), or use tinyGpt for synthetic tasks",
      });
    }
    if (facts.tokenizer.vocab > facts.shape.vocab) {
      d.errors.push({
        path: "policy.path",
        message: `the tokenizer of '${p.path}' has ${facts.tokenizer.vocab} ids, but ` +
          `config.json's vocab_size is ${facts.shape.vocab}: its ids do not fit the embedding`,
        hint: "use the tokenizer the checkpoint was trained with",
      });
    }
    if (contextLength > facts.maxPositions) {
      const given = p.contextLength !== undefined;
      d.errors.push({
        path: given ? "policy.contextLength" : "sampling.maxNewTokens",
        message: given
          ? `expected at most config.json's max_position_embeddings (${facts.maxPositions}), ` +
            `got ${contextLength}`
          : `${task.promptTokens} prompt tokens + ${sampling.maxNewTokens} new tokens = ` +
            `${needed}, more than config.json's max_position_embeddings (${facts.maxPositions})`,
        hint: given
          ? `set policy.contextLength to at most ${facts.maxPositions}`
          : "lower sampling.maxNewTokens or the data's maxPromptTokens",
      });
    }
    checkContextLength(contextLength, task, sampling, d);
    const chat = p.chat ?? {};
    if (
      chat.system !== undefined && !(facts.tokenizer.hasChatTemplate && chat.template !== false)
    ) {
      d.errors.push({
        path: "policy.chat.system",
        message: facts.tokenizer.hasChatTemplate
          ? "a system prompt needs the chat template, but policy.chat.template is false"
          : `a system prompt needs a chat template, but the tokenizer of '${p.path}' has none`,
        hint: "write the instruction into the prompt text instead",
      });
    }
    if (facts.exampleError !== undefined) {
      d.warnings.push({
        path: "data.path",
        message: `cannot show the first row as the model will read it: ${facts.exampleError}`,
        hint: "the run refuses a bad row by its file:line; `deno task validate` lists them",
      });
    }
    if (sampling.topK >= facts.shape.vocab) {
      d.warnings.push({
        path: "sampling.topK",
        message: `top-k of ${sampling.topK} keeps the whole vocabulary of ${facts.shape.vocab}, ` +
          "so it filters nothing",
        hint: "omit sampling.topK, or set it below the vocabulary size",
      });
    }
  }
  const shape = facts?.shape ?? {
    layers: 1,
    dModel: 2,
    heads: 1,
    kvHeads: 1,
    headDim: 2,
    ffnDim: 1,
    vocab: 1,
    tiedEmbeddings: true,
    ropeTheta: 10_000,
    normEps: 1e-6,
  };
  const lora = resolveLora(p, facts, shape, d);
  const source = (facts?.dtype ?? "F32").split("+")[0]!;
  const saveDtype = p.saveDtype === undefined || p.saveDtype === "source"
    ? (source === "BF16" || source === "F16" ? source : "F32")
    : SAVE_DTYPES[p.saveDtype];
  return {
    kind: "hfModel",
    ...shape,
    contextLength,
    params: facts?.parameters ?? 0,
    path: p.path,
    modelType: facts?.modelType ?? "",
    architectures: facts?.architectures ?? [],
    dtype: facts?.dtype ?? "",
    saveDtype,
    sha256: facts?.sha256 ?? "",
    maxPositions: facts?.maxPositions ?? 0,
    attentionBias: facts?.attentionBias ?? false,
    qkNorm: facts?.qkNorm ?? false,
    ropeScaling: facts?.ropeScaling ?? null,
    warmStart: null,
    ...(lora ? { lora } : {}),
  };
}

/**
 * How each update is computed: micro-batches of whole groups and activation checkpointing, or
 * undefined when the recipe sets neither (the plan then has no `update`, as before them).
 */
function resolveUpdateOptions(
  given: Recipe,
  shapes: { miniBatchGroups: number; groupSize: number },
  axes: ObjectiveAxes,
  d: Diagnostics,
): Plan["update"] {
  if (given.microBatches === undefined && given.gradientCheckpointing === undefined) {
    return undefined;
  }
  const microBatches = given.microBatches ?? 1;
  const groups = shapes.miniBatchGroups;
  if (groups % microBatches !== 0) {
    const fits = Array.from({ length: groups }, (_, i) => i + 1).filter((k) => groups % k === 0);
    d.errors.push({
      path: "microBatches",
      message: `a micro-batch holds whole groups: expected a divisor of the ${groups} groups of ` +
        `a mini-batch, got ${microBatches}`,
      hint: `use one of ${fits.join(", ")}`,
    });
  }
  if (microBatches > 1 && (axes.loss === "custom" || axes.aggregation === "pair-mean")) {
    d.errors.push({
      path: "microBatches",
      message: "micro-batches need a loss averaged over rows or tokens: expected 1 for " +
        (axes.loss === "custom" ? "a custom objective" : `'${axes.aggregation}' aggregation`) +
        `, got ${microBatches}`,
      hint: "omit microBatches, and use miniBatches or gradientCheckpointing to save memory",
    });
  }
  return {
    microBatches,
    microBatchRows: (groups / microBatches) * shapes.groupSize,
    gradientCheckpointing: given.gradientCheckpointing ?? false,
  };
}

/**
 * The policy's LoRA adapters, resolved: the recipe's settings, else the adapter's it starts from
 * (`facts.adapter`), else PEFT's defaults (r 8, alpha = r, q_proj and v_proj).
 */
function resolveLora(
  p: Extract<Recipe["policy"], { kind: "hfModel" }>,
  facts: HfModelFacts | undefined,
  shape: {
    layers: number;
    dModel: number;
    heads: number;
    kvHeads: number;
    headDim: number;
    ffnDim: number;
  },
  d: Diagnostics,
): LoraSpec | undefined {
  const l = p.lora;
  if (l === undefined) return undefined;
  const adapter = l.adapter === undefined ? undefined : facts?.adapter;
  if (l.adapter !== undefined && facts !== undefined && adapter === undefined) {
    d.errors.push({
      path: "policy.lora.adapter",
      message: `the adapter directory '${l.adapter}' was not read before compiling`,
      hint: "compile through the CLI, or pass resolveModels()'s result as the models option",
    });
  }
  const rank = l.rank ?? adapter?.rank ?? DEFAULT_LORA.rank;
  const alpha = l.alpha ?? adapter?.alpha ?? rank;
  const dropout = l.dropout ?? adapter?.dropout ?? 0;
  const targets = [...(l.targets ?? adapter?.targets ?? DEFAULT_LORA.targets)];
  if (adapter !== undefined) {
    const differs = (field: string, mine: unknown, theirs: unknown) => {
      if (JSON.stringify(mine) === JSON.stringify(theirs)) return;
      d.errors.push({
        path: `policy.lora.${field}`,
        message: `the adapter '${adapter.path}' has ${field} ${JSON.stringify(theirs)}, but the ` +
          `recipe gives ${JSON.stringify(mine)}`,
        hint: `omit policy.lora.${field} to take the adapter's`,
      });
    };
    if (l.rank !== undefined) differs("rank", l.rank, adapter.rank);
    if (l.alpha !== undefined) differs("alpha", l.alpha, adapter.alpha);
    if (l.targets !== undefined) {
      differs("targets", [...l.targets].sort(), [...adapter.targets].sort());
    }
  }
  if (dropout !== 0) {
    const fromAdapter = l.dropout === undefined;
    d.errors.push({
      path: fromAdapter ? "policy.lora.adapter" : "policy.lora.dropout",
      message: `expected a dropout of 0 (dropout on the adapters' input is not implemented), got ` +
        `${dropout}${fromAdapter ? ` (the adapter's lora_dropout)` : ""}`,
      hint: "set policy.lora.dropout to 0 to train without it",
    });
  }
  const known = new Set<string>(LORA_TARGETS);
  for (const [i, t] of targets.entries()) {
    if (!known.has(t)) {
      d.errors.push({
        path: adapter !== undefined && l.targets === undefined
          ? "policy.lora.adapter"
          : `policy.lora.targets[${i}]`,
        message: `expected one of ${LORA_TARGETS.join(", ")}, got '${t}'`,
        hint: "adapters on the embedding, the output head or other modules are not supported",
      });
    }
  }
  const ordered = LORA_TARGETS.filter((t) => targets.includes(t));
  const params = loraParamCount({ ...shape, vocab: 0, tiedEmbeddings: true }, {
    rank,
    targets: ordered,
  });
  return {
    rank,
    alpha,
    scale: alpha / rank,
    dropout,
    targets: ordered,
    params,
    adapter: adapter === undefined ? null : { path: adapter.path, sha256: adapter.sha256 },
    saveMerged: l.saveMerged ?? false,
  };
}

/** The plan's tokenizer of a Hugging Face policy: what was read, and how prompts are rendered. */
function hfTokenizerSpec(r: Recipe, facts: HfModelFacts): HfTokenizerSpec {
  const p = r.policy as Extract<Recipe["policy"], { kind: "hfModel" }>;
  const chat = p.chat ?? {};
  const { hasChatTemplate, ...tokenizer } = facts.tokenizer;
  return {
    ...tokenizer,
    chatTemplate: hasChatTemplate && chat.template !== false,
    system: chat.system ?? null,
    templateArgs: { ...chat.args },
    example: facts.example,
  };
}

function resolveReference(
  given: Recipe,
  objective: ResolvedObjective,
  axes: ObjectiveAxes,
  d: Diagnostics,
): Plan["reference"] {
  const used = usesReference(axes);
  const declared = given.reference;
  const ref = declared ?? (used ? "initial" : "none");
  const kind = typeof ref === "string" ? ref : "checkpoint";
  const checkpoint = typeof ref === "string" ? null : ref.checkpoint;
  if (kind === "none" && objective.kind === "custom" && objective.reads.reference) {
    const declared = given.objective.kind === "custom" &&
      given.objective.reads?.reference !== undefined;
    d.errors.push({
      path: "objective.reads.reference",
      message: `the custom objective '${objective.module}' reads the reference's log-probs` +
        `${declared ? "" : " (reads.reference defaults to true)"}, but reference is 'none'`,
      hint: "set objective.reads.reference to false, or reference to 'initial'",
    });
  } else if (kind === "none" && axes.implicitReward) {
    d.errors.push({
      path: "reference",
      message:
        `${objective.kind} needs a reference for its implicit reward Σ log π/π_ref, got 'none'`,
      hint:
        "use reference: 'initial' (the paper's frozen π_ref) or 'rollout' (the sampling policy)",
    });
  }
  if (kind === "none" && axes.kl !== null) {
    const isDefault = !("beta" in given.objective);
    d.errors.push({
      path: "objective.beta",
      message:
        `a KL coefficient of ${axes.kl.beta}${isDefault ? ` (${objective.kind}'s default)` : ""} ` +
        "needs a reference, but reference is 'none'",
      hint: "set objective.beta to 0, or reference to 'initial'",
    });
  }
  if (declared !== undefined && !used && (kind === "initial" || kind === "checkpoint")) {
    const custom = objective.kind === "custom";
    d.warnings.push({
      path: "reference",
      message: (custom
        ? "the custom objective declares reads.reference: false, so it does not read the reference"
        : `${objective.kind} without a KL term does not read the reference`) +
        "; its log-probs cost a forward pass per step and serve only the KL metric",
      hint: custom
        ? "set reference: 'none' to skip them, or objective.reads.reference to true to use them"
        : "set reference: 'none' to skip them, or objective.beta above 0 to use them",
    });
  }
  return { kind, checkpoint, used };
}

const BUILT_IN_RANGES: Partial<Record<RewardSource["kind"], [number, number]>> = {
  exactMatch: [0, 1],
  numericAnswer: [0, 1],
  regexFormat: [0, 1],
  countdown: [0, 1],
  overlongPenalty: [-1, 0],
};

/** The data kinds whose problems carry numbers and a target, as the countdown verifier needs. */
const COUNTDOWN_DATA: readonly Data["kind"][] = ["countdown", "jsonl"];

function resolveRewards(
  r: Recipe,
  sampling: Resolved<Sampling>,
  axes: ObjectiveAxes,
  d: Diagnostics,
): RewardSpec[] {
  const names = new Map<string, number>();
  const counts = new Map<string, number>();
  const specs = r.rewards.map((entry, i): RewardSpec => {
    const at = `rewards[${i}]`;
    let source = entry.source;
    if (source.kind === "overlongPenalty") {
      const maxTokens = source.maxTokens ?? sampling.maxNewTokens;
      source = { ...source, maxTokens };
      if (source.buffer > maxTokens) {
        d.errors.push({
          path: `${at}.source.buffer`,
          message: `expected a buffer of at most maxTokens (${maxTokens}), got ${source.buffer}`,
          hint: `lower the buffer to ${Math.max(1, Math.floor(maxTokens / 4))} or so`,
        });
      }
    }
    checkVerifier(source, `${at}.source`, r.data, d);
    const range = BUILT_IN_RANGES[source.kind] ??
      ("range" in source && source.range !== undefined ? source.range : null);
    if (range !== null && range[0] > range[1]) {
      d.errors.push({
        path: `${at}.source.range`,
        message: `expected [low, high] with low <= high, got [${range[0]}, ${range[1]}]`,
        hint: `write [${range[1]}, ${range[0]}]`,
      });
    }
    const n = (counts.get(source.kind) ?? 0) + 1;
    counts.set(source.kind, n);
    const name = entry.name ?? (n === 1 ? source.kind : `${source.kind}_${n}`);
    const earlier = names.get(name);
    if (earlier !== undefined) {
      d.errors.push({
        path: `${at}.name`,
        message:
          `expected a name no other reward has, got '${name}', the name of rewards[${earlier}]`,
        hint: `rename one of them with name: '...'`,
      });
    }
    names.set(name, i);
    return {
      name,
      source,
      weight: entry.weight!,
      success: entry.success === true,
      range,
      onError: entry.onError!,
    };
  });

  const marked = specs.flatMap((s, i) => (s.success ? [i] : []));
  for (const i of marked.slice(1)) {
    d.errors.push({
      path: `rewards[${i}].success`,
      message: `at most one reward can be the success signal, but rewards[${marked[0]}] already is`,
      hint: `remove success: true from all but one source`,
    });
  }
  if (marked.length === 0 && specs.length === 1 && r.rewards[0]!.success !== false) {
    specs[0]!.success = true;
  }
  if (axes.dynamicSampling !== null && !specs.some((s) => s.success)) {
    d.errors.push({
      path: "rewards",
      message: "dapo's dynamic sampling drops groups whose success rewards are all equal, " +
        "but no reward is marked success: true",
      hint: "mark one source with success: true, or set objective.dynamicSampling to false",
    });
  }
  if (specs.every((s) => s.weight === 0)) {
    d.errors.push({
      path: "rewards",
      message: "every reward has weight 0, so there is nothing to learn",
      hint: "give at least one source a non-zero weight",
    });
  }
  return specs;
}

/** Checks a reward source or an eval metric against itself and against the data it scores. */
function checkVerifier(
  source: RewardSource | Verifier,
  path: string,
  data: Data,
  d: Diagnostics,
): void {
  if (source.kind === "countdown" && !COUNTDOWN_DATA.includes(data.kind)) {
    const instead = data.kind === "sorting" ? "exactMatch" : "numericAnswer";
    d.errors.push({
      path,
      message: "the countdown verifier needs problems with numbers and a target " +
        `(countdown or jsonl data), but data is ${data.kind}`,
      hint: `score ${data.kind} with rewards.${instead}(), or use data: tasks.countdown()`,
    });
  }
  if (
    data.kind === "countdown" && (source.kind === "exactMatch" || source.kind === "numericAnswer")
  ) {
    d.warnings.push({
      path,
      message: source.kind === "exactMatch"
        ? "countdown problems have many right expressions, but exactMatch accepts only the " +
          "reference one"
        : "numericAnswer reads the last number of a countdown expression, not its value",
      hint: "use rewards.countdown(), which checks the expression's value and its numbers",
    });
  }
  if (source.kind !== "regexFormat") return;
  try {
    new RegExp(source.pattern, source.flags);
  } catch (e) {
    d.errors.push({
      path: `${path}.pattern`,
      message: `expected a valid regular expression, got '${source.pattern}' (${
        (e as Error).message
      })`,
      hint: "escape a literal ( ) [ ] { } . * + ? ^ $ | or \\ with a backslash",
    });
  }
}

function resolveUpdates(
  given: Recipe,
  r: Recipe,
  objective: ResolvedObjective,
  axes: ObjectiveAxes,
  reference: Plan["reference"]["kind"],
  d: Diagnostics,
): { miniBatches: number; epochs: number } {
  const { size: G, prompts: P } = r.group;
  if (G < 2) {
    d.errors.push({
      path: "group.size",
      message: `a group needs at least 2 completions to compare, got ${G}`,
      hint: "set group.size to 2 or more (8 is common)",
    });
  }
  const miniBatches = given.miniBatches ?? defaultMiniBatches(objective, P);
  const epochs = r.epochs!;
  if (P % miniBatches !== 0) {
    d.errors.push({
      path: "miniBatches",
      message: `expected a divisor of group.prompts (${P}) so that every mini-batch holds whole ` +
        `groups, got ${miniBatches}`,
      hint: `use one of ${divisors(P).join(", ")}`,
    });
  }
  if (axes.implicitReward && reference === "rollout" && miniBatches * epochs === 1) {
    d.warnings.push({
      path: "miniBatches",
      message: `with reference 'rollout' and one optimiser step per batch, ${atRollout(objective)}`,
      hint: "use miniBatches or epochs of 2 or more, or reference: 'initial'",
    });
  }
  return { miniBatches, epochs };
}

function resolveEval(
  r: Recipe,
  task: TaskSpec,
  rewards: readonly RewardSpec[],
  d: Diagnostics,
): {
  every: number | null;
  split: EvalSplit;
  problems: number;
  metric: Verifier | SuccessRewardMetric | null;
  count: number;
} {
  const e = r.eval!;
  const every = e.every ?? null;
  const split = e.split!;
  checkEvery("eval.every", every, r.steps, "evaluation runs only at step 0 and at the end", d);
  // The size of the split; null when only the file knows it (the train rows of JSON Lines).
  const size = split === "train" ? task.train : task.eval ?? 0;
  if (size === null && e.limit === undefined) {
    d.errors.push({
      path: "eval.limit",
      message: `missing; evaluating on the train split of ${r.data.kind} data needs a limit, ` +
        "as only the file knows how many train rows it has",
      hint: "set eval.limit, for example 500",
    });
  }
  let problems = size ?? e.limit ?? 0;
  if (e.limit !== undefined && e.limit > problems) {
    d.warnings.push({
      path: "eval.limit",
      message:
        `a limit of ${e.limit} is more than the ${problems} ${split} problems, so all are used`,
    });
  }
  problems = Math.min(problems, e.limit ?? problems);
  if (problems === 0) {
    d.warnings.push({
      path: "data.eval",
      message: "the eval split is empty, so no evaluation runs",
      hint: "hold out problems with data.eval",
    });
  }
  const success = rewards.find((s) => s.success);
  // A user's own check (a function, an endpoint) scores success as a verifier does; a learned
  // reward model or a length penalty does not say what a correct answer is.
  const fromSuccess = success === undefined
    ? null
    : VERIFIER_KINDS.includes(success.source.kind)
    ? success.source as Verifier
    : success.source.kind === "fn" || success.source.kind === "http"
    ? { kind: "successReward" as const, name: success.name }
    : null;
  const metric = e.metric ?? fromSuccess;
  if (e.metric !== undefined) checkVerifier(e.metric, "eval.metric", r.data, d);
  if (problems > 0 && metric === null) {
    const why = success === undefined
      ? "no reward is the success signal"
      : `the success reward (${success.source.kind}) is not a verifier`;
    d.errors.push({
      path: "eval.metric",
      message: `missing; accuracy needs a verifier (${VERIFIER_KINDS.join(", ")}) or a ` +
        `function or endpoint as the success reward, and ${why}`,
      hint: "set eval.metric, for example { kind: 'numericAnswer' }",
    });
  }
  const steps = r.steps;
  const periodic = every !== null && every > 0 ? Math.floor(steps / every) : 0;
  const endExtra = every !== null && every > 0 && steps % every === 0 ? 0 : 1;
  return { every, split, problems, metric, count: problems === 0 ? 0 : 1 + periodic + endExtra };
}

function resolveCheckpoint(r: Recipe, d: Diagnostics): { every: number | null; keep: number } {
  const every = r.checkpoint!.every ?? null;
  checkEvery("checkpoint.every", every, r.steps, "only the final checkpoint is written", d);
  return { every, keep: r.checkpoint!.keep! };
}

/** samples.jsonl's period (0 is an error, as for eval.every) and groups, at most P. */
function resolveLog(r: Recipe, d: Diagnostics): { samplesEvery: number; sampleGroups: number } {
  const samplesEvery = r.log!.samplesEvery!;
  if (samplesEvery === 0) {
    checkEvery("log.samplesEvery", 0, r.steps, "samples are logged every 10 steps", d);
  }
  return { samplesEvery, sampleGroups: Math.min(r.log!.sampleGroups!, r.group.prompts) };
}

/** A period in steps: 0 is an error (it does not mean never), one beyond the run a warning. */
function checkEvery(
  path: string,
  every: number | null,
  steps: number,
  without: string,
  d: Diagnostics,
): void {
  if (every === 0) {
    d.errors.push({
      path,
      message: "expected a positive number of steps, got 0, which does not mean never",
      hint: `omit ${path}, and ${without}`,
    });
  } else if (every !== null && every > steps) {
    d.warnings.push({
      path,
      message: `every ${every} steps is beyond the run's ${steps} steps, so ${without}`,
      hint: `set ${path} to at most ${steps}`,
    });
  }
}

/**
 * The backend: as requested, or for `auto` the first of BACKEND_PREFERENCE that is present. On
 * wasm and cpu the runtime also sends matrix products to OpenBLAS where it loads (runtime/engine/blas.ts),
 * which the reason says, as it does not depend on the recipe.
 */
function resolveBackend(requested: Backend, options: CompileOptions): Plan["backend"] {
  const blas = (name: BackendName) =>
    name === "wasm" || name === "cpu"
      ? "; matmul through OpenBLAS where it loads (--allow-ffi)"
      : "";
  if (requested !== "auto") {
    return { name: requested, requested, reason: `requested${blas(requested)}` };
  }
  const available = options.available ?? DEFAULT_AVAILABLE;
  const name = BACKEND_PREFERENCE.find((b) => available.includes(b)) ?? "cpu";
  return {
    name,
    requested,
    reason: `auto: the fastest present of ${available.join(", ")}${blas(name)}`,
  };
}

function divisors(n: number): number[] {
  const out: number[] = [];
  for (let k = 1; k <= n; k++) if (n % k === 0) out.push(k);
  return out;
}

// ---------------------------------------------------------------------------------------------
// Lowering: the stages in execution order and the budgets.

function lower(plan: Omit<Plan, "stages" | "budget">): Pick<Plan, "stages" | "budget"> {
  const { model, shapes, schedule, sampling, objective, reference } = plan;
  const { axes } = objective;
  const { rows: B, prompts: P, groupSize: G, promptTokens: Tp, newTokens: n, sequenceTokens: T } =
    shapes;
  // π_old is read by a ratio (or a custom loss that says so), and is the reference under
  // "rollout". With one optimiser step per batch it equals π detached at that step, so no separate
  // pass is needed (as in TRL). The runtime reads the same passes from logProbPasses().
  const readsOld = axes.readsOld || reference.kind === "rollout";
  const { old: needsOld, reference: frozen } = logProbPasses(plan);
  const evalFlops = samplingFlops(model, schedule.evalProblems, Tp, n);
  const flops = {
    sample: samplingFlops(model, B, Tp, n),
    oldLogp: needsOld ? forwardFlops(model, B, T) : 0,
    reference: frozen ? forwardFlops(model, B, T) : 0,
    update: schedule.epochs * trainFlops(model, B, T),
    total: 0,
  };
  flops.total = flops.sample + flops.oldLogp + flops.reference + flops.update;

  const stages: Stage[] = [];
  const add = (stage: Stage) => stages.push(stage);

  // Setup: the policy, its warm start, the frozen reference, the first evaluation.
  add({
    when: "setup",
    name: "init",
    detail: model.kind === "hfModel"
      ? `${model.modelType} from '${model.path}' (${model.dtype}): ` +
        plural(model.params, "parameter") +
        (model.lora === undefined ? "" : `, frozen; LoRA adapters of rank ${model.lora.rank} on ` +
          `${model.lora.targets.join(", ")}: ${plural(model.lora.params, "parameter")}`)
      : `tinyGpt from seed ${plan.seed}: ${plural(model.params, "parameter")}`,
    shapes: { embedding: [model.vocab, model.dModel] },
    flops: 0,
  });
  const w = model.warmStart;
  if (w !== null && w.sftSteps > 0) {
    add({
      when: "setup",
      name: "warm start",
      detail:
        `${plural(w.sftSteps, "supervised step")} on reference answers, batch ${w.batchSize}, ` +
        `lr ${num(w.lr)} (cached by content hash)`,
      shapes: { tokens: [w.batchSize, T] },
      flops: w.sftSteps * trainFlops(model, w.batchSize, T),
    });
  }
  if (frozen) {
    add({
      when: "setup",
      name: "reference",
      detail: reference.kind === "initial"
        ? model.kind === "hfModel" && model.lora !== undefined
          ? "π_ref is the base model with the adapters off: no copy"
          : `freeze a copy of the policy${
            w !== null && w.sftSteps > 0 ? " after the warm start" : ""
          } as π_ref`
        : `load π_ref from '${reference.checkpoint}'`,
      shapes: {},
      flops: 0,
    });
  }
  const evalProblems = plural(schedule.evalProblems, `${schedule.evalSplit} problem`);
  const evalStage = (when: Stage["when"], what: string): Stage => ({
    when,
    name: "eval",
    detail: `${what}: greedy decoding of ${evalProblems}, scored by ${
      schedule.evalMetric?.kind === "successReward"
        ? `the success reward '${schedule.evalMetric.name}' (1 is a success)`
        : schedule.evalMetric?.kind
    }`,
    shapes: { ids: [schedule.evalProblems, T] },
    flops: evalFlops,
    ...(when === "periodic" && schedule.evalEvery !== null ? { every: schedule.evalEvery } : {}),
  });
  if (schedule.evalProblems > 0) add(evalStage("setup", "step 0"));

  // Every step: sample → score → old and reference log-probs → advantages → update.
  const top = [
    `temperature ${sampling.temperature}`,
    ...(sampling.topP < 1 ? [`top-p ${sampling.topP}`] : []),
    ...(sampling.topK > 0 ? [`top-k ${sampling.topK}`] : []),
  ].join(", ");
  add({
    when: "step",
    name: "sample",
    detail: `${G} completions for each of ${P} prompts, at most ${n} new tokens, ${top}, KV cache`,
    shapes: { ids: [B, T], mask: [B, n], sampleLogp: [B, n] },
    flops: flops.sample,
  });
  add({
    when: "step",
    name: "score",
    detail: plan.rewards.map((s) => `${s.weight} × ${s.name}${s.success ? " (success)" : ""}`).join(
      " + ",
    ),
    shapes: { rewards: [B], bySource: [plan.rewards.length, B] },
    flops: 0,
  });
  if (axes.dynamicSampling !== null) {
    const success = plan.rewards.find((s) => s.success)!;
    add({
      when: "step",
      name: "filter",
      detail: `drop groups whose ${success.name} rewards are all equal and sample more prompts ` +
        `until ${P} groups remain (at most ${axes.dynamicSampling.maxRounds} rounds)`,
      shapes: { groups: [P, G] },
      flops: 0,
    });
  }
  const partition = `in the update's ${
    plural(schedule.miniBatches, "mini-batch", "mini-batches")
  } of ${shapes.miniBatchRows} rows`;
  if (needsOld) {
    add({
      when: "step",
      name: "old log-probs",
      detail: `log π_old of the completions, no gradient, ${partition}` +
        (reference.kind === "rollout" ? "; also the reference (rollout)" : ""),
      shapes: { oldLogp: [B, n] },
      flops: flops.oldLogp,
    });
  }
  if (frozen) {
    add({
      when: "step",
      name: "reference log-probs",
      detail: `log π_ref under the frozen reference, no gradient, ${partition}` +
        (reference.used ? "" : " (for the KL metric only)"),
      shapes: { refLogp: [B, n] },
      flops: flops.reference,
    });
  }
  // A custom loss receives the raw rewards: the trainer computes no advantages for it.
  if (axes.loss !== "custom") add(advantageStage(plan));
  const batches = plural(schedule.miniBatches, "mini-batch", "mini-batches");
  const epochs = plural(schedule.epochs, "epoch");
  const groups = plural(shapes.miniBatchGroups, "group");
  const optimizer = `AdamW lr ${num(plan.optimizer.lr)}, clip grad norm ${
    num(plan.optimizer.clipGradNorm)
  }`;
  const detached = readsOld && !needsOld
    ? "; π_old is π detached (one optimiser step per batch)"
    : "";
  add({
    when: "step",
    name: "update",
    detail: `${batches} × ${epochs} of ${groups}: ${objective.formula}; ${optimizer}${detached}`,
    shapes: { logp: [shapes.miniBatchRows, n] },
    flops: flops.update,
  });

  // Periodic and final stages.
  if (
    schedule.evalEvery !== null && schedule.evalProblems > 0 && schedule.evalEvery <= schedule.steps
  ) {
    add(evalStage("periodic", `every ${plural(schedule.evalEvery, "step")}`));
  }
  if (schedule.checkpointEvery !== null && schedule.checkpointEvery <= schedule.steps) {
    add({
      when: "periodic",
      name: "checkpoint",
      detail: `weights, optimiser and RNG state; keep the last ${schedule.checkpointKeep}`,
      shapes: {},
      flops: 0,
      every: schedule.checkpointEvery,
    });
  }
  add({
    when: "periodic",
    name: "samples",
    detail: `${plural(schedule.sampleGroups, "group")} to samples.jsonl at step 1, every ` +
      `${plural(schedule.samplesEvery, "step")} and at the end: completions and rewards` +
      (axes.advantage ? ", advantages" : ""),
    shapes: {},
    flops: 0,
    every: schedule.samplesEvery,
  });
  if (schedule.evalProblems > 0) add(evalStage("end", "final"));
  add({
    when: "end",
    name: "checkpoint",
    detail: "final weights, optimiser and RNG state",
    shapes: {},
    flops: 0,
  });

  // The update's peak as dsl/memory.ts estimates it (which memoryIssues() holds against the limit).
  const peakBytes = updatePeakBytes(memoryInputs(plan));
  const warmStart = stages.find((s) => s.name === "warm start")?.flops ?? 0;
  const train = schedule.steps * flops.total;
  const evaluation = schedule.evaluations * evalFlops;
  return {
    stages,
    budget: {
      perStep: {
        tokensSampled: B * n,
        samplingCalls: n,
        forwardPasses: (needsOld ? 1 : 0) + (frozen ? 1 : 0) + schedule.epochs,
        backwardPasses: schedule.epochs,
        optimizerSteps: schedule.optimizerStepsPerBatch,
        flops,
        peakBytes,
      },
      run: {
        tokensSampled: schedule.steps * B * n,
        flops: { warmStart, train, eval: evaluation, total: warmStart + train + evaluation },
      },
    },
  };
}

function advantageStage(plan: Omit<Plan, "stages" | "budget">): Stage {
  const { axes } = plan.objective;
  const { prompts: P, groupSize: G, rows: B } = plan.shapes;
  if (axes.loss === "dpo-pairs") {
    return {
      when: "step",
      name: "pairs",
      detail:
        "the best and the worst completion of each group; groups whose rewards tie are skipped",
      shapes: { pairs: [P, 2] },
      flops: 0,
    };
  }
  if (axes.advantage === null) {
    return {
      when: "step",
      name: "targets",
      detail: "σ(r) for every row",
      shapes: { targets: [B] },
      flops: 0,
    };
  }
  const a = axes.advantage;
  const penalty = axes.kl?.placement === "reward"
    ? `r ← r − ${axes.kl.beta}·KL(k3) per sequence; then `
    : "";
  const formula = a.baseline === "leave-one-out"
    ? "A = r − mean of the other G − 1 rewards"
    : a.scale === "group-std"
    ? `${axes.loss === "gift" ? "Â" : "A"} = (r − mean_g r) / (std_g r + ${
      num(a.epsilon)
    }), sample std`
    : "A = r − mean_g r";
  return {
    when: "step",
    name: "advantages",
    detail: penalty + formula,
    shapes: { advantages: [P, G] },
    flops: 0,
  };
}

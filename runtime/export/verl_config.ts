/**
 * A plan's settings as verl's Hydra overrides: everything but the objective (whose algorithm keys
 * `verl_objective.ts` gives). Each override names the giftwrap field it comes from, so that the
 * exported `run.sh` says where every value came from, and the README's mapping table is this
 * module read aloud.
 *
 * What verl has no key for is refused, naming the field and why: giftwrap's own model (`tinyGpt`)
 * and its warm start, a reference loaded from another checkpoint, stop strings, a linear
 * learning-rate decay, AdamW's ε other than PyTorch's. Where verl counts or computes something
 * differently, the mapping keeps going with a warning that names both.
 *
 * The keys are those of verl's `ppo_trainer.yaml` at the commit `VERL_COMMIT`
 * (`verl_ppo_trainer_keys.txt`, beside this module, lists them with their defaults); a test checks
 * that every key emitted is one of them.
 *
 * @module
 */

import type { HfModelSpec, HfTokenizerSpec, Plan } from "../../dsl/plan.ts";

/**
 * The verl commit whose configuration the overrides are written for.
 *
 * @example
 * ```ts
 * console.log(`git -C verl checkout ${VERL_COMMIT}`);
 * ```
 */
export const VERL_COMMIT = "1dda039b9c6311889a9c9a26040677e1254814f9";

/** A value as a Hydra override writes it. */
export type HydraValue =
  | string
  | number
  | boolean
  | null
  | readonly HydraValue[]
  | { readonly [key: string]: HydraValue };

/**
 * One `key=value` of the command line, and the giftwrap field it comes from.
 *
 * @example
 * ```ts
 * const n: Override = { key: "actor_rollout_ref.rollout.n", value: 8, from: "group.size" };
 * ```
 */
export interface Override {
  key: string;
  value: HydraValue;
  /** The plan's field (`group.size`, `optimizer.lr`, …) or what set it (`export`). */
  from: string;
}

/** What has no verl equivalent: the field and why, for one line of error. */
export interface Refusal {
  ok: false;
  field: string;
  reason: string;
}

/** The overrides of a plan, with warnings where verl differs. */
export interface VerlSettings {
  ok: true;
  overrides: Override[];
  warnings: string[];
}

/** Where the exported files are, as `run.sh` names them (`$DATA` is its data directory). */
export interface ExportPaths {
  /** The train split's Parquet file. */
  train: string;
  /** The eval split's, or null when the plan holds none out. */
  eval: string | null;
  /** The reward hook verl loads. */
  reward: string;
}

/** What the mapping needs besides the plan. */
export interface VerlConfigOptions {
  paths: ExportPaths;
  /** Rows in the train file: verl counts epochs over it. */
  trainRows: number;
}

/** Characters a Hydra value may hold without quotes. */
const BARE = /^[A-Za-z_/.~][A-Za-z0-9_/.~+:@-]*$/;

/** Words Hydra would read as something other than a string. */
const RESERVED = new Set(["true", "false", "null", "True", "False", "None", "NaN", "inf", "nan"]);

/**
 * `value` in Hydra's override grammar: numbers and booleans bare, strings bare when they can be
 * and single-quoted otherwise, lists `[a,b]`, dictionaries `{k:v}`.
 *
 * @example
 * ```ts
 * hydraText([0.9, 0.999]); // "[0.9,0.999]"
 * hydraText("a b"); // "'a b'"
 * hydraText({ enable_thinking: false }); // "{enable_thinking:false}"
 * ```
 */
export function hydraText(value: HydraValue): string {
  if (value === null) return "null";
  if (typeof value === "boolean") return value ? "true" : "false";
  if (typeof value === "number") {
    if (!Number.isFinite(value)) throw new Error(`not a finite number: ${value}`);
    return String(value);
  }
  if (typeof value === "string") {
    if (BARE.test(value) && !RESERVED.has(value)) return value;
    return `'${value.replaceAll("\\", "\\\\").replaceAll("'", "\\'")}'`;
  }
  if (Array.isArray(value)) return `[${value.map(hydraText).join(",")}]`;
  const entries = Object.entries(value as Record<string, HydraValue>);
  return `{${entries.map(([k, v]) => `${k}:${hydraText(v)}`).join(",")}}`;
}

/** The Hugging Face model of a plan, or why it has none verl can train. */
function hfPolicy(plan: Plan): HfModelSpec | Refusal {
  const model = plan.model;
  if (model.kind === "tinyGpt") {
    if (model.warmStart !== null) {
      return {
        ok: false,
        field: "policy.warmStart",
        reason: "the warm start (supervised steps on giftwrap's own model before RL) has no " +
          "verl equivalent; export a recipe whose policy is an hfModel",
      };
    }
    return {
      ok: false,
      field: "policy",
      reason: "tinyGpt is giftwrap's own model, which verl cannot load; verl trains Hugging " +
        "Face checkpoints: use hfModel({ path })",
    };
  }
  return model;
}

/** The chat settings of a Hugging Face tokenizer as verl's data and model keys. */
function chatOverrides(tokenizer: HfTokenizerSpec, add: Adder, warnings: string[]): void {
  if (Object.keys(tokenizer.templateArgs).length > 0) {
    add("data.apply_chat_template_kwargs", { ...tokenizer.templateArgs }, "policy.chat.args");
  }
  if (!tokenizer.chatTemplate) {
    // verl always renders `prompt` (chat messages) through the tokenizer's template; a plain
    // prompt is the user message alone, after the begin token when the tokenizer adds one.
    const bos = tokenizer.addBos ? "{{ bos_token }}" : "";
    add(
      "actor_rollout_ref.model.custom_chat_template",
      `${bos}{% for message in messages %}{{ message.content }}{% endfor %}`,
      "policy.chat.template",
    );
    warnings.push(
      "the recipe's prompts are plain text (no chat template): they are exported as one user " +
        "message and actor_rollout_ref.model.custom_chat_template renders it as giftwrap does",
    );
  }
}

type Adder = (key: string, value: HydraValue, from: string) => void;

/**
 * The Hydra overrides of everything in `plan` but its objective: model, LoRA, data, sampling,
 * batch sizes, optimiser, schedule, evaluation, checkpoints and seeds. Nodes, GPUs, the rollout
 * engine and the model's path on the cluster are `run.sh`'s arguments, not overrides here.
 *
 * @example
 * ```ts
 * const settings = verlConfig(plan, {
 *   paths: { train: "$DATA/train.parquet", eval: null, reward: "$DATA/reward.py" },
 *   trainRows: 1000,
 * });
 * if (!settings.ok) console.error(`${settings.field}: ${settings.reason}`);
 * ```
 */
export function verlConfig(plan: Plan, options: VerlConfigOptions): VerlSettings | Refusal {
  const model = hfPolicy(plan);
  if ("ok" in model) return model;
  const overrides: Override[] = [];
  const warnings: string[] = [];
  const add: Adder = (key, value, from) => overrides.push({ key, value, from });
  const { shapes, schedule, sampling, optimizer, recipe } = plan;

  // The reference: verl's is the starting policy (actor_rollout_ref.model.path) or none.
  if (plan.reference.kind === "checkpoint") {
    return {
      ok: false,
      field: "reference.checkpoint",
      reason: "verl's reference policy is the starting model (actor_rollout_ref.model.path); " +
        "it has no key for another checkpoint",
    };
  }
  if ((sampling.stop ?? []).length > 0) {
    return {
      ok: false,
      field: "sampling.stop",
      reason: "verl's rollout has no stop strings (completions end at the tokenizer's end " +
        "tokens); remove them or end completions with a reward instead",
    };
  }
  if (optimizer.schedule === "linear") {
    return {
      ok: false,
      field: "optimizer.schedule",
      reason: "verl's lr_scheduler_type is constant or cosine; it has no linear decay",
    };
  }
  if (optimizer.eps !== 1e-8) {
    return {
      ok: false,
      field: "optimizer.eps",
      reason:
        `verl's AdamW uses PyTorch's ε 1e-8 and has no key for another (the recipe has ${optimizer.eps})`,
    };
  }
  if (plan.tokenizer.kind !== "hf") {
    return { ok: false, field: "policy", reason: "verl needs a Hugging Face tokenizer" };
  }

  // Model and LoRA. The model's path is run.sh's (--model), defaulting to the recipe's.
  add(
    "actor_rollout_ref.model.enable_gradient_checkpointing",
    plan.update?.gradientCheckpointing ?? false,
    "gradientCheckpointing",
  );
  if (model.lora !== undefined) {
    const lora = model.lora;
    add("actor_rollout_ref.model.lora_rank", lora.rank, "policy.lora.rank");
    add("actor_rollout_ref.model.lora_alpha", lora.alpha, "policy.lora.alpha");
    add("actor_rollout_ref.model.target_modules", [...lora.targets], "policy.lora.targets");
    if (lora.adapter !== null) {
      warnings.push(
        `policy.lora.adapter: verl starts from the adapter at actor_rollout_ref.model.` +
          `lora_adapter_path, which run.sh sets to '${lora.adapter.path}' as the recipe names ` +
          `it; copy the adapter there on the cluster, or pass --adapter PATH`,
      );
    }
    if (lora.saveMerged) {
      warnings.push(
        "policy.lora.saveMerged: verl's checkpoints hold the adapters; merge them after " +
          "training (giftwrap's saveMerged has no verl key)",
      );
    }
  }
  chatOverrides(plan.tokenizer, add, warnings);

  // Data: verl's batch is in prompts; it samples rollout.n completions of each.
  add("data.train_files", options.paths.train, "data");
  add("data.prompt_key", "prompt", "export");
  add("data.train_batch_size", shapes.prompts, "group.prompts");
  add("data.max_prompt_length", shapes.promptTokens, "data.maxPromptTokens");
  add("data.max_response_length", shapes.newTokens, "sampling.maxNewTokens");
  const tooLong = (recipe.data as { tooLong?: string }).tooLong ?? "error";
  add("data.filter_overlong_prompts", tooLong === "skip", "data.tooLong");
  add("data.truncation", tooLong === "truncate-left" ? "left" : "error", "data.tooLong");
  add("data.shuffle", true, "export");
  add("data.seed", plan.seed, "seed");

  // Sampling.
  add("actor_rollout_ref.rollout.n", shapes.groupSize, "group.size");
  add("actor_rollout_ref.rollout.temperature", sampling.temperature, "sampling.temperature");
  add("actor_rollout_ref.rollout.top_p", sampling.topP, "sampling.topP");
  add("actor_rollout_ref.rollout.top_k", sampling.topK === 0 ? -1 : sampling.topK, "sampling.topK");
  add("actor_rollout_ref.rollout.do_sample", true, "export");
  add("actor_rollout_ref.rollout.seed", plan.seed, "seed");

  // The update: mini-batches in prompts (verl multiplies by rollout.n), micro-batches in rows per
  // GPU and whole groups, so that group-wise losses see whole groups.
  const miniBatchPrompts = shapes.miniBatchGroups;
  add("actor_rollout_ref.actor.ppo_mini_batch_size", miniBatchPrompts, "miniBatches");
  add("actor_rollout_ref.actor.ppo_epochs", schedule.epochs, "epochs");
  const microRows = plan.update?.microBatchRows ?? shapes.groupSize;
  add("actor_rollout_ref.actor.ppo_micro_batch_size_per_gpu", microRows, "microBatches");
  add("actor_rollout_ref.rollout.log_prob_micro_batch_size_per_gpu", microRows, "microBatches");
  add("actor_rollout_ref.ref.log_prob_micro_batch_size_per_gpu", microRows, "microBatches");
  add("actor_rollout_ref.actor.data_loader_seed", plan.seed, "seed");
  add("actor_rollout_ref.actor.fsdp_config.seed", plan.seed, "seed");
  add("actor_rollout_ref.ref.fsdp_config.seed", plan.seed, "seed");

  // The optimiser. verl's scheduler steps once per training step; giftwrap's once per update.
  add("actor_rollout_ref.actor.optim.lr", optimizer.lr, "optimizer.lr");
  add("actor_rollout_ref.actor.optim.betas", [...optimizer.betas], "optimizer.betas");
  add("actor_rollout_ref.actor.optim.weight_decay", optimizer.weightDecay, "optimizer.weightDecay");
  // Clipping off is an infinite norm in PyTorch's clip_grad_norm_; a huge one does the same.
  const clip = optimizer.clipGradNorm === 0 ? 1e12 : optimizer.clipGradNorm;
  add("actor_rollout_ref.actor.optim.clip_grad", clip, "optimizer.clipGradNorm");
  add("actor_rollout_ref.actor.grad_clip", clip, "optimizer.clipGradNorm");
  const perStep = schedule.optimizerStepsPerBatch;
  const warmupSteps = Math.ceil(optimizer.warmupSteps / perStep);
  if (optimizer.warmupSteps % perStep !== 0) {
    warnings.push(
      `optimizer.warmupSteps: giftwrap counts ${optimizer.warmupSteps} updates of warm-up, ` +
        `verl counts training steps (${perStep} updates each): exported as ${warmupSteps} steps`,
    );
  } else if (perStep > 1 && optimizer.warmupSteps > 0) {
    warnings.push(
      `optimizer.warmupSteps: ${optimizer.warmupSteps} updates are ${warmupSteps} verl ` +
        `training steps of ${perStep} updates; verl changes the rate between steps, giftwrap ` +
        `between updates`,
    );
  }
  add("actor_rollout_ref.actor.optim.lr_warmup_steps", warmupSteps, "optimizer.warmupSteps");
  add(
    "actor_rollout_ref.actor.optim.lr_scheduler_type",
    optimizer.schedule,
    "optimizer.schedule",
  );
  if (optimizer.schedule === "cosine") {
    add("actor_rollout_ref.actor.optim.min_lr_ratio", 0, "optimizer.schedule");
    add("actor_rollout_ref.actor.optim.num_cycles", 0.5, "optimizer.schedule");
  }

  // The schedule: steps, and enough epochs over the train file to reach them.
  add("trainer.total_training_steps", schedule.steps, "steps");
  const epochs = Math.max(1, Math.ceil((schedule.steps * shapes.prompts) / options.trainRows));
  add("trainer.total_epochs", epochs, "steps");

  // Evaluation: greedy, one completion per problem, at step 0, every N steps and at the end.
  if (schedule.evalProblems > 0) {
    const file = schedule.evalSplit === "train" ? options.paths.train : options.paths.eval;
    add("data.val_files", file ?? options.paths.train, "eval.split");
    add("data.val_max_samples", schedule.evalProblems, "eval.limit");
    add("trainer.val_before_train", true, "eval");
    add("trainer.test_freq", schedule.evalEvery ?? schedule.steps, "eval.every");
    add("actor_rollout_ref.rollout.val_kwargs.do_sample", false, "eval");
    add("actor_rollout_ref.rollout.val_kwargs.temperature", 0, "eval");
    add("actor_rollout_ref.rollout.val_kwargs.n", 1, "eval");
    warnings.push(
      "eval: giftwrap reports greedy accuracy by its success reward; verl's validation reports " +
        "the mean of the reward server's total score over the same greedy completions",
    );
  } else {
    add("data.val_files", options.paths.train, "eval");
    add("trainer.val_before_train", false, "eval");
    add("trainer.test_freq", -1, "eval");
  }

  // Checkpoints: every N steps and the last, the newest `keep` kept.
  add("trainer.save_freq", schedule.checkpointEvery ?? schedule.steps, "checkpoint.every");
  add("trainer.max_actor_ckpt_to_keep", schedule.checkpointKeep, "checkpoint.keep");

  // Rewards: every source is the reward server's, through verl's batched reward manager.
  add("reward.reward_manager.name", "batch", "rewards");
  add("reward.custom_reward_function.path", options.paths.reward, "rewards");
  add("reward.custom_reward_function.name", "compute_score", "rewards");
  for (const [i, reward] of plan.rewards.entries()) {
    if (reward.onError === "skip-group") {
      warnings.push(
        `rewards[${i}].onError: 'skip-group' has no verl equivalent (verl cannot leave a group ` +
          `out of an update); a failed score counts 0 there, with a warning from reward.py`,
      );
    }
  }

  add("trainer.project_name", "giftwrap", "export");
  add("trainer.experiment_name", plan.name, "name");
  add("trainer.logger", ["console"], "export");
  return { ok: true, overrides, warnings };
}

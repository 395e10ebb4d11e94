/**
 * A run's setup, before its directory exists: the objective, the backend, the data and the reward
 * sources. What can be checked without a tensor is checked first, so a plan this runtime cannot
 * run costs nothing and leaves nothing on disk.
 *
 * @module
 */

import { describeChange, inputChange, withInputs } from "../../dsl/inputs.ts";
import { type Plan, planHash } from "../../dsl/plan.ts";
import { type BackendInfo, type KernelSet, useBackend } from "../engine/backend.ts";
import type { Rng } from "../engine/random.ts";
import { loadTask, type Task } from "../data/task.ts";
import { adapterSha256, modelDir, modelSha256 } from "../resolve.ts";
import { objectives } from "../rl/objectives/mod.ts";
import type { Objective } from "../rl/objectives/types.ts";
import { createScorer, type SourceOptions, type SourceScorer } from "../rl/rewards/mod.ts";
import { rewardModelScorer } from "../rl/rewards/reward_model.ts";

/**
 * A run of a plan that cannot start; the message is one line for the user.
 *
 * @example
 * ```ts
 * try {
 *   await execute(plan);
 * } catch (e) {
 *   if (e instanceof RunSetupError) console.error(e.message); // "Cannot load objective …"
 * }
 * ```
 */
export class RunSetupError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "RunSetupError";
  }
}

/** What a run is set up with; disposing it closes the reward sources. */
export interface Setup extends AsyncDisposable {
  objective: Objective<unknown>;
  /** What `objective.loss` gets as options: the plan's, or a custom objective's own. */
  objectiveOptions: unknown;
  backend: BackendInfo;
  task: Task;
  sources: SourceScorer[];
  /** Where the recipe's relative paths start (its URL). */
  baseUrl: string | URL;
}

/**
 * `plan` with the hashes of the files it names, read now (`withInputs()`), which are part of its
 * hash: what the run records and a resume compares. A plan compiled by the command line records
 * them already, and must find the same content; so must a Hugging Face policy's directory, whose
 * SHA-256 the plan holds (a resumed run reads its tokenizer and saves its config again), and so
 * must the PEFT adapter a LoRA policy starts from.
 * @throws {RunSetupError} naming a file, model or adapter directory that changed since the plan
 *   recorded it, or LoRA settings this runtime does not train with.
 */
export async function planWithInputs(plan: Plan, baseUrl: string | URL): Promise<Plan> {
  if (plan.model.kind === "hfModel") {
    const found = await modelSha256(modelDir(plan.model.path, baseUrl));
    if (found !== plan.model.sha256) {
      throw new RunSetupError(
        `policy.path: the model directory '${plan.model.path}' changed since the plan was made ` +
          `(sha256 ${found.slice(0, 16)}…, the plan's ${plan.model.sha256.slice(0, 16)}…): ` +
          "plan the recipe again",
      );
    }
    const lora = plan.model.lora;
    if (lora !== undefined && lora.dropout !== 0) {
      throw new RunSetupError(
        `policy.lora.dropout: expected 0 (dropout on the adapters' input is not implemented), ` +
          `got ${lora.dropout}: set policy.lora.dropout to 0 to train without it`,
      );
    }
    if (lora?.adapter) {
      const { path, sha256 } = lora.adapter;
      const found = await adapterSha256(modelDir(path, baseUrl));
      if (found !== sha256) {
        throw new RunSetupError(
          `policy.lora.adapter: the adapter directory '${path}' changed since the plan was ` +
            `made (sha256 ${found.slice(0, 16)}…, the plan's ${sha256.slice(0, 16)}…): plan the ` +
            "recipe again",
        );
      }
    }
  }
  const read = await withInputs(plan, baseUrl);
  const change = plan.inputs === undefined ? null : inputChange(plan.inputs, read.inputs);
  if (change !== null) {
    throw new RunSetupError(
      `Cannot run plan ${planHash(plan)}: ${describeChange(change, "the plan was made")}; ` +
        "compile the recipe again",
    );
  }
  return read;
}

/**
 * Sets a plan's run up: its objective (checked before any tensor exists), its backend, its data
 * (drawn from the seed's `data` stream) and its reward sources, ready to score.
 * @throws {RunSetupError} (or the task's and backend's own errors) naming what cannot load.
 */
export async function setUp(plan: Plan, seed: Rng, baseUrl: string | URL): Promise<Setup> {
  const { objective, options } = await objectiveOf(plan, baseUrl);
  const backend = await useBackend(plan.backend.name);
  const task = await loadTask(plan, seed.fork("data"), baseUrl);
  const sources = await rewardSources(
    plan,
    String(baseUrl),
    () => Promise.resolve(backend.kernels),
  );
  return {
    objective,
    objectiveOptions: options,
    backend,
    task,
    sources,
    baseUrl,
    async [Symbol.asyncDispose]() {
      await Promise.all(sources.map((s) => s.scorer.close?.()));
    },
  };
}

/**
 * The implemented objective a plan names: checked before any tensor exists, so an unsupported
 * plan costs nothing.
 */
async function objectiveOf(
  plan: Plan,
  baseUrl: string | URL,
): Promise<{ objective: Objective<unknown>; options: unknown }> {
  const declared = plan.objective.options as unknown as {
    kind: string;
    module?: string;
    export?: string;
    options?: unknown;
  };
  if (declared.kind === "custom") {
    const where = `${declared.module}#${declared.export}`;
    let module: Record<string, unknown>;
    try {
      module = await import(new URL(declared.module!, baseUrl).href);
    } catch (e) {
      const why = (e as Error).message.split("\n")[0];
      throw new RunSetupError(`Cannot load objective ${where}: ${why}`);
    }
    const found = module[declared.export!] as Partial<Objective<unknown>> | undefined;
    if (!found || typeof found.loss !== "function" || typeof found.name !== "string") {
      throw new RunSetupError(
        `Cannot use objective ${where}: expected an Objective ({ name, loss(batch, options) }), ` +
          `got ${found === undefined ? "nothing" : typeof found}`,
      );
    }
    return { objective: found as Objective<unknown>, options: declared.options ?? {} };
  }
  const found = (objectives as Record<string, Objective<unknown>>)[plan.objective.kind];
  if (!found) {
    throw new RunSetupError(
      `Cannot run objective '${plan.objective.kind}': this runtime implements ` +
        `${Object.keys(objectives).join(", ")}; the plan compiles, and 'deno task plan' prints it`,
    );
  }
  return { objective: found, options: plan.objective.options };
}

/**
 * The plan's reward sources, ready to score, as a run scores with them (the reward server builds
 * them here too); `fn` modules and checkpoints resolve from `baseUrl`. `kernels` is asked for
 * only by a reward model source. Close each source's scorer when done.
 * @throws {RunSetupError} naming the source that cannot load (closing those that did).
 *
 * @example
 * ```ts
 * const { kernels } = await useBackend("cpu");
 * const sources = await rewardSources(plan, "file:///work/recipes/", () => Promise.resolve(kernels));
 * ```
 */
export async function rewardSources(
  plan: Plan,
  baseUrl: string,
  kernels: () => Promise<KernelSet>,
): Promise<SourceScorer[]> {
  const context = {
    baseUrl,
    maxNewTokens: plan.shapes.newTokens,
    rewardModel: async (checkpoint: string, batchSize: number) =>
      rewardModelScorer(
        decodeURIComponent(new URL(checkpoint, baseUrl).pathname),
        batchSize,
        await kernels(),
      ),
  };
  const sources: SourceScorer[] = [];
  try {
    for (const [i, spec] of plan.rewards.entries()) {
      const scorer = await createScorer(spec.source as SourceOptions, context).catch((e) => {
        throw new RunSetupError(`rewards[${i}] ('${spec.name}'): ${(e as Error).message}`);
      });
      const { name, weight, success, onError } = spec;
      sources.push({ name, weight, success, onError, scorer });
    }
  } catch (e) {
    await Promise.all(sources.map((s) => s.scorer.close?.()));
    throw e;
  }
  return sources;
}

/** A `Run` of the tiny recipe built as `execute()` builds it, for the tests of a step on its own. */

import { tf, useBackend } from "../../runtime/engine/backend.ts";
import { loadTask } from "../../runtime/data/task.ts";
import { initParams, modelConfig } from "../../runtime/engine/model/transformer.ts";
import { adamW, disposeAdamW } from "../../runtime/engine/optim.ts";
import { Rng } from "../../runtime/engine/random.ts";
import type { SourceScorer } from "../../runtime/rl/rewards/mod.ts";
import type { Sample } from "../../runtime/rl/rewards/types.ts";
import type { Run } from "../../runtime/rl/train_step.ts";
import { reinforce } from "../../recipes/objectives/reinforce.ts";
import { tinyPlan } from "./_tiny.ts";

/** A reward with a spread inside each group: the completion's length in tokens. */
export const LENGTH_REWARD: SourceScorer = {
  name: "length",
  weight: 1,
  success: false,
  onError: "fail",
  scorer: { score: (samples: readonly Sample[]) => Promise.resolve(samples.map((s) => s.tokens)) },
};

/**
 * The tiny recipe with `changes` as a run on cpu (or `changes.backend`), from its seed: REINFORCE
 * (`recipes/objectives/reinforce.ts`) its objective unless `objective` is given, every group
 * logged, no reference, rewarded by `sources` (the completion's length).
 */
export async function tinyRun(
  changes: Parameters<typeof tinyPlan>[0] = {},
  objective: Run["objective"] = reinforce as Run["objective"],
  sources: SourceScorer[] = [LENGTH_REWARD],
): Promise<Run> {
  const plan = tinyPlan({
    backend: "cpu",
    reference: "none",
    objective: {
      kind: "custom",
      module: "file:///objective.ts",
      export: "objective",
      reads: { reference: false },
    },
    log: { sampleGroups: 4 },
    ...changes,
  });
  const { kernels } = await useBackend(plan.backend.name);
  const seed = new Rng(plan.seed);
  const config = modelConfig(plan.model);
  const params = initParams(config, seed.fork("init"));
  const { steps, optimizerStepsPerBatch } = plan.schedule;
  return {
    plan,
    kernels,
    config,
    task: await loadTask(plan, seed.fork("data"), "file:///"),
    params,
    reference: null,
    initial: null,
    optimizer: adamW(params, plan.optimizer, steps * optimizerStepsPerBatch),
    sources,
    objective,
    objectiveOptions: {},
    sampleRng: seed.fork("sample"),
    promptRng: seed.fork("prompts"),
    cursor: { order: [], next: 0 },
    faults: { inRow: 0, total: 0 },
  };
}

/** Frees a run's policy and optimiser. */
export function releaseRun(run: Run): void {
  tf.dispose(Object.values(run.params));
  disposeAdamW(run.optimizer);
}

/** Each tensor's values, by name. */
export function valuesOf(tensors: Record<string, tf.Tensor>): Record<string, Float32Array> {
  return Object.fromEntries(
    Object.entries(tensors).map(([name, t]) => [name, t.dataSync() as Float32Array]),
  );
}

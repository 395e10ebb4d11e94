/**
 * The trainer's state: AdamW over what trains (the policy's weights, or its LoRA adapters) and the `Run` record a train step reads and updates,
 * with its random streams forked from the seed; a resumed run restores the optimiser's moments,
 * the streams, the data cursor and the fault counters from its checkpoint.
 *
 * @module
 */

import { adamW, disposeAdamW } from "../engine/optim.ts";
import { type Run, trainedParams } from "../rl/train_step.ts";
import { restoreRun } from "./checkpoint.ts";
import type { RunContext } from "./context.ts";
import type { References } from "./reference.ts";
import type { Policy } from "./policy.ts";

/** The run a train step works on, its optimiser released with the run. */
export function startTrainer(
  { plan, config, setup, seed, dir, held }: RunContext,
  { params, adapters }: Policy,
  references: References,
): Run {
  const { steps, optimizerStepsPerBatch } = plan.schedule;
  const optimizer = adamW(
    trainedParams({ params, adapters }),
    plan.optimizer,
    steps * optimizerStepsPerBatch,
  );
  held.defer(() => disposeAdamW(optimizer));
  const run: Run = {
    plan,
    kernels: setup.backend.kernels,
    config,
    task: setup.task,
    params,
    adapters,
    ...references,
    sources: setup.sources,
    optimizer,
    objective: setup.objective,
    objectiveOptions: setup.objectiveOptions,
    sampleRng: seed.fork("sample"),
    promptRng: seed.fork("prompts"),
    cursor: { order: [], next: 0 },
    faults: { inRow: 0, total: 0 },
  };
  if (dir.checkpoint) restoreRun(run, dir.checkpoint);
  return run;
}

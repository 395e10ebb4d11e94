/**
 * The policy a run trains: a resumed run's from its checkpoint; otherwise initialised from the
 * seed's `init` stream, warm-started on the task's reference answers, and saved as
 * `checkpoints/initial/`: π_ref for reference "initial", and what a resumed run reloads for it.
 *
 * @module
 */

import { tf } from "../engine/backend.ts";
import { inLayout, weightsToTensors } from "../engine/model/checkpoint.ts";
import { policyFiles } from "./checkpoint.ts";
import { initParams } from "../engine/model/transformer.ts";
import { loadHfModel } from "../engine/model/hf.ts";
import type { TensorData } from "../engine/model/safetensors.ts";
import { modelDir } from "../resolve.ts";
import { warmStart } from "../rl/warm_start.ts";
import type { RunContext } from "./context.ts";
import { Interrupted, stopRequested } from "./interrupt.ts";
import { duration } from "./progress.ts";
import { writeCheckpointDir } from "./run_dir.ts";
import { outOfMemory } from "./out_of_memory.ts";

/**
 * The policy's variables, released with the run.
 * @param signal checked after every warm-start step.
 * @throws {Interrupted} when `signal` stops the warm start (nothing of it is kept).
 */
export async function startPolicy(
  context: RunContext,
  signal?: AbortSignal,
): Promise<Record<string, tf.Variable>> {
  const { plan, config, dir, setup, seed, progress, held } = context;
  const layout = setup.backend.kernels.layout; // of the linear weights, the kernel set's choice
  const params = dir.checkpoint
    ? weightsToTensors(inLayout(dir.checkpoint.weights, layout), true)
    : plan.model.kind === "hfModel"
    ? weightsToTensors(await pretrained(context), true)
    : initParams(config, seed.fork("init"), layout);
  held.defer(() => tf.dispose(Object.values(params)));
  if (dir.checkpoint) return params;

  const { task, backend } = setup;
  const spec = plan.model.warmStart;
  const steps = spec?.sftSteps ?? 0;
  if (steps > 0) progress.start("warm start", steps);
  const warm = await warmStart(
    plan,
    params,
    config,
    task.tokenizer,
    task.splits.train,
    seed.fork("warm start"),
    {
      kernels: backend.kernels,
      // Beside the run: a resumed run's directory may not be under `runsDir`.
      cacheDir: `${dirname(dir.dir)}/.cache/warm-start`,
      matmul: backend.matmul.blas,
      note: (line) => progress.log(line),
      progress: async (done, _total, loss) => {
        progress.update({ done, loss });
        if (await stopRequested(signal)) throw new Interrupted();
      },
    },
  ).catch(outOfMemory(plan, "warm start", ["warm start"]));
  if (steps > 0) {
    progress.stop();
    progress.log(
      warm.cached
        ? `warm start: cached (${warm.dir})`
        : `warm start: ${steps} steps in ${duration(warm.seconds)}`,
    );
  }
  await writeCheckpointDir(
    `${dir.checkpointsDir}/initial`,
    await policyFiles(params, config, task.tokenizer, layout),
  );
  return params;
}

function dirname(path: string): string {
  const at = path.lastIndexOf("/");
  return at < 0 ? "." : path.slice(0, at) || "/";
}

/**
 * The weights of a Hugging Face policy's directory, in the kernel set's layout (its SHA-256 was
 * checked against the plan's when the run started: `planWithInputs()`).
 */
async function pretrained(context: RunContext): Promise<Record<string, TensorData>> {
  const { plan, setup } = context;
  if (plan.model.kind !== "hfModel") {
    throw new Error("The plan's policy is not a Hugging Face model");
  }
  const dir = modelDir(plan.model.path, setup.baseUrl);
  return (await loadHfModel(dir, setup.backend.kernels.layout)).weights;
}

/**
 * The policy a run trains: a resumed run's from its checkpoint; otherwise initialised from the
 * seed's `init` stream, warm-started on the task's reference answers, and saved as
 * `checkpoints/initial/`: π_ref for reference "initial", and what a resumed run reloads for it.
 *
 * With LoRA (`plan.model.lora`) the base weights are loaded frozen, as plain tensors that no
 * optimiser holds and no gradient reaches, and only the adapters train: drawn from the seed's
 * `lora` stream, or the PEFT adapter the recipe starts from, or a resumed run's checkpoint.
 * `checkpoints/initial/` is then the starting adapter (a PEFT directory), not a copy of the base.
 *
 * @module
 */

import { tf } from "../engine/backend.ts";
import { inLayout, weightsToTensors } from "../engine/model/checkpoint.ts";
import { baseModelOf, policyFiles } from "./checkpoint.ts";
import { initParams, type Params } from "../engine/model/transformer.ts";
import { loadHfModel } from "../engine/model/hf.ts";
import {
  disposeLoraAdapters,
  initLoraAdapters,
  loadLoraAdapter,
  loraAdapterFiles,
  type LoraAdapters,
  loraAdaptersFromData,
  type LoraConfig,
  loraConfig,
} from "../engine/model/lora.ts";
import type { LoraSpec } from "../../dsl/plan.ts";
import type { TensorData } from "../engine/model/safetensors.ts";
import { modelDir } from "../resolve.ts";
import { warmStart } from "../rl/warm_start.ts";
import type { RunContext } from "./context.ts";
import { Interrupted, stopRequested } from "./interrupt.ts";
import { duration } from "./progress.ts";
import { writeCheckpointDir } from "./run_dir.ts";
import { outOfMemory } from "./out_of_memory.ts";

/** A run's policy: its weights, and its LoRA adapters when only they train. */
export interface Policy {
  /** The variables trained, or with `adapters` the frozen base (plain tensors). */
  params: Params;
  /** The adapters, the only tensors trained; null for full fine-tuning. */
  adapters: LoraAdapters | null;
}

/**
 * The policy, released with the run.
 * @param signal checked after every warm-start step.
 * @throws {Interrupted} when `signal` stops the warm start (nothing of it is kept).
 */
export async function startPolicy(context: RunContext, signal?: AbortSignal): Promise<Policy> {
  const { plan, config, dir, setup, seed, progress, held } = context;
  if (plan.model.kind === "hfModel" && plan.model.lora) {
    return await startLora(context, plan.model.lora);
  }
  const layout = setup.backend.kernels.layout; // of the linear weights, the kernel set's choice
  const params = dir.checkpoint
    ? weightsToTensors(inLayout(dir.checkpoint.weights, layout), true)
    : plan.model.kind === "hfModel"
    ? weightsToTensors(await pretrained(context), true)
    : initParams(config, seed.fork("init"), layout);
  held.defer(() => tf.dispose(Object.values(params)));
  if (dir.checkpoint) return { params, adapters: null };

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
  return { params, adapters: null };
}

/** A LoRA spec's configuration, as the adapters hold it (checked: `loraConfig()`). */
export function loraOf(spec: LoraSpec): LoraConfig {
  const { rank, alpha, dropout, targets } = spec;
  return loraConfig({ rank, alpha, dropout, targets });
}

/**
 * The frozen base and its adapters: a resumed run's from its checkpoint; else the PEFT adapter
 * the recipe names (its SHA-256 checked against the plan's by `planWithInputs()`), else fresh
 * ones drawn from the seed's `lora` stream; saved as `checkpoints/initial/`.
 */
async function startLora(context: RunContext, spec: LoraSpec): Promise<Policy> {
  const { config, dir, setup, seed, held } = context;
  const layout = setup.backend.kernels.layout;
  const params = weightsToTensors(await pretrained(context), false);
  held.defer(() => tf.dispose(Object.values(params)));
  const lora = loraOf(spec);
  let adapters: LoraAdapters;
  if (dir.checkpoint) {
    adapters = loraAdaptersFromData(
      { config: lora, baseModel: null, tensors: dir.checkpoint.weights },
      layout,
    );
  } else if (spec.adapter) {
    // PEFT's lora_dropout is the adapter's; the run trains with the plan's (0: checked at setup).
    const loaded = await loadLoraAdapter(modelDir(spec.adapter.path, setup.baseUrl), config, {
      layout,
    });
    const { baseModel: _, ...rest } = loaded;
    adapters = { ...rest, config: lora };
  } else {
    adapters = initLoraAdapters(config, lora, seed.fork("lora"), layout);
  }
  held.defer(() => disposeLoraAdapters(adapters));
  if (!dir.checkpoint) {
    await writeCheckpointDir(
      `${dir.checkpointsDir}/initial`,
      await loraAdapterFiles(adapters, { baseModel: baseModelOf(setup.task.tokenizer) }),
    );
  }
  return { params, adapters };
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

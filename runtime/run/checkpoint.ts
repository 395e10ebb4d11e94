/**
 * A run's checkpoint: everything a resumed run needs to continue exactly where this one was.
 *
 * `checkpoints/step-000010/` holds the policy (`model.safetensors` and `config.json`, loadable as
 * a model on their own), AdamW's moments (`optimizer.safetensors`), and `trainer_state.json`: the
 * step, the update count, both random streams, the data cursor, the fault counters, and how many
 * bytes of `metrics.jsonl` and `samples.jsonl` the checkpoint covers. A copy of `metrics.jsonl` up
 * to that step is kept in it too, so the metrics so far survive whatever happens to the log.
 *
 * @module
 */

import { tf } from "../engine/backend.ts";
import { checkpointFiles, loadCheckpoint, toTensorData } from "../engine/model/checkpoint.ts";
import { decodeSafetensors, encodeSafetensors } from "../engine/model/safetensors.ts";
import type { Params } from "../engine/model/transformer.ts";
import type { LinearLayout } from "../engine/kernels/types.ts";
import { Rng } from "../engine/random.ts";
import { checkpointName, writeCheckpointDir } from "./run_dir.ts";
import type { Run } from "../rl/train_step.ts";

/** `trainer_state.json`. */
export interface TrainerState {
  format: "giftwrap.trainer_state/1";
  /** The last step completed. */
  step: number;
  planHash: string;
  optimizer: { t: number };
  rng: { sample: number[]; prompts: number[] };
  cursor: { order: number[]; next: number };
  faults: { inRow: number; total: number };
  /** Bytes of each log the checkpoint covers: a resumed run cuts the logs back to these. */
  logs: { metricsBytes: number; samplesBytes: number };
}

/** A checkpoint read back, its tensors not made yet. */
export interface RunCheckpoint {
  dir: string;
  state: TrainerState;
  /** The policy's weights as the checkpoint stores them (linear weights `[out, in]`). */
  weights: Awaited<ReturnType<typeof loadCheckpoint>>["weights"];
  /** AdamW's moments by parameter name. */
  moments: { m: Record<string, Float32Array>; v: Record<string, Float32Array> };
  /** `metrics.jsonl` up to the checkpoint's step. */
  metrics: string;
}

function prefixed<T>(prefix: string, record: Record<string, T>): Record<string, T> {
  return Object.fromEntries(Object.entries(record).map(([k, v]) => [prefix + k, v]));
}

/** The trainer's state of `run` after `step`, and the logs' sizes. */
export function trainerState(
  run: Run,
  step: number,
  planHash: string,
  logs: TrainerState["logs"],
): TrainerState {
  return {
    format: "giftwrap.trainer_state/1",
    step,
    planHash,
    optimizer: { t: run.optimizer.t },
    rng: { sample: run.sampleRng.state(), prompts: run.promptRng.state() },
    cursor: { order: [...run.cursor.order], next: run.cursor.next },
    faults: { ...run.faults },
    logs,
  };
}

/**
 * Writes `run`'s checkpoint after `step` as `checkpointsDir/step-NNNNNN` (or `name`), atomically.
 * Returns the directory's name.
 */
export async function saveRunCheckpoint(
  checkpointsDir: string,
  run: Run,
  state: TrainerState,
  metrics: string,
  name = checkpointName(state.step),
): Promise<string> {
  const { params, config, task, kernels } = run;
  const model = await checkpointFiles(params, config, task.tokenizer.alphabet, kernels.layout);
  await writeCheckpointDir(`${checkpointsDir}/${name}`, {
    ...model,
    "optimizer.safetensors": encodeSafetensors({
      ...prefixed("m.", await toTensorData(run.optimizer.m, false)),
      ...prefixed("v.", await toTensorData(run.optimizer.v, false)),
    }),
    "metrics.jsonl": metrics,
    // Written last, though the rename makes the directory appear whole or not at all.
    "trainer_state.json": JSON.stringify(state) + "\n",
  });
  return name;
}

/**
 * Reads a checkpoint written by {@linkcode saveRunCheckpoint}.
 * @throws when a file is missing or malformed, or it belongs to another plan.
 */
export async function readRunCheckpoint(dir: string, planHash: string): Promise<RunCheckpoint> {
  const state = JSON.parse(await Deno.readTextFile(`${dir}/trainer_state.json`)) as TrainerState;
  if (state.format !== "giftwrap.trainer_state/1") {
    throw new Error(`trainer_state.json has format '${state.format}'`);
  }
  if (state.planHash !== planHash) {
    throw new Error(`it belongs to plan ${state.planHash}, not ${planHash}`);
  }
  const { weights } = await loadCheckpoint(dir, "[out, in]"); // read before a kernel set is chosen
  const { tensors } = decodeSafetensors(await Deno.readFile(`${dir}/optimizer.safetensors`));
  const moments = { m: {} as Record<string, Float32Array>, v: {} as Record<string, Float32Array> };
  for (const name of Object.keys(weights)) {
    const m = tensors[`m.${name}`];
    const v = tensors[`v.${name}`];
    if (!m || !v) throw new Error(`optimizer.safetensors lacks the moments of '${name}'`);
    moments.m[name] = m.data;
    moments.v[name] = v.data;
  }
  const metrics = await Deno.readTextFile(`${dir}/metrics.jsonl`);
  return { dir, state, weights, moments, metrics };
}

/** Puts a checkpoint's optimiser and trainer state into `run` (its policy is loaded already). */
export function restoreRun(run: Run, checkpoint: RunCheckpoint): void {
  const { state, moments } = checkpoint;
  run.optimizer.t = state.optimizer.t;
  for (const [name, m] of Object.entries(run.optimizer.m)) {
    tf.tidy(() => m.assign(tf.tensor(moments.m[name]!, m.shape, "float32")));
    const v = run.optimizer.v[name]!;
    tf.tidy(() => v.assign(tf.tensor(moments.v[name]!, v.shape, "float32")));
  }
  run.sampleRng = Rng.fromState(state.rng.sample);
  run.promptRng = Rng.fromState(state.rng.prompts);
  run.cursor = { order: [...state.cursor.order], next: state.cursor.next };
  run.faults = { ...state.faults };
}

/** Frozen tensors of the weights in a model checkpoint directory, in `layout` (a kernel set's). */
export async function loadFrozen(dir: string, layout: LinearLayout): Promise<Params> {
  const { weights } = await loadCheckpoint(dir, layout);
  return Object.fromEntries(
    Object.entries(weights).map(([name, w]) => [name, tf.tensor(w.data, w.shape, "float32")]),
  );
}

/**
 * The frozen policies a step compares against: the reference (π_ref) the plan names, and the
 * policy RL started from when the run tracks KL to it. Frozen means kept tensors, not variables
 * (tfjs variable names are global). With LoRA the policy RL started from is the base with the
 * adapters off: the base's own tensors, never a copy.
 *
 * @module
 */

import type { Plan } from "../../dsl/plan.ts";
import { tf } from "../engine/backend.ts";
import { weightsToTensors } from "../engine/model/checkpoint.ts";
import { loadModelDir } from "../engine/model/hf.ts";
import type { ModelConfig, Params } from "../engine/model/transformer.ts";
import type { LinearLayout } from "../engine/kernels/types.ts";
import { loadFrozen } from "./checkpoint.ts";
import type { RunContext } from "./context.ts";
import { RunSetupError } from "./setup.ts";
import type { Policy } from "./policy.ts";

/**
 * A reference from a checkpoint directory (`reference: { checkpoint }`), which must have the
 * policy's dimensions, released with `held`; null for any other reference.
 * @throws {RunSetupError} naming the directory and the mismatch.
 */
export async function checkpointReference(
  held: AsyncDisposableStack,
  plan: Plan,
  config: ModelConfig,
  baseUrl: string | URL,
  layout: LinearLayout,
): Promise<Params | null> {
  if (plan.reference.kind !== "checkpoint") return null;
  const path = decodeURIComponent(new URL(plan.reference.checkpoint!, baseUrl).pathname);
  let loaded;
  try {
    loaded = await loadModelDir(path, layout);
  } catch (e) {
    const why = e instanceof Deno.errors.NotFound ? "not found" : (e as Error).message;
    throw new RunSetupError(`Cannot load reference checkpoint '${path}': ${why}`);
  }
  // Every field either has: an architecture's own (Qwen2's q/k/v biases) is absent from another's.
  const keys = new Set([...Object.keys(config), ...Object.keys(loaded.config)]);
  const shown = (value: unknown) => value === undefined ? "absent" : JSON.stringify(value);
  for (const key of keys as Set<keyof ModelConfig>) {
    const same = JSON.stringify(loaded.config[key]) === JSON.stringify(config[key]);
    if (key !== "contextLength" && !same) {
      throw new RunSetupError(
        `Cannot use reference checkpoint '${path}': its ${key} is ${shown(loaded.config[key])}, ` +
          `the policy's is ${shown(config[key])}`,
      );
    }
  }
  const params = weightsToTensors(loaded.weights, false);
  held.defer(() => tf.dispose(Object.values(params)));
  return params;
}

/** The frozen policies of a run's steps (the `Run` fields of the same names). */
export interface References {
  /** π_ref: the checkpoint's, the policy RL started from ("initial"), or null. */
  reference: Params | null;
  /** The policy RL started from when KL to it is tracked (`klInitial`), else null. */
  initial: Params | null;
}

/**
 * The run's references, released with the run: the policy RL started from is `params` frozen
 * now, or, for a resumed run, `checkpoints/initial/` reloaded; with LoRA it is the base, the
 * policy's `params` with its adapters off. `fromCheckpoint` is the
 * {@linkcode checkpointReference}.
 */
export async function references(
  { plan, dir, held, setup }: RunContext,
  { params, adapters }: Policy,
  fromCheckpoint: Params | null,
  track: { klInitial?: boolean } = {},
): Promise<References> {
  const needsInitial = plan.reference.kind === "initial" || track.klInitial === true;
  if (adapters) {
    // Released with the policy: these are its own base tensors.
    const base = needsInitial ? params : null;
    return {
      reference: plan.reference.kind === "initial" ? base : fromCheckpoint,
      initial: track.klInitial ? base : null,
    };
  }
  const startPolicy = !needsInitial
    ? null
    : dir.checkpoint
    ? await loadFrozen(`${dir.checkpointsDir}/initial`, setup.backend.kernels.layout).catch((e) => {
      throw new RunSetupError(
        `Cannot resume '${dir.dir}': checkpoints/initial: ${(e as Error).message}`,
      );
    })
    : freeze(params);
  held.defer(() => tf.dispose(Object.values(startPolicy ?? {})));
  return {
    reference: plan.reference.kind === "initial" ? startPolicy : fromCheckpoint,
    initial: track.klInitial ? startPolicy : null,
  };
}

/** Frozen copies of `params`. */
function freeze(params: Params): Params {
  return Object.fromEntries(Object.entries(params).map(([n, p]) => [n, tf.keep(p.clone())]));
}

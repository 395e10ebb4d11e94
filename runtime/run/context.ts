/**
 * What the phases of a run share, once its directory is open.
 *
 * @module
 */

import type { Plan } from "../../dsl/plan.ts";
import type { ModelConfig } from "../engine/model/transformer.ts";
import type { Rng } from "../engine/random.ts";
import type { RunDirectory } from "./open.ts";
import type { Progress } from "./progress.ts";
import type { Setup } from "./setup.ts";

/** The plan, its model, the seed, the setup, the run directory, progress, and what to release. */
export interface RunContext {
  plan: Plan;
  config: ModelConfig;
  /** Every random stream forks from it by name, so adding one changes no other. */
  seed: Rng;
  setup: Setup;
  dir: RunDirectory;
  progress: Progress;
  /** Releases what the phases make, last made first, when the run ends or fails. */
  held: AsyncDisposableStack;
}

/**
 * The bench's front-door configuration on one group, for the webgpu tests that count or compare a
 * train step (webgpu_counters_test.ts, webgpu_dispatch_test.ts).
 *
 * @module
 */

import { tf } from "../../../runtime/engine/backend.ts";
import { disposeAdamW } from "../../../runtime/engine/optim.ts";
import { benchConfig } from "../../../bench/_configs.ts";
import type { WorkerConfig } from "../../../bench/_protocol.ts";
import type { State } from "../../../bench/_giftwrap_worker.ts";

/**
 * The bench's front-door configuration (recipes/addition_gift.ts's model, optimiser and GIFT
 * options) on its first group of 8 rows, instead of 16 groups, on webgpu: the same kernels, a step
 * in about a second on lavapipe.
 */
export function frontDoorGroup(): WorkerConfig {
  const full = benchConfig("front-door").setup;
  const rows = full.shapes.groupSize;
  const width = full.shapes.promptTokens + full.shapes.newTokens;
  return {
    ...full,
    shapes: { ...full.shapes, rows },
    ids: full.ids.slice(0, rows * width),
    rewards: full.rewards.slice(0, rows),
    backend: "webgpu",
  };
}

/** Frees what the bench worker's `setup` made. */
export function disposeState(s: State): void {
  tf.dispose([...Object.values(s.params), s.ids, s.mask, s.refLogp, s.rewards]);
  disposeAdamW(s.optimizer);
}

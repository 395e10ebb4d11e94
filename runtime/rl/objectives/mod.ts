/**
 * Training objectives: each a pure loss over one batch of sampled groups, behind one `Objective`
 * interface (see OBJECTIVES.md for the exact math). GIFT, and the baselines as presets over shared
 * axes (advantage, ratio and clip, KL, aggregation: `_axes.ts`). Use them directly:
 *
 * ```ts
 * import { objectives } from "./mod.ts";
 * // const { loss, metrics } = objectives.gift.loss(batch, { betaC: 1 });
 * // const { loss, metrics } = objectives.grpo.loss(batch, { beta: 0.04 });
 * ```
 *
 * @module
 */

import { dapo } from "./dapo.ts";
import { drGrpo } from "./dr_grpo.ts";
import { gift } from "./gift.ts";
import { grpo } from "./grpo.ts";
import { gspo } from "./gspo.ts";
import { onlineDpo } from "./online_dpo.ts";
import { rloo } from "./rloo.ts";
import { una } from "./una.ts";

export * from "./types.ts";
export { gift, type GiftOptions } from "./gift.ts";
export { grpo, type GrpoOptions } from "./grpo.ts";
export { drGrpo, type DrGrpoOptions } from "./dr_grpo.ts";
export { dapo, type DapoOptions } from "./dapo.ts";
export { gspo, type GspoOptions } from "./gspo.ts";
export { rloo, type RlooOptions } from "./rloo.ts";
export { onlineDpo, type OnlineDpoOptions } from "./online_dpo.ts";
export { una, type UnaOptions } from "./una.ts";
export { stopGradient } from "./_group.ts";

/** Every objective by its recipe kind: `objectives.gift.loss(batch, options)`. */
export const objectives = { gift, grpo, drGrpo, dapo, gspo, rloo, onlineDpo, una } as const;

/**
 * Training objectives: each a pure loss over one batch of sampled groups, behind one `Objective`
 * interface (see OBJECTIVES.md for the exact math). Use them directly:
 *
 * ```ts
 * import { objectives } from "./mod.ts";
 * // const { loss, metrics } = objectives.gift.loss(batch, { betaC: 1 });
 * ```
 *
 * @module
 */

import { gift } from "./gift.ts";

export * from "./types.ts";
export { gift, type GiftOptions } from "./gift.ts";
export { stopGradient } from "./_group.ts";

/** Every objective by name: `objectives.gift.loss(batch, options)`. */
export const objectives = { gift } as const;

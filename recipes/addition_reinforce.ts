/**
 * An objective of your own: the front door's task and budget, trained with REINFORCE from
 * `recipes/objectives/reinforce.ts` instead of a preset. The module implements the runtime's
 * `Objective` contract; the train step is the same.
 *
 *   deno task plan recipes/addition_reinforce.ts
 *   deno task run recipes/addition_reinforce.ts
 */

import frontDoor from "./addition_gift.ts";
import { customObjective, recipe } from "../mod.ts";

export default recipe({
  ...frontDoor,
  name: "addition-reinforce",
  reference: "none", // REINFORCE reads no reference
  objective: customObjective("./objectives/reinforce.ts", {
    export: "reinforce",
    reads: { reference: false },
  }),
  miniBatches: 1,
});

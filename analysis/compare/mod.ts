/**
 * Comparing objectives: a recipe trained once per objective and seed (optionally after tuning
 * the learning rate per objective), in parallel child processes, summarized in `summary.json`
 * and drawn in a self-contained `report.html`. What `deno task compare` runs.
 *
 * Nothing here loads TensorFlow.js: the runs are `giftwrap run` child processes.
 *
 * @module
 */

export * from "./compare.ts";
export * from "./jobs.ts";
export * from "./metrics.ts";
export * from "./options.ts";
export * from "./recipes.ts";
export * from "./report.ts";
export * from "./stats.ts";
export * from "./summary.ts";
export type { Chart, Point } from "../_charts.ts";

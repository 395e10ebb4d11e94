/**
 * The runtime (`giftwrap/runtime`): executes a compiled plan on TensorFlow.js. Importing it loads
 * TensorFlow.js; the recipe language (`mod.ts`) never does. Here are running a plan, the backends,
 * the Llama-style model and its checkpoints, sampling and evaluation, the errors a caller catches,
 * exporting a plan to verl, and the objectives: the presets, the `Objective` contract, and the building blocks an objective
 * of your own composes (advantages, ratios and clipping, the k3 KL, aggregation).
 *
 * @example
 * ```ts
 * import { compile } from "./mod.ts";
 * import { execute } from "./runtime/mod.ts";
 * import base from "./recipes/addition_gift.ts";
 *
 * const result = await execute(compile({ ...base, steps: 20 }), { runsDir: "runs" });
 * console.log(result.accuracyBefore, result.accuracyAfter, result.dir);
 * ```
 *
 * @module
 */

import type { Plan } from "../dsl/plan.ts";
import { execute as executePlan, type ExecuteOptions, type RunResult } from "./run/execute.ts";

// Running a plan (`execute`, below).
export { type ExecuteOptions, type RunResult, RunSetupError } from "./run/execute.ts";
export { NonFiniteUpdateError, type StepMetrics } from "./rl/train_step.ts";
export { RunWriteError } from "./run/run_dir.ts";
export { OutOfMemoryError } from "./run/out_of_memory.ts";
export { lineProgress, type Progress } from "./run/progress.ts";

// Beyond one machine: a plan exported for verl on Ray (docs/verl.md).
export {
  checkVerlExport,
  ExportError,
  exportVerl,
  type VerlExport,
  type VerlExportOptions,
} from "./export/verl.ts";
export { type Override, VERL_COMMIT, verlConfig } from "./export/verl_config.ts";
export { type VerlObjective, verlObjective } from "./export/verl_objective.ts";
export { type VerlData, type VerlRow, verlRows, writeVerlData } from "./export/verl_data.ts";

// Backends.
export { type BackendInfo, BackendUnavailableError, useBackend } from "./engine/backend.ts";
export type { KernelSet } from "./engine/kernels/types.ts";

// The model and its checkpoints.
export {
  forward,
  initParams,
  type ModelConfig,
  modelConfig,
  type Params,
  tokenLogProbs,
} from "./engine/model/transformer.ts";
export {
  loadCheckpoint,
  type LoadedCheckpoint,
  saveCheckpoint,
  weightsToTensors,
} from "./engine/model/checkpoint.ts";
export {
  type CharTokenizer,
  charTokenizer,
  type DecodeOptions,
  type EncodeOptions,
  type Tokenizer,
} from "./engine/model/tokenizer.ts";
export { type HfConfig, type LoadedHfModel, loadHfModel, readHfConfig } from "./engine/model/hf.ts";
export { type SavedHfModel, saveHfModel, type SaveHfModelOptions } from "./engine/model/hf_save.ts";
export { type HfTokenizer, loadHfTokenizer } from "./engine/model/hf_tokenizer.ts";
export {
  disposeLoraAdapters,
  initLoraAdapters,
  type LoadedLoraAdapter,
  loadLoraAdapter,
  type LoraAdapters,
  type LoraConfig,
  loraConfig,
  mergeLora,
  saveLoraAdapter,
} from "./engine/model/lora.ts";
// What compile() needs of a recipe's Hugging Face model directory, read before it (pure) runs.
export { modelSha256, type ResolvedModels, resolveModels } from "./resolve.ts";
export {
  type ChatMessage,
  type ChatPrompt,
  type ChatTemplate,
  chatTemplate,
  type ChatTemplateOptions,
  renderChat,
  type RenderChatOptions,
} from "./engine/model/chat_template.ts";
export { Rng } from "./engine/random.ts";

// Generating text from a model directory (`deno task generate`).
export { generate, GenerateError, type GenerateOptions, type Generation } from "./generate.ts";

// Sampling and evaluation.
export { type Completions, sampleCompletions, type SampleOptions } from "./rl/sample.ts";
export { type EvalResult, evaluate } from "./rl/evaluate.ts";

// What data and rewards throw.
export { TaskError } from "./data/task.ts";
export { DataError } from "./data/jsonl.ts";
export { RewardError } from "./rl/rewards/mod.ts";
export { DynamicSamplingError } from "./rl/groups.ts";

// The objectives: the presets, their contract, and the blocks they are built from.
export {
  type AdvantageAxis,
  advantages,
  aggregate,
  type Aggregation,
  checkBatch,
  clipFractions,
  clippedSurrogate,
  groupMean,
  groupStd,
  klK3,
  type Objective,
  type ObjectiveBatch,
  type ObjectiveResult,
  objectives,
  type RatioAxis,
  sequenceLengths,
  sequenceRatio,
  sequenceSum,
  standardize,
  type StandardizeOptions,
  stopGradient,
  tokenRatio,
} from "./rl/objectives/mod.ts";

/**
 * Runs a plan to the end (or until `options.signal` asks it to stop) and returns what it
 * measured, writing the run directory's `report.html` at each checkpoint and at the end unless
 * `options.report` says otherwise.
 *
 * @example
 * ```ts
 * const result = await execute(compile(recipe), { runsDir: "runs" });
 * console.log(result.accuracyBefore, result.accuracyAfter, result.dir);
 * ```
 */
export function execute(plan: Plan, options: ExecuteOptions = {}): Promise<RunResult> {
  return executePlan(plan, { ...options, report: options.report ?? writeRunReport });
}

/** `report.html` as `analysis/report/` draws it, loaded on first use: the run does not need it. */
async function writeRunReport(dir: string): Promise<string> {
  const { writeReport } = await import("../analysis/report/mod.ts");
  return await writeReport(dir);
}

/**
 * The runtime: executes a compiled plan on TensorFlow.js (backends, the Llama-style model, KV-cache
 * sampling, rewards, objectives, AdamW, the training step, evaluation and the run directory).
 * Importing it loads TensorFlow.js; the recipe language (`dsl/`) never does.
 *
 * @module
 */

export * from "./backend.ts";
export * from "./execute.ts";
export * from "./objectives/mod.ts";
export { type EvalResult, evaluate } from "./evaluate.ts";
export { type Completions, sampleCompletions, type SampleOptions } from "./sample.ts";
export {
  NonFiniteUpdateError,
  type Run,
  type SampleGroup,
  type StepMetrics,
  trainStep,
} from "./train.ts";
export { type RunInfo, RunWriteError } from "./run_dir.ts";
export {
  duration,
  lineProgress,
  pct,
  type Phase,
  type Progress,
  type ProgressUpdate,
} from "./progress.ts";
export {
  forward,
  initParams,
  type ModelConfig,
  modelConfig,
  type Params,
  tokenLogProbs,
} from "./model/transformer.ts";
export { loadCheckpoint, saveCheckpoint, weightsToTensors } from "./model/checkpoint.ts";
export { charTokenizer } from "./model/tokenizer.ts";
export { Rng } from "./random.ts";
export { TaskError } from "./task.ts";
export { DynamicSamplingError } from "./groups.ts";
export { DataError } from "./data/jsonl.ts";
export {
  createScorer,
  RewardError,
  scoreSources,
  type SourceOptions,
  type SourceScorer,
} from "./rewards/mod.ts";
export type { BatchScorer, RewardFn, Sample } from "./rewards/types.ts";
export { rewardModelScorer, saveRewardModel } from "./model/reward_model.ts";

/**
 * The runtime: executes a compiled plan on TensorFlow.js (backends, the Llama-style model, KV-cache
 * sampling, rewards, objectives, AdamW, the training step, evaluation and the run directory).
 * Importing it loads TensorFlow.js; the recipe language (`dsl/`) never does.
 *
 * @module
 */

export * from "./engine/backend.ts";
export * from "./run/execute.ts";
export * from "./rl/objectives/mod.ts";
export { type EvalResult, evaluate } from "./rl/evaluate.ts";
export { type Completions, sampleCompletions, type SampleOptions } from "./rl/sample.ts";
export {
  NonFiniteUpdateError,
  type Run,
  type SampleGroup,
  type StepMetrics,
  trainStep,
} from "./rl/train_step.ts";
export { type RunInfo, RunWriteError } from "./run/run_dir.ts";
export { OutOfMemoryError } from "./run/out_of_memory.ts";
export {
  duration,
  lineProgress,
  pct,
  type Phase,
  type Progress,
  type ProgressUpdate,
} from "./run/progress.ts";
export {
  forward,
  initParams,
  type ModelConfig,
  modelConfig,
  type Params,
  tokenLogProbs,
} from "./engine/model/transformer.ts";
export { loadCheckpoint, saveCheckpoint, weightsToTensors } from "./engine/model/checkpoint.ts";
export { charTokenizer } from "./engine/model/tokenizer.ts";
export { Rng } from "./engine/random.ts";
export { TaskError } from "./data/task.ts";
export { DynamicSamplingError } from "./rl/groups.ts";
export { DataError } from "./data/jsonl.ts";
export {
  createScorer,
  RewardError,
  scoreSources,
  type SourceOptions,
  type SourceScorer,
} from "./rl/rewards/mod.ts";
export type { BatchScorer, RewardFn, Sample } from "./rl/rewards/types.ts";
export { rewardModelScorer, saveRewardModel } from "./rl/rewards/reward_model.ts";

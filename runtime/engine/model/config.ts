/**
 * The model's dimensions and its weights by name: what the model, the kernel sets and the
 * checkpoints share, in a module of its own so that none of them imports another for a type.
 *
 * @module
 */

import type { tf } from "../tf.ts";

export { type ModelConfig, modelConfig } from "./model_config.ts";

/**
 * Model weights by HF name. Variables while training, plain kept tensors for a frozen copy.
 *
 * @example
 * ```ts
 * const params: Params = weightsToTensors((await loadCheckpoint(dir)).weights, false);
 * params["model.embed_tokens.weight"]?.shape; // [vocab, dModel]
 * ```
 */
export type Params = Record<string, tf.Tensor>;

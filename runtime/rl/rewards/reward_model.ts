/**
 * A reward model: the runtime's transformer with a scalar head, Hugging Face's
 * `LlamaForSequenceClassification` with one label. It reads `<bos>` prompt completion `<eos>` and
 * scores the final-norm hidden state of the last token with `score.weight` ([1, d]).
 *
 * A checkpoint is a policy checkpoint directory (`model.safetensors`, `config.json`) whose weights
 * also hold `score.weight` and whose config says `"architectures": ["LlamaForSequenceClassification"]`.
 *
 * @module
 */

import { tf } from "../../engine/backend.ts";
import type { BatchScorer, Sample } from "./types.ts";
import {
  checkpointConfig,
  loadCheckpoint,
  toTensorData,
  weightsToTensors,
  writeDirAtomic,
} from "../../engine/model/checkpoint.ts";
import { encodeSafetensors, readSafetensorsFile } from "../../engine/model/safetensors.ts";
import { charTokenizer } from "../../engine/model/tokenizer.ts";
import { forward, type ModelConfig, type Params } from "../../engine/model/transformer.ts";
import type { KernelSet } from "../../engine/kernels/types.ts";

/** The name of the scalar head in `model.safetensors`, as in Hugging Face. */
export const SCORE_WEIGHT = "score.weight";

/**
 * Scores of `ids` ([B, T] int32, left-padded by `padding[b]`) with the kernel set `kernels`: the
 * head applied to the hidden state of the last position. [B]
 */
export function rewardScores(
  kernels: KernelSet,
  params: Params,
  config: ModelConfig,
  ids: tf.Tensor2D,
  padding: readonly number[],
): tf.Tensor1D {
  const time = ids.shape[1];
  const head = params[SCORE_WEIGHT];
  if (!head) throw new Error(`The reward model has no '${SCORE_WEIGHT}'`);
  const { hidden } = forward(kernels, params, config, ids, { logitsFrom: time - 1, padding }); // [B, 1, d]
  const last = tf.reshape(hidden, [ids.shape[0], config.dModel]); // [B, d]
  return tf.reshape(tf.matMul(last, tf.transpose(head)), [-1]) as tf.Tensor1D; // [B]
}

/** Saves a reward model: a policy checkpoint plus `score.weight`, marked as a classifier. */
export async function saveRewardModel(
  dir: string,
  params: Params,
  config: ModelConfig,
  alphabet: string,
): Promise<void> {
  const tensors = await toTensorData(params);
  const meta = { ...checkpointConfig(config, alphabet), num_labels: 1 };
  await writeDirAtomic(dir, {
    "model.safetensors": encodeSafetensors(tensors, { format: "pt" }),
    "config.json": JSON.stringify(
      { ...meta, architectures: ["LlamaForSequenceClassification"] },
      null,
      2,
    ) + "\n",
  });
}

/**
 * A scorer reading the reward model at `dir`: it scores `<bos>` + prompt + completion + `<eos>`
 * in batches of `batchSize`, with the kernel set `kernels` (`useBackend()`'s). Errors (a missing directory, a policy checkpoint without a head, a
 * character outside the model's tokenizer) are one line naming the checkpoint.
 *
 * @example
 * ```ts
 * const scorer = await rewardModelScorer("runs/rm/checkpoints/final", 64, kernels);
 * const [score] = await scorer.score([{ prompt: "1+1=", completion: "2", answer: "2", row: {}, tokens: 2, truncated: false }]);
 * ```
 */
export async function rewardModelScorer(
  dir: string,
  batchSize: number,
  kernels: KernelSet,
): Promise<BatchScorer> {
  let loaded;
  try {
    loaded = await loadCheckpoint(dir, kernels.layout);
  } catch (e) {
    const why = e instanceof Deno.errors.NotFound ? "not found" : (e as Error).message;
    throw new Error(`reward model ${dir}: cannot load: ${why}`);
  }
  const raw = (await readSafetensorsFile(`${dir}/model.safetensors`)).tensors;
  const head = raw[SCORE_WEIGHT];
  if (!head || head.shape.join() !== `1,${loaded.config.dModel}`) {
    throw new Error(
      `reward model ${dir}: '${SCORE_WEIGHT}' of shape [1, ${loaded.config.dModel}] is missing; ` +
        "a policy checkpoint has no scalar head",
    );
  }
  const { config } = loaded;
  const tokenizer = charTokenizer(loaded.alphabet);
  const eos = tokenizer.eosId!;
  const pad = tokenizer.padId!;
  const params: Params = {
    ...weightsToTensors(loaded.weights, false),
    [SCORE_WEIGHT]: tf.tensor(head.data, head.shape, "float32"),
  };
  return {
    async score(samples: readonly Sample[]): Promise<(number | Error)[]> {
      const out: (number | Error)[] = new Array(samples.length);
      for (let start = 0; start < samples.length; start += batchSize) {
        const chunk = samples.slice(start, start + batchSize);
        const encoded: (number[] | Error)[] = chunk.map((s) => {
          try {
            return [...tokenizer.encode(s.prompt + s.completion, { addSpecialTokens: true }), eos];
          } catch (e) {
            return new Error(`reward model ${dir}: ${(e as Error).message}`);
          }
        });
        const good = encoded.filter((e): e is number[] => !(e instanceof Error));
        if (good.length > 0) {
          const width = Math.max(...good.map((e) => e.length));
          if (width > config.contextLength) {
            throw new Error(
              `reward model ${dir}: a sample of ${width} tokens exceeds its context length ` +
                `${config.contextLength}`,
            );
          }
          const padding = good.map((e) => width - e.length);
          const ids = good.map((e, i) => [...new Array<number>(padding[i]!).fill(pad), ...e]);
          const scores = tf.tidy(() =>
            rewardScores(
              kernels,
              params,
              config,
              tf.tensor2d(ids, [good.length, width], "int32"),
              padding,
            )
          );
          const values = (await scores.data()) as Float32Array;
          scores.dispose();
          let k = 0;
          encoded.forEach((e, i) => {
            out[start + i] = e instanceof Error ? e : values[k++]!;
          });
        } else {
          encoded.forEach((e, i) => (out[start + i] = e as Error));
        }
      }
      return out;
    },
    close() {
      tf.dispose(Object.values(params));
    },
  };
}

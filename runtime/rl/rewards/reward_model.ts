/**
 * A reward model: a transformer with a scalar head, Hugging Face's `*ForSequenceClassification`
 * with one label, scoring the final-norm hidden state of a sample's last token with
 * `score.weight` ([1, d]). Two kinds of directory hold one:
 *
 * - a giftwrap checkpoint (its `config.json` has a `giftwrap` section, its character tokenizer's
 *   alphabet) whose weights also hold `score.weight`: it reads `<bos>` prompt completion `<eos>`;
 * - a Hugging Face directory of a supported architecture (`llama`, `mistral`, `qwen2`, `qwen3`)
 *   as transformers saves `LlamaForSequenceClassification` or `Qwen2ForSequenceClassification`
 *   (the base model's weights and `score.weight`, no `lm_head`), with its own tokenizer. A
 *   tokenizer with a chat template reads the sample as a conversation, the prompt the user's turn
 *   and the completion the assistant's (as TRL's reward models read conversations), encoded as the
 *   template wrote it; one without reads prompt + completion with its special tokens. The score is
 *   read at the last token that is not `config.json`'s `pad_token_id` (transformers' rule), or at
 *   the last token when it names none.
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
import { loadHfModel, SCORE_HEAD } from "../../engine/model/hf.ts";
import { type HfTokenizer, loadHfTokenizer } from "../../engine/model/hf_tokenizer.ts";
import { renderChat } from "../../engine/model/chat_template.ts";
import { readJsonFile } from "../../engine/model/_regular_file.ts";
import { forward, type ModelConfig, type Params } from "../../engine/model/transformer.ts";
import type { KernelSet } from "../../engine/kernels/types.ts";

/** The name of the scalar head in `model.safetensors`, as in Hugging Face. */
export const SCORE_WEIGHT = SCORE_HEAD;

/**
 * Scores of `ids` ([B, T] int32, left-padded by `padding[b]`) with the kernel set `kernels`: the
 * head applied to the hidden state of position `at[b]` of each row, the last position unless
 * given. [B]
 *
 * @example
 * ```ts
 * const scores = tf.tidy(() => rewardScores(kernels, params, config, ids, [0, 2])); // [2]
 * ```
 */
export function rewardScores(
  kernels: KernelSet,
  params: Params,
  config: ModelConfig,
  ids: tf.Tensor2D,
  padding: readonly number[],
  at?: readonly number[],
): tf.Tensor1D {
  const [rows, time] = ids.shape;
  const head = params[SCORE_WEIGHT];
  if (!head) throw new Error(`The reward model has no '${SCORE_WEIGHT}'`);
  const positions = at ?? new Array<number>(rows).fill(time - 1);
  const from = Math.min(...positions);
  // The output projection runs on the positions from `from` on only; its logits go unused. A
  // classifier has no lm_head, so the embedding stands in for it (tied) whatever config says.
  const { hidden } = forward(kernels, params, { ...config, tiedEmbeddings: true }, ids, {
    logitsFrom: from,
    padding,
  }); // [B, T − from, d]
  const width = time - from;
  const flat = tf.reshape(hidden, [rows * width, config.dModel]); // [B·(T − from), d]
  const index = tf.tensor1d(positions.map((p, b) => b * width + p - from), "int32"); // [B]
  const last = tf.gather(flat, index); // [B, d]
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

/** A sample as the reward model reads it: its ids, and the position whose score counts. */
interface Encoded {
  ids: number[];
  at: number;
}

/**
 * A scorer reading the reward model at `dir`, a giftwrap checkpoint or a Hugging Face directory
 * (see the module doc), in batches of `batchSize`, with the kernel set `kernels` (`useBackend()`'s).
 * Errors (a missing directory, a checkpoint without a head, a sample its tokenizer cannot read)
 * are one line naming the checkpoint.
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
  let raw: unknown;
  try {
    raw = await readJsonFile(`${dir}/config.json`);
  } catch (e) {
    const why = e instanceof Deno.errors.NotFound ? "not found" : (e as Error).message;
    throw new Error(`reward model ${dir}: cannot load: ${why}`);
  }
  const giftwrap = typeof raw === "object" && raw !== null && "giftwrap" in raw;
  return giftwrap
    ? await charModelScorer(dir, batchSize, kernels)
    : await hfModelScorer(dir, batchSize, kernels, raw as Record<string, unknown>);
}

/** A giftwrap checkpoint with a head: `<bos>` prompt completion `<eos>`, scored at the end. */
async function charModelScorer(
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
  const params: Params = {
    ...weightsToTensors(loaded.weights, false),
    [SCORE_WEIGHT]: tf.tensor(head.data, head.shape, "float32"),
  };
  return batchScorer(dir, batchSize, kernels, params, config, tokenizer.padId!, (sample) => {
    const ids = [
      ...tokenizer.encode(sample.prompt + sample.completion, { addSpecialTokens: true }),
      eos,
    ];
    return { ids, at: ids.length - 1 };
  });
}

/**
 * A Hugging Face sequence classifier with its own tokenizer: the conversation (or the text) as
 * its tokenizer encodes it, scored at the last token that is not `config.json`'s `pad_token_id`.
 */
async function hfModelScorer(
  dir: string,
  batchSize: number,
  kernels: KernelSet,
  raw: Record<string, unknown>,
): Promise<BatchScorer> {
  let model;
  let tokenizer: HfTokenizer;
  try {
    model = await loadHfModel(dir, kernels.layout, { head: "score" });
    tokenizer = await loadHfTokenizer(dir);
  } catch (e) {
    const message = (e as Error).message;
    const why = e instanceof Deno.errors.NotFound ? `not found (${message})` : message;
    throw new Error(`reward model ${dir}: cannot load: ${why.split("\n")[0]}`);
  }
  const { config } = model;
  if (tokenizer.vocabSize > config.vocab) {
    throw new Error(
      `reward model ${dir}: its tokenizer has ${tokenizer.vocabSize} ids but config.json's ` +
        `vocab_size is ${config.vocab}`,
    );
  }
  // transformers reads the score where the ids stop being config.pad_token_id (right padding).
  const padTokenId = Number.isInteger(raw["pad_token_id"]) ? raw["pad_token_id"] as number : null;
  const params = weightsToTensors(model.weights, false);
  return batchScorer(dir, batchSize, kernels, params, config, tokenizer.padId ?? 0, (sample) => {
    const ids = tokenizer.chatTemplate === null
      ? tokenizer.encode(sample.prompt + sample.completion, { addSpecialTokens: true })
      : tokenizer.encode(
        renderChat(tokenizer.chatTemplate, {
          messages: [
            { role: "user", content: sample.prompt },
            { role: "assistant", content: sample.completion },
          ],
        }, { addGenerationPrompt: false }),
      );
    let at = ids.length - 1;
    if (padTokenId !== null) {
      while (at > 0 && ids[at] === padTokenId) at--;
    }
    return { ids, at };
  });
}

/**
 * Scores samples in batches of `batchSize`: each encoded by `encode` (an Error it throws is that
 * sample's score), left-padded with `pad` to the batch's longest, scored at its position.
 */
function batchScorer(
  dir: string,
  batchSize: number,
  kernels: KernelSet,
  params: Params,
  config: ModelConfig,
  pad: number,
  encode: (sample: Sample) => Encoded,
): BatchScorer {
  return {
    async score(samples: readonly Sample[]): Promise<(number | Error)[]> {
      const out: (number | Error)[] = new Array(samples.length);
      for (let start = 0; start < samples.length; start += batchSize) {
        const chunk = samples.slice(start, start + batchSize);
        const encoded: (Encoded | Error)[] = chunk.map((s) => {
          try {
            return encode(s);
          } catch (e) {
            return new Error(`reward model ${dir}: ${(e as Error).message}`);
          }
        });
        const good = encoded.filter((e): e is Encoded => !(e instanceof Error));
        if (good.length > 0) {
          const width = Math.max(...good.map((e) => e.ids.length));
          if (width > config.contextLength) {
            throw new Error(
              `reward model ${dir}: a sample of ${width} tokens exceeds its context length ` +
                `${config.contextLength}`,
            );
          }
          const padding = good.map((e) => width - e.ids.length);
          const ids = good.map((e, i) => [...new Array<number>(padding[i]!).fill(pad), ...e.ids]);
          const scores = tf.tidy(() =>
            rewardScores(
              kernels,
              params,
              config,
              tf.tensor2d(ids, [good.length, width], "int32"),
              padding,
              good.map((e, i) => padding[i]! + e.at),
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

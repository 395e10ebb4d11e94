/**
 * Sampling completions with a KV cache: one prefill call over the prompts, then one call per new
 * token on the last token only, through the kernel set's decoder (without tfjs where OpenBLAS runs
 * the products, else the model's `forward()`). Logits come back to JavaScript each step and tokens
 * are drawn there (`sample_token.ts`), one uniform per row and token from the caller's `Rng`, so a
 * seed gives the same completions on every backend whose logits agree.
 *
 * Completions are right-padded with `<pad>` to `maxNewTokens`, so every batch has the plan's
 * shapes. A row ends at `<eos>` (kept, masked in) or when its text ends with a stop string.
 *
 * @module
 */

import { EOS, PAD } from "../engine/model/tokenizer.ts";
import type { CharTokenizer } from "../engine/model/tokenizer.ts";
import type { ModelConfig, Params } from "../engine/model/config.ts";
import type { KernelSet } from "../engine/kernels/types.ts";
import type { Rng } from "../engine/random.ts";
import { sampleRow, type TokenSampling } from "./sample_token.ts";

/**
 * How completions are drawn.
 *
 * @example
 * ```ts
 * const options: SampleOptions = { temperature: 0.7, topK: 0, topP: 0.95, maxNewTokens: 8 };
 * ```
 */
export interface SampleOptions extends TokenSampling {
  /** C: every completion is padded to this many tokens. */
  maxNewTokens: number;
  /** Strings that end a completion (kept in it). @default [] */
  stop?: readonly string[];
  /** P: prompts are left-padded with `<pad>` to this many tokens. @default the longest prompt */
  promptLength?: number;
}

/**
 * A batch of completions, flat row-major arrays.
 *
 * @example
 * ```ts
 * const out: Completions = await sampleCompletions(kernels, params, config, tok, prompts, options, rng);
 * out.texts.forEach((text, i) => console.log(text, out.lengths[i], out.truncated[i]));
 * ```
 */
export interface Completions {
  /** B */
  rows: number;
  /** P: tokens per prompt, `<bos>` and left padding included. */
  promptLength: number;
  /** [B] `<pad>` tokens left of each prompt. */
  padding: number[];
  /** C */
  newTokens: number;
  /** [B, P + C] prompt then completion ids, `<pad>` after a completion's end. */
  ids: Int32Array;
  /** [B, C] 1 on completion tokens (the closing `<eos>` included), 0 on padding. */
  mask: Float32Array;
  /** [B, C] log-probability of each sampled token under the tempered policy; 0 on padding. */
  logp: Float32Array;
  /** Completion texts (no special tokens). */
  texts: string[];
  /** Completion lengths in tokens. */
  lengths: number[];
  /** Whether each completion hit `maxNewTokens` without `<eos>` or a stop string. */
  truncated: boolean[];
  /** [B, C] entropy (nats) of the tempered distribution each token was drawn from; 0 on padding. */
  entropy: Float32Array;
}

/** Entropy in nats of softmax(row / temperature) for a row of a flat [B, V] buffer. */
function rowEntropy(buffer: Float32Array, offset: number, vocab: number, temperature: number) {
  const scale = temperature > 0 ? 1 / temperature : 1;
  let max = -Infinity;
  for (let v = 0; v < vocab; v++) max = Math.max(max, buffer[offset + v]! * scale);
  let sum = 0;
  let weighted = 0;
  for (let v = 0; v < vocab; v++) {
    const z = buffer[offset + v]! * scale - max;
    const e = Math.exp(z);
    sum += e;
    weighted += e * z;
  }
  return Math.log(sum) - weighted / sum; // H = log Σe^z − Σ p·z
}

/**
 * Samples one completion for each prompt row (`prompts`: token ids, `<bos>` first; shorter ones
 * are left-padded with `<pad>`) with the kernel set's decoder. Repeat a prompt G times to sample a
 * group.
 *
 * @example
 * ```ts
 * const { kernels } = await useBackend("wasm");
 * const out = await sampleCompletions(kernels, params, config, tok, prompts, {
 *   temperature: 1, topK: 0, topP: 1, maxNewTokens: 4,
 * }, rng.fork("sample"));
 * out.texts[0]; // "42"
 * ```
 */
export async function sampleCompletions(
  kernels: KernelSet,
  params: Params,
  config: ModelConfig,
  tokenizer: CharTokenizer,
  prompts: readonly (readonly number[])[],
  options: SampleOptions,
  rng: Rng,
): Promise<Completions> {
  const rows = prompts.length;
  const longest = Math.max(0, ...prompts.map((p) => p.length));
  const promptLength = options.promptLength ?? longest;
  if (longest > promptLength) {
    throw new Error(
      `Cannot sample: a prompt of ${longest} tokens is longer than the ${promptLength} allowed`,
    );
  }
  const padding = prompts.map((p) => promptLength - p.length);
  const C = options.maxNewTokens;
  const width = promptLength + C;
  const ids = new Int32Array(rows * width); // [B, P + C], <pad> = 0
  prompts.forEach((p, b) => ids.set(p, b * width + padding[b]!));
  const mask = new Float32Array(rows * C);
  const logp = new Float32Array(rows * C);
  const entropy = new Float32Array(rows * C);
  const lengths = new Array<number>(rows).fill(0);
  const done = new Array<boolean>(rows).fill(false);
  const stop = options.stop ?? [];
  const { vocab } = config;

  const promptIds = Int32Array.from(
    { length: rows * promptLength },
    (_, i) => ids[Math.floor(i / promptLength) * width + (i % promptLength)]!,
  );
  const model = await kernels.decoder(
    params,
    config,
    rows,
    padding,
    promptLength + Math.max(C - 1, 0),
  );
  try {
    let input = promptIds;
    for (let t = 0; t < C && done.includes(false); t++) {
      const active = done.flatMap((d, b) => d ? [] : [b]); // finished rows need no logits
      const buffer = await model.next(input, t === 0 ? promptLength : 1, active); // [B, V]
      const nextTokens = new Int32Array(rows).fill(PAD);
      for (let b = 0; b < rows; b++) {
        if (done[b]) continue;
        const { token, logp: lp } = sampleRow(buffer, b, vocab, options, rng);
        nextTokens[b] = token;
        ids[b * width + promptLength + t] = token;
        mask[b * C + t] = 1;
        logp[b * C + t] = lp;
        entropy[b * C + t] = rowEntropy(buffer, b * vocab, vocab, options.temperature);
        lengths[b] = t + 1;
        if (token === EOS) done[b] = true;
        else if (stop.length > 0) {
          const text = tokenizer.decode(ids.subarray(b * width + promptLength, b * width + width));
          if (stop.some((s) => text.endsWith(s))) done[b] = true;
        }
      }
      input = nextTokens;
    }
  } finally {
    model.dispose();
  }
  const texts: string[] = [];
  const truncated: boolean[] = [];
  for (let b = 0; b < rows; b++) {
    texts.push(tokenizer.decode(ids.subarray(b * width + promptLength, (b + 1) * width)));
    truncated.push(!done[b]);
  }
  return {
    rows,
    promptLength,
    padding,
    newTokens: C,
    ids,
    mask,
    logp,
    texts,
    lengths,
    truncated,
    entropy,
  };
}

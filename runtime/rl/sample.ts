/**
 * Sampling completions with a KV cache: one prefill call over the prompts, then one call per new
 * token on the last token only, through the kernel set's decoder (without tfjs where OpenBLAS runs
 * the products, else the model's `forward()`). Two ways to draw:
 *
 * - on the host (cpu, wasm, tensorflow; webgpu with `GIFTWRAP_DEVICE_DRAWS=0`): the logits come
 *   back to JavaScript each step and tokens are drawn there (`sample_token.ts`), one uniform per
 *   row and token from the caller's `Rng`, so a seed gives the same completions on every backend
 *   whose logits agree;
 * - on the device (webgpu: `sample_device.ts`, top-k and top-p included): each step's tokens are
 *   drawn where the logits are, with uniforms of Philox4x32-10 under a key taken from the caller's
 *   `Rng` (one per call), and feed the next step there; the host reads the draws every
 *   {@linkcode SampleOptions.readEvery} tokens instead of the logits every token (on webgpu each
 *   read waits ≥ 10 ms). A seed gives the same completions run after run on a given device, and
 *   the same whatever `readEvery` is; not the host path's, which draws from other uniforms.
 *
 * Both record the same things the same way: stop ids, stop strings, masks, lengths, texts.
 *
 * Completions are right-padded with `<pad>` to `maxNewTokens`, so every batch has the plan's
 * shapes. A row ends at `<eos>` (kept, masked in) or when its text ends with a stop string.
 *
 * @module
 */

import { completionStopIds, type Tokenizer } from "../engine/model/tokenizer.ts";
import type { ModelConfig, Params } from "../engine/model/config.ts";
import type { Decoder, KernelSet } from "../engine/kernels/types.ts";
import type { Rng } from "../engine/random.ts";
import { tf } from "../engine/tf.ts";
import { sampleRow, type TokenSampling } from "./sample_token.ts";
import { emptyTensor } from "../engine/kernels/webgpu_program.ts";
import { drawOnDevice, drawsOnDevice, readDraws } from "./sample_device.ts";

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
  /**
   * K: where tokens are drawn on the device (webgpu), the host reads them back every K tokens (to
   * find each row's end) instead of the logits every token. It changes no result, only how often
   * the host waits on the device and how many tokens past the last row's end are computed.
   * @default 16
   */
  readEvery?: number;
}

/** {@linkcode SampleOptions.readEvery}'s default. */
export const READ_EVERY = 16;

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
  tokenizer: Tokenizer,
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
  const pad = tokenizer.padId ?? 0; // a padded position is masked: which id fills it is moot
  const ids = new Int32Array(rows * width).fill(pad); // [B, P + C]
  prompts.forEach((p, b) => ids.set(p, b * width + padding[b]!));
  const stopIds = new Set(completionStopIds(tokenizer));
  // A stop string is looked for in the text of a completion's last tokens: enough of them to
  // hold the longest stop string (a token is at least one character, or a piece of one).
  const tail = Math.max(0, ...(options.stop ?? []).map((s) => s.length)) + 4;
  const stopped = new Array<boolean>(rows).fill(false);
  const mask = new Float32Array(rows * C);
  const logp = new Float32Array(rows * C);
  const entropy = new Float32Array(rows * C);
  const lengths = new Array<number>(rows).fill(0);
  const done = new Array<boolean>(rows).fill(false);
  const stop = options.stop ?? [];
  const { vocab } = config;
  const usable = Math.min(vocab, tokenizer.vocabSize);

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

  /**
   * Records row b's token t, drawn with log-prob `lp` from a distribution of entropy `h`, and
   * whether the row ends there: at a stop id (kept, masked in) or a stop string.
   */
  const record = (b: number, t: number, token: number, lp: number, h: number) => {
    ids[b * width + promptLength + t] = token;
    mask[b * C + t] = 1;
    logp[b * C + t] = lp;
    entropy[b * C + t] = h;
    lengths[b] = t + 1;
    if (stopIds.has(token)) {
      done[b] = true;
      stopped[b] = true;
    } else if (stop.length > 0) {
      const end = b * width + promptLength + t + 1;
      const from = tokenizer.kind === "char"
        ? b * width + promptLength
        : Math.max(b * width + promptLength, end - tail);
      const text = tokenizer.decode(
        ids.subarray(from, tokenizer.kind === "char" ? b * width + width : end),
      );
      if (stop.some((s) => text.endsWith(s))) done[b] = true;
    }
  };

  try {
    if (C > 0 && drawsOnDevice(model, usable)) {
      await drawLoopOnDevice(model, rows, promptIds, promptLength, C, usable, done, record, {
        temperature: options.temperature,
        topK: options.topK,
        topP: options.topP,
        readEvery: options.readEvery ?? READ_EVERY,
        key: [rng.nextUint32(), rng.nextUint32()],
      });
    } else {
      let input = promptIds;
      for (let t = 0; t < C && done.includes(false); t++) {
        const active = done.flatMap((d, b) => d ? [] : [b]); // finished rows need no logits
        const buffer = await model.next(input, t === 0 ? promptLength : 1, active); // [B, V]
        const nextTokens = new Int32Array(rows).fill(pad);
        for (let b = 0; b < rows; b++) {
          if (done[b]) continue;
          // Only ids the tokenizer has are drawn: a model's embedding may have more rows than its
          // tokenizer ids (Qwen's 151,936 for 151,669), which nothing could decode.
          const row = usable < vocab ? buffer.subarray(b * vocab, b * vocab + usable) : buffer;
          const at = usable < vocab ? 0 : b;
          const { token, logp: lp } = sampleRow(row, at, usable, options, rng);
          nextTokens[b] = token;
          record(b, t, token, lp, rowEntropy(row, at * usable, usable, options.temperature));
        }
        input = nextTokens;
      }
    }
  } finally {
    model.dispose();
  }
  const texts: string[] = [];
  const truncated: boolean[] = [];
  for (let b = 0; b < rows; b++) {
    // The character tokenizer's decode ends at <eos>; a Hugging Face one is cut before its stop
    // token, so a completion's text is what the model wrote.
    const start = b * width + promptLength;
    texts.push(tokenizer.decode(
      tokenizer.kind === "char"
        ? ids.subarray(start, (b + 1) * width)
        : ids.subarray(start, start + lengths[b]! - (stopped[b] ? 1 : 0)),
    ));
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

/**
 * The token loop on the device: prefill, then per token a draw on the device
 * (`sample_device.ts`) into its slot of a block of `readEvery` tokens, whose tokens feed the
 * decoder's next step there (through a slice, in float32: exact for ids below 2^24). After each
 * block (the last may be shorter) the block is read back in one download and handed to `record`
 * in order, row by row, skipping rows already done: a token drawn for a row after it ended is
 * discarded (each row's draws come from its own counters, so no other row sees it). Stops at a
 * read that finds every row done.
 */
async function drawLoopOnDevice(
  model: Decoder,
  rows: number,
  promptIds: Int32Array,
  promptLength: number,
  C: number,
  usable: number,
  done: boolean[],
  record: (b: number, t: number, token: number, lp: number, h: number) => void,
  { temperature, topK, topP, readEvery, key }: {
    temperature: number;
    topK: number;
    topP: number;
    readEvery: number;
    key: [number, number];
  },
): Promise<void> {
  if (!Number.isInteger(readEvery) || readEvery < 1) {
    throw new RangeError(
      `Cannot sample as 'readEvery' must be an integer >= 1: current value is ${readEvery}`,
    );
  }
  const nextOnDevice = model.nextOnDevice!.bind(model);
  const prompt = tf.tensor2d(promptIds, [rows, promptLength], "int32");
  let logits: tf.Tensor2D | null = null;
  let draws: tf.Tensor | null = null; // [steps, 3, B]: tokens, logp bits, entropy bits
  try {
    logits = nextOnDevice(prompt, promptLength);
    for (let first = 0; first < C; first += readEvery) {
      const steps = Math.min(readEvery, C - first);
      draws = emptyTensor([steps, 3, rows], "int32");
      for (let s = 0; s < steps; s++) {
        const t = first + s;
        const draw = { key, step: t, usable, temperature, topK, topP };
        drawOnDevice(logits!, draw, { draws, slot: s });
        logits!.dispose();
        logits = null;
        if (t + 1 < C) {
          const d = draws;
          const ids = tf.tidy(() => tf.reshape(tf.slice(d, [s, 0, 0], [1, 1, rows]), [rows, 1]));
          logits = nextOnDevice(ids as tf.Tensor2D, 1);
          ids.dispose();
        }
      }
      const read = readDraws((await draws.data()) as Int32Array, steps, rows);
      draws.dispose();
      draws = null;
      for (let s = 0; s < steps; s++) {
        for (let b = 0; b < rows; b++) {
          if (done[b]) continue;
          const token = read.tokens[s * rows + b]!;
          if (token < 0) {
            throw new RangeError(
              `Cannot sample a token as row ${b}'s logits hold a NaN or their largest is infinite`,
            );
          }
          record(b, first + s, token, read.logp[s * rows + b]!, read.entropy[s * rows + b]!);
        }
      }
      if (!done.includes(false)) break;
    }
  } finally {
    prompt.dispose();
    logits?.dispose();
    draws?.dispose();
  }
}

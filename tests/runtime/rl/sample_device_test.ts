/**
 * Sampling on the device (runtime/rl/sample_device.ts and its loop in sample.ts), where WebGPU
 * offers an adapter (lavapipe on a machine without a GPU): the WGSL draw against the host's
 * inverse-CDF draw with the same Philox uniforms; seeded completions equal run after run and
 * whatever the read interval K; stop ids and stop strings honoured as on the host path; one read
 * per K tokens instead of one per token; no tensor left behind.
 *
 * @module
 */

import assert from "node:assert/strict";
import { type KernelSet, tf, useBackend } from "../../../runtime/engine/backend.ts";
import { deviceConstantCount } from "../../../runtime/engine/kernels/constants.ts";
import type { Decoder } from "../../../runtime/engine/kernels/types.ts";
import { EOS } from "../../../runtime/engine/model/tokenizer.ts";
import { forward, initParams } from "../../../runtime/engine/model/transformer.ts";
import { uniformAt } from "../../../runtime/engine/philox.ts";
import { Rng } from "../../../runtime/engine/random.ts";
import { countWebgpu } from "../../../runtime/engine/webgpu_counters.ts";
import { type Completions, sampleCompletions } from "../../../runtime/rl/sample.ts";
import { drawOnDevice, drawsOnDevice, readDraws } from "../../../runtime/rl/sample_device.ts";
import { tfjsKernels } from "../../../runtime/engine/kernels/tfjs.ts";
import { logSoftmax, sampleRow } from "../../../runtime/rl/sample_token.ts";
import { ADDITION_CONFIG, ADDITION_TOKENIZER } from "../_tiny.ts";
import { needsWebgpu } from "../_webgpu.ts";

const tok = ADDITION_TOKENIZER;
const CONFIG = ADDITION_CONFIG;
const PROMPTS = ["12+34=", "55+01=", "99+99=", "7+8="].map((p) => [1, ...tok.encode(p)]);

/** Live tensors, less the device caches (see kernels/constants.ts). */
const live = () => tf.memory().numTensors - deviceConstantCount();

/** Entropy in nats of softmax(row / T) (T 0: of softmax(row)), in float64. */
function entropyOf(row: Float32Array, temperature: number): number {
  const scale = temperature > 0 ? 1 / temperature : 1;
  const lp = logSoftmax(Float32Array.from(row, (x) => x * scale));
  let h = 0;
  for (const l of lp) h -= Math.exp(l) * l;
  return h;
}

/**
 * How close float32 sums could come to tipping the draw with uniform `u`, as a fraction of the
 * mass in question, in float64: the distance of the top-p goal from each cumulative sum along the
 * ranking (value descending, then id ascending) up to where the nucleus ends, and of u·Σw from
 * each cumulative sum over the kept ids in ascending order.
 */
function margin(row: Float32Array, temperature: number, u: number, topK = 0, topP = 1): number {
  let max = -Infinity;
  for (const x of row) max = Math.max(max, x);
  const w = Array.from(row, (x) => Math.exp((x - max) / temperature));
  const ranked = [...row.keys()].sort((a, b) => row[b]! - row[a]! || a - b);
  let kept = topK > 0 && topK < row.length ? ranked.slice(0, topK) : ranked;
  let closest = Infinity;
  if (topP < 1) {
    const mass = kept.reduce((sum, i) => sum + w[i]!, 0);
    let cum = 0;
    let end = 0;
    while (end < kept.length) {
      cum += w[kept[end]!]!;
      end++;
      closest = Math.min(closest, Math.abs(cum - topP * mass) / mass);
      if (cum >= topP * mass) break;
    }
    kept = kept.slice(0, end);
  }
  const ascending = kept.sort((a, b) => a - b);
  const total = ascending.reduce((sum, i) => sum + w[i]!, 0);
  let cum = 0;
  for (const i of ascending) {
    cum += w[i]!;
    closest = Math.min(closest, Math.abs(cum - u * total) / total);
  }
  return closest;
}

/** Draws on the device for `logits` [B, V] and reads the result back. */
async function deviceDraw(
  logits: Float32Array,
  rows: number,
  draw: Parameters<typeof drawOnDevice>[1],
) {
  const x = tf.tensor2d(logits, [rows, logits.length / rows]);
  const drawn = drawOnDevice(x, draw);
  const values = await drawn.data() as Int32Array;
  tf.dispose([x, drawn]);
  return readDraws(values, 1, rows);
}

Deno.test({
  ...needsWebgpu(
    "drawOnDevice() draws the host's inverse-CDF token from the same uniform, with its logp and entropy",
  ),
  async fn() {
    await useBackend("webgpu");
    const before = live();
    const rng = new Rng(23).fork("logits");
    const key: [number, number] = [0x12345678, 0x9abcdef0];
    let compared = 0;
    let cases = 0;
    let worstLogp = 0;
    let worstEntropy = 0;
    for (const [vocab, usable] of [[1000, 1000], [1000, 900], [7, 7], [300, 299]] as const) {
      const rows = 6;
      const logits = Float32Array.from({ length: rows * vocab }, (_, i) =>
        // ids from `usable` on would win every draw if they were drawn
        i % vocab >= usable ? 50 : (rng.uniform() - 0.5) * 8);
      for (const temperature of [1, 0.7, 2, 0]) {
        for (const step of [0, 1, 9, 1000]) {
          const out = await deviceDraw(logits, rows, { key, step, usable, temperature });
          for (let b = 0; b < rows; b++) {
            const row = logits.subarray(b * vocab, b * vocab + usable);
            const u = uniformAt(key, step, b);
            const host = sampleRow(row, 0, usable, { temperature, topK: 0, topP: 1 }, {
              uniform: () => u,
            });
            cases++;
            if (temperature === 0 || margin(row, temperature, u) > 1e-5) {
              assert.equal(out.tokens[b], host.token, `V ${vocab}, T ${temperature}, row ${b}`);
              compared++;
            }
            assert.ok(out.tokens[b]! >= 0 && out.tokens[b]! < usable);
            // logp of the device's own token, and the entropy, against float64
            const tempered = temperature > 0 ? temperature : 1;
            const expected = logSoftmax(
              Float32Array.from(row, (x) => x / tempered),
            )[out.tokens[b]!]!;
            worstLogp = Math.max(worstLogp, Math.abs(out.logp[b]! - expected));
            worstEntropy = Math.max(
              worstEntropy,
              Math.abs(out.entropy[b]! - entropyOf(row, temperature)),
            );
          }
        }
      }
    }
    assert.ok(compared >= 0.95 * cases, `${compared} of ${cases} draws compared`);
    assert.ok(worstLogp < 2e-5, `logp off by ${worstLogp}`);
    assert.ok(worstEntropy < 2e-5, `entropy off by ${worstEntropy}`);
    assert.equal(live(), before);
  },
});

Deno.test({
  ...needsWebgpu(
    "drawOnDevice() with top-k and top-p draws the host's token from the same uniform, ties included",
  ),
  async fn() {
    await useBackend("webgpu");
    const before = live();
    const rng = new Rng(29).fork("logits");
    const key: [number, number] = [0xdeadbeef, 17];
    const rows = 6;
    let compared = 0;
    let cases = 0;
    for (const [vocab, step] of [[1000, 0.25], [1000, 0], [300, 1], [7, 0]] as const) {
      // step 0.25 and 1: logits on a grid, many of them tied (ranked by id there)
      const logits = Float32Array.from({ length: rows * vocab }, () => {
        const x = (rng.uniform() - 0.5) * 12;
        return step > 0 ? Math.round(x / step) * step : x;
      });
      const filters: [number, number][] = [
        [5, 1],
        [1, 1],
        [vocab - 1, 1],
        [0, 0.9],
        [0, 0.5],
        [0, 0.01],
        [40, 0.8],
      ];
      for (const [topK, topP] of filters) {
        for (const temperature of [1, 0.6]) {
          for (const index of [0, 3]) {
            const draw = { key, step: index, usable: vocab, temperature, topK, topP };
            const out = await deviceDraw(logits, rows, draw);
            for (let b = 0; b < rows; b++) {
              const row = logits.subarray(b * vocab, (b + 1) * vocab);
              const u = uniformAt(key, index, b);
              const host = sampleRow(row, 0, vocab, { temperature, topK, topP }, {
                uniform: () => u,
              });
              cases++;
              if (margin(row, temperature, u, topK, topP) > 1e-5) {
                const what = `V ${vocab}, top-k ${topK}, top-p ${topP}, T ${temperature}, row ${b}`;
                assert.equal(out.tokens[b], host.token, what);
                assert.ok(Math.abs(out.logp[b]! - host.logp) < 2e-5, what);
                compared++;
              }
            }
          }
        }
      }
    }
    assert.ok(compared >= 0.9 * cases, `${compared} of ${cases} draws compared`);
    assert.equal(live(), before);
  },
});

Deno.test({
  ...needsWebgpu(
    "drawOnDevice() greedy takes the lowest id of a tied max; a NaN or infinite max gives −1",
  ),
  async fn() {
    await useBackend("webgpu");
    const before = live();
    const vocab = 1000; // 4 ids per invocation: ids 300 and 700 lie in different chunks
    const rows = [
      (i: number) => (i === 300 || i === 700 ? 5 : 0), // tie across chunks
      (i: number) => (i === 701 || i === 702 ? 5 : 0), // tie within a chunk
      (i: number) => (i === 999 ? 1 : 0), // the last id
      (i: number) => (i === 17 ? NaN : 0),
      (i: number) => (i === 17 ? Infinity : 0),
    ];
    const logits = Float32Array.from(
      { length: rows.length * vocab },
      (_, i) => rows[Math.floor(i / vocab)]!(i % vocab),
    );
    const out = await deviceDraw(logits, rows.length, {
      key: [1, 2],
      step: 0,
      usable: vocab,
      temperature: 0,
    });
    assert.deepEqual(Array.from(out.tokens), [300, 701, 999, -1, -1]);
    // log_softmax at the argmax: 5 − log(2e5 + 998) for the ties, 1 − log(e + 999) for row 2
    assert.ok(Math.abs(out.logp[0]! - (5 - Math.log(2 * Math.exp(5) + 998))) < 1e-5);
    assert.ok(Math.abs(out.logp[2]! - (1 - Math.log(Math.E + 999))) < 1e-5);
    assert.equal(live(), before);
  },
});

Deno.test("drawsOnDevice(): only on webgpu, with a decoder that runs on device tensors", async () => {
  const { kernels } = await useBackend("cpu");
  const params = initParams(CONFIG, new Rng(1));
  const decoder = await tfjsKernels().decoder(params, CONFIG, 1, [0], 4);
  assert.ok(decoder.nextOnDevice !== undefined);
  assert.equal(drawsOnDevice(decoder, CONFIG.vocab), false); // cpu runs no WGSL
  const cpuDecoder = await kernels.decoder(params, CONFIG, 1, [0], 4);
  assert.equal(cpuDecoder.nextOnDevice, undefined);
  tf.dispose(Object.values(params));
  decoder.dispose();
  cpuDecoder.dispose();
});

Deno.test({
  ...needsWebgpu(
    "drawsOnDevice(): on webgpu, unless GIFTWRAP_DEVICE_DRAWS=0, a decoder lacks it or ids reach 2^24",
  ),
  async fn() {
    const { kernels } = await useBackend("webgpu");
    const params = initParams(CONFIG, new Rng(1));
    const decoder = await kernels.decoder(params, CONFIG, 1, [0], 4);
    assert.equal(drawsOnDevice(decoder, CONFIG.vocab), true);
    assert.equal(drawsOnDevice(decoder, 2 ** 24), true);
    assert.equal(drawsOnDevice(decoder, 2 ** 24 + 1), false);
    const host = { next: decoder.next.bind(decoder), dispose: () => {} };
    assert.equal(drawsOnDevice(host, CONFIG.vocab), false);
    const earlier = Deno.env.get("GIFTWRAP_DEVICE_DRAWS");
    try {
      Deno.env.set("GIFTWRAP_DEVICE_DRAWS", "0");
      assert.equal(drawsOnDevice(decoder, CONFIG.vocab), false);
      Deno.env.set("GIFTWRAP_DEVICE_DRAWS", "1");
      assert.equal(drawsOnDevice(decoder, CONFIG.vocab), true);
    } finally {
      if (earlier === undefined) Deno.env.delete("GIFTWRAP_DEVICE_DRAWS");
      else Deno.env.set("GIFTWRAP_DEVICE_DRAWS", earlier);
    }
    decoder.dispose();
    tf.dispose(Object.values(params));
  },
});

/** The tiny addition model on webgpu, its parameters freed afterwards. */
async function withModel<T>(
  body: (params: Record<string, tf.Variable>, kernels: KernelSet) => Promise<T>,
): Promise<T> {
  const { kernels } = await useBackend("webgpu");
  const params = initParams(CONFIG, new Rng(11));
  try {
    return await body(params, kernels);
  } finally {
    tf.dispose(Object.values(params));
  }
}

/** `kernels` whose decoder has no `nextOnDevice`: the sampler takes the host path. */
function hostOnly(kernels: KernelSet): KernelSet {
  return {
    ...kernels,
    decoder: async (...args) => {
      const decoder = await kernels.decoder(...args);
      return { next: decoder.next.bind(decoder), dispose: decoder.dispose.bind(decoder) };
    },
  };
}

const SAMPLING = { temperature: 1, topK: 0, topP: 1, maxNewTokens: 6 };

Deno.test({
  ...needsWebgpu(
    "seeded sampling on webgpu is equal to itself across runs and whatever K, and logs the forward pass's log-probs",
  ),
  async fn() {
    await withModel(async (params, kernels) => {
      const draw = (seed: number, readEvery?: number) =>
        sampleCompletions(kernels, params, CONFIG, tok, PROMPTS, {
          ...SAMPLING,
          ...(readEvery ? { readEvery } : {}),
        }, new Rng(seed).fork("sample"));
      await draw(5); // compiles the kernels and fills the caches
      const before = live();
      const a = await draw(5);
      assert.deepEqual(await draw(5), a);
      for (const k of [1, 2, 4, 6, 100]) assert.deepEqual(await draw(5, k), a, `K ${k}`);
      const c = await draw(6);
      assert.notDeepEqual(Array.from(c.ids), Array.from(a.ids));
      assert.equal(live(), before);

      // Each token's log-prob and entropy are the full forward pass's, to float32 rounding.
      const P = a.promptLength;
      const C = a.newTokens;
      const ids = tf.tensor2d(a.ids, [PROMPTS.length, P + C], "int32");
      // the last token's logits are not needed: P + C − 1 positions
      const full = tf.tidy(() =>
        forward(kernels, params, CONFIG, tf.slice(ids, [0, 0], [-1, P + C - 1]), {
          padding: a.padding, // "7+8=" is left-padded
        }).logits
      );
      const logits = await full.array() as number[][][]; // webgpu has no arraySync
      full.dispose();
      ids.dispose();
      let checked = 0;
      for (let b = 0; b < PROMPTS.length; b++) {
        for (let t = 0; t < C; t++) {
          if (t >= a.lengths[b]!) {
            assert.equal(a.mask[b * C + t], 0);
            continue;
          }
          const row = Float32Array.from(logits[b]![P - 1 + t]!);
          const token = a.ids[b * (P + C) + P + t]!;
          assert.ok(Math.abs(a.logp[b * C + t]! - logSoftmax(row)[token]!) < 1e-5);
          assert.ok(Math.abs(a.entropy[b * C + t]! - entropyOf(row, 1)) < 1e-5);
          checked++;
        }
      }
      assert.ok(checked > 0);
    });
  },
});

Deno.test({
  ...needsWebgpu(
    "sampling on webgpu reads the draws once per K tokens, the host path once a token",
  ),
  async fn() {
    await withModel(async (params, kernels) => {
      const C = 6; // prompts of 7 tokens in a context of 12
      const options = { ...SAMPLING, maxNewTokens: C };
      const run = (set: KernelSet, readEvery: number) =>
        countWebgpu(() =>
          sampleCompletions(
            set,
            params,
            CONFIG,
            tok,
            PROMPTS,
            { ...options, readEvery },
            new Rng(2),
          )
        );
      /** Tokens until the last row ended: the steps a read must cover before the loop stops. */
      const steps = (out: Completions) =>
        Math.max(...out.lengths.map((n, b) => (out.truncated[b] ? C : n)));
      await run(kernels, 3);
      await run(hostOnly(kernels), 3);
      for (const k of [1, 2, 4, 16]) {
        const { result, counts } = await run(kernels, k);
        assert.equal(counts.reads, Math.ceil(steps(result) / k), `K ${k}`);
      }
      const host = await run(hostOnly(kernels), 3);
      assert.equal(host.counts.reads, steps(host.result));
      // top-p or top-k on: drawn on the device too
      for (const filter of [{ topP: 0.9 }, { topK: 5 }]) {
        const filtered = await countWebgpu(() =>
          sampleCompletions(kernels, params, CONFIG, tok, PROMPTS, {
            ...options,
            ...filter,
            readEvery: 4,
          }, new Rng(2))
        );
        assert.equal(filtered.counts.reads, Math.ceil(steps(filtered.result) / 4));
      }
    });
  },
});

/**
 * A decoder that ignores its input and, at its i-th call (0: the prefill), puts logit 40 on
 * `script[b][i]` for each row b and 0 elsewhere: the token is as good as certain (the rest weigh
 * e^-40 together), so the host and the device draw it alike.
 */
function scripted(script: readonly (readonly number[])[], vocab: number, onDevice: boolean) {
  let call = 0;
  const logits = () => {
    const values = new Float32Array(script.length * vocab);
    script.forEach((tokens, b) =>
      values[b * vocab + tokens[Math.min(call, tokens.length - 1)]!] = 40
    );
    call++;
    return values;
  };
  const decoder: Decoder = {
    next: () => logits(),
    ...(onDevice ? { nextOnDevice: () => tf.tensor2d(logits(), [script.length, vocab]) } : {}),
    dispose: () => {},
  };
  return decoder;
}

Deno.test({
  ...needsWebgpu("sampling on webgpu honours stop ids and stop strings as the host path does"),
  async fn() {
    const { kernels } = await useBackend("webgpu");
    const script = [
      [...tok.encode("12"), EOS, ...tok.encode("999")], // ends at <eos>: its third token
      [...tok.encode("3+4=7")], // ends at the stop string "+4=", its fourth token
      [...tok.encode("55555555")], // runs to C
      [...tok.encode("8"), EOS], // ends at <eos>, its second token
      [EOS], // ends at once
    ];
    const prompts = script.map(() => [1, ...tok.encode("1+1=")]);
    const sample = (onDevice: boolean, readEvery: number) =>
      sampleCompletions(
        { ...kernels, decoder: () => Promise.resolve(scripted(script, CONFIG.vocab, onDevice)) },
        {},
        CONFIG,
        tok,
        prompts,
        { temperature: 1, topK: 0, topP: 1, maxNewTokens: 8, stop: ["+4="], readEvery },
        new Rng(9),
      );
    const before = live();
    const host = await sample(false, 1);
    assert.deepEqual(host.lengths, [3, 4, 8, 2, 1]);
    assert.deepEqual(host.truncated, [false, false, true, false, false]);
    assert.deepEqual(host.texts, ["12", "3+4=", "55555555", "8", ""]);
    for (const k of [1, 2, 3, 16]) {
      const device = await sample(true, k);
      const { logp, entropy, ...rest } = device;
      const { logp: hostLogp, entropy: hostEntropy, ...hostRest } = host;
      assert.deepEqual(rest, hostRest, `K ${k}`);
      for (let i = 0; i < logp.length; i++) {
        assert.ok(Math.abs(logp[i]! - hostLogp[i]!) < 1e-6);
        assert.ok(Math.abs(entropy[i]! - hostEntropy[i]!) < 1e-6);
      }
    }
    assert.equal(live(), before);
  },
});

Deno.test({
  ...needsWebgpu("sampling on webgpu rejects a read interval that is not a positive integer"),
  async fn() {
    await withModel(async (params, kernels) => {
      const before = live();
      for (const readEvery of [0, 1.5, -2]) {
        await assert.rejects(
          sampleCompletions(kernels, params, CONFIG, tok, PROMPTS, {
            ...SAMPLING,
            readEvery,
          }, new Rng(1)),
          /'readEvery' must be an integer >= 1: current value is/,
        );
      }
      assert.equal(live(), before);
    });
  },
});

// Activation checkpointing (`gradientCheckpointing`): the same loss and parameter gradients as the
// plain pass on each CPU kernel set, with LoRA adapters too (their gradients, none for the frozen
// base), and a lower peak of live buffers in a forward + backward pass.

import assert from "node:assert/strict";
import { type BackendName, tf, useBackend } from "../../../../runtime/engine/backend.ts";
import {
  forward,
  initParams,
  type ModelConfig,
  tokenLogProbs,
} from "../../../../runtime/engine/model/transformer.ts";
import {
  disposeLoraAdapters,
  initLoraAdapters,
  LORA_TARGETS,
  loraConfig,
} from "../../../../runtime/engine/model/lora.ts";
import { normalArray, Rng } from "../../../../runtime/engine/random.ts";
import { GQA_CONFIG } from "../../_tiny.ts";
import { peakBytes } from "../_peak_bytes.ts";

/** Four layers of the GQA test model, with Qwen2's q/k/v biases so every parameter kind is met. */
const CONFIG: ModelConfig = { ...GQA_CONFIG, layers: 4, attentionBias: true };

function randomIds(rng: Rng, config: ModelConfig, batch: number, time: number): tf.Tensor2D {
  const ids = Int32Array.from({ length: batch * time }, () => rng.int(config.vocab));
  return tf.tensor2d(ids, [batch, time], "int32");
}

/**
 * A loss with a different weight on every completion token, −Σ w·log p, and its gradient with
 * respect to every parameter, read back.
 */
async function lossAndGradients(
  backend: BackendName,
  gradientCheckpointing: boolean,
): Promise<{ loss: number; grads: Record<string, Float32Array> }> {
  const { kernels } = await useBackend(backend);
  const params = initParams(CONFIG, new Rng(11));
  const ids = randomIds(new Rng(12), CONFIG, 3, 10); // prompt 6, completion 4
  const weights = tf.tensor2d(Float32Array.from({ length: 12 }, (_, i) => 0.5 + i / 7), [3, 4]);
  const padding = [0, 2, 1]; // left padding, as the sampler makes it
  const vars = Object.values(params);
  const { value, grads } = tf.variableGrads(
    () =>
      tf.tidy(() => {
        const logp = tokenLogProbs(kernels, params, CONFIG, ids, 6, 0.8, padding, {
          gradientCheckpointing,
        }); // [3, 4]
        return tf.neg(tf.sum(tf.mul(logp, weights))) as tf.Scalar;
      }),
    vars,
  );
  const out: Record<string, Float32Array> = {};
  for (const [i, name] of Object.keys(params).entries()) {
    out[name] = (await grads[vars[i]!.name]!.data()) as Float32Array;
  }
  const loss = (await value.data())[0]!;
  tf.dispose([value, ids, weights, ...Object.values(grads), ...vars]);
  return { loss, grads: out };
}

for (const backend of ["cpu", "wasm"] as BackendName[]) {
  Deno.test(`tokenLogProbs() with gradientCheckpointing gives the plain loss and every gradient on ${backend}`, async () => {
    const before = tf.memory().numTensors;
    const plain = await lossAndGradients(backend, false);
    const checkpointed = await lossAndGradients(backend, true);
    assert.equal(tf.memory().numTensors, before, "tensors leaked");
    assert.ok(Number.isFinite(plain.loss) && plain.loss > 0, `loss ${plain.loss}`);
    assert.ok(
      Math.abs(checkpointed.loss - plain.loss) <= 1e-5,
      `${checkpointed.loss} vs ${plain.loss}`,
    );
    assert.deepEqual(Object.keys(checkpointed.grads), Object.keys(plain.grads));
    for (const [name, expected] of Object.entries(plain.grads)) {
      const got = checkpointed.grads[name]!;
      let worst = 0;
      let scale = 0;
      for (let i = 0; i < expected.length; i++) {
        worst = Math.max(worst, Math.abs(got[i]! - expected[i]!));
        scale = Math.max(scale, Math.abs(expected[i]!));
      }
      assert.ok(scale > 0, `${name}: the plain gradient is zero`);
      assert.ok(worst <= 1e-5, `${name}: max |Δgrad| = ${worst} (max |grad| ${scale})`);
    }
  });
}

/**
 * The weighted loss of `lossAndGradients()` through LoRA adapters on every target (B drawn, so
 * every A has a gradient), differentiated with respect to the adapters and every base weight of
 * the blocks: the adapters' gradients, and the names of the variables that got one.
 */
async function loraLossAndGradients(
  backend: BackendName,
  gradientCheckpointing: boolean,
): Promise<{ loss: number; grads: Record<string, Float32Array>; differentiated: string[] }> {
  const { kernels } = await useBackend(backend);
  const params = initParams(CONFIG, new Rng(11));
  const lora = loraConfig({ rank: 3, alpha: 6, targets: [...LORA_TARGETS] });
  const adapters = initLoraAdapters(CONFIG, lora, new Rng(13), kernels.layout);
  const rng = new Rng(14);
  for (const [name, b] of Object.entries(adapters.params)) {
    if (!name.endsWith("lora_B.weight")) continue;
    const drawn = tf.tensor(normalArray(rng, b.size, 0.2), b.shape);
    b.assign(drawn);
    drawn.dispose();
  }
  const ids = randomIds(new Rng(12), CONFIG, 3, 10); // prompt 6, completion 4
  const weights = tf.tensor2d(Float32Array.from({ length: 12 }, (_, i) => 0.5 + i / 7), [3, 4]);
  const padding = [0, 2, 1];
  const base = Object.entries(params).filter(([name]) => name.startsWith("model.layers."));
  const vars = [...Object.values(adapters.params), ...base.map(([, v]) => v)];
  const names = new Map([...Object.entries(adapters.params), ...base].map(([n, v]) => [v.name, n]));
  // the plain pass differentiates the adapters only; the checkpointed one is offered the base too
  const { value, grads } = tf.variableGrads(
    () =>
      tf.tidy(() => {
        const logp = tokenLogProbs(kernels, params, CONFIG, ids, 6, 0.8, padding, {
          gradientCheckpointing,
          adapters,
        }); // [3, 4]
        return tf.neg(tf.sum(tf.mul(logp, weights))) as tf.Scalar;
      }),
    gradientCheckpointing ? vars : Object.values(adapters.params),
  );
  const out: Record<string, Float32Array> = {};
  for (const [name, v] of Object.entries(adapters.params)) {
    out[name] = (await grads[v.name]!.data()) as Float32Array;
  }
  const differentiated = Object.keys(grads).map((v) => names.get(v)!).sort();
  const loss = (await value.data())[0]!;
  tf.dispose([value, ids, weights, ...Object.values(grads), ...Object.values(params)]);
  disposeLoraAdapters(adapters);
  return { loss, grads: out, differentiated };
}

for (const backend of ["cpu", "wasm"] as BackendName[]) {
  Deno.test(`tokenLogProbs() with gradientCheckpointing and LoRA adapters gives the plain loss and adapter gradients, none for the base, on ${backend}`, async () => {
    const before = tf.memory().numTensors;
    const plain = await loraLossAndGradients(backend, false);
    const checkpointed = await loraLossAndGradients(backend, true);
    assert.equal(tf.memory().numTensors, before, "tensors leaked");
    assert.ok(Number.isFinite(plain.loss) && plain.loss > 0, `loss ${plain.loss}`);
    assert.ok(
      Math.abs(checkpointed.loss - plain.loss) <= 1e-5,
      `${checkpointed.loss} vs ${plain.loss}`,
    );
    // every adapter tensor and nothing else, though every base weight of the blocks was offered
    assert.deepEqual(checkpointed.differentiated, Object.keys(plain.grads).sort());
    assert.equal(checkpointed.differentiated.length, 2 * 7 * CONFIG.layers);
    for (const [name, expected] of Object.entries(plain.grads)) {
      const got = checkpointed.grads[name]!;
      let worst = 0;
      let scale = 0;
      for (let i = 0; i < expected.length; i++) {
        worst = Math.max(worst, Math.abs(got[i]! - expected[i]!));
        scale = Math.max(scale, Math.abs(expected[i]!));
      }
      assert.ok(scale > 0, `${name}: the plain gradient is zero`);
      assert.ok(worst <= 1e-5, `${name}: max |Δgrad| = ${worst} (max |grad| ${scale})`);
    }
  });
}

Deno.test("forward() rejects gradientCheckpointing with a KV cache", async () => {
  const { kernels } = await useBackend("cpu");
  const params = initParams(CONFIG, new Rng(3));
  assert.throws(
    () =>
      tf.tidy(() => {
        const ids = tf.zeros([1, 2], "int32") as tf.Tensor2D;
        const { cache } = forward(kernels, params, CONFIG, ids);
        return forward(kernels, params, CONFIG, ids, { cache, gradientCheckpointing: true }).logits;
      }),
    /gradientCheckpointing and a KV cache/,
  );
  tf.dispose(Object.values(params));
});

/** Eight layers whose activations outweigh their parameters: 8 rows of 32 positions. */
const DEEP: ModelConfig = {
  ...GQA_CONFIG,
  vocab: 64,
  layers: 8,
  dModel: 32,
  ffnDim: 96,
  contextLength: 33,
};

/** Peak live bytes of one forward + backward pass of `tokenLogProbs` on the CPU kernel set. */
async function stepPeak(gradientCheckpointing: boolean): Promise<number> {
  const { kernels } = await useBackend("cpu");
  const params = initParams(DEEP, new Rng(21));
  const ids = randomIds(new Rng(22), DEEP, 8, 33); // prompt 17, completion 16
  const vars = Object.values(params);
  const peak = peakBytes(() => {
    const { value, grads } = tf.variableGrads(
      () =>
        tf.tidy(() =>
          tf.neg(
            tf.sum(tokenLogProbs(kernels, params, DEEP, ids, 17, 1, undefined, {
              gradientCheckpointing,
            })),
          ) as tf.Scalar
        ),
      vars,
    );
    tf.dispose([value, ...Object.values(grads)]);
  });
  tf.dispose([ids, ...vars]);
  return peak;
}

Deno.test("tokenLogProbs() with gradientCheckpointing lowers the peak of a forward + backward pass", async () => {
  const plain = await stepPeak(false);
  const checkpointed = await stepPeak(true);
  const params = Object.values(initParamsBytes(DEEP)).reduce((a, b) => a + b, 0);
  console.log(
    `peak beyond the weights: plain ${plain} B, checkpointed ${checkpointed} B ` +
      `(${(checkpointed / plain).toFixed(3)}); the gradients alone are ${params} B`,
  );
  assert.ok(checkpointed < 0.6 * plain, `checkpointed ${checkpointed} B vs plain ${plain} B`);
});

/** Bytes of each parameter of `config` in float32. */
function initParamsBytes(config: ModelConfig): Record<string, number> {
  const params = initParams(config, new Rng(0));
  const bytes = Object.fromEntries(Object.entries(params).map(([k, v]) => [k, v.size * 4]));
  tf.dispose(Object.values(params));
  return bytes;
}

/** Peak live bytes of `tokenLogProbs` without a gradient (π_old, a reference) on the CPU kernel set. */
async function forwardPeak(layers: number): Promise<number> {
  const { kernels } = await useBackend("cpu");
  const config = { ...DEEP, layers };
  const params = initParams(config, new Rng(21));
  const ids = randomIds(new Rng(22), config, 8, 33); // prompt 17, completion 16
  const peak = peakBytes(() => {
    tf.tidy(() => tokenLogProbs(kernels, params, config, ids, 17)).dispose();
  });
  tf.dispose([ids, ...Object.values(params)]);
  return peak;
}

Deno.test("tokenLogProbs() without a gradient holds one block's activations at a time", async () => {
  const two = await forwardPeak(2);
  const eight = await forwardPeak(8);
  console.log(`forward peak: 2 layers ${two} B, 8 layers ${eight} B`);
  // each further block adds only its output and its keys and values (the cache forward returns)
  const perBlock = 8 * 32 * (32 + 2 * DEEP.kvHeads * DEEP.headDim) * 4;
  assert.ok(eight <= two + 6 * perBlock, `8 layers ${eight} B vs 2 layers ${two} B`);
});

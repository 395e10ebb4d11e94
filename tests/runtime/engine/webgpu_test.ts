/**
 * The webgpu backend's numerics, an optional group: it runs where WebGPU offers an adapter (on a
 * machine without a GPU, lavapipe from Debian's mesa-vulkan-drivers; see `_webgpu.ts`) and is
 * skipped elsewhere. Every objective's loss and gradient, AdamW steps, KV-cache sampling and whole
 * training steps on webgpu equal the cpu backend's (tfjs's plain JavaScript kernels, the
 * reference). The model's forward pass and gradients are compared in model/transformer_test.ts.
 *
 * Webgpu draws tokens on the device from its own stream (rl/sample_device.ts), so its seeded
 * completions repeat run to run but are not cpu's: the comparisons with cpu take the host path
 * there (a decoder without `nextOnDevice`, or `GIFTWRAP_DEVICE_DRAWS=0`), and greedy decoding,
 * which draws nothing, is compared on the device path.
 *
 * @module
 */

import assert from "node:assert/strict";
import {
  type BackendName,
  type KernelSet,
  tf,
  useBackend,
} from "../../../runtime/engine/backend.ts";
import { execute } from "../../../runtime/run/execute.ts";
import { initParams, modelConfig } from "../../../runtime/engine/model/transformer.ts";
import { charTokenizer } from "../../../runtime/engine/model/tokenizer.ts";
import { type Objective, objectives } from "../../../runtime/rl/objectives/mod.ts";
import { adamW, adamWStep } from "../../../runtime/engine/optim.ts";
import { Rng } from "../../../runtime/engine/random.ts";
import { sampleCompletions } from "../../../runtime/rl/sample.ts";
import { withTempDir } from "../../_helpers.ts";
import { tinyPlan } from "../_tiny.ts";
import { needsWebgpu } from "../_webgpu.ts";
import {
  logpGradient,
  presetReadsReference,
  randomBatchData,
  toBatch,
} from "../rl/objectives/_conformance.ts";

/** `actual` equals `expected` within `tolerance` of the largest |expected| (at least 1e-3). */
function assertNear(
  expected: ArrayLike<number>,
  actual: ArrayLike<number>,
  what: string,
  tolerance = 1e-5,
): void {
  assert.equal(actual.length, expected.length, `${what}: length`);
  let scale = 1e-3;
  for (let i = 0; i < expected.length; i++) scale = Math.max(scale, Math.abs(expected[i]!));
  let worst = 0;
  for (let i = 0; i < expected.length; i++) {
    worst = Math.max(worst, Math.abs(actual[i]! - expected[i]!));
  }
  assert.ok(
    worst <= tolerance * scale,
    `${what}: max |webgpu − cpu| = ${worst} > ${tolerance} × ${scale}`,
  );
}

function size(shape: number[]): number {
  return shape.reduce((a, b) => a * b, 1);
}

/** The options each objective is tested with (its defaults; GIFT needs β_c). */
const OPTIONS: Record<keyof typeof objectives, object> = {
  gift: { betaC: 1 },
  grpo: {},
  drGrpo: {},
  dapo: {},
  gspo: {},
  rloo: {},
  onlineDpo: {},
  una: {},
};

for (const [name, each] of Object.entries(objectives)) {
  const objective = each as Objective<unknown>;
  Deno.test({
    ...needsWebgpu(`webgpu: ${name}'s loss and its gradient equal cpu's`),
    async fn() {
      const data = randomBatchData(31, { groups: 3, groupSize: 4, length: 6 });
      const options = OPTIONS[name as keyof typeof objectives];
      const on = async (backend: BackendName) => {
        await useBackend(backend);
        const batch = toBatch(data, presetReadsReference(name));
        const { loss, metrics } = objective.loss(batch, options);
        const grad = logpGradient(objective, batch, options);
        const out = { loss: await loss.data(), grad: await grad.data() };
        tf.dispose([loss, grad, ...Object.values(metrics), ...Object.values(batch)]);
        return out;
      };
      const cpu = await on("cpu");
      const gpu = await on("webgpu");
      assertNear(cpu.loss, gpu.loss, `${name} loss`);
      assertNear(cpu.grad, gpu.grad, `${name} ∂loss/∂logp`);
    },
  });
}

Deno.test({
  ...needsWebgpu(
    "webgpu: tf.addN of 2 to 20 tensors is their sum (tfjs's own kernel fails from 8 on)",
  ),
  async fn() {
    await useBackend("webgpu");
    for (const n of [2, 7, 8, 9, 15, 20]) {
      const before = tf.memory().numTensors;
      const sum = tf.tidy(() =>
        tf.addN(Array.from({ length: n }, (_, i) => tf.mul(tf.ones([300]), i + 1)))
      );
      const values = await sum.data();
      sum.dispose();
      assert.ok(values.every((v) => v === (n * (n + 1)) / 2), `${n} inputs: ${values[0]}`);
      assert.equal(tf.memory().numTensors, before);
    }
  },
});

Deno.test({
  ...needsWebgpu("webgpu: AdamW steps (clipping, weight decay on matrices) equal cpu's"),
  async fn() {
    // Nine parameters: a norm over 8 or more once went through webgpu's broken AddN (optim.ts).
    const shapes = [[6, 5], [5], [4, 3], [3], [2, 2], [7], [3, 3], [1, 4], [5]];
    const rng = new Rng(5);
    const draw = () =>
      shapes.map((shape) => Array.from({ length: size(shape) }, () => rng.normal()));
    const init = draw();
    const grads = [draw(), draw(), draw()];
    const options = {
      lr: 1e-2,
      betas: [0.9, 0.95] as [number, number],
      eps: 1e-8,
      weightDecay: 0.1,
      clipGradNorm: 2, // below the norms drawn here, so clipping acts
      warmupSteps: 1,
      schedule: "cosine" as const,
    };
    const on = async (backend: BackendName) => {
      const { kernels } = await useBackend(backend);
      const tensors = (values: number[][]) =>
        Object.fromEntries(values.map((v, i) => [`p${i}`, tf.tensor(v, shapes[i])]));
      const params = Object.fromEntries(
        Object.entries(tensors(init)).map(([name, t]) => [name, tf.variable(t)]),
      );
      const state = adamW(params, options, 3);
      const norms: number[] = [];
      for (const g of grads) {
        const byName = tensors(g);
        norms.push((await adamWStep(kernels, state, params, byName)).gradNorm);
        tf.dispose(Object.values(byName));
      }
      const read = async (of: Record<string, tf.Tensor>) =>
        (await Promise.all(Object.values(of).map((t) => t.data()))).flatMap((d) => [...d]);
      const out = {
        norms,
        params: await read(params),
        m: await read(state.m),
        v: await read(state.v),
      };
      tf.dispose([...Object.values(params), ...Object.values(state.m), ...Object.values(state.v)]);
      return out;
    };
    const cpu = await on("cpu");
    const gpu = await on("webgpu");
    assert.ok(cpu.norms.every((n) => n > options.clipGradNorm), `norms ${cpu.norms}`);
    assertNear(cpu.norms, gpu.norms, "gradient norms");
    for (const key of ["params", "m", "v"] as const) assertNear(cpu[key], gpu[key], key);
  },
});

/** `kernels` whose decoder has no `nextOnDevice`: the sampler draws on the host, as on cpu. */
function hostDraws(kernels: KernelSet): KernelSet {
  return {
    ...kernels,
    decoder: async (...args) => {
      const decoder = await kernels.decoder(...args);
      return { next: decoder.next.bind(decoder), dispose: decoder.dispose.bind(decoder) };
    },
  };
}

for (const [draws, temperature] of [["host", 1], ["device", 0]] as const) {
  Deno.test({
    ...needsWebgpu(
      `webgpu: KV-cache sampling at temperature ${temperature}, drawn on the ${draws}, draws cpu's tokens with cpu's log-probs`,
    ),
    async fn() {
      const config = modelConfig(tinyPlan().model);
      const tokenizer = charTokenizer("0123456789+=");
      const prompts = ["1+2=", "3+4=", "9+9="].flatMap((p) =>
        Array.from({ length: 4 }, () => [1, ...tokenizer.encode(p)])
      );
      const on = async (backend: BackendName) => {
        const { kernels } = await useBackend(backend);
        const params = initParams(config, new Rng(3));
        const out = await sampleCompletions(
          backend === "webgpu" && draws === "host" ? hostDraws(kernels) : kernels,
          params,
          config,
          tokenizer,
          prompts,
          { temperature, topK: 0, topP: 1, maxNewTokens: 3 },
          new Rng(4),
        );
        tf.dispose(Object.values(params));
        return out;
      };
      const cpu = await on("cpu");
      const gpu = await on("webgpu");
      assert.deepEqual(gpu.ids, cpu.ids);
      assertNear(cpu.logp, gpu.logp, "token log-probs");
      assertNear(cpu.entropy, gpu.entropy, "entropies");
    },
  });
}

Deno.test({
  ...needsWebgpu(
    "webgpu: two steps of the tiny recipe (warm start, sampling, GIFT, AdamW) match cpu",
  ),
  async fn() {
    const run = async (backend: BackendName) => {
      // on webgpu, draws on the host from cpu's stream (rl/sample_device.ts)
      if (backend === "webgpu") Deno.env.set("GIFTWRAP_DEVICE_DRAWS", "0");
      try {
        return await withTempDir((runsDir) =>
          execute(tinyPlan({ backend, steps: 2 }), { runsDir, log: () => {}, report: false })
        );
      } finally {
        Deno.env.delete("GIFTWRAP_DEVICE_DRAWS");
      }
    };
    const cpu = await run("cpu");
    const gpu = await run("webgpu");
    assert.equal(gpu.metrics.length, 2);
    for (const key of ["loss", "rewardMean", "kl", "gradNorm"] as const) {
      assertNear(
        cpu.metrics.map((m) => m[key] as number),
        gpu.metrics.map((m) => m[key] as number),
        key,
        1e-4, // twenty warm-start updates and two RL steps compound float32 differences
      );
    }
  },
});

Deno.test({
  ...needsWebgpu(
    "webgpu: two steps of the tiny recipe, tokens drawn on the device, repeat run to run",
  ),
  async fn() {
    const run = () =>
      withTempDir((runsDir) =>
        execute(tinyPlan({ backend: "webgpu", steps: 2 }), {
          runsDir,
          log: () => {},
          report: false,
        })
      );
    const first = await run();
    const second = await run();
    assert.equal(first.metrics.length, 2);
    const values = (
      m: (typeof first.metrics)[number],
    ) => [m.loss, m.rewardMean, m.kl, m.gradNorm, m.entropy, m.completionLength, m.truncated];
    assert.deepEqual(second.metrics.map(values), first.metrics.map(values));
  },
});

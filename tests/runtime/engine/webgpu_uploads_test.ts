/**
 * What a train step uploads on webgpu, an optional group (see `_webgpu.ts`): with the device
 * caches (runtime/engine/kernels/constants.ts) and the gradients without CPU-made constants
 * (kernels/gradients.ts), one GIFT step, the optimiser's update included, uploads its batch and
 * AdamW's four values of the step (clip, c₁, c₂, lr) with `adamWStep`, its batch only on the device
 * path a train step takes on webgpu (`DeviceUpdates`, optim.ts); and it computes the same bits as
 * with the caches off.
 *
 * Uploads are counted at the webgpu backend's `uploadToGPU`, where a tensor whose values are on
 * the CPU gets its GPU buffer (tfjs-backend-webgpu 4.22).
 *
 * @module
 */

import assert from "node:assert/strict";
import { tf, useBackend } from "../../../runtime/engine/backend.ts";
import {
  cacheDeviceConstants,
  deviceConstantCount,
} from "../../../runtime/engine/kernels/constants.ts";
import { initParams, modelConfig } from "../../../runtime/engine/model/transformer.ts";
import { adamW, adamWStep, deviceUpdates, disposeAdamW } from "../../../runtime/engine/optim.ts";
import { Rng } from "../../../runtime/engine/random.ts";
import { updateGradients } from "../../../runtime/rl/micro_batches.ts";
import { objectives } from "../../../runtime/rl/objectives/mod.ts";
import { tinyPlan } from "../_tiny.ts";
import { needsWebgpu } from "../_webgpu.ts";

/** The webgpu backend, as far as uploads are seen here. */
interface WebgpuBackend {
  uploadToGPU(dataId: object): void;
  tensorMap: { get(dataId: object): { resource: unknown; values: ArrayLike<number> | null } };
}

/** An upload: the tensor's data and its size in values. */
interface Upload {
  dataId: object;
  size: number;
}

/** Records every upload of the active webgpu backend until `stop()`. */
function recordUploads(): { uploads: Upload[]; stop(): void } {
  const backend = tf.backend() as unknown as WebgpuBackend;
  const original = backend.uploadToGPU;
  const uploads: Upload[] = [];
  backend.uploadToGPU = function (this: WebgpuBackend, dataId: object) {
    const data = this.tensorMap.get(dataId);
    const values = data.values ?? null;
    if ((data.resource ?? null) === null && values !== null) {
      uploads.push({ dataId, size: values.length });
    }
    return original.call(this, dataId);
  };
  return { uploads, stop: () => void (backend.uploadToGPU = original) };
}

/**
 * Two layers, a batch of 4 prompts × 4 completions; `steps` GIFT updates, each on a new batch,
 * with `adamWStep` or on the device path (`onDevice`).
 */
async function train(steps: number, caches: boolean, onDevice = false) {
  const { kernels } = await useBackend("webgpu");
  cacheDeviceConstants(caches);
  const plan = tinyPlan({ policy: { kind: "tinyGpt", layers: 2, dModel: 32, heads: 2 } });
  const config = modelConfig(plan.model);
  const params = initParams(config, new Rng(11));
  const { maxSkippedUpdates: _, ...options } = plan.optimizer;
  const optimizer = adamW(params, { ...options, clipGradNorm: 0.5 }, 10); // clipping acts
  const rng = new Rng(12);
  const [B, P, C] = [16, 5, 3];
  const record: { loss: number; gradNorm: number; uploads: Upload[]; batch: object[] }[] = [];
  const live: number[] = [];
  for (let s = 0; s < steps; s++) {
    const ids = tf.tensor2d(
      Array.from({ length: B * (P + C) }, () => 3 + rng.int(12)),
      [B, P + C],
      "int32",
    );
    const rewards = tf.tensor1d(Array.from({ length: B }, () => rng.int(2)));
    const mask = tf.tensor2d(Array.from({ length: B * C }, () => (rng.int(4) ? 1 : 0)), [B, C]);
    const ref = tf.tensor2d(Array.from({ length: B * C }, () => -2 - rng.uniform()), [B, C]);
    const batch = [ids, rewards, mask, ref].map((t) => t.dataId);
    const { uploads, stop } = recordUploads();
    const { value, grads, metrics, kl } = await updateGradients(
      { kernels, params, config, promptLength: P, temperature: 1 },
      objectives.gift,
      { ids, mask, rewards, padding: new Array<number>(B).fill(0), old: null, ref },
      {
        objectiveOptions: { betaC: 1 },
        groupSize: 4,
        rolloutReference: false,
        weighting: "rows",
      },
    );
    const loss = (await value.data())[0]!;
    const names = Object.keys(params);
    const vars = Object.values(params);
    const byName = Object.fromEntries(names.map((n, i) => [n, grads[vars[i]!.name]!]));
    let gradNorm: number;
    if (onDevice) {
      const updates = deviceUpdates(optimizer, { updates: 1 });
      updates.step(params, byName, value);
      gradNorm = (await updates.pending[0]![1].data())[0]!;
      updates.settle([[loss, gradNorm]]);
      updates.dispose();
    } else {
      gradNorm = (await adamWStep(kernels, optimizer, params, byName)).gradNorm;
    }
    stop();
    tf.dispose([value, ids, rewards, mask, ref, ...Object.values(grads)]);
    tf.dispose([...Object.values(metrics), ...(kl ? [kl] : [])]);
    record.push({ loss, gradNorm, uploads, batch });
    live.push(tf.memory().numTensors - deviceConstantCount());
  }
  const weights = (await Promise.all(Object.values(params).map((p) => p.data())))
    .flatMap((d) => [...d]);
  tf.dispose(Object.values(params));
  disposeAdamW(optimizer); // its moments, and its tables on the device path
  cacheDeviceConstants(true);
  return { record, live, weights };
}

Deno.test({
  ...needsWebgpu("webgpu: a train step uploads its batch and AdamW's 4 values of the step only"),
  async fn() {
    // tfjs runs a small op whose inputs are all on the CPU there (WEBGPU_CPU_FORWARD), and uploads
    // its result: then parts of the batch (its rewards' group statistics, slices of its ids) are
    // uploaded instead of the batch itself. Off, every upload is one of the batch's tensors.
    await useBackend("webgpu"); // registers the flag
    tf.env().set("WEBGPU_CPU_FORWARD", false);
    for (const onDevice of [false, true]) {
      const { record, live } = await train(3, true, onDevice).finally(() =>
        tf.env().set("WEBGPU_CPU_FORWARD", true)
      );
      for (const [s, { uploads, batch }] of record.entries()) {
        if (s === 0) continue; // the first step fills the caches and uploads the parameters
        const own = uploads.filter((u) => batch.includes(u.dataId)).map((u) => u.dataId);
        assert.deepEqual(own, [...new Set(own)], `step ${s}: a batch tensor uploaded twice`);
        assert.equal(own.length, 4, `step ${s}: the batch's 4 tensors uploaded`);
        assert.deepEqual(
          uploads.filter((u) => !batch.includes(u.dataId)).map((u) => u.size),
          onDevice ? [] : [1, 1, 1, 1],
          onDevice
            ? `step ${s}: on the device path, the batch only`
            : `step ${s}: besides the batch, the scalars clip, c₁, c₂ and lr, once each`,
        );
      }
      // on the device path, AdamW's tables (4 tensors) live with the optimiser from step 0
      assert.equal(live[2], live[1], "no tensor left behind by a step (the caches aside)");
      tf.env().set("WEBGPU_CPU_FORWARD", false);
    }
    tf.env().set("WEBGPU_CPU_FORWARD", true);
  },
});

Deno.test({
  ...needsWebgpu("webgpu: train steps compute the same bits with the device caches as without"),
  async fn() {
    const without = await train(2, false);
    const cached = await train(2, true);
    assert.deepEqual(
      cached.record.map(({ loss, gradNorm }) => [loss, gradNorm]),
      without.record.map(({ loss, gradNorm }) => [loss, gradNorm]),
    );
    assert.deepEqual(cached.weights, without.weights);
    // without the caches, every constant is uploaded again at every step
    assert.ok(without.record[1]!.uploads.length > 40, `${without.record[1]!.uploads.length}`);
  },
});

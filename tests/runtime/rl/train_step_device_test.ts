// trainStep() on the device path (a kernel set whose `updateOnDevice` is true, as webgpu's is:
// every check of the update on the device, one read at the end of the step) against the host
// path on cpu, where both run: GRPO with 2 epochs × 2 mini-batches, KL to the initial policy and
// logged advantages give the same metrics, samples and parameters bit for bit (no clipping acts:
// the device computes the clipping scale in float32, see `DeviceUpdates`); non-finite updates are
// skipped and stop the run as on the host.

import assert from "node:assert/strict";
import { tf } from "../../../runtime/engine/backend.ts";
import { grpo } from "../../../mod.ts";
import { objectives } from "../../../runtime/rl/objectives/mod.ts";
import { NonFiniteUpdateError, type Run, trainStep } from "../../../runtime/rl/train_step.ts";
import type { ObjectiveBatch, ObjectiveResult } from "../../../runtime/mod.ts";
import { releaseRun, tinyRun, valuesOf as values } from "../_run.ts";
import { deviceConstantCount } from "../../../runtime/engine/kernels/constants.ts";
import { assertOpsBits, CPU_ADAPTER, needsWebgpu } from "../_webgpu.ts";
import { assertClose } from "../_numeric.ts";

/** `run` on the device path (`true`) or the host's: its kernel set, `updateOnDevice` set so. */
function onDevice(run: Run, on = true): Run {
  run.kernels = { ...run.kernels, updateOnDevice: on };
  return run;
}

/**
 * A GRPO run of the tiny recipe on `backend` with KL to its initial policy tracked (a frozen
 * copy); clipping off unless `clipGradNorm` is given.
 */
async function grpoRun(
  objective: Run["objective"] = objectives.grpo as Run["objective"],
  backend: "cpu" | "webgpu" = "cpu",
  clipGradNorm = 0,
) {
  const run = await tinyRun(
    {
      objective: grpo({ beta: 0.05 }),
      reference: "initial",
      miniBatches: 2,
      epochs: 2,
      optimizer: { lr: 1e-2, clipGradNorm },
      backend,
    },
    objective,
  );
  run.objectiveOptions = run.plan.objective.options;
  const initial = Object.fromEntries(
    Object.entries(run.params).map(([name, p]) => [name, tf.clone(p)]),
  );
  run.reference = initial;
  run.initial = initial;
  return run;
}

function release(run: Run): void {
  if (run.initial) tf.dispose(Object.values(run.initial));
  releaseRun(run);
}

/** Each tensor's values, by name, read asynchronously (webgpu cannot read synchronously). */
async function read(tensors: Record<string, tf.Tensor>): Promise<Record<string, Float32Array>> {
  const out: Record<string, Float32Array> = {};
  for (const [name, t] of Object.entries(tensors)) out[name] = (await t.data()) as Float32Array;
  return out;
}

const timeless = (
  { sampleSeconds: _, stepSeconds: __, tokensPerSecond: ___, ...m }: Awaited<
    ReturnType<typeof trainStep>
  >["metrics"],
) => m;

Deno.test("trainStep() on the device path: GRPO, 2 epochs × 2 mini-batches, the host path's numbers bit for bit", async () => {
  const [host, device] = [await grpoRun(), onDevice(await grpoRun())];
  try {
    let after1 = 0; // the device path's tables (4 tensors) live with the optimiser from step 1
    for (let step = 1; step <= 3; step++) {
      const [a, b] = [await trainStep(host, step), await trainStep(device, step)];
      assert.deepEqual(timeless(b.metrics), timeless(a.metrics), `step ${step}`);
      assert.deepEqual(b.samples, a.samples);
      assert.ok(a.metrics.klInitial !== undefined && a.metrics.kl !== null);
      assert.ok(a.samples.some((g) => g.completions.some((c) => c.advantage !== 0)));
      if (step === 1) after1 = tf.memory().numTensors;
    }
    assert.equal(tf.memory().numTensors, after1);
    assert.equal(device.optimizer.t, 12);
    assert.equal(host.optimizer.t, 12);
    assert.deepEqual(values(device.params), values(host.params));
    for (const name of Object.keys(host.optimizer.m)) {
      assert.deepEqual(
        await device.optimizer.v[name]!.data(),
        await host.optimizer.v[name]!.data(),
      );
    }
  } finally {
    release(host);
    release(device);
  }
});

/** GRPO with a NaN loss at the updates listed (counted from 1). */
function poisoned(nanLoss: number[]): Run["objective"] {
  let updates = 0;
  return {
    ...objectives.grpo,
    loss(batch: ObjectiveBatch, options: unknown): ObjectiveResult {
      updates++;
      const result = objectives.grpo.loss(batch, options as never);
      if (!nanLoss.includes(updates)) return result;
      return { ...result, loss: tf.add(result.loss, NaN) };
    },
  } as Run["objective"];
}

Deno.test("trainStep() on the device path skips non-finite updates and stops where the host path stops", async () => {
  // 4 updates a step: 2 and 3 of step 1 skipped (4 applied), then 5–7 in a row: the limit of 3
  // (the default maxSkippedUpdates) is reached at update 7, so step 2 throws there, and update 8,
  // finite, which the device path queued, must not apply
  const nan = [2, 3, 5, 6, 7];
  const runs = [await grpoRun(poisoned(nan)), await grpoRun(poisoned(nan))];
  onDevice(runs[1]!);
  try {
    const [a, b] = [await trainStep(runs[0]!, 1), await trainStep(runs[1]!, 1)];
    assert.equal(a.metrics.skippedUpdates, 2);
    assert.deepEqual(timeless(b.metrics), timeless(a.metrics));
    for (const run of runs) {
      await assert.rejects(
        () => trainStep(run, 2),
        (e: Error) => e instanceof NonFiniteUpdateError && e.step === 2 && e.count === 3,
      );
    }
    assert.deepEqual(runs[1]!.faults, runs[0]!.faults);
    assert.deepEqual(runs[1]!.faults, { inRow: 3, total: 5 });
    assert.equal(runs[1]!.optimizer.t, runs[0]!.optimizer.t);
    assert.deepEqual(values(runs[1]!.params), values(runs[0]!.params));
  } finally {
    runs.forEach(release);
  }
});

Deno.test({
  ...needsWebgpu(
    "trainStep() on webgpu: the device path (one read a step) computes the host path's numbers",
  ),
  async fn() {
    const { objective } = { objective: objectives.grpo as Run["objective"] };
    // without clipping, bit for bit: 2 steps of 4 updates
    const [host, device] = [
      onDevice(await grpoRun(objective, "webgpu"), false),
      await grpoRun(objective, "webgpu"),
    ];
    try {
      assert.ok(
        device.kernels.updateOnDevice,
        "webgpu's kernel set keeps the checks on the device",
      );
      const live = () => tf.memory().numTensors - deviceConstantCount();
      let after1 = 0;
      for (let step = 1; step <= 2; step++) {
        const [a, b] = [await trainStep(host, step), await trainStep(device, step)];
        assertOpsBits(timeless(b.metrics), timeless(a.metrics), `step ${step}`);
        assertOpsBits(b.samples, a.samples, `step ${step}: samples`);
        if (step === 1) after1 = live();
      }
      assert.equal(live(), after1);
      assert.equal(device.optimizer.t, 8);
      // AdamW moves a parameter by lr·m/√v, and m/√v of a gradient near 0 keeps the gradient's
      // relative rounding: on a GPU (fused multiply-adds) 8 updates at lr 1e-2 differ by up to
      // about 1e-6 absolute (2.3e-7 seen on an NVIDIA H200), as in the clipped case below
      assertClose(
        await read(device.params),
        await read(host.params),
        "parameters",
        CPU_ADAPTER ? { rtol: 0, atol: 0 } : { rtol: 1e-5, atol: 1e-6 },
      );
    } finally {
      release(host);
      release(device);
    }
    // with clipping that acts: the clipping scale is float32's on the device, so the later
    // updates of the step start from parameters within float32 rounding of the host path's
    const [clippedHost, clippedDevice] = [
      onDevice(await grpoRun(objective, "webgpu", 1e-3), false),
      await grpoRun(objective, "webgpu", 1e-3),
    ];
    try {
      const [a, b] = [await trainStep(clippedHost, 1), await trainStep(clippedDevice, 1)];
      assert.ok(a.metrics.gradNorm > 1e-3 && a.metrics.gradNormClipped <= 1e-3 + 1e-12);
      const near = (x: number, y: number) => Math.abs(x - y) <= 1e-5 * Math.max(1, Math.abs(x));
      for (const key of ["loss", "gradNorm", "gradNormClipped", "lr"] as const) {
        assert.ok(
          near(a.metrics[key], b.metrics[key]),
          `${key}: ${a.metrics[key]}, ${b.metrics[key]}`,
        );
      }
      const [p, q] = [await read(clippedHost.params), await read(clippedDevice.params)];
      for (const name of Object.keys(p)) {
        p[name]!.forEach((x, i) => {
          const y = q[name]![i]!;
          assert.ok(
            Math.abs(x - y) <= 1e-6 * Math.max(1, Math.abs(x)),
            `${name}[${i}]: ${x}, ${y}`,
          );
        });
      }
    } finally {
      release(clippedHost);
      release(clippedDevice);
    }
  },
});

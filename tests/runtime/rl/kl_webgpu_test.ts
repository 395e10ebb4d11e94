/**
 * The KL diagnostic's fused program on webgpu (runtime/rl/kl_webgpu.ts), where WebGPU offers an
 * adapter: the bits of `aggregate(klK3(…), mask, "token-mean")`'s ops on the same backend, for rows
 * taking 64 and 256 reduction lanes, masks with padding, an empty mask and a NaN; one dispatch.
 *
 * @module
 */

import assert from "node:assert/strict";
import { tf, useBackend } from "../../../runtime/engine/backend.ts";
import { deviceConstantCount } from "../../../runtime/engine/kernels/constants.ts";
import { klOnDevice, tokenMeanKl } from "../../../runtime/rl/kl_webgpu.ts";
import { aggregate, klK3 } from "../../../runtime/rl/objectives/axes.ts";
import { countWebgpu } from "../../../runtime/engine/webgpu_counters.ts";
import { Rng } from "../../../runtime/engine/random.ts";
import { assertOpsBits, needsWebgpu } from "../_webgpu.ts";

Deno.test({
  ...needsWebgpu("tokenMeanKl: the bits of klK3 and a token-mean aggregate, in one dispatch"),
  async fn() {
    await useBackend("webgpu");
    // the device caches (kernels/constants.ts) keep the constants the ops take
    const live = () => tf.memory().numTensors - deviceConstantCount();
    const before = live();
    const rng = new Rng(5);
    for (
      const [rows, cols, kind] of [[8, 4, "padded"], [40, 128, "padded"], [3, 5, "empty"], [
        6,
        7,
        "nan",
      ], [100, 300, "padded"]] as const
    ) {
      const n = rows * cols;
      assert.ok(klOnDevice(n) === n < 32768);
      if (!klOnDevice(n)) continue;
      const logp = Float32Array.from({ length: n }, () => -3 * rng.uniform());
      const ref = Float32Array.from({ length: n }, (_, i) => logp[i]! + (rng.uniform() - 0.5));
      const mask = Float32Array.from({ length: n }, (_, i) => (i % cols) < cols - (i % 3) ? 1 : 0);
      if (kind === "empty") mask.fill(0);
      if (kind === "nan") logp[n - 2] = NaN;
      const [l, r, m] = [
        tf.tensor2d(logp, [rows, cols]),
        tf.tensor2d(ref, [rows, cols]),
        tf.tensor2d(mask, [rows, cols]),
      ];
      const { result: fused, counts } = await countWebgpu(() =>
        Promise.resolve(tokenMeanKl(l, r, m))
      );
      assert.equal(counts.dispatches, 1);
      const ops = tf.tidy(() => aggregate(klK3(l, r), m, "token-mean"));
      const [a, b] = [await fused.data(), await ops.data()];
      assertOpsBits(a, b, `[${rows}, ${cols}] ${kind}`);
      if (kind === "empty") assert.equal(a[0], 0);
      if (kind === "nan") assert.ok(Number.isNaN(a[0]!));
      if (kind === "padded") assert.ok(a[0]! > 0);
      assert.equal(fused.rank, 0);
      tf.dispose([l, r, m, fused, ops]);
    }
    assert.equal(live(), before);
  },
});

// The device caches (runtime/engine/kernels/constants.ts), turned on by hand on the cpu backend:
// what they hand out, what they keep, and what a leak test sees of them.

import assert from "node:assert/strict";
import { tf, useBackend } from "../../../../runtime/engine/backend.ts";
import {
  cacheDeviceConstants,
  cachedTensors,
  deviceConstant,
  deviceConstantCount,
  deviceConstantsCached,
  disposeDeviceConstants,
  scopedConstant,
  TABLE_LIMIT,
} from "../../../../runtime/engine/kernels/constants.ts";

/** Runs `f` on cpu with the caches on, then frees them and turns them off again. */
async function withCaches(f: () => Promise<void> | void): Promise<void> {
  await useBackend("cpu");
  assert.equal(deviceConstantsCached(), false, "useBackend('cpu') leaves the caches off");
  cacheDeviceConstants(true);
  try {
    await f();
  } finally {
    disposeDeviceConstants();
    cacheDeviceConstants(false);
  }
}

Deno.test("deviceConstant() off: a fresh scalar each call, owned by the caller's tidy", async () => {
  await useBackend("cpu");
  const before = tf.memory().numTensors;
  const values = tf.tidy(() => {
    const [a, b] = [deviceConstant(0.1), deviceConstant(0.1)];
    assert.notEqual(a, b);
    return [a.dataSync()[0], deviceConstant(7, "int32").dataSync()[0], deviceConstant(7).dtype];
  });
  assert.deepEqual(values, [Math.fround(0.1), 7, "float32"]);
  assert.equal(tf.memory().numTensors, before);
});

Deno.test("deviceConstant() on: one kept tensor per (value, dtype), made again once disposed", () =>
  withCaches(() => {
    const before = tf.memory().numTensors;
    const a = tf.tidy(() => deviceConstant(0.1));
    assert.equal(a.isDisposed, false, "kept through the tidy that made it");
    assert.equal(deviceConstant(0.1), a);
    assert.equal(deviceConstant(Math.fround(0.1)), a, "keyed by the float32 it stores");
    const int = deviceConstant(3, "int32");
    assert.notEqual(int, deviceConstant(3));
    assert.equal(int.dtype, "int32");
    assert.notEqual(deviceConstant(-0), deviceConstant(0), "−0 and 0 are different bits");
    assert.ok(Object.is(deviceConstant(-0).dataSync()[0], -0));
    assert.equal(deviceConstantCount(), 5);
    assert.equal(tf.memory().numTensors - deviceConstantCount(), before);
    a.dispose();
    const again = deviceConstant(0.1);
    assert.notEqual(again, a);
    assert.equal(again.dataSync()[0], Math.fround(0.1));
    disposeDeviceConstants();
    assert.equal(deviceConstantCount(), 0);
    assert.equal(tf.memory().numTensors, before);
  }));

Deno.test("scopedConstant() is made once per tidy and freed with it", () =>
  withCaches(() => {
    const before = tf.memory().numTensors;
    let first: tf.Tensor | null = null;
    tf.tidy(() => {
      first = scopedConstant(0.5);
      tf.tidy(() => assert.equal(scopedConstant(0.5), first, "shared with inner tidies"));
      assert.equal(first.isDisposed, false);
      assert.equal(tf.memory().numTensors, before + 1);
    });
    assert.equal(first!.isDisposed, true);
    assert.equal(tf.memory().numTensors, before);
    const next = tf.tidy(() => scopedConstant(0.5).dataSync()[0]);
    assert.equal(next, 0.5);
    assert.equal(tf.memory().numTensors, before);
    assert.equal(deviceConstantCount(), 0, "not a cached tensor");
  }));

Deno.test("cachedTensors() keeps the most recent keys and remakes what was disposed", () =>
  withCaches(() => {
    let made = 0;
    const table = (key: number) =>
      cachedTensors(`t:${key}`, () => {
        made++;
        return [tf.fill([2], key), tf.fill([3], -key)];
      });
    const [a] = table(0);
    assert.equal(table(0)[0], a);
    assert.equal(made, 1);
    assert.deepEqual([...table(0)[1]!.dataSync()], [-0, -0, -0]);
    for (let k = 1; k <= TABLE_LIMIT; k++) table(k); // key 0 is now the least recently used
    assert.equal(a!.isDisposed, true, "evicted beyond TABLE_LIMIT keys");
    assert.equal(deviceConstantCount(), 2 * TABLE_LIMIT);
    const [b] = table(TABLE_LIMIT);
    b!.dispose();
    const [c] = table(TABLE_LIMIT);
    assert.notEqual(c, b);
    assert.deepEqual([...c!.dataSync()], [TABLE_LIMIT, TABLE_LIMIT]);
    assert.equal(made, TABLE_LIMIT + 2);
  }));

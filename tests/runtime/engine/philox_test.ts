/**
 * Philox4x32-10 (runtime/engine/philox.ts): the TypeScript reference against Random123's
 * published known-answer vectors (its tests/kat_vectors), and the WGSL version, where WebGPU
 * offers an adapter, bit for bit against the reference.
 *
 * @module
 */

import assert from "node:assert/strict";
import { tf, useBackend } from "../../../runtime/engine/backend.ts";
import {
  philox4x32,
  philoxOnDevice,
  philoxUniform,
  uniformAt,
} from "../../../runtime/engine/philox.ts";
import { Rng } from "../../../runtime/engine/random.ts";
import { needsWebgpu } from "../_webgpu.ts";

type Words4 = [number, number, number, number];

/** Random123's kat_vectors for philox4x32 with 10 rounds: counter, key, output. */
const KNOWN_ANSWERS: [Words4, [number, number], Words4][] = [
  [[0, 0, 0, 0], [0, 0], [0x6627e8d5, 0xe169c58d, 0xbc57ac4c, 0x9b00dbd8]],
  [
    [0xffffffff, 0xffffffff, 0xffffffff, 0xffffffff],
    [0xffffffff, 0xffffffff],
    [0x408f276d, 0x41c83b0e, 0xa20bc7c6, 0x6d5451fd],
  ],
  [
    [0x243f6a88, 0x85a308d3, 0x13198a2e, 0x03707344],
    [0xa4093822, 0x299f31d0],
    [0xd16cfe09, 0x94fdcceb, 0x5001e420, 0x24126ea1],
  ],
];

Deno.test("philox4x32() gives Random123's known answers", () => {
  for (const [counter, key, expected] of KNOWN_ANSWERS) {
    assert.deepEqual(philox4x32(counter, key), expected);
  }
});

Deno.test("philoxUniform() is the top 24 bits × 2^-24; uniformAt() reads counter (index, row, 0, 0)", () => {
  assert.equal(philoxUniform(0), 0);
  assert.equal(philoxUniform(0x80000000), 0.5);
  assert.equal(philoxUniform(0x000000ff), 0); // the low 8 bits are dropped
  assert.equal(philoxUniform(0xffffffff), 1 - 2 ** -24);
  assert.equal(philoxUniform(0x00000100), 2 ** -24);
  // The first word of the known answer at counter 0, key 0: 0x6627e8d5 >>> 8 = 0x6627e8.
  assert.equal(uniformAt([0, 0], 0, 0), 0x6627e8 / 2 ** 24);
  const [, key] = KNOWN_ANSWERS[2]!;
  const word = philox4x32([7, 3, 0, 0], key)[0];
  assert.equal(uniformAt(key, 7, 3), (word >>> 8) / 2 ** 24);
  assert.notEqual(uniformAt(key, 7, 3), uniformAt(key, 3, 7));
});

Deno.test({
  ...needsWebgpu(
    "philoxOnDevice() gives the known answers and the reference's bits for 4,096 counters",
  ),
  async fn() {
    await useBackend("webgpu");
    const before = tf.memory().numTensors;
    for (const [counter, key, expected] of KNOWN_ANSWERS) {
      const input = tf.tensor2d([counter.map((w) => w | 0)], [1, 4], "int32");
      const out = philoxOnDevice(input, key);
      assert.deepEqual(Array.from(await out.data(), (w) => w >>> 0), expected);
      tf.dispose([input, out]);
    }
    const rng = new Rng(19).fork("philox");
    const n = 4096;
    for (let trial = 0; trial < 3; trial++) {
      const key: [number, number] = [rng.nextUint32(), rng.nextUint32()];
      const counters = Array.from({ length: n }, (_, i): Words4 =>
        trial === 0
          ? [i, i % 7, 0, 0] // the sampler's layout: (token index, row, 0, 0)
          : [rng.nextUint32(), rng.nextUint32(), rng.nextUint32(), rng.nextUint32()]);
      const input = tf.tensor2d(counters.map((c) => c.map((w) => w | 0)), [n, 4], "int32");
      const out = philoxOnDevice(input, key);
      const words = await out.data() as Int32Array;
      tf.dispose([input, out]);
      for (let i = 0; i < n; i++) {
        const expected = philox4x32(counters[i]!, key);
        for (let j = 0; j < 4; j++) {
          assert.equal(words[4 * i + j]! >>> 0, expected[j], `counter ${i}, word ${j}`);
        }
      }
    }
    assert.equal(tf.memory().numTensors, before);
  },
});

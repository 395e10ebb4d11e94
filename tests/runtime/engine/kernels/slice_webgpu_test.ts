/**
 * The run-by-run `Slice` of a tensor still on the CPU (runtime/engine/kernels/slice_webgpu.ts):
 * `sliceRuns` against a slice computed element by element here; the kernel on webgpu, where
 * WebGPU offers an adapter, against tfjs's own (uninstalled) on token ids as `tokenLogProbs`
 * slices them, float32 and bool tensors and ranks 1 to 4: the same values, dtype and shape, the
 * same kind of array, no dispatch and no upload; tensors on the device and contiguous slices left
 * to tfjs.
 *
 * @module
 */

import assert from "node:assert/strict";
import { tf, useBackend } from "../../../../runtime/engine/backend.ts";
import {
  hostSliceInstalled,
  hostSlicesByRuns,
  installHostSlice,
  sliceRuns,
  uninstallHostSlice,
} from "../../../../runtime/engine/kernels/slice_webgpu.ts";
import { countWebgpu } from "../../../../runtime/engine/webgpu_counters.ts";
import { Rng } from "../../../../runtime/engine/random.ts";
import { needsWebgpu } from "../../_webgpu.ts";

/** x[begin … begin + size) of a row-major `values` of `shape`, one element at a time. */
function sliceByElement(
  values: Int32Array,
  shape: number[],
  begin: number[],
  size: number[],
): number[] {
  const out: number[] = [];
  const strides = shape.map((_, i) => shape.slice(i + 1).reduce((a, b) => a * b, 1));
  const visit = (axis: number, offset: number) => {
    if (axis === shape.length) return void out.push(values[offset]!);
    for (let i = 0; i < size[axis]!; i++) {
      visit(axis + 1, offset + (begin[axis]! + i) * strides[axis]!);
    }
  };
  visit(0, 0);
  return out;
}

Deno.test("sliceRuns() copies the element-by-element slice, ranks 1 to 4, into the same kind of array", () => {
  const rng = new Rng(5);
  const cases: [number[], number[], number[]][] = [
    [[7], [2], [4]],
    [[8, 12], [0, 0], [8, 11]], // tokenLogProbs' inputs: all but the last token
    [[8, 12], [0, 7], [8, 5]], // its targets: the completion
    [[3, 4, 5], [1, 1, 2], [2, 3, 2]],
    [[2, 3, 4, 5], [1, 0, 2, 1], [1, 3, 2, 4]],
    [[4, 6], [1, 2], [0, 3]], // empty
  ];
  for (const [shape, begin, size] of cases) {
    const values = Int32Array.from(
      { length: shape.reduce((a, b) => a * b, 1) },
      () => Math.floor(rng.uniform() * 1000),
    );
    const out = sliceRuns(values, shape, begin, size);
    assert.ok(out instanceof Int32Array);
    assert.deepEqual(
      [...out],
      sliceByElement(values, shape, begin, size),
      `${shape} ${begin} ${size}`,
    );
  }
  const floats = sliceRuns(new Float32Array([0.5, 1.5, 2.5, 3.5]), [2, 2], [0, 1], [2, 1]);
  assert.ok(floats instanceof Float32Array);
  assert.deepEqual([...floats], [1.5, 3.5]);
});

Deno.test({
  ...needsWebgpu(
    "webgpu's Slice of a tensor on the CPU: tfjs's values, dtype and shape without a dispatch; device tensors and contiguous slices left to tfjs",
  ),
  async fn() {
    await useBackend("webgpu");
    assert.ok(hostSliceInstalled(), "useBackend('webgpu') registers it");
    const rng = new Rng(11);
    const normals = Float32Array.from({ length: 120 }, () => rng.normal());
    const before = tf.memory().numTensors;
    // fresh tensors from host arrays each time: a slice on the CPU leaves its input there
    const made: [string, () => tf.Tensor, number[], number[]][] = [
      [
        "ids",
        () => tf.tensor2d(Int32Array.from({ length: 96 }, (_, i) => i * 7 % 50), [8, 12], "int32"),
        [0, 0],
        [8, 11],
      ],
      [
        "targets",
        () => tf.tensor2d(Int32Array.from({ length: 96 }, (_, i) => i * 3 % 41), [8, 12], "int32"),
        [0, 7],
        [-1, 5],
      ],
      [
        "float32",
        () => tf.tensor3d(normals.slice(0, 60), [3, 4, 5]),
        [1, 1, 2],
        [2, 3, 2],
      ],
      [
        "bool",
        () => tf.tensor2d(Array.from({ length: 20 }, (_, i) => i % 3 === 0), [4, 5], "bool"),
        [1, 1],
        [3, 3],
      ],
      [
        "rank 4",
        () => tf.tensor4d(normals.slice(), [2, 3, 4, 5]),
        [1, 0, 2, 1],
        [1, 3, 2, 4],
      ],
    ];
    made.push([
      "contiguous rows (tfjs's view)",
      () => tf.tensor2d(Int32Array.from({ length: 96 }, (_, i) => i), [8, 12], "int32"),
      [2, 0],
      [3, 12],
    ]);
    try {
      for (const [what, make, begin, size] of made) {
        uninstallHostSlice();
        const x0 = make();
        const expected = tf.slice(x0, begin, size);
        installHostSlice();
        const x1 = make();
        const runs = hostSlicesByRuns();
        const { result: actual, counts } = await countWebgpu(() => tf.slice(x1, begin, size));
        const contiguous = what.startsWith("contiguous");
        assert.equal(hostSlicesByRuns() - runs, contiguous ? 0 : 1, `${what}: copied by runs`);
        assert.equal(counts.dispatches, 0, `${what}: sliced on the CPU`);
        assert.equal(counts.uploads, 0, `${what}: nothing uploaded`);
        assert.equal(actual.dtype, expected.dtype, what);
        assert.deepEqual(actual.shape, expected.shape, what);
        const [a, e] = [actual.dataSync(), expected.dataSync()];
        assert.equal(a.constructor, e.constructor, `${what}: the same kind of array`);
        assert.deepEqual([...a], [...e], what);
        tf.dispose([x0, x1, expected, actual]);
      }
      // past tfjs's CPU hand-off size (1,000 elements): tfjs's program, one dispatch
      const large = tf.tensor2d(Int32Array.from({ length: 1600 }, (_, i) => i), [8, 200], "int32");
      const runs = hostSlicesByRuns();
      const { result: sliced, counts } = await countWebgpu(() => tf.slice(large, [0, 1], [8, 199]));
      assert.equal(hostSlicesByRuns(), runs);
      assert.equal(counts.dispatches, 1);
      assert.deepEqual([...await sliced.data()].slice(198, 201), [199, 201, 202]);
      tf.dispose([large, sliced]);
      assert.equal(tf.memory().numTensors, before);
    } finally {
      installHostSlice();
    }
  },
});

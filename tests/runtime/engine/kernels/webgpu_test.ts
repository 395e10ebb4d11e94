// The webgpu kernel set (runtime/engine/kernels/webgpu.ts) against the plain tfjs ops on the same
// backend (on a machine without a GPU, WebGPU is lavapipe: see _webgpu.ts): its fused WGSL programs
// agree with the ops to float32 rounding, forward and gradient; the conformance suite covers left
// padding, temperatures and widths that are not multiples of a workgroup. Here, besides: rows
// longer than a workgroup and a workgroup per row past a row's end, and each program's dispatches.

import assert from "node:assert/strict";
import { needsWebgpu } from "../../_webgpu.ts";
import { relativeError } from "../../_numeric.ts";
import { runKernelConformance } from "./_conformance.ts";
import { tf, useBackend } from "../../../../runtime/engine/backend.ts";
import { deviceConstantCount } from "../../../../runtime/engine/kernels/constants.ts";
import { tfjsKernels } from "../../../../runtime/engine/kernels/tfjs.ts";
import { webgpuGatedSilu } from "../../../../runtime/engine/kernels/webgpu.ts";
import {
  cpuAdapterPrograms,
  runFused,
  type Uniform,
  useCpuAdapterPrograms,
  workgroupsFor,
} from "../../../../runtime/engine/kernels/webgpu_program.ts";
import type { KernelSet } from "../../../../runtime/engine/kernels/types.ts";
import { countWebgpu } from "../../../../runtime/engine/webgpu_counters.ts";
import { ropeTables } from "../../../../runtime/engine/model/transformer.ts";
import { normalArray, Rng } from "../../../../runtime/engine/random.ts";
import { GQA_CONFIG } from "../../_tiny.ts";

runKernelConformance("webgpu", {
  expect: { name: "webgpu", blas: false },
  requirement: needsWebgpu,
  approximate: ["logSoftmaxAt"],
});

/** A tensor of normal values from `seed`, times `std`. */
function normal(seed: number, shape: number[], std = 1): tf.Tensor {
  const size = shape.reduce((a, b) => a * b, 1);
  return tf.tensor(normalArray(new Rng(seed), size, std), shape);
}

/** f's value and the gradients of Σ f·weights with respect to `xs`, read out. */
async function valueAndGrads(
  f: (...xs: tf.Tensor[]) => tf.Tensor,
  xs: tf.Tensor[],
  weights: tf.Tensor,
): Promise<Float32Array[]> {
  const outs = tf.tidy(() => [
    f(...xs),
    ...tf.grads((...ts: tf.Tensor[]) => tf.sum(tf.mul(f(...ts), weights)))(xs),
  ]);
  const values = await Promise.all(outs.map((t) => t.data()));
  tf.dispose(outs);
  return values.map((v) => Float32Array.from(v as Float32Array));
}

/**
 * The webgpu set's f and the plain set's agree within 1e-5, leaving no tensor behind. With
 * `cpuPrograms`, the programs for a CPU adapter (true) or a GPU (false) run, whatever the adapter.
 */
async function agree(
  names: string[],
  f: (kernels: KernelSet, ...xs: tf.Tensor[]) => tf.Tensor,
  xs: tf.Tensor[],
  weights: tf.Tensor,
  cpuPrograms?: boolean,
): Promise<void> {
  const { kernels } = await useBackend("webgpu");
  assert.equal(kernels.name, "webgpu");
  const adapters = cpuAdapterPrograms();
  if (cpuPrograms !== undefined) useCpuAdapterPrograms(cpuPrograms);
  const live = () => tf.memory().numTensors - deviceConstantCount();
  const before = live();
  const got = await valueAndGrads((...ts) => f(kernels, ...ts), xs, weights);
  useCpuAdapterPrograms(adapters);
  assert.equal(live(), before, "a tensor left behind");
  const expected = await valueAndGrads((...ts) => f(tfjsKernels(), ...ts), xs, weights);
  got.forEach((g, i) => {
    const error = relativeError(g, expected[i]!);
    assert.ok(error < 1e-5, `${names[i]}: relative error ${error}`);
  });
  tf.dispose([...xs, weights]);
}

Deno.test({
  ...needsWebgpu(
    "webgpuKernels().rmsNorm() over rows wider than a workgroup (d 333, 5 rows), a GPU's programs and a CPU adapter's",
  ),
  async fn() {
    await useBackend("webgpu");
    for (const cpuPrograms of [false, true]) {
      await agree(
        ["value", "dx", "dw"].map((name) => `${name} (${cpuPrograms})`),
        (k, x, w) => k.rmsNorm(x as tf.Tensor2D, w!, 1e-5),
        [normal(1, [5, 333], 2), normal(2, [333])],
        normal(3, [5, 333]),
        cpuPrograms,
      );
    }
  },
});

Deno.test({
  ...needsWebgpu(
    "webgpuKernels().logSoftmaxAt() at temperature 1.3 over vocabularies of 5,003 and 37, a GPU's programs and a CPU adapter's",
  ),
  async fn() {
    await useBackend("webgpu");
    // 37 columns: an invocation per row on a CPU adapter; 5,003: a workgroup per row everywhere
    const targets = new Map([
      [5003, tf.tensor2d([0, 5002, 17, 4999, 1, 2500], [2, 3], "int32")],
      [37, tf.tensor2d([0, 36, 17, 30, 1, 20], [2, 3], "int32")],
    ]);
    for (const cpuPrograms of [false, true]) {
      for (const [vocab, ids] of targets) {
        await agree(
          ["value", "dlogits"].map((name) => `${name} (${vocab}, ${cpuPrograms})`),
          (k, logits) =>
            k.logSoftmaxAt(logits as tf.Tensor3D, ids as tf.Tensor2D, { temperature: 1.3 }),
          [normal(4, [2, 3, vocab], 4)],
          normal(5, [2, 3]),
          cpuPrograms,
        );
      }
    }
    tf.dispose([...targets.values()]);
  },
});

Deno.test({
  ...needsWebgpu(
    "webgpuKernels().attention() of one new query over cached keys, of queries that see no key, over several tiles, and of wide heads, a GPU's programs and a CPU adapter's",
  ),
  async fn() {
    await useBackend("webgpu");
    // one query after 6 cached keys (the sampler's step); row 1's padding covers all its keys
    const cases: [number, number, number, number[] | null][] = [
      [1, 7, 8, null],
      [1, 7, 8, [0, 7]],
      [3, 7, 8, [2, 7]],
      [70, 75, 72, [5, 0]], // queries and keys over two tiles of 64, two columns a lane
      [3, 5, 260, [1, 0]], // wider than the fused program takes: the fused softmax only
      [4, 9, 6, [0, 2]], // not a multiple of 4 wide: a CPU adapter runs the workgroup programs
      [11, 11, 32, [3, 0]], // the front door's heads
      [4, 6, 8, [5, 0]], // row 0's queries 0–2 see no key (padding), query 3 sees key 5 only
    ];
    for (const cpuPrograms of [false, true]) {
      for (const [time, keys, hd, padding] of cases) {
        await agree(
          ["value", "dq", "dk", "dv"].map((name) =>
            `${name} (${[time, keys, hd]}, ${cpuPrograms})`
          ),
          (k, q, kk, v) =>
            k.attention(q as tf.Tensor4D, kk as tf.Tensor4D, v as tf.Tensor4D, padding),
          [normal(6, [2, 3, time, hd]), normal(7, [2, 3, keys, hd]), normal(8, [2, 3, keys, hd])],
          normal(9, [2, 3, time, hd]),
          cpuPrograms,
        );
      }
    }
  },
});

/**
 * Dispatches of f forward, and of the forward and backward passes of its gradient for a given dy
 * (made and uploaded beforehand), after a warm-up.
 */
async function dispatches(
  f: (...xs: tf.Tensor[]) => tf.Tensor,
  xs: tf.Tensor[],
): Promise<[number, number]> {
  const run = async (g: () => tf.Tensor[]) => {
    const outs = tf.tidy(g);
    await Promise.all(outs.map((t) => t.data()));
    tf.dispose(outs);
  };
  const dy = tf.tidy(() => tf.onesLike(f(...xs)));
  await dy.data();
  const forward = () => [f(...xs)];
  const backward = () => tf.grads(f)(xs, dy);
  await run(forward);
  await run(backward);
  const a = (await countWebgpu(() => run(forward))).counts.dispatches;
  const b = (await countWebgpu(() => run(backward))).counts.dispatches;
  dy.dispose();
  return [a, b];
}

Deno.test({
  ...needsWebgpu(
    "webgpuKernels(): RMSNorm, RoPE, attention, the gated SiLU and the log-softmax at targets are one dispatch forward",
  ),
  async fn() {
    const { kernels } = await useBackend("webgpu");
    const [x, w, up] = [normal(10, [22, 64]), normal(11, [64]), normal(13, [22, 64])];
    const rotary = ropeTables({ ...GQA_CONFIG, headDim: 16, ropeTheta: 10_000 }, 0, 11, [0, 3]);
    const logits = normal(12, [2, 4, 30]);
    const targets = tf.tensor2d([1, 2, 3, 4, 5, 6, 7, 8], [2, 4], "int32");
    // forward; forward and backward
    assert.deepEqual(
      await dispatches((a, b) => kernels.rmsNorm(a as tf.Tensor2D, b!, 1e-5), [x, w]),
      [
        1,
        1 + 3, // 1/rms, dx, dw
      ],
    );
    assert.deepEqual(await dispatches((a) => kernels.ropeHeads(a as tf.Tensor2D, 4, rotary), [x]), [
      1,
      1 + 1,
    ]);
    assert.deepEqual(
      await dispatches(
        (a) => kernels.logSoftmaxAt(a as tf.Tensor3D, targets as tf.Tensor2D, { temperature: 0.7 }),
        [logits],
      ),
      [1, 1 + 1],
    );
    const [q, k, v] = [
      normal(14, [2, 4, 5, 16]),
      normal(15, [2, 4, 7, 16]),
      normal(16, [2, 4, 7, 16]),
    ];
    const adapters = cpuAdapterPrograms();
    for (const cpuPrograms of [false, true]) {
      useCpuAdapterPrograms(cpuPrograms);
      assert.deepEqual(
        await dispatches(
          (a, b, c) =>
            kernels.attention(a as tf.Tensor4D, b as tf.Tensor4D, c as tf.Tensor4D, [0, 3]),
          [q, k, v],
        ),
        [1, 1 + 4], // each query row's max, log-sum and dO·O; dq; dk; dv
      );
    }
    useCpuAdapterPrograms(adapters);
    tf.dispose([q, k, v]);
    assert.deepEqual(
      await dispatches((a, b) => webgpuGatedSilu(a as tf.Tensor2D, b as tf.Tensor2D), [x, up]),
      [1, 1 + 2], // dg, du
    );
    tf.dispose([x, w, up, rotary.cos, rotary.sin, logits, targets]);
  },
});

Deno.test({
  ...needsWebgpu(
    "runFused() runs a WGSL program on the backend's tensors, its uniforms read as given",
  ),
  async fn() {
    await useBackend("webgpu");
    const before = tf.memory().numTensors - deviceConstantCount();
    const x = tf.tensor1d(Float32Array.from({ length: 1000 }, (_, i) => i / 8 - 60)); // not 64·k
    const program = (scale: number) => ({
      name: "test_scale_add",
      inputs: ["x"],
      outputShape: x.shape,
      workgroupSize: 64,
      workgroups: workgroupsFor(x.size, 64),
      uniforms: { count: ["i32", x.size] as Uniform, scale: ["f32", scale] as Uniform },
      code: `fn main(index : i32) {
        if (index < uniforms.count) { result[index] = uniforms.scale * x[index] + 1.0; }
      }`,
    });
    const [a, b] = [runFused(program(2), [x]), runFused(program(-0.5), [x])];
    const [got, got2, xs] = await Promise.all([a.data(), b.data(), x.data()]);
    xs.forEach((v, i) => {
      assert.equal(got[i], Math.fround(2 * v + 1));
      assert.equal(got2[i], Math.fround(Math.fround(-0.5 * v) + 1));
    });
    assert.throws(() => runFused(program(1), []), /reads 1 inputs: current count is 0/);
    tf.dispose([x, a, b]);
    assert.equal(tf.memory().numTensors - deviceConstantCount(), before);
  },
});

Deno.test({
  ...needsWebgpu(
    "webgpuKernels().embed(): the gather's value and gradient (repeated and unused ids), the gradient one dispatch",
  ),
  async fn() {
    await useBackend("webgpu");
    const rng = new Rng(11);
    const vocab = 37;
    const ids = tf.tensor1d(
      Array.from({ length: 90 }, (_, n) => n % 9 === 0 ? 3 : Math.floor(rng.uniform() * 30)), // ids 30 … 36 unused
      "int32",
    );
    await agree(
      ["value", "dtable"],
      (k, table) => k.embed(table!, ids as tf.Tensor1D, vocab),
      [normal(6, [vocab, 70])],
      normal(7, [90, 70]),
    );
    // a table past EMBED_GRADIENT_MAX_WORK keeps gather's gradient, the same values
    const many = tf.tensor1d([0, 20_000, 5, 5, 19_999], "int32");
    await agree(
      ["value", "dtable"],
      (k, table) => k.embed(table!, many as tf.Tensor1D, 20_001),
      [normal(8, [20_001, 4])],
      normal(9, [5, 4]),
    );
    const { kernels } = await useBackend("webgpu");
    const table = normal(10, [vocab, 70]);
    await table.data();
    const dispatches = async (set: KernelSet) => {
      const { result, counts } = await countWebgpu(() =>
        Promise.resolve(
          tf.tidy(() =>
            tf.grad((e: tf.Tensor) => tf.sum(set.embed(e, ids as tf.Tensor1D, vocab)))(table)
          ),
        )
      );
      result.dispose();
      return counts.dispatches;
    };
    await dispatches(kernels); // warm: the sum's gradient's constants made
    // tfjs's gradient: two identity transposes, two transposes, a fill, UnsortedSegmentSum
    assert.equal((await dispatches(tfjsKernels())) - (await dispatches(kernels)), 5);
    tf.dispose([table, ids, many]);
  },
});

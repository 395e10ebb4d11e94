/**
 * The tile and row-block `BatchMatMul` on webgpu (runtime/engine/kernels/matmul_webgpu.ts), where WebGPU
 * offers an adapter, against tfjs's own program (the kernel uninstalled): the same bits on the
 * model's products, where both add over k in order with `fma`; within 1e-5 relative elsewhere
 * (tfjs picks other programs for some shapes, a split over k among them, which adds in another
 * order); rows not a multiple of the block, K = 1, batched and broadcast inputs, either transpose
 * flag; N % 4 ≠ 0 products left to tfjs; one dispatch a product; gradients; no leaked tensors.
 *
 * @module
 */

import assert from "node:assert/strict";
import { tf, useBackend } from "../../../../runtime/engine/backend.ts";
import {
  cpuAdapter,
  installRowBlockMatMul,
  rowBlockInstalled,
  tileProduct,
  uninstallRowBlockMatMul,
} from "../../../../runtime/engine/kernels/matmul_webgpu.ts";
import { countWebgpu } from "../../../../runtime/engine/webgpu_counters.ts";
import { Rng } from "../../../../runtime/engine/random.ts";
import { needsWebgpu } from "../../_webgpu.ts";

function randomTensor(rng: Rng, shape: number[]): tf.Tensor {
  const values = new Float32Array(shape.reduce((x, y) => x * y, 1));
  for (let i = 0; i < values.length; i++) values[i] = rng.normal();
  return tf.tensor(values, shape);
}

/**
 * `f` with tfjs's own kernel and with the row blocks: both outputs' values. A program that does not
 * compile writes nothing, and its output buffer, from tfjs's pool, may hold an earlier product's
 * right values: the device's validation errors while the row blocks run must be none.
 */
async function bothWays(
  f: () => tf.Tensor,
): Promise<{ tfjs: Float32Array; rows: Float32Array; shapes: number[][] }> {
  uninstallRowBlockMatMul();
  const t = f();
  installRowBlockMatMul();
  const device = (tf.backend() as unknown as { device: GPUDevice }).device;
  device.pushErrorScope("validation");
  const r = f();
  await r.data();
  const error = await device.popErrorScope();
  assert.equal(error?.message ?? null, null);
  const out = {
    tfjs: await t.data() as Float32Array,
    rows: await r.data() as Float32Array,
    shapes: [t.shape, r.shape],
  };
  t.dispose();
  r.dispose();
  return out;
}

function assertClose(actual: Float32Array, expected: Float32Array, rel: number, what: string) {
  assert.equal(actual.length, expected.length, what);
  for (let i = 0; i < actual.length; i++) {
    const tol = rel * Math.max(1, Math.abs(expected[i]!));
    assert.ok(
      Math.abs(actual[i]! - expected[i]!) <= tol,
      `${what}: element ${i} is ${actual[i]}, tfjs gives ${expected[i]}`,
    );
  }
}

Deno.test("cpuAdapter() knows lavapipe, SwiftShader and fallback adapters, not a GPU", () => {
  assert.ok(cpuAdapter({ info: { description: "llvmpipe (LLVM 15.0.6, 256 bits)" } }));
  assert.ok(cpuAdapter({ info: { device: "SwiftShader Device (Subzero)" } }));
  assert.ok(cpuAdapter({ isFallbackAdapter: true, info: {} }));
  assert.ok(!cpuAdapter({ info: { description: "NVIDIA H200", vendor: "nvidia" } }));
  assert.ok(!cpuAdapter({}));
});

Deno.test({
  ...needsWebgpu("installRowBlockMatMul: the same bits as tfjs on the model's products"),
  async fn() {
    await useBackend("webgpu");
    const rng = new Rng(1);
    const live = tf.memory().numTensors;
    // the shapes measured against tfjs's program: [rows, dim]·[dim, 3·dim], ·[F, dim], …
    const shapes: [number[], number[]][] = [
      [[1280, 128], [128, 352]],
      [[128, 1280], [1280, 352]],
      [[1280, 352], [352, 128]],
      [[1280, 128], [128, 128]],
    ];
    for (const [sa, sb] of shapes) {
      const a = randomTensor(rng, sa), b = randomTensor(rng, sb);
      const { tfjs, rows } = await bothWays(() => tf.matMul(a, b));
      assert.deepEqual(rows, tfjs, `${sa}·${sb}`);
      // the unembedding's flag (bᵀ) and the backward pass's aᵀ: the same sums in the same order
      const [at, bt] = [tf.transpose(a), tf.transpose(b)];
      for (const [ta, tb] of [[false, true], [true, false], [true, true]]) {
        const { tfjs, rows } = await bothWays(() => tf.matMul(ta ? at : a, tb ? bt : b, ta, tb));
        assert.deepEqual(rows, tfjs, `${sa}·${sb} (${ta}, ${tb})`);
      }
      tf.dispose([a, b, at, bt]);
    }
    installRowBlockMatMul();
    assert.equal(tf.memory().numTensors, live);
  },
});

Deno.test({
  ...needsWebgpu(
    "installRowBlockMatMul: ragged rows, K = 1, batches, broadcasts, flags within 1e-5 of tfjs",
  ),
  async fn() {
    await useBackend("webgpu");
    const rng = new Rng(2);
    const live = tf.memory().numTensors;
    // [a, b, output]: rows past a multiple of 16 (and of 8, 4), K = 1, one row, attention's
    // [B·H, T, hd]·[B·H, hd, T]-like batches (4-d too), and a batch of 1 on one side
    const cases: [number[], number[], number[]][] = [
      [[37, 20], [20, 12], [37, 12]],
      [[5, 7], [7, 8], [5, 8]],
      [[1, 64], [64, 32], [1, 32]],
      [[19, 1], [1, 16], [19, 16]],
      [[6, 13, 8], [6, 8, 16], [6, 13, 16]],
      [[2, 3, 17, 8], [2, 3, 8, 12], [2, 3, 17, 12]],
      [[4, 9, 8], [8, 4], [4, 9, 4]],
      [[9, 8], [3, 8, 4], [3, 9, 4]],
      [[1, 9, 8], [3, 8, 4], [3, 9, 4]],
      // the tile program's edges: 20 rows (a block of 16 and a clamped one, aᵀ read by quads),
      // 36 columns (9 quads: two blocks of 4 and a clamped one), batches of 3
      [[20, 24], [24, 36], [20, 36]],
      [[3, 20, 8], [3, 8, 40], [3, 20, 40]],
    ];
    for (const [sa, sb, so] of cases) {
      const a = randomTensor(rng, sa), b = randomTensor(rng, sb);
      const { tfjs, rows, shapes } = await bothWays(() => tf.matMul(a, b));
      assert.deepEqual(shapes, [so, so], `${sa}·${sb}`);
      // tfjs runs some of these with other programs (small outputs, a split over k): other order
      assertClose(rows, tfjs, 1e-5, `${sa}·${sb}`);
      // attention's q·kᵀ and the transposed flags on each side
      const r = sa.length, s = sb.length;
      const at = tf.transpose(a, [...Array(r - 2).keys(), r - 1, r - 2]);
      const bt = tf.transpose(b, [...Array(s - 2).keys(), s - 1, s - 2]);
      for (const [ta, tb] of [[false, true], [true, false], [true, true]]) {
        const got = await bothWays(() => tf.matMul(ta ? at : a, tb ? bt : b, ta, tb));
        assertClose(got.rows, got.tfjs, 1e-5, `${sa}·${sb} (${ta}, ${tb})`);
      }
      tf.dispose([a, b, at, bt]);
    }
    assert.equal(tf.memory().numTensors, live);
  },
});

Deno.test({
  ...needsWebgpu("installRowBlockMatMul: one dispatch a product; tfjs's kernel for the rest"),
  async fn() {
    await useBackend("webgpu");
    installRowBlockMatMul();
    assert.ok(rowBlockInstalled());
    const rng = new Rng(3);
    const a = randomTensor(rng, [33, 24]), b = randomTensor(rng, [24, 16]);
    const c = randomTensor(rng, [24, 10]);
    await Promise.all([a.data(), b.data(), c.data()]); // uploaded before counting
    const { counts } = await countWebgpu(async () => {
      const p = tf.matMul(a, b);
      await p.data();
      p.dispose();
    });
    assert.equal(counts.dispatches, 1);
    // 10 columns, plain and transposed: tfjs's kernel, so the very bits of its program
    const ct = tf.transpose(c);
    for (const f of [() => tf.matMul(a, c), () => tf.matMul(a, ct, false, true)]) {
      const { tfjs, rows } = await bothWays(f);
      assert.deepEqual(rows, tfjs);
    }
    uninstallRowBlockMatMul();
    assert.ok(!rowBlockInstalled());
    installRowBlockMatMul();
    tf.dispose([a, b, c, ct]);
  },
});

Deno.test({
  ...needsWebgpu(
    "tileProduct: the tile program takes k and n multiples of 4 (and m, aᵀ); the kernel set passes it the flags",
  ),
  async fn() {
    const { kernels } = await useBackend("webgpu");
    installRowBlockMatMul();
    const info = (shape: number[]) => ({ shape, dtype: "float32" }) as tf.TensorInfo;
    assert.ok(tileProduct(info([1280, 128]), info([128, 352]), false, false));
    assert.ok(tileProduct(info([128, 1280]), info([128, 352]), true, false)); // aᵀ: m = 1280
    assert.ok(tileProduct(info([1280, 128]), info([352, 128]), false, true)); // bᵀ
    assert.ok(!tileProduct(info([15, 12]), info([12, 8]), true, false)); // aᵀ with m = 15
    assert.ok(!tileProduct(info([12, 15]), info([15, 8]), false, false)); // k = 15
    assert.ok(!tileProduct(info([12, 16]), info([16, 10]), false, false)); // n = 10
    const rng = new Rng(5);
    const x = randomTensor(rng, [40, 24]), dy = randomTensor(rng, [40, 32]);
    const w = randomTensor(rng, [24, 32]);
    await Promise.all([x.data(), dy.data(), w.data()]);
    // the backward pass's xᵀ·dy and dy·wᵀ: one dispatch each, the bits of a transposed copy first
    for (const [a, b, ta, tb] of [[x, dy, true, false], [dy, w, false, true]] as const) {
      const { result, counts } = await countWebgpu(async () => {
        const p = kernels.product(a, b, ta, tb);
        await p.data();
        return p;
      });
      assert.equal(counts.dispatches, 1);
      const first = tf.matMul(ta ? tf.transpose(a) : a, tb ? tf.transpose(b) : b);
      assert.deepEqual(await result.data(), await first.data());
      tf.dispose([result, first]);
    }
    uninstallRowBlockMatMul(); // tfjs's programs: a transposed copy first, two dispatches
    assert.ok(!tileProduct(info([1280, 128]), info([128, 352]), false, false));
    const { result, counts } = await countWebgpu(async () => {
      const p = kernels.product(x, dy, true, false);
      await p.data();
      return p;
    });
    assert.equal(counts.dispatches, 2);
    installRowBlockMatMul();
    tf.dispose([x, dy, w, result]);
  },
});

Deno.test({
  ...needsWebgpu("installRowBlockMatMul: tf.grad of a model-like product within 1e-5 of tfjs"),
  async fn() {
    await useBackend("webgpu");
    const rng = new Rng(4);
    const x = randomTensor(rng, [40, 24]), w = randomTensor(rng, [24, 32]);
    const v = randomTensor(rng, [32, 8]);
    const loss = (xs: tf.Tensor, ws: tf.Tensor) => tf.sum(tf.matMul(tf.relu(tf.matMul(xs, ws)), v));
    const grads = tf.grads(loss);
    tf.dispose(grads([x, w])); // once first: the gradients' cached device constants stay
    const live = tf.memory().numTensors;
    for (const which of [0, 1]) {
      const { tfjs, rows } = await bothWays(() => tf.tidy(() => grads([x, w])[which]!));
      assertClose(rows, tfjs, 1e-5, `gradient ${which}`);
    }
    assert.equal(tf.memory().numTensors, live);
    tf.dispose([x, w, v]);
  },
});

/**
 * The webgpu products on their own: the front door's training products (its 128-row batch, d 128,
 * FFN 352), each as giftwrap runs it on a CPU adapter (`kernels/matmul_webgpu.ts`: the tile
 * program, or the row blocks where it does not take the shape) and as tfjs's own program does,
 * in GFLOP/s (median of 5 batches of 20 products, each batch one read).
 *
 *   XDG_RUNTIME_DIR=/tmp deno run -A bench/webgpu_matmul.ts
 *
 * @module
 */

import { tf, useBackend } from "../runtime/engine/backend.ts";
import {
  installRowBlockMatMul,
  tileProduct,
  uninstallRowBlockMatMul,
} from "../runtime/engine/kernels/matmul_webgpu.ts";
import { normalArray, Rng } from "../runtime/engine/random.ts";

const { description } = await useBackend("webgpu");
console.log(description);

/** [m, k, n, transposeA, transposeB]: forward x·W, and the backward pass's dy·Wᵀ and xᵀ·dy. */
const PRODUCTS: [number, number, number, boolean, boolean][] = [
  [1280, 128, 128, false, false],
  [1280, 128, 352, false, false],
  [1280, 352, 128, false, false],
  [1280, 352, 128, false, true],
  [1280, 128, 352, false, true],
  [128, 1280, 128, true, false],
  [128, 1280, 352, true, false],
  [352, 1280, 128, true, false],
];
const REPEATS = 20;
const BATCHES = 5;

async function medianMs(f: () => tf.Tensor): Promise<number> {
  const first = f(); // compiled and warm
  await first.data();
  first.dispose();
  const times: number[] = [];
  for (let b = 0; b < BATCHES; b++) {
    const start = performance.now();
    const outs = Array.from({ length: REPEATS }, f);
    await outs[REPEATS - 1]!.data();
    tf.dispose(outs);
    times.push((performance.now() - start) / REPEATS);
  }
  return times.sort((x, y) => x - y)[Math.floor(BATCHES / 2)]!;
}

const rng = new Rng(1);
console.log("| product | giftwrap's program | ms | GFLOP/s | tfjs's ms | GFLOP/s | speed-up |");
console.log("|---|---|--:|--:|--:|--:|--:|");
for (const [m, k, n, ta, tb] of PRODUCTS) {
  const sa = ta ? [k, m] : [m, k], sb = tb ? [n, k] : [k, n];
  const a = tf.tensor(normalArray(rng, m * k, 1), sa),
    b = tf.tensor(normalArray(rng, k * n, 1), sb);
  installRowBlockMatMul();
  const program = tileProduct(a, b, ta, tb) ? "tile 16 × 16" : "row blocks";
  const ours = await medianMs(() => tf.matMul(a, b, ta, tb));
  uninstallRowBlockMatMul();
  const theirs = await medianMs(() => tf.matMul(a, b, ta, tb));
  installRowBlockMatMul();
  const gflops = (ms: number) => (2 * m * k * n / ms / 1e6).toFixed(1);
  const name = `[${sa}]${ta ? "ᵀ" : ""}·[${sb}]${tb ? "ᵀ" : ""}`;
  console.log(
    `| ${name} | ${program} | ${ours.toFixed(2)} | ${gflops(ours)} | ${theirs.toFixed(2)} | ` +
      `${gflops(theirs)} | ${(theirs / ours).toFixed(2)}× |`,
  );
  tf.dispose([a, b]);
}

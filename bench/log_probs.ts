/**
 * The log-probability op at real vocabulary sizes: the backend's kernel set's `logSoftmaxAt` (the
 * cpu set's loops, `loopLogSoftmaxAt`), the plain one (gather and scatter at the targets,
 * runtime/engine/kernels/log_softmax.ts), and the one-hot formula they replaced,
 * `Σ_v logSoftmax(logits)·oneHot(targets)`, forward alone and forward with the gradient, at
 * V = 32,000 (Llama 2) and 151,936 (Qwen): the time (median of the runs) and the most backend
 * memory held at once beyond the logits, counted per data buffer. Prints a Markdown table for
 * RESULTS.md.
 *
 * ```sh
 * deno run --allow-read --allow-write --allow-env --allow-ffi --allow-sys bench/log_probs.ts [--backends cpu,wasm,webgpu] [--rows 64] [--runs 5]
 * ```
 *
 * @module
 */

import { parseArgs } from "node:util";
import { type BackendName, tf, useBackend } from "../runtime/engine/backend.ts";
import { logSoftmaxAt } from "../runtime/engine/kernels/log_softmax.ts";
import { normalArray, Rng } from "../runtime/engine/random.ts";
import { oneHotFloat } from "../runtime/engine/tf.ts";

type PickedLogProbs = (logits: tf.Tensor3D, targets: tf.Tensor2D) => tf.Tensor2D;

/** The formula `logSoftmaxAt` replaced. */
function oneHotFormula(logits: tf.Tensor3D, targets: tf.Tensor2D): tf.Tensor2D {
  const picked = tf.mul(tf.logSoftmax(logits), oneHotFloat(targets, logits.shape[2])); // [B, C, V]
  return tf.sum(picked, -1) as tf.Tensor2D;
}

/** tfjs-core's `Engine`, as far as the peak measure hooks it. */
interface Engine {
  state: { tensorInfo: WeakMap<object, { bytes: number }> };
  trackTensor(t: tf.Tensor, backend: unknown): void;
  removeDataId(dataId: object, backend: unknown): void;
}

/** The most bytes of backend data `f` held at once beyond what existed before it. */
async function measured(f: () => Promise<void>): Promise<number> {
  const engine = tf.engine() as unknown as Engine;
  const { trackTensor, removeDataId } = engine;
  let live = 0;
  let peak = 0;
  engine.trackTensor = function (t, backend) {
    const fresh = !engine.state.tensorInfo.has(t.dataId);
    trackTensor.call(this, t, backend);
    if (fresh) live += engine.state.tensorInfo.get(t.dataId)!.bytes;
    peak = Math.max(peak, live);
  };
  engine.removeDataId = function (dataId, backend) {
    live -= engine.state.tensorInfo.get(dataId)?.bytes ?? 0;
    removeDataId.call(this, dataId, backend);
  };
  try {
    await f();
  } finally {
    engine.trackTensor = trackTensor;
    engine.removeDataId = removeDataId;
  }
  return peak;
}

/** Median milliseconds of `runs` runs of `f` (after one warm-up) and its peak bytes. */
async function timed(f: () => Promise<void>, runs: number): Promise<{ ms: number; peak: number }> {
  const peak = await measured(f);
  const times: number[] = [];
  for (let i = 0; i < runs; i++) {
    const start = performance.now();
    await f();
    times.push(performance.now() - start);
  }
  times.sort((a, b) => a - b);
  return { ms: times[Math.floor(times.length / 2)]!, peak };
}

const { values: args } = parseArgs({
  options: {
    backends: { type: "string", default: "cpu,wasm" },
    rows: { type: "string", default: "64" },
    runs: { type: "string", default: "5" },
  },
});
const rows = Number(args.rows);
const runs = Number(args.runs);
const mib = (bytes: number) => (bytes / 2 ** 20).toFixed(0);

console.log(
  `| backend | V | op | rows | logits MiB | forward ms | forward peak MiB | with gradient ms | with gradient peak MiB |`,
);
console.log(`| --- | --: | --- | --: | --: | --: | --: | --: | --: |`);
for (const backend of args.backends.split(",") as BackendName[]) {
  const { kernels } = await useBackend(backend);
  for (const vocab of [32_000, 151_936]) {
    const rng = new Rng(1);
    const logits = tf.tensor3d(normalArray(rng, rows * vocab, 3), [1, rows, vocab]);
    const targets = tf.tensor2d(
      Int32Array.from({ length: rows }, () => rng.int(vocab)),
      [1, rows],
      "int32",
    );
    const ops: [string, PickedLogProbs][] = [
      ...(kernels.logSoftmaxAt === logSoftmaxAt ? [] : [[
        `${kernels.name} set's`,
        (x: tf.Tensor3D, t: tf.Tensor2D) => kernels.logSoftmaxAt(x, t),
      ] as [string, PickedLogProbs]]),
      ["logSoftmaxAt", (x, t) => logSoftmaxAt(x, t)],
      ["one-hot formula", oneHotFormula],
    ];
    for (const [name, op] of ops) {
      const forward = await timed(async () => {
        const value = tf.tidy(() => op(logits, targets));
        await value.data();
        value.dispose();
      }, runs);
      const gradient = await timed(async () => {
        const f = (x: tf.Tensor) => tf.sum(op(x as tf.Tensor3D, targets));
        const grad = tf.tidy(() => tf.grad(f)(logits));
        await grad.data();
        grad.dispose();
      }, runs);
      console.log(
        `| ${backend} | ${vocab} | ${name} | ${rows} | ${mib(rows * vocab * 4)} | ` +
          `${forward.ms.toFixed(1)} | ${mib(forward.peak)} | ${gradient.ms.toFixed(1)} | ` +
          `${mib(gradient.peak)} |`,
      );
    }
    tf.dispose([logits, targets]);
  }
}

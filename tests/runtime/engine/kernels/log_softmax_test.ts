// logSoftmaxAt() (runtime/engine/kernels/log_softmax.ts), the log-probability the kernel sets
// use, on each backend, and the cpu set's loopLogSoftmaxAt(): hand-computed values, a float64
// reference at a 50,000-token vocabulary, chunked rows giving the unchunked bits, and the peak
// memory, held against the one-hot formula they replaced, whose bits they give on each backend.
// The conformance suite (_conformance.ts) checks each kernel set's against that formula too.

import { deviceConstantCount } from "../../../../runtime/engine/kernels/constants.ts";
import assert from "node:assert/strict";
import { relativeError } from "../../_numeric.ts";
import { needsWebgpu } from "../../_webgpu.ts";
import { type Requirement, requires } from "../../../_requires.ts";
import { type BackendName, tf, useBackend } from "../../../../runtime/engine/backend.ts";
import {
  logSoftmaxAt,
  type LogSoftmaxAtOptions,
  loopLogSoftmaxAt,
} from "../../../../runtime/engine/kernels/log_softmax.ts";
import { cpuValues } from "../../../../runtime/engine/kernels/memory.ts";
import { normalArray, Rng } from "../../../../runtime/engine/random.ts";
import { oneHotFloat } from "../../../../runtime/engine/tf.ts";
import { peakBytes } from "../_peak_bytes.ts";

/** Live tensors other than the device caches' (kernels/constants.ts: made once, then kept). */
function liveTensors(): number {
  return tf.memory().numTensors - deviceConstantCount();
}

/** The formula logSoftmaxAt() replaced: log-softmax times a float one-hot, summed over V. */
function oneHotFormula(logits: tf.Tensor3D, targets: tf.Tensor2D): tf.Tensor2D {
  const picked = tf.mul(tf.logSoftmax(logits), oneHotFloat(targets, logits.shape[2])); // [B, C, V]
  return tf.sum(picked, -1) as tf.Tensor2D;
}

type PickedLogProbs = (logits: tf.Tensor3D, targets: tf.Tensor2D) => tf.Tensor2D;

/** The value of `op` and the gradient of Σ op·weights with respect to the logits, read out. */
async function valueAndGradient(
  op: PickedLogProbs,
  logits: tf.Tensor3D,
  targets: tf.Tensor2D,
  weights: tf.Tensor2D,
): Promise<[Float32Array, Float32Array]> {
  const [value, grad] = tf.tidy(() => [
    op(logits, targets),
    tf.grad((x: tf.Tensor) => tf.sum(tf.mul(op(x as tf.Tensor3D, targets), weights)))(logits),
  ]);
  const read = await Promise.all([value!.data(), grad!.data()]);
  tf.dispose([value!, grad!]);
  return [Float32Array.from(read[0]), Float32Array.from(read[1])];
}

/** Float64 log-softmax of each row of `logits` [N·V] at its target, and its probabilities. */
function float64Reference(
  logits: Float32Array,
  targets: Int32Array,
  vocab: number,
): { value: Float64Array; probs: Float64Array } {
  const rows = targets.length;
  const value = new Float64Array(rows);
  const probs = new Float64Array(rows * vocab);
  for (let r = 0; r < rows; r++) {
    const row = logits.subarray(r * vocab, (r + 1) * vocab);
    let max = -Infinity;
    for (const x of row) max = Math.max(max, x);
    let sum = 0;
    for (const x of row) sum += Math.exp(x - max);
    const logSum = max + Math.log(sum);
    value[r] = row[targets[r]!]! - logSum;
    for (let v = 0; v < vocab; v++) probs[r * vocab + v] = Math.exp(row[v]! - logSum);
  }
  return { value, probs };
}

/** An implementation on a backend, and the most [N, V] tensors it may hold beyond the logits. */
interface Variant {
  label: string;
  backend: BackendName;
  requirement: Requirement;
  op: (logits: tf.Tensor3D, targets: tf.Tensor2D, options?: LogSoftmaxAtOptions) => tf.Tensor2D;
  /** Whether it takes `chunkValues`. */
  chunks: boolean;
  peak: { forward: number; gradient: number };
}

const always = requires(true, "");
const VARIANTS: Variant[] = [
  ...(["cpu", "wasm", "webgpu"] as const).map((backend) => ({
    label: `logSoftmaxAt() on ${backend}`,
    backend,
    requirement: backend === "webgpu" ? needsWebgpu : always,
    op: logSoftmaxAt,
    chunks: true,
    // the shifted logits and their exponential; the softmax and the gradient
    peak: { forward: 2, gradient: 2 },
  })),
  {
    label: "loopLogSoftmaxAt() on cpu",
    backend: "cpu",
    requirement: always,
    op: loopLogSoftmaxAt(cpuValues),
    chunks: false,
    peak: { forward: 0, gradient: 1 }, // the gradient alone
  },
];

for (const { label, backend, requirement, op, chunks, peak } of VARIANTS) {
  const test = (name: string, fn: () => Promise<void>) =>
    Deno.test({ ...requirement(`${label} ${name}`), fn });

  test("gives hand-computed log-probabilities and gradients", async () => {
    await useBackend(backend, { blas: false });
    const before = liveTensors();
    // rows [1, 2, 3] at 2 and at 0, [0, 0, 0] at 1, [−2, 0.5, 4] at 1
    const logits = tf.tensor3d([[[1, 2, 3], [1, 2, 3]], [[0, 0, 0], [-2, 0.5, 4]]]); // [2, 2, 3]
    const targets = tf.tensor2d([[2, 0], [1, 1]], [2, 2], "int32");
    const weights = tf.tensor2d([[1, -0.5], [2, 1]]);
    const [value, grad] = await valueAndGradient(op, logits, targets, weights);
    // log p_t = x_t − log Σ exp(x); ∂/∂x = w·(1[v = t] − p)
    const p123 = [0.09003057317038043, 0.24472847105479759, 0.6652409557748217];
    const pMixed = [0.0024003190266700634, 0.029241872046169685, 0.96835780892716];
    const expectedValue = [
      -0.4076059644443806,
      -2.4076059644443806,
      -Math.log(3),
      -3.5321536226831585,
    ];
    const expectedGrad = [
      ...p123.map((p, v) => 1 * ((v === 2 ? 1 : 0) - p)),
      ...p123.map((p, v) => -0.5 * ((v === 0 ? 1 : 0) - p)),
      ...[1, 1, 1].map((_, v) => 2 * ((v === 1 ? 1 : 0) - 1 / 3)),
      ...pMixed.map((p, v) => 1 * ((v === 1 ? 1 : 0) - p)),
    ];
    value.forEach((x, i) => assert.ok(Math.abs(x - expectedValue[i]!) < 1e-6, `value ${i}: ${x}`));
    grad.forEach((x, i) => assert.ok(Math.abs(x - expectedGrad[i]!) < 1e-6, `grad ${i}: ${x}`));
    // at temperature 2, row [1, 2, 3] at 2 is [0.5, 1, 1.5] at 2; ∂/∂x = w·(1[v = t] − p)/2
    const halved: PickedLogProbs = (x, t) => op(x, t, { temperature: 2 });
    const [hotValue, hotGrad] = await valueAndGradient(halved, logits, targets, weights);
    const pHalf = [0.1863237232258476, 0.30719588571849843, 0.506480391055654];
    assert.ok(
      Math.abs(hotValue[0]! - -0.6802696706417346) < 1e-6,
      `value at τ = 2: ${hotValue[0]}`,
    );
    pHalf.forEach((p, v) => {
      const expected = ((v === 2 ? 1 : 0) - p) / 2;
      assert.ok(Math.abs(hotGrad[v]! - expected) < 1e-6, `grad at τ = 2, ${v}: ${hotGrad[v]}`);
    });
    tf.dispose([logits, targets, weights]);
    assert.equal(liveTensors(), before, "a tensor left behind");
  });

  test(`at a 50,000-token vocabulary agrees with float64 and the one-hot formula${chunks ? ", chunked or not," : ""} and holds no one-hot`, async () => {
    await useBackend(backend, { blas: false });
    const [batch, count, vocab] = [2, 3, 50_000];
    const rows = batch * count;
    const rng = new Rng(16);
    const logitValues = normalArray(rng, rows * vocab, 4);
    const targetValues = Int32Array.from({ length: rows }, () => rng.int(vocab));
    const weightValues = normalArray(rng, rows, 1);
    const logits = tf.tensor3d(logitValues, [batch, count, vocab]);
    const targets = tf.tensor2d(targetValues, [batch, count], "int32");
    const weights = tf.tensor2d(weightValues, [batch, count]);
    const before = liveTensors();

    // 1) values and gradients against float64
    const [value, grad] = await valueAndGradient(op, logits, targets, weights);
    const reference = float64Reference(logitValues, targetValues, vocab);
    // float32 sums of 50,000 terms (wasm adds them in order): within 1e-5 relative, and the
    // gradient's probabilities within 1e-4 of its largest entry
    value.forEach((x, r) => {
      const expected = reference.value[r]!;
      assert.ok(Math.abs(x - expected) < 1e-5 * Math.abs(expected), `row ${r}: ${x}, ${expected}`);
    });
    const expectedGrad = reference.probs.map((p, i) => {
      const r = Math.floor(i / vocab);
      return weightValues[r]! * ((i % vocab === targetValues[r] ? 1 : 0) - p);
    });
    const gradError = relativeError(grad, expectedGrad);
    assert.ok(gradError < 1e-4, `gradient: relative error ${gradError}`);

    // 2) the one-hot formula's bits, on the same backend
    const [formulaValue, formulaGrad] = await valueAndGradient(
      oneHotFormula,
      logits,
      targets,
      weights,
    );
    assert.deepEqual(value, formulaValue, "value: not the one-hot formula's bits");
    assert.deepEqual(grad, formulaGrad, "gradient: not the one-hot formula's bits");

    // 3) rows taken one, or four, at a time give the same bits
    for (const chunkRows of chunks ? [1, 4] : []) {
      const chunked: PickedLogProbs = (x, t) =>
        logSoftmaxAt(x, t, { chunkValues: chunkRows * vocab });
      const [v, g] = await valueAndGradient(chunked, logits, targets, weights);
      assert.deepEqual(v, value, `value, ${chunkRows} rows at a time`);
      assert.deepEqual(g, grad, `gradient, ${chunkRows} rows at a time`);
    }

    // 4) peak memory beyond the logits, in [N, V] float32 tensors (see VARIANTS), two rows'
    //    worth when taken a row at a time; the one-hot formula holds three forward, six backward,
    //    so the measure tells them apart.
    const full = rows * vocab * 4;
    const slack = 64 * rows * 4; // the [N] and [N, 1] vectors
    const forwardPeak = (f: PickedLogProbs) =>
      peakBytes(() => tf.tidy(() => f(logits, targets)).dispose());
    const gradientPeak = (f: PickedLogProbs) =>
      peakBytes(() => {
        const g = (x: tf.Tensor) => tf.sum(tf.mul(f(x as tf.Tensor3D, targets), weights));
        tf.tidy(() => tf.grad(g)(logits)).dispose();
      });
    const peaks = {
      forward: forwardPeak(op),
      forwardByRow: chunks ? forwardPeak((x, t) => op(x, t, { chunkValues: vocab })) : 0,
      gradient: gradientPeak(op),
      oneHotForward: forwardPeak(oneHotFormula),
      oneHotGradient: gradientPeak(oneHotFormula),
    };
    const inFull = JSON.stringify(Object.values(peaks).map((p) => (p / full).toFixed(3)));
    assert.ok(peaks.forward <= peak.forward * full + slack, `forward: ${inFull}`);
    assert.ok(peaks.forwardByRow <= (2 * full) / rows + slack, `forward by row: ${inFull}`);
    assert.ok(peaks.gradient <= peak.gradient * full + slack, `gradient: ${inFull}`);
    assert.ok(peaks.oneHotForward >= 3 * full, `one-hot forward: ${inFull}`);
    assert.ok(peaks.oneHotGradient >= 5 * full, `one-hot gradient: ${inFull}`);
    tf.dispose([logits, targets, weights]);
    assert.equal(liveTensors(), before - 3, "a tensor left behind");
  });
}

// OpenBLAS matrix products must equal the backend's own (1e-5 relative, norm-wise): every layout
// the model and its gradients use, batched and broadcast, and a whole forward and backward pass.
// Without the library the tests are skipped, saying so, unless GIFTWRAP_REQUIRE_BLAS=1 (CI installs
// it).

import assert from "node:assert/strict";
import { relativeError } from "../_numeric.ts";
import { tf, useBackend } from "../../../runtime/engine/backend.ts";
import { loadBlas, unregisterBlasMatMul } from "../../../runtime/engine/blas.ts";
import { BLAS_PROBE as probe, needsBlas } from "../_blas.ts";
import {
  initParams,
  modelConfig,
  tokenLogProbs,
} from "../../../runtime/engine/model/transformer.ts";
import { normalArray, Rng } from "../../../runtime/engine/random.ts";
import type { KernelSet } from "../../../runtime/engine/kernels/types.ts";
import {
  BLAS_UNEMBED_MIN_TABLE,
  blasUnembed,
  unembed,
} from "../../../runtime/engine/kernels/tfjs.ts";
import { tinyPlan } from "../_tiny.ts";
import { lines, withTempDir } from "../../_helpers.ts";

/** Products of the model's forward and backward passes: [a shape, b shape, transposeA, transposeB]. */
const CASES: [number[], number[], boolean, boolean][] = [
  [[64, 128], [128, 352], false, false], // x · W
  [[64, 128], [352, 128], false, true], // dY · Wᵀ
  [[128, 64], [128, 352], true, false], // xᵀ · dY
  [[128, 64], [352, 128], true, true],
  [[8, 4, 11, 32], [8, 4, 32, 11], false, false], // attention scores, batched
  [[8, 4, 11, 32], [8, 4, 11, 32], false, true],
  [[3, 64, 128], [128, 96], false, false], // broadcast b
  [[64, 128], [3, 128, 96], false, false], // broadcast a
  [[4, 8], [8, 4], false, false], // too small: the backend's own kernel
];

for (const backend of ["wasm", "cpu"] as const) {
  Deno.test({
    ...needsBlas(`registerBlasMatMul() on ${backend}: every product equals the backend's own`),
    async fn() {
      assert.ok(probe.ok, `OpenBLAS is required here: ${!probe.ok && probe.reason}`);
      const withBlas = await useBackend(backend);
      assert.match(withBlas.description, / · matmul: OpenBLAS \w+, \d+ threads?$/);
      const products = () =>
        Promise.all(CASES.map(async ([sa, sb, ta, tb], i) => {
          const a = tf.randomNormal(sa, 0, 1, "float32", 2 * i + 1);
          const b = tf.randomNormal(sb, 0, 1, "float32", 2 * i + 2);
          const c = tf.matMul(a, b, ta, tb);
          const out = { shape: c.shape, values: await c.data() };
          tf.dispose([a, b, c]);
          return out;
        }));
      const fast = await products();
      await useBackend(backend, { blas: false });
      const plain = await products();
      CASES.forEach((c, i) => {
        assert.deepEqual(fast[i]!.shape, plain[i]!.shape, `${c}`);
        const err = relativeError(fast[i]!.values, plain[i]!.values);
        assert.ok(err <= 1e-5, `${JSON.stringify(c)}: relative error ${err}`);
      });
    },
  });

  Deno.test({
    ...needsBlas(
      `registerBlasMatMul() on ${backend}: a forward and backward pass equals the backend's own`,
    ),
    async fn() {
      const plan = tinyPlan({ policy: { kind: "tinyGpt", layers: 2, dModel: 64, heads: 4 } });
      const config = modelConfig(plan.model);
      const ids = tf.tensor2d([[1, 4, 13, 7, 14, 5, 2], [1, 9, 13, 12, 14, 4, 8]], [2, 7], "int32");
      const pass = async (blas: boolean) => {
        const { kernels } = await useBackend(backend, { blas });
        const params = initParams(config, new Rng(3));
        const { value, grads } = tf.variableGrads(
          () => tf.sum(tokenLogProbs(kernels, params, config, ids, 4, 1, [0, 0])) as tf.Scalar,
          Object.values(params),
        );
        const out = {
          loss: (await value.data())[0]!,
          grads: await Promise.all(Object.values(grads).map((g) => g.data())),
        };
        tf.dispose([value, ...Object.values(grads), ...Object.values(params)]);
        return out;
      };
      const fast = await pass(true);
      const plain = await pass(false);
      assert.ok(Math.abs(fast.loss - plain.loss) <= 1e-5 * Math.abs(plain.loss));
      fast.grads.forEach((g, i) => {
        const err = relativeError(g, plain.grads[i]!);
        assert.ok(err <= 1e-5, `gradient ${i}: relative error ${err}`);
      });
      ids.dispose();
    },
  });
}

for (const backend of ["wasm", "cpu"] as const) {
  Deno.test({
    ...needsBlas(
      `unembed() of a large table on ${backend} (OpenBLAS's transpose flag) equals x·Eᵀ, forward and both gradients`,
    ),
    async fn() {
      const [n, d, vocab] = [6, 64, BLAS_UNEMBED_MIN_TABLE / 64]; // a table of 2^20 values
      const rng = new Rng(12);
      const x = normalArray(rng, n * d, 1);
      const table = normalArray(rng, vocab * d, 1);
      const weights = normalArray(rng, n * vocab, 1);
      const run = async (unembed: KernelSet["unembed"]) => {
        const [tx, te, tw] = [
          tf.tensor2d(x, [n, d]),
          tf.tensor2d(table, [vocab, d]),
          tf.tensor2d(weights, [n, vocab]),
        ];
        const f = (a: tf.Tensor, e: tf.Tensor) => tf.sum(tf.mul(unembed(a as tf.Tensor2D, e), tw));
        const { value, grads } = tf.valueAndGrads(f)([tx, te]);
        const out = [await value.data(), ...(await Promise.all(grads.map((g) => g.data())))];
        assert.deepEqual(grads.map((g) => g.shape), [[n, d], [vocab, d]]);
        tf.dispose([tx, te, tw, value, ...grads]);
        return out;
      };
      const { kernels } = await useBackend(backend);
      assert.equal(kernels.unembed, blasUnembed);
      const fast = await run(blasUnembed);
      const plain = await run(unembed); // the table transposed, then x·Eᵀ
      ["value", "dx", "dE"].forEach((what, i) => {
        const err = relativeError(fast[i]!, plain[i]!);
        assert.ok(err <= 1e-5, `${what}: relative error ${err}`);
      });
    },
  });
}

Deno.test("loadBlas() says why when no library loads, and useBackend() runs without it", async () => {
  const missing = loadBlas(["libgiftwrap-no-such-blas.so.0"]);
  assert.equal(missing.ok, false);
  assert.match(
    !missing.ok ? missing.reason : "",
    /^no OpenBLAS library loads \(tried libgiftwrap-no-such-blas\.so\.0; Debian: apt-get install libopenblas0-pthread\)$/,
  );
  const off = await useBackend("wasm", { blas: false });
  assert.deepEqual(off.matmul, { blas: null, reason: "turned off" });
  assert.equal(
    off.description,
    "wasm (SIMD, 1 thread) · matmul: tfjs's kernels (OpenBLAS turned off)",
  );
  assert.equal(off.kernels.blas, false);
  unregisterBlasMatMul("wasm"); // a second time does nothing
});

Deno.test("useBackend() without the FFI permission runs the backend's own matmul, in one line", async () => {
  const script = `
    import { useBackend } from ${
    JSON.stringify(new URL("../../../runtime/engine/backend.ts", import.meta.url).href)
  };
    const info = await useBackend("wasm");
    console.log(JSON.stringify(info.matmul));
    console.log(info.description);
  `;
  const { code, stdout, stderr } = await withTempDir(async (dir) => {
    await Deno.writeTextFile(`${dir}/probe.ts`, script);
    const config = new URL("../../../deno.json", import.meta.url).pathname;
    return await new Deno.Command(Deno.execPath(), {
      args: [
        "run",
        "--no-prompt",
        "--allow-read",
        "--allow-env",
        "--config",
        config,
        `${dir}/probe.ts`,
      ],
      env: { NO_COLOR: "1" },
      stdout: "piped",
      stderr: "piped",
    }).output();
  });
  const text = new TextDecoder();
  assert.equal(code, 0, text.decode(stderr));
  assert.deepEqual(lines(text.decode(stdout)), [
    JSON.stringify({ blas: null, reason: "no FFI permission (--allow-ffi)" }),
    "wasm (SIMD, 1 thread) · matmul: tfjs's kernels, several times slower (OpenBLAS needs --allow-ffi)",
  ]);
});

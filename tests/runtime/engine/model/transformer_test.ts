import assert from "node:assert/strict";
import {
  type BackendName,
  type KernelSet,
  tf,
  useBackend,
} from "../../../../runtime/engine/backend.ts";
import {
  forward,
  initParams,
  type LayerCache,
  paramShapes,
  tokenLogProbs,
} from "../../../../runtime/engine/model/transformer.ts";
import { Rng } from "../../../../runtime/engine/random.ts";
import { GQA_CONFIG } from "../../_tiny.ts";
import { needsWebgpu } from "../../_webgpu.ts";
import { requires } from "../../../_requires.ts";

const CONFIG = GQA_CONFIG;

function randomIds(rng: Rng, batch: number, time: number): tf.Tensor2D {
  const ids = Int32Array.from({ length: batch * time }, () => rng.int(CONFIG.vocab));
  return tf.tensor2d(ids, [batch, time], "int32");
}

/** Logits of a prefill of `prefix` tokens, then one token at a time through the KV cache. */
function incrementalLogits(
  kernels: KernelSet,
  params: Record<string, tf.Tensor>,
  ids: tf.Tensor2D,
  prefix: number,
): tf.Tensor3D {
  const [batch, time] = ids.shape;
  const first = forward(kernels, params, CONFIG, tf.slice(ids, [0, 0], [batch, prefix]));
  const parts = [first.logits];
  let cache: LayerCache[] = first.cache;
  for (let t = prefix; t < time; t++) {
    const next = forward(kernels, params, CONFIG, tf.slice(ids, [0, t], [batch, 1]), { cache });
    parts.push(next.logits);
    cache = next.cache;
  }
  return tf.concat(parts, 1);
}

/** Tests on `backend`: those on webgpu need an adapter. */
function on(backend: BackendName) {
  return backend === "webgpu" ? needsWebgpu : requires(true, "");
}

for (const backend of ["cpu", "wasm", "webgpu"] as BackendName[]) {
  Deno.test({
    ...on(backend)(`forward() with a KV cache matches the full forward pass on ${backend}`),
    async fn() {
      const { kernels } = await useBackend(backend);
      const params = initParams(CONFIG, new Rng(1));
      const diffTensor = tf.tidy(() => {
        const ids = randomIds(new Rng(2), 3, 11);
        const full = forward(kernels, params, CONFIG, ids).logits; // [3, 11, V]
        const stepped = incrementalLogits(kernels, params, ids, 5); // [3, 11, V]
        assert.deepEqual(stepped.shape, [3, 11, CONFIG.vocab]);
        return tf.max(tf.abs(tf.sub(full, stepped)));
      });
      const diff = (await diffTensor.data())[0]!; // async: webgpu cannot read synchronously
      tf.dispose([diffTensor, ...Object.values(params)]);
      assert.ok(diff < 1e-5, `max |Δlogits| = ${diff}`);
    },
  });
}

Deno.test("forward() is causal: changing a later token leaves earlier logits unchanged", async () => {
  const { kernels } = await useBackend("cpu");
  const params = initParams(CONFIG, new Rng(3));
  tf.tidy(() => {
    const a = [[1, 4, 5, 6, 7, 8]];
    const b = [[1, 4, 5, 6, 9, 3]];
    const la = forward(kernels, params, CONFIG, tf.tensor2d(a, [1, 6], "int32")).logits;
    const lb = forward(kernels, params, CONFIG, tf.tensor2d(b, [1, 6], "int32")).logits;
    const early = (t: tf.Tensor3D) => tf.slice(t, [0, 0, 0], [1, 4, CONFIG.vocab]).arraySync();
    assert.deepEqual(early(la), early(lb));
    const last = (t: tf.Tensor3D) => tf.slice(t, [0, 4, 0], [1, 2, CONFIG.vocab]).arraySync();
    assert.notDeepEqual(last(la), last(lb));
  });
  tf.dispose(Object.values(params));
});

Deno.test("forward() rejects more positions than the context length", async () => {
  const { kernels } = await useBackend("cpu");
  const params = initParams(CONFIG, new Rng(3));
  assert.throws(
    () =>
      tf.tidy(() =>
        forward(kernels, params, CONFIG, tf.zeros([1, 13], "int32") as tf.Tensor2D).logits
      ),
    /13 positions: its context length is 12/,
  );
  tf.dispose(Object.values(params));
});

Deno.test("tokenLogProbs() equals log-softmax of the logits at each completion token", async () => {
  const { kernels } = await useBackend("cpu");
  const params = initParams(CONFIG, new Rng(4));
  tf.tidy(() => {
    const ids = randomIds(new Rng(5), 2, 9); // prompt 6, completion 3
    const logp = tokenLogProbs(kernels, params, CONFIG, ids, 6).arraySync(); // [2, 3]
    const logits = forward(kernels, params, CONFIG, ids).logits.arraySync(); // [2, 9, V]
    const tokens = ids.arraySync();
    for (let b = 0; b < 2; b++) {
      for (let c = 0; c < 3; c++) {
        const row = logits[b]![5 + c]!; // position 5 + c predicts token 6 + c
        const lse = Math.log(row.reduce((s, x) => s + Math.exp(x), 0));
        const expected = row[tokens[b]![6 + c]!]! - lse;
        assert.ok(Math.abs(logp[b]![c]! - expected) < 1e-5, `${logp[b]![c]} vs ${expected}`);
      }
    }
  });
  tf.dispose(Object.values(params));
});

/** Gradients of −Σ log p of some completions w.r.t. every parameter, on `backend`. */
async function gradientsOn(backend: BackendName): Promise<Record<string, Float32Array>> {
  const { kernels } = await useBackend(backend);
  const params = initParams(CONFIG, new Rng(6));
  const ids = randomIds(new Rng(7), 2, 9);
  const vars = Object.values(params);
  const { value, grads } = tf.variableGrads(
    () =>
      tf.tidy(() => tf.neg(tf.sum(tokenLogProbs(kernels, params, CONFIG, ids, 6))) as tf.Scalar),
    vars,
  );
  const out: Record<string, Float32Array> = {};
  for (const [i, name] of Object.keys(params).entries()) {
    out[name] = (await grads[vars[i]!.name]!.data()) as Float32Array;
  }
  tf.dispose([value, ids, ...Object.values(grads), ...vars]);
  return out;
}

for (const backend of ["wasm", "webgpu"] as BackendName[]) {
  Deno.test({
    ...on(backend)(
      `tokenLogProbs() gradients on ${backend} agree with cpu (patched matmul, embedding)`,
    ),
    async fn() {
      const cpu = await gradientsOn("cpu");
      const other = await gradientsOn(backend);
      assert.deepEqual(Object.keys(cpu), Object.keys(paramShapes(CONFIG)));
      for (const [name, g] of Object.entries(cpu)) {
        const w = other[name]!;
        const scale = Math.max(...g.map(Math.abs));
        assert.ok(scale > 0, `${name} has a zero gradient`);
        const worst = Math.max(...g.map((x, i) => Math.abs(x - w[i]!)));
        assert.ok(worst < 1e-4 * Math.max(1, scale), `${name}: max |Δgrad| ${worst}`);
      }
    },
  });
}

for (const backend of ["cpu", "wasm"] as BackendName[]) {
  Deno.test(`forward() with left padding gives each row its unpadded logits on ${backend}`, async () => {
    const { kernels } = await useBackend(backend);
    const params = initParams(CONFIG, new Rng(8));
    const rows = [[1, 4, 5, 6, 7, 8, 9], [1, 9, 3], [1, 5, 5, 5, 6]];
    const width = 7;
    const padding = rows.map((r) => width - r.length);
    const padded = rows.map((r, b) => [...new Array<number>(padding[b]!).fill(0), ...r]);
    const worst = tf.tidy(() => {
      const ids = tf.tensor2d(padded, [3, width], "int32");
      const full = forward(kernels, params, CONFIG, ids, { padding }).logits.arraySync();
      // Prefill 4 positions, then one token at a time through the cache.
      const first = forward(kernels, params, CONFIG, tf.slice(ids, [0, 0], [3, 4]), { padding });
      const parts = [first.logits];
      let cache = first.cache;
      for (let t = 4; t < width; t++) {
        const next = forward(kernels, params, CONFIG, tf.slice(ids, [0, t], [3, 1]), {
          cache,
          padding,
        });
        parts.push(next.logits);
        cache = next.cache;
      }
      const stepped = tf.concat(parts, 1).arraySync();
      let worst = 0;
      rows.forEach((row, b) => {
        const alone = forward(kernels, params, CONFIG, tf.tensor2d([row], [1, row.length], "int32"))
          .logits.arraySync()[0]!;
        alone.forEach((logits, t) => {
          const at = padding[b]! + t;
          logits.forEach((x, v) => {
            worst = Math.max(
              worst,
              Math.abs(x - full[b]![at]![v]!),
              Math.abs(x - stepped[b]![at]![v]!),
            );
          });
        });
      });
      return worst;
    });
    tf.dispose(Object.values(params));
    assert.ok(worst < 1e-5, `max |Δlogits| = ${worst}`);
  });
}

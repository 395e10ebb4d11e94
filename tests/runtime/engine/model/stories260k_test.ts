// stories260K, a real pretrained Llama (models/stories260K/, Karpathy's TinyStories model from
// llama2.c, converted to the Hugging Face layout), read by the Hugging Face loader and run by the
// transformer, against llama2.c's own C implementation (run.c, float32): the reference outputs in
// tests/runtime/fixtures/stories260K_public.json (provenance in tests/runtime/fixtures/README.md).

import assert from "node:assert/strict";
import { tf, useBackend } from "../../../../runtime/engine/backend.ts";
import { weightsToTensors } from "../../../../runtime/engine/model/checkpoint.ts";
import { hfParameterCount, loadHfModel } from "../../../../runtime/engine/model/hf.ts";
import { forward } from "../../../../runtime/engine/model/transformer.ts";
import { tfjsDecoder } from "../../../../runtime/engine/kernels/tfjs.ts";
import type { Decoder } from "../../../../runtime/engine/kernels/types.ts";

const MODEL = new URL("../../../../models/stories260K", import.meta.url).pathname;

interface Reference {
  model: { config: Record<string, number | boolean> };
  cases: {
    prompt_ids: number[];
    generated_ids: number[];
    stopped_on_bos: boolean;
    logits: { positions: number[]; input_ids_at_positions: number[]; values: number[][] };
  }[];
  upstream_anchor: { prompt_ids: number[]; generated_ids: number[] };
}

const REFERENCE: Reference = JSON.parse(
  await Deno.readTextFile(new URL("../../fixtures/stories260K_public.json", import.meta.url)),
);

/** The first index of the largest value (run.c's argmax breaks ties the same way). */
function argmax(values: Float32Array | number[]): number {
  let best = 0;
  for (let i = 1; i < values.length; i++) if (values[i]! > values[best]!) best = i;
  return best;
}

/**
 * Greedy decoding of at most `steps` tokens after `prompt` with `decoder` (one row, no padding),
 * stopping after a `<s>` (id 1) as run.c does (the `<s>` is kept).
 */
async function greedy(decoder: Decoder, prompt: number[], steps: number): Promise<number[]> {
  const out: number[] = [];
  try {
    let logits = await decoder.next(Int32Array.from(prompt), prompt.length);
    for (let t = 0; t < steps; t++) {
      const next = argmax(logits);
      out.push(next);
      if (next === 1 || t === steps - 1) break;
      logits = await decoder.next(Int32Array.of(next), 1);
    }
  } finally {
    decoder.dispose();
  }
  return out;
}

Deno.test("stories260K loads as llama2.c describes it", async () => {
  const model = await loadHfModel(MODEL);
  const c = REFERENCE.model.config;
  assert.equal(model.modelType, "llama");
  assert.equal(model.dtype, "F32");
  assert.deepEqual(model.config, {
    vocab: c["vocab_size"],
    dModel: c["dim"],
    layers: c["n_layers"],
    heads: c["n_heads"],
    kvHeads: c["n_kv_heads"],
    headDim: c["head_size"],
    ffnDim: c["hidden_dim"],
    contextLength: c["seq_len"],
    tiedEmbeddings: c["tied_embeddings"],
    ropeTheta: c["rope_theta"],
    normEps: c["norm_eps"],
  });
  // 512·64 embedding + 5 layers of (2·64 norms + 4096 + 2048 + 2048 + 4096 + 3·172·64) + 64
  assert.equal(model.parameters, 32_768 + 5 * (128 + 12_288 + 33_024) + 64);
  assert.equal(hfParameterCount(model.config), model.parameters);
  assert.equal(Object.keys(model.weights).length, 47);
});

Deno.test("stories260K's logits match llama2.c's within 1e-4", async () => {
  const { kernels } = await useBackend("cpu");
  const model = await loadHfModel(MODEL, kernels.layout);
  const params = weightsToTensors(model.weights, false);
  const { logits: reference } = REFERENCE.cases[0]!;
  const ids = reference.input_ids_at_positions;
  const logits = tf.tidy(() =>
    forward(kernels, params, model.config, tf.tensor2d([ids], [1, ids.length], "int32")).logits
  );
  const values = (await logits.array())[0]!;
  let worst = 0;
  reference.positions.forEach((position, i) => {
    const want = reference.values[i]!;
    assert.equal(want.length, model.config.vocab);
    want.forEach((w, v) => (worst = Math.max(worst, Math.abs(values[position]![v]! - w))));
  });
  assert.ok(worst < 1e-4, `largest difference ${worst}`);
  tf.dispose([logits, ...Object.values(params)]);
});

Deno.test("stories260K greedily continues the reference prompt and writes llama2.c's 200-token story", async () => {
  const { kernels } = await useBackend("cpu");
  const model = await loadHfModel(MODEL, kernels.layout);
  const { config } = model;
  const params = weightsToTensors(model.weights, false);
  const [reference] = REFERENCE.cases;
  const story = REFERENCE.upstream_anchor;
  assert.equal(reference!.stopped_on_bos, false);
  assert.equal(story.generated_ids.length, 200);
  // The tfjs forward, with its KV cache.
  const viaForward = () => tfjsDecoder(kernels, params, config, 1, [0]);
  assert.deepEqual(
    await greedy(viaForward(), reference!.prompt_ids, reference!.generated_ids.length),
    reference!.generated_ids,
  );
  assert.deepEqual(await greedy(viaForward(), story.prompt_ids, 200), story.generated_ids);
  // The sampler's decoder (OpenBLAS and WebAssembly where it runs) writes the same story.
  const capacity = story.prompt_ids.length + 200;
  assert.deepEqual(
    await greedy(await kernels.decoder(params, config, 1, [0], capacity), story.prompt_ids, 200),
    story.generated_ids,
  );
  tf.dispose(Object.values(params));
});

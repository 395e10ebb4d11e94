/**
 * The bench's real-size configurations have the real models' shapes, and PyTorch's reference
 * (bench/torch_ref.py) runs Qwen2's q/k/v biases and LoRA as the bench describes; giftwrap's worker
 * trains LoRA adapters in micro-batches with checkpointing, and PyTorch, given its exported
 * adapters, takes the same step. The bench itself is never run here.
 */

import assert from "node:assert/strict";
import { benchConfig, CONFIG_NAMES } from "../../bench/_configs.ts";
import { startGiftwrapWorker, startTorchWorker } from "../../bench/_protocol.ts";
import { paramShapes } from "../../runtime/engine/model/transformer.ts";
import type { ModelConfig } from "../../runtime/engine/model/transformer.ts";
import { needsTorch } from "../_requires.ts";

function parameterCount(config: ModelConfig): number {
  return Object.values(paramShapes(config)).reduce(
    (n, { shape }) => n + shape.reduce((a, b) => a * b, 1),
    0,
  );
}

Deno.test("smollm-135m and qwen-0.5b-lora have the published models' parameter counts", () => {
  // SmolLM2-135M: 134,515,008; Qwen2.5-0.5B: 494,032,768 (both with tied embeddings)
  assert.equal(parameterCount(benchConfig("smollm-135m").setup.model), 134_515_008);
  assert.equal(parameterCount(benchConfig("qwen-0.5b-lora").setup.model), 494_032_768);
});

Deno.test("the real-size configurations' batches are 4 prompts × 4 completions of 64 + 128 tokens", () => {
  for (const name of ["smollm-135m", "qwen-0.5b-lora"] as const) {
    const { setup } = benchConfig(name);
    assert.deepEqual(setup.shapes, { rows: 16, groupSize: 4, promptTokens: 64, newTokens: 128 });
    assert.equal(setup.model.contextLength, 192);
    assert.equal(setup.ids.length, 16 * 192);
    assert.ok(setup.ids.every((id) => id >= 3 && id < setup.model.vocab));
    for (let row = 1; row < 4; row++) { // a group's rows share their prompt
      assert.deepEqual(setup.ids.slice(row * 192, row * 192 + 64), setup.ids.slice(0, 64));
    }
    assert.equal(setup.rewards.length, 16);
  }
  const smol = benchConfig("smollm-135m");
  assert.equal(smol.giftwrapUnavailable, undefined);
  assert.equal(smol.setup.alphabet.length, 49_152 - 3); // one character per sampled id
  const qwen = benchConfig("qwen-0.5b-lora");
  assert.deepEqual(qwen.setup.lora, {
    rank: 16,
    alpha: 32,
    targets: ["q_proj", "k_proj", "v_proj", "o_proj"],
  });
  assert.equal(qwen.giftwrapUnavailable, undefined);
  // one character per sampled id, past the 16-bit ones: code points, no surrogates
  const characters = [...qwen.setup.alphabet];
  assert.equal(characters.length, 151_936 - 3);
  assert.equal(new Set(characters).size, characters.length);
  assert.ok(characters.every((c) => c.codePointAt(0)! < 0xd800 || c.codePointAt(0)! > 0xdfff));
  for (const { setup } of [smol, qwen]) {
    assert.equal(setup.microBatchRows, 4); // one group
    assert.equal(setup.gradientCheckpointing, true);
  }
  assert.ok(CONFIG_NAMES.includes("smollm-135m") && CONFIG_NAMES.includes("qwen-0.5b-lora"));
});

Deno.test({
  ...needsTorch(
    "torch_ref.py: Qwen2 biases give giftwrap's log-probs; LoRA with B = 0 gives the base's exactly",
  ),
  async fn() {
    // qwen-0.5b-lora's structure at a small size: biases, grouped-query heads, tied head
    const { setup } = benchConfig("gqa-untied");
    const model = { ...setup.model, tiedEmbeddings: true, attentionBias: true };
    const config = { ...setup, model };
    const dir = await Deno.makeTempDir();
    const giftwrap = startGiftwrapWorker({ GIFTWRAP_BLAS: "0" });
    const plain = startTorchWorker(1);
    const lora = startTorchWorker(1);
    try {
      await giftwrap.request({ cmd: "setup", config: { ...config, backend: "cpu" } });
      await giftwrap.request({ cmd: "export", path: `${dir}/w.f32` });
      const weights = `${dir}/w.f32`;
      const expected = (await giftwrap.request({ cmd: "logprobs" })).logp as number[];
      await plain.request({ cmd: "setup", config: { ...config, weights } });
      const adapters = { rank: 2, alpha: 4, targets: ["q_proj", "k_proj", "v_proj", "o_proj"] };
      const answer = await lora.request({
        cmd: "setup",
        config: { ...config, weights, lora: adapters },
      });
      // per layer rank·(in + out): q 64→64, k and v 64→32, o 64→64
      assert.equal(answer.trainable, 2 * 2 * ((64 + 64) + 2 * (64 + 32) + (64 + 64)));
      const base = (await plain.request({ cmd: "logprobs" })).logp as number[];
      const adapted = (await lora.request({ cmd: "logprobs" })).logp as number[];
      assert.equal(base.length, expected.length);
      for (let i = 0; i < base.length; i++) {
        assert.ok(
          Math.abs(base[i]! - expected[i]!) < 1e-5,
          `log-prob ${i}: ${base[i]} vs ${expected[i]}`,
        );
      }
      assert.deepEqual(adapted, base);
      // one step trains B away from zero: the adapted model's log-probs move
      for (let step = 0; step < 2; step++) await lora.request({ cmd: "train" });
      const trained = (await lora.request({ cmd: "logprobs" })).logp as number[];
      assert.ok(trained.some((v, i) => Math.abs(v - base[i]!) > 1e-6));
    } finally {
      await giftwrap.close();
      await plain.close();
      await lora.close();
      await Deno.remove(dir, { recursive: true });
    }
  },
});

Deno.test({
  ...needsTorch(
    "giftwrap's worker trains LoRA in micro-batches with checkpointing; PyTorch, given its adapters, takes the same step",
  ),
  async fn() {
    // qwen-0.5b-lora's structure and update at a small size: 16 rows, micro-batches of one group
    const { setup } = benchConfig("gqa-untied");
    const model = { ...setup.model, tiedEmbeddings: true, attentionBias: true };
    const lora = { rank: 2, alpha: 4, targets: ["q_proj", "k_proj", "v_proj", "o_proj"] };
    const config = { ...setup, model, lora };
    const dir = await Deno.makeTempDir();
    const weights = `${dir}/w.f32`;
    const giftwrap = startGiftwrapWorker({ GIFTWRAP_BLAS: "0" });
    const plain = startGiftwrapWorker({ GIFTWRAP_BLAS: "0" });
    const torch = startTorchWorker(1);
    try {
      const answer = await giftwrap.request({
        cmd: "setup",
        config: { ...config, backend: "cpu", microBatchRows: 4, gradientCheckpointing: true },
      });
      assert.equal(answer.update, "micro-batches of 4 rows, activation checkpointing");
      assert.equal(answer.trainable, 2 * 2 * ((64 + 64) + 2 * (64 + 32) + (64 + 64)));
      await plain.request({ cmd: "setup", config: { ...config, backend: "cpu" } });
      await giftwrap.request({ cmd: "export", path: weights });
      await torch.request({ cmd: "setup", config: { ...config, weights } });
      const logp = async (w: typeof torch) =>
        (await w.request({ cmd: "logprobs" })).logp as number[];
      const [g, t] = [await logp(giftwrap), await logp(torch)];
      assert.ok(g.every((v, i) => Math.abs(v - t[i]!) < 1e-5), "log-probs");
      // the same step: its loss and gradient norm, then the log-probs it leads to
      const steps = await Promise.all(
        [giftwrap, plain, torch].map((w) => w.request({ cmd: "train" })),
      );
      const [micro, whole, reference] = steps.map((a) => [a.loss as number, a.gradNorm as number]);
      assert.ok(reference![1]! > 0, "the step has a gradient");
      for (const [what, got] of [["micro-batched", micro!], ["whole batch", whole!]] as const) {
        assert.ok(
          Math.abs(got[0]! - reference![0]!) < 1e-5,
          `${what} loss ${got[0]} vs ${reference![0]}`,
        );
        assert.ok(
          Math.abs(got[1]! - reference![1]!) < 1e-4 * reference![1]!,
          `${what} gradient norm ${got[1]} vs ${reference![1]}`,
        );
      }
      const [after, afterTorch] = [await logp(giftwrap), await logp(torch)];
      assert.ok(after.some((v, i) => Math.abs(v - g[i]!) > 1e-6), "the adapters moved");
      const worst = Math.max(...after.map((v, i) => Math.abs(v - afterTorch[i]!)));
      assert.ok(worst < 1e-4, `log-probs after the step: max |Δ| ${worst}`);
    } finally {
      await giftwrap.close();
      await plain.close();
      await torch.close();
      await Deno.remove(dir, { recursive: true });
    }
  },
});

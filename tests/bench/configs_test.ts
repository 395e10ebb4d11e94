/**
 * The bench's real-size configurations have the real models' shapes, and PyTorch's reference
 * (bench/torch_ref.py) runs Qwen2's q/k/v biases and LoRA as the bench describes. The bench itself
 * is never run here.
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
  assert.match(qwen.giftwrapUnavailable ?? "", /no LoRA/);
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

Deno.test("giftwrap's bench worker refuses a LoRA setup in one line", async () => {
  const { setup } = benchConfig("gqa-untied");
  const worker = startGiftwrapWorker({ GIFTWRAP_BLAS: "0" });
  try {
    await assert.rejects(
      worker.request({
        cmd: "setup",
        config: { ...setup, backend: "cpu", lora: { rank: 2, alpha: 4, targets: ["q_proj"] } },
      }),
      /Cannot set up 'lora' \(rank 2\).*expected no 'lora'/,
    );
  } finally {
    await worker.close();
  }
});

import assert from "node:assert/strict";
import { tf, useBackend } from "../../../../runtime/engine/backend.ts";
import { saveCheckpoint } from "../../../../runtime/engine/model/checkpoint.ts";
import {
  rewardModelScorer,
  rewardScores,
  saveRewardModel,
  SCORE_WEIGHT,
} from "../../../../runtime/rl/rewards/reward_model.ts";
import { BOS, charTokenizer, EOS } from "../../../../runtime/engine/model/tokenizer.ts";
import { initParams, type ModelConfig } from "../../../../runtime/engine/model/transformer.ts";
import { normalArray, Rng } from "../../../../runtime/engine/random.ts";
import type { Sample } from "../../../../runtime/rl/rewards/types.ts";
import { withTempDir } from "../../../_helpers.ts";
import { needsTorch, pythonJson } from "../../../_requires.ts";
import { hfParamShapes, parseHfConfig } from "../../../../runtime/engine/model/hf.ts";
import { loadHfTokenizer } from "../../../../runtime/engine/model/hf_tokenizer.ts";
import {
  decodeSafetensors,
  encodeSafetensors,
} from "../../../../runtime/engine/model/safetensors.ts";
import { QWEN3_TOKENIZER, STORIES, writeRandomCheckpoint } from "../../_hf.ts";

const ALPHABET = "0123456789+=";
const tok = charTokenizer(ALPHABET);
const CONFIG: ModelConfig = {
  vocab: tok.vocab,
  dModel: 16,
  layers: 1,
  heads: 2,
  kvHeads: 1,
  headDim: 8,
  ffnDim: 32,
  contextLength: 16,
  tiedEmbeddings: true,
  ropeTheta: 10_000,
  normEps: 1e-5,
};

function sample(prompt: string, completion: string): Sample {
  return {
    prompt,
    completion,
    answer: "",
    row: {},
    tokens: completion.length + 1,
    truncated: false,
  };
}

Deno.test("rewardModelScorer() scores each sample as the model does on it alone", async () => {
  const { kernels } = await useBackend("wasm");
  await withTempDir(async (dir) => {
    const params: Record<string, tf.Tensor> = initParams(CONFIG, new Rng(1));
    params[SCORE_WEIGHT] = tf.tensor(normalArray(new Rng(2), 16, 1), [1, 16]);
    await saveRewardModel(dir, params, CONFIG, ALPHABET);
    const samples = [sample("12+34=", "46"), sample("1+1=", "3"), sample("99+99=", "198")];
    const scorer = await rewardModelScorer(dir, 2, kernels);
    const scores = await scorer.score(samples);
    scorer.close?.();
    for (const [i, s] of samples.entries()) {
      const ids = [BOS, ...tok.encode(s.prompt + s.completion), EOS];
      const alone = tf.tidy(() =>
        rewardScores(kernels, params, CONFIG, tf.tensor2d([ids], [1, ids.length], "int32"), [0])
          .arraySync()[0]!
      );
      const got = scores[i];
      assert.equal(typeof got, "number");
      assert.ok(Math.abs((got as number) - alone) < 1e-5, `sample ${i}: ${got} vs ${alone}`);
    }
    assert.notEqual(scores[0], scores[1]);
    tf.dispose(Object.values(params));
  });
});

Deno.test("rewardModelScorer() gives an Error for a sample its tokenizer cannot read", async () => {
  const { kernels } = await useBackend("wasm");
  await withTempDir(async (dir) => {
    const params: Record<string, tf.Tensor> = initParams(CONFIG, new Rng(1));
    params[SCORE_WEIGHT] = tf.zeros([1, 16]);
    await saveRewardModel(dir, params, CONFIG, ALPHABET);
    const scorer = await rewardModelScorer(dir, 8, kernels);
    const [good, bad] = await scorer.score([sample("1+1=", "2"), sample("1+1=", "two")]);
    scorer.close?.();
    assert.equal(good, 0);
    assert.ok(bad instanceof Error);
    assert.match(bad.message, /^reward model .*: Cannot tokenize .* character "t"/);
    tf.dispose(Object.values(params));
  });
});

Deno.test("rewardModelScorer() refuses a missing directory and a policy checkpoint", async () => {
  const { kernels } = await useBackend("wasm");
  await withTempDir(async (dir) => {
    await assert.rejects(
      () => rewardModelScorer(`${dir}/nothing`, 8, kernels),
      /^Error: reward model .*\/nothing: cannot load: not found$/,
    );
    const params = initParams(CONFIG, new Rng(1));
    await saveCheckpoint(`${dir}/policy`, params, CONFIG, ALPHABET);
    await assert.rejects(
      () => rewardModelScorer(`${dir}/policy`, 8, kernels),
      /'score\.weight' of shape \[1, 16\] is missing; a policy checkpoint has no scalar head/,
    );
    tf.dispose(Object.values(params));
  });
});

// ---------------------------------------------------------------------------------------------
// Hugging Face reward models: a random sequence classifier in transformers' layout, scored against
// a PyTorch reference of the same classifier (torch_reward_model.py), each sample alone.

const TORCH_SCRIPT = new URL("./torch_reward_model.py", import.meta.url).pathname;

/** A qwen2 classifier (q/k/v biases, tied) over Qwen3's real tokenizer and chat template. */
const QWEN2_CLASSIFIER = {
  architectures: ["Qwen2ForSequenceClassification"],
  model_type: "qwen2",
  vocab_size: 151_936,
  hidden_size: 16,
  intermediate_size: 32,
  num_hidden_layers: 2,
  num_attention_heads: 4,
  num_key_value_heads: 2,
  max_position_embeddings: 256,
  hidden_act: "silu",
  rms_norm_eps: 1e-6,
  rope_theta: 1_000_000,
  sliding_window: 32_768,
  use_sliding_window: false,
  tie_word_embeddings: true,
  pad_token_id: 151_643,
  id2label: { "0": "LABEL_0" },
  label2id: { LABEL_0: 0 },
};

/** An untied llama classifier (so no lm_head at all) over stories260K's tokenizer, no template. */
const LLAMA_CLASSIFIER = {
  architectures: ["LlamaForSequenceClassification"],
  model_type: "llama",
  vocab_size: 512,
  hidden_size: 16,
  intermediate_size: 32,
  num_hidden_layers: 2,
  num_attention_heads: 4,
  num_key_value_heads: 2,
  max_position_embeddings: 256,
  hidden_act: "silu",
  rms_norm_eps: 1e-5,
  rope_theta: 10_000,
  tie_word_embeddings: false,
  pad_token_id: 2,
  id2label: { "0": "LABEL_0" },
  label2id: { LABEL_0: 0 },
};

/** Writes a random classifier of `config` in `dir` with the tokenizer files of `tokenizer`. */
async function writeClassifier(
  dir: string,
  config: Record<string, unknown>,
  tokenizer: string,
  files: Record<string, Uint8Array | null> = {},
): Promise<void> {
  // The causal LM's parameters less its lm_head, and the score head, drawn in that order.
  const shapes: Record<string, number[]> = {
    ...hfParamShapes(parseHfConfig(config, "config.json").config),
    [SCORE_WEIGHT]: [1, config.hidden_size as number],
  };
  delete shapes["lm_head.weight"];
  await writeRandomCheckpoint(dir, config, {
    seed: 5,
    shapes,
    metadata: { format: "pt" },
    tokenizer,
    tokenizerFiles: ["tokenizer.json", "tokenizer_config.json"],
  });
  for (const [name, bytes] of Object.entries(files)) {
    if (bytes === null) await Deno.remove(`${dir}/${name}`);
    else await Deno.writeFile(`${dir}/${name}`, bytes);
  }
}

/** PyTorch's scores of each of `rows` alone, and the positions it read them at. */
async function torchScores(
  dir: string,
  rows: number[][],
): Promise<{ scores: number[]; positions: number[] }> {
  return await pythonJson(TORCH_SCRIPT, [dir], rows) as { scores: number[]; positions: number[] };
}

/** The scorer's scores of `samples` in batches of 2, as PyTorch's of `ids` within 1e-4. */
async function assertScoresMatch(dir: string, samples: Sample[], ids: number[][]) {
  const { kernels } = await useBackend("wasm");
  const scorer = await rewardModelScorer(dir, 2, kernels);
  const got = await scorer.score(samples);
  await scorer.close?.();
  const want = await torchScores(dir, ids);
  assert.ok(Math.max(...want.scores.map(Math.abs)) > 0.1, "scores far from 0, so a slip shows");
  for (const [i, score] of got.entries()) {
    assert.equal(typeof score, "number", `sample ${i}: ${score}`);
    assert.ok(
      Math.abs((score as number) - want.scores[i]!) < 1e-4,
      `sample ${i}: ${score} vs PyTorch's ${want.scores[i]}`,
    );
  }
  return want.positions;
}

Deno.test({
  ...needsTorch(
    "rewardModelScorer() scores a qwen2 classifier's chat as PyTorch does, user prompt and assistant completion",
  ),
  async fn() {
    await withTempDir(async (dir) => {
      await writeClassifier(dir, QWEN2_CLASSIFIER, QWEN3_TOKENIZER);
      const samples = [
        sample("What is 2 + 3?", "2 + 3 = 5, so the answer is \\boxed{5}."),
        sample("Écris « bonjour » en japonais.", "こんにちは 👋"),
        sample("Say nothing.", ""),
        sample("12+34=", "46"),
        sample("Count to three.", "1, 2, 3"),
      ];
      // Qwen3's template writes the last assistant turn after an empty think block.
      const tokenizer = await loadHfTokenizer(dir);
      const ids = samples.map((s) =>
        tokenizer.encode(
          `<|im_start|>user\n${s.prompt}<|im_end|>\n` +
            `<|im_start|>assistant\n<think>\n\n</think>\n\n${s.completion}<|im_end|>\n`,
        )
      );
      const positions = await assertScoresMatch(dir, samples, ids);
      assert.deepEqual(positions, ids.map((row) => row.length - 1));
    });
  },
});

Deno.test({
  ...needsTorch(
    "rewardModelScorer() scores an untied llama classifier's text at the last non-pad token, as PyTorch does",
  ),
  async fn() {
    await withTempDir(async (dir) => {
      await writeClassifier(dir, LLAMA_CLASSIFIER, STORIES);
      const samples = [
        sample("Once upon a time", " there was a cat."),
        sample("Lily", " liked the park"),
        // The completion's own </s> is pad_token_id 2: the score is read at the token before it.
        sample("The dog ran", " home.</s>"),
        sample("Tom", " and Sue</s></s>"),
      ];
      const tokenizer = await loadHfTokenizer(dir);
      const ids = samples.map((s) =>
        tokenizer.encode(s.prompt + s.completion, { addSpecialTokens: true })
      );
      assert.ok(ids.every((row) => row[0] === 1)); // <s> first, as the tokenizer adds it
      const positions = await assertScoresMatch(dir, samples, ids);
      assert.deepEqual(positions, [
        ids[0]!.length - 1,
        ids[1]!.length - 1,
        ids[2]!.length - 2,
        ids[3]!.length - 3,
      ]);
    });
  },
});

Deno.test("rewardModelScorer() refuses a Hugging Face directory without a score head, or with an lm_head", async () => {
  const { kernels } = await useBackend("wasm");
  await withTempDir(async (dir) => {
    // stories260K itself: a causal LM, tied, so no score head
    await assert.rejects(
      () => rewardModelScorer(STORIES, 8, kernels),
      /^Error: reward model .*stories260K: cannot load: .*model\.safetensors: lacks tensor 'score\.weight'$/,
    );
    await writeClassifier(`${dir}/head`, LLAMA_CLASSIFIER, STORIES);
    const bytes = await Deno.readFile(`${dir}/head/model.safetensors`);
    const { tensors } = decodeSafetensors(bytes);
    const withLm = encodeSafetensors({
      ...tensors,
      "lm_head.weight": { dtype: "F32", shape: [512, 16], data: new Float32Array(512 * 16) },
    });
    await Deno.writeFile(`${dir}/head/model.safetensors`, withLm);
    await assert.rejects(
      () => rewardModelScorer(`${dir}/head`, 8, kernels),
      /tensor 'lm_head\.weight' is extra: a sequence classifier \(a reward model\) has a score head, not an lm_head$/,
    );
  });
});

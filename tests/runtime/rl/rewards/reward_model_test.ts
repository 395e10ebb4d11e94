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

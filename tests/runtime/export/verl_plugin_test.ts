import assert from "node:assert/strict";
import * as tf from "@tensorflow/tfjs";
import { gift } from "../../../runtime/rl/objectives/gift.ts";
import { standardize } from "../../../runtime/rl/objectives/group.ts";
import { onlineDpo } from "../../../runtime/rl/objectives/online_dpo.ts";
import type { Objective } from "../../../runtime/rl/objectives/types.ts";
import { una } from "../../../runtime/rl/objectives/una.ts";
import { needsTorch, PYTHON, pythonJson } from "../../_requires.ts";
import { relativeError } from "../_numeric.ts";
import { mulberry32 } from "../rl/objectives/_conformance.ts";

await tf.setBackend("cpu");

const PLUGIN = new URL("../../../runtime/export/giftwrap_verl.py", import.meta.url).pathname;
const DRIVER = new URL("./verl_plugin.py", import.meta.url).pathname;

interface Batch {
  logp: number[][];
  oldLogp: number[][];
  refLogp: number[][];
  mask: number[][];
  rewards: number[];
  groupSize: number;
}

/**
 * P groups of G rows, T tokens: ragged masks (every row at least one token), group 1 with equal
 * rewards, and in group 0 logp equal to oldLogp (u ≡ 0 under the rollout reference).
 */
function randomBatch(seed: number, P: number, G: number, T: number): Batch {
  const rand = mulberry32(seed);
  const rows = P * G;
  const matrix = (scale: number) =>
    Array.from({ length: rows }, () => Array.from({ length: T }, () => -scale * rand() - 0.1));
  const logp = matrix(2);
  const oldLogp = logp.map((row, i) => i < G ? [...row] : row.map((x) => x + 0.3 * (rand() - 0.5)));
  const refLogp = logp.map((row) => row.map((x) => x + 0.5 * (rand() - 0.5)));
  const mask = Array.from({ length: rows }, () => {
    const length = 1 + Math.floor(rand() * T);
    return Array.from({ length: T }, (_, t) => (t < length ? 1 : 0));
  });
  const rewards = Array.from(
    { length: rows },
    (_, i) => Math.floor(i / G) === 1 && G > 1 ? 0.5 : Math.round(rand() * 4) / 2,
  );
  return { logp, oldLogp, refLogp, mask, rewards, groupSize: G };
}

/** giftwrap's loss and its gradient w.r.t. logp, on TF.js. */
function giftwrapLoss<O>(
  objective: Objective<O>,
  batch: Batch,
  reference: "rollout" | "initial",
  options: O,
): { loss: number; grad: number[] } {
  return tf.tidy(() => {
    const base = {
      oldLogp: tf.tensor2d(batch.oldLogp),
      mask: tf.tensor2d(batch.mask),
      rewards: tf.tensor1d(batch.rewards),
      groupSize: batch.groupSize,
      ...(reference === "initial" ? { refLogp: tf.tensor2d(batch.refLogp) } : {}),
    };
    const lossOf = (logp: tf.Tensor) =>
      objective.loss({ ...base, logp: logp as tf.Tensor2D }, options).loss;
    const logp = tf.tensor2d(batch.logp);
    const loss = lossOf(logp).dataSync()[0]!;
    const grad = Array.from(tf.grad(lossOf)(logp).dataSync());
    return { loss, grad };
  });
}

/** The advantages tensor verl hands the loss: a per-row scalar times the mask. */
function broadcast(values: number[], mask: number[][]): number[][] {
  return mask.map((row, i) => row.map((m) => m * values[i]!));
}

function giftAdvantage(batch: Batch, epsilon: number): number[] {
  return tf.tidy(() =>
    Array.from(
      standardize(tf.tensor1d(batch.rewards), batch.groupSize, { epsilon, singleton: "identity" })
        .dataSync(),
    )
  );
}

async function pluginLoss(
  batch: Batch,
  loss: string,
  reference: "rollout" | "initial",
  advantages: number[][],
  settings: Record<string, unknown>,
): Promise<{ loss?: number; grad?: number[][]; error?: string }> {
  const input = {
    logp: batch.logp,
    oldLogp: batch.oldLogp,
    mask: batch.mask,
    advantages,
    groupSize: batch.groupSize,
    loss,
    settings: { ...settings, reference },
    ...(reference === "initial" ? { refLogp: batch.refLogp } : {}),
  };
  return await pythonJson(DRIVER, [PLUGIN, "loss"], input) as {
    loss?: number;
    grad?: number[][];
    error?: string;
  };
}

function assertAgrees(
  ours: { loss: number; grad: number[] },
  theirs: { loss?: number; grad?: number[][]; error?: string },
  what: string,
): void {
  assert.equal(theirs.error, undefined, theirs.error);
  const lossError = Math.abs(theirs.loss! - ours.loss) / Math.max(Math.abs(ours.loss), 1e-12);
  assert.ok(lossError < 1e-5, `${what}: loss ${theirs.loss} vs giftwrap's ${ours.loss}`);
  const gradError = relativeError(theirs.grad!.flat(), ours.grad);
  assert.ok(gradError < 1e-5, `${what}: gradient relative error ${gradError}`);
  assert.ok(ours.grad.some((g) => g !== 0), `${what}: a zero gradient proves nothing`);
}

for (const reference of ["rollout", "initial"] as const) {
  Deno.test({
    ...needsTorch(`compute_policy_loss_gift() with reference '${reference}' agrees with gift`),
    async fn() {
      for (const [seed, G] of [[1, 4], [2, 3]] as const) {
        const batch = randomBatch(seed, 3, G, 6);
        const settings = { betaC: 0.7, stdEpsilon: 1e-6, groupSize: G };
        const ours = giftwrapLoss(gift, batch, reference, { betaC: 0.7, stdEpsilon: 1e-6 });
        const advantages = broadcast(giftAdvantage(batch, 1e-6), batch.mask);
        const theirs = await pluginLoss(batch, "gift", reference, advantages, settings);
        assertAgrees(ours, theirs, `gift, ${reference}, G=${G}`);
      }
    },
  });
}

Deno.test({
  ...needsTorch("compute_policy_loss_gift() on groups of one: ũ = 0, L = mean r²"),
  async fn() {
    const batch = randomBatch(3, 4, 1, 5);
    const ours = giftwrapLoss(gift, batch, "initial", {});
    const advantages = broadcast(giftAdvantage(batch, 1e-6), batch.mask);
    const theirs = await pluginLoss(batch, "gift", "initial", advantages, { groupSize: 1 });
    const expected = batch.rewards.reduce((a, r) => a + r * r, 0) / batch.rewards.length;
    assert.ok(Math.abs(theirs.loss! - expected) < 1e-6 * Math.max(1, expected));
    assert.ok(Math.abs(ours.loss - expected) < 1e-6 * Math.max(1, expected));
    assert.ok(theirs.grad!.flat().every((g) => g === 0));
  },
});

for (const reference of ["rollout", "initial"] as const) {
  Deno.test({
    ...needsTorch(`compute_policy_loss_una() with reference '${reference}' agrees with una`),
    async fn() {
      const batch = randomBatch(4, 3, 4, 6);
      const ours = giftwrapLoss(una, batch, reference, { beta: 0.5 });
      const advantages = broadcast(batch.rewards, batch.mask);
      const theirs = await pluginLoss(batch, "giftwrap_una", reference, advantages, {
        unaBeta: 0.5,
      });
      assertAgrees(ours, theirs, `una, ${reference}`);
    },
  });

  Deno.test({
    ...needsTorch(
      `compute_policy_loss_online_dpo() with reference '${reference}' agrees with onlineDpo`,
    ),
    async fn() {
      // group 1's rewards are all equal: no pair there
      const batch = randomBatch(5, 4, 4, 6);
      batch.rewards[0] = 0;
      batch.rewards[1] = 2; // group 0 surely has a pair
      const ours = giftwrapLoss(onlineDpo, batch, reference, { beta: 0.3 });
      const advantages = broadcast(batch.rewards, batch.mask);
      const theirs = await pluginLoss(batch, "giftwrap_online_dpo", reference, advantages, {
        dpoBeta: 0.3,
        groupSize: 4,
      });
      assertAgrees(ours, theirs, `onlineDpo, ${reference}`);
    },
  });
}

Deno.test({
  ...needsTorch("the plugin's losses refuse a micro-batch that is not a multiple of G"),
  async fn() {
    const batch = randomBatch(6, 2, 3, 4); // 6 rows
    const advantages = broadcast(batch.rewards, batch.mask);
    const theirs = await pluginLoss(batch, "gift", "rollout", advantages, { groupSize: 4 });
    assert.match(theirs.error ?? "", /micro-batch of 6 rows, not a multiple of the group size 4/);
  },
});

Deno.test({
  ...needsTorch("compute_gift_advantage() agrees with giftwrap's Â, groups by uid"),
  async fn() {
    const batch = randomBatch(7, 3, 4, 5);
    const expected = giftAdvantage(batch, 1e-6);
    // the same groups, interleaved: uid says which row belongs where
    const order = [0, 4, 8, 1, 5, 9, 2, 6, 10, 3, 7, 11];
    const answer = await pythonJson(DRIVER, [PLUGIN, "advantage"], {
      rewards: order.map((i) => batch.rewards[i]),
      mask: order.map((i) => batch.mask[i]),
      index: order.map((i) => `uid-${Math.floor(i / 4)}`),
      settings: { stdEpsilon: 1e-6 },
    }) as { gift: number[][]; raw: number[][] };
    order.forEach((i, k) => {
      const row = answer.gift[k]!;
      batch.mask[i]!.forEach((m, t) => {
        assert.ok(Math.abs(row[t]! - m * expected[i]!) < 1e-5, `row ${i} token ${t}`);
      });
      assert.deepEqual(answer.raw[k], batch.mask[i]!.map((m) => m * batch.rewards[i]!));
    });
    // the equal-reward group's advantages are exactly 0
    [4, 5, 6, 7].forEach((i) => assert.equal(expected[i], 0));
  },
});

const STUB_CORE_ALGOS = `
POLICY_LOSS_REGISTRY = {}
ADV_ESTIMATOR_REGISTRY = {}

def register_policy_loss(name):
    def decorator(func):
        POLICY_LOSS_REGISTRY[name] = func
        return func
    return decorator

def get_policy_loss_fn(name):
    if name not in POLICY_LOSS_REGISTRY:
        raise ValueError(f"Unsupported loss mode: {name}")
    return POLICY_LOSS_REGISTRY[name]

def register_adv_est(name_or_enum):
    def decorator(fn):
        name = name_or_enum
        if name in ADV_ESTIMATOR_REGISTRY and ADV_ESTIMATOR_REGISTRY[name] != fn:
            raise ValueError(f"Adv estimator {name} has already been registered")
        ADV_ESTIMATOR_REGISTRY[name] = fn
        return fn
    return decorator

register_adv_est("grpo")(lambda **kw: None)
register_policy_loss("vanilla")(lambda **kw: None)
`;

const STUB_LOSSES = `
from verl.trainer.ppo.core_algos import get_policy_loss_fn

def ppo_loss(config, model_output, data, dp_group=None):
    return get_policy_loss_fn(config["loss_mode"])()[0]

original_ppo_loss = ppo_loss
`;

Deno.test({
  ...needsTorch("register() fills a stub verl's registries once and wraps its ppo_loss"),
  async fn() {
    const root = await Deno.makeTempDir();
    try {
      for (const dir of ["verl/trainer/ppo", "verl/workers/utils"]) {
        await Deno.mkdir(`${root}/${dir}`, { recursive: true });
      }
      for (
        const dir of [
          "verl",
          "verl/trainer",
          "verl/trainer/ppo",
          "verl/workers",
          "verl/workers/utils",
        ]
      ) {
        await Deno.writeTextFile(`${root}/${dir}/__init__.py`, "");
      }
      await Deno.writeTextFile(`${root}/verl/trainer/ppo/core_algos.py`, STUB_CORE_ALGOS);
      await Deno.writeTextFile(`${root}/verl/workers/utils/losses.py`, STUB_LOSSES);
      const answer = await pythonJson(DRIVER, [PLUGIN, "stub", root], {});
      assert.deepEqual(answer, {
        registered: [true, true],
        advantage: ["gift", "giftwrap_raw", "grpo"],
        loss: ["gift", "giftwrap_online_dpo", "giftwrap_una", "probe", "vanilla"],
        giftIsOurs: true,
        wrappedOnce: true,
        refSeen: [[1, 2]],
        refAfter: true,
      });
    } finally {
      await Deno.remove(root, { recursive: true });
    }
  },
});

Deno.test({
  ...needsTorch("giftwrap_verl imports without verl and registers nothing"),
  async fn() {
    const out = await new Deno.Command(PYTHON, {
      args: [
        "-c",
        "import importlib.util, json, sys\n" +
        `spec = importlib.util.spec_from_file_location('giftwrap_verl', ${
          JSON.stringify(PLUGIN)
        })\n` +
        "m = importlib.util.module_from_spec(spec); spec.loader.exec_module(m)\n" +
        "print(json.dumps([m.REGISTERED, 'verl' in sys.modules, sorted(m.POLICY_LOSSES)]))",
      ],
      stdout: "piped",
      stderr: "piped",
    }).output();
    assert.ok(out.success, new TextDecoder().decode(out.stderr));
    assert.deepEqual(JSON.parse(new TextDecoder().decode(out.stdout)), [
      false,
      false,
      ["gift", "giftwrap_online_dpo", "giftwrap_una"],
    ]);
  },
});

import assert from "node:assert/strict";
import {
  compile,
  customObjective,
  dapo,
  drGrpo,
  gift,
  grpo,
  gspo,
  onlineDpo,
  type Recipe,
  recipe,
  rloo,
  una,
} from "../../../mod.ts";
import { type VerlObjective, verlObjective } from "../../../runtime/export/verl_objective.ts";
import { base } from "../../dsl/_fixtures.ts";
import { verlKeys } from "./_verl_keys.ts";

const KEYS = verlKeys();

function mapped(objective: Recipe["objective"], extra: Partial<Recipe> = {}): VerlObjective {
  return verlObjective(compile(recipe({ ...base, ...extra, objective })));
}

function overridesOf(result: VerlObjective): Map<string, string | number | boolean> {
  assert.ok(result.ok, result.ok ? "" : `${result.field}: ${result.reason}`);
  for (const [key] of result.overrides) assert.ok(KEYS.has(key), `${key} is not a verl key`);
  const map = new Map(result.overrides);
  assert.equal(map.size, result.overrides.length, "a key emitted twice");
  return map;
}

Deno.test("verlObjective() maps grpo to verl's grpo with a token ratio and the KL in the loss", () => {
  const result = mapped(grpo({ beta: 0.04, epsilon: 0.2, epsilonHigh: 0.3 }));
  const o = overridesOf(result);
  assert.equal(o.get("algorithm.adv_estimator"), "grpo");
  assert.equal(o.get("algorithm.norm_adv_by_std_in_grpo"), true);
  assert.equal(o.get("actor_rollout_ref.actor.policy_loss.loss_mode"), "vanilla");
  assert.equal(o.get("actor_rollout_ref.actor.clip_ratio_low"), 0.2);
  assert.equal(o.get("actor_rollout_ref.actor.clip_ratio_high"), 0.3);
  assert.ok(Number(o.get("actor_rollout_ref.actor.clip_ratio_c")) > Math.exp(20));
  assert.equal(o.get("actor_rollout_ref.actor.loss_agg_mode"), "seq-mean-token-mean");
  assert.equal(o.get("actor_rollout_ref.actor.use_kl_loss"), true);
  assert.equal(o.get("actor_rollout_ref.actor.kl_loss_coef"), 0.04);
  assert.equal(o.get("actor_rollout_ref.actor.kl_loss_type"), "k3");
  assert.ok(
    result.ok && result.warnings.some((w) => w.includes("0.0001") && w.includes("0.000001")),
  );
  assert.ok(result.ok && result.warnings.some((w) => w.includes("k3") && w.includes("clamps")));
  assert.deepEqual(result.ok && result.settings, {});
});

Deno.test("verlObjective() maps drGrpo's constant normaliser to seq-mean-token-sum-norm", () => {
  const plan = compile(recipe({ ...base, objective: drGrpo() }));
  const o = overridesOf(verlObjective(plan));
  assert.equal(o.get("algorithm.norm_adv_by_std_in_grpo"), false);
  assert.equal(o.get("actor_rollout_ref.actor.loss_agg_mode"), "seq-mean-token-sum-norm");
  assert.equal(o.get("actor_rollout_ref.actor.loss_scale_factor"), plan.shapes.newTokens);
  assert.equal(o.get("actor_rollout_ref.actor.use_kl_loss"), false);
});

Deno.test("verlObjective() maps dapo's clip-higher, token-mean and dynamic sampling", () => {
  const o = overridesOf(mapped(dapo({ maxSamplingRounds: 7 })));
  assert.equal(o.get("actor_rollout_ref.actor.clip_ratio_high"), 0.28);
  assert.equal(o.get("actor_rollout_ref.actor.loss_agg_mode"), "token-mean");
  assert.equal(o.get("algorithm.filter_groups.enable"), true);
  assert.equal(o.get("algorithm.filter_groups.metric"), "acc");
  assert.equal(o.get("algorithm.filter_groups.max_num_gen_batches"), 7);
  const off = overridesOf(mapped(dapo({ dynamicSampling: false })));
  assert.equal(off.get("algorithm.filter_groups.enable"), false);
});

Deno.test("verlObjective() refuses dapo's maskTruncated, naming the field", () => {
  const result = mapped(dapo({ maskTruncated: true }));
  assert.equal(result.ok, false);
  assert.equal(!result.ok && result.field, "objective.maskTruncated");
});

Deno.test("verlObjective() maps gspo to verl's gspo loss with its asymmetric clip", () => {
  const o = overridesOf(mapped(gspo()));
  assert.equal(o.get("actor_rollout_ref.actor.policy_loss.loss_mode"), "gspo");
  assert.equal(o.get("actor_rollout_ref.actor.clip_ratio_low"), 3e-4);
  assert.equal(o.get("actor_rollout_ref.actor.clip_ratio_high"), 4e-4);
  assert.equal(o.get("algorithm.adv_estimator"), "grpo");
});

Deno.test("verlObjective() maps rloo to verl's rloo with the k1 KL in the reward", () => {
  const o = overridesOf(mapped(rloo({ beta: 0.05 })));
  assert.equal(o.get("algorithm.adv_estimator"), "rloo");
  assert.equal(o.get("actor_rollout_ref.actor.policy_loss.loss_mode"), "gspo");
  assert.equal(o.get("algorithm.use_kl_in_reward"), true);
  assert.equal(o.get("algorithm.kl_penalty"), "kl");
  assert.equal(o.get("algorithm.kl_ctrl.type"), "fixed");
  assert.equal(o.get("algorithm.kl_ctrl.kl_coef"), 0.05);
  assert.equal(o.get("actor_rollout_ref.actor.use_kl_loss"), false);
});

Deno.test("verlObjective() maps gift to the plugin with whole groups in each micro-batch", () => {
  for (const reference of ["initial", "rollout"] as const) {
    const result = mapped(gift({ betaC: 0.5 }), { reference });
    const o = overridesOf(result);
    assert.equal(o.get("algorithm.adv_estimator"), "gift");
    assert.equal(o.get("actor_rollout_ref.actor.policy_loss.loss_mode"), "gift");
    assert.equal(o.get("actor_rollout_ref.model.external_lib"), "giftwrap_verl");
    assert.equal(o.get("trainer.balance_batch"), false);
    assert.equal(o.get("actor_rollout_ref.actor.use_dynamic_bsz"), false);
    assert.equal(o.get("actor_rollout_ref.actor.shuffle"), false);
    assert.equal(o.get("actor_rollout_ref.actor.ppo_micro_batch_size_per_gpu"), 8);
    assert.equal(o.get("actor_rollout_ref.actor.use_kl_loss"), reference === "initial");
    assert.equal(
      o.get("actor_rollout_ref.actor.kl_loss_coef"),
      reference === "initial" ? 0 : undefined,
    );
    assert.deepEqual(result.ok && result.settings, {
      format: "giftwrap.verl/1",
      reference,
      groupSize: 8,
      betaC: 0.5,
      stdEpsilon: 1e-6,
    });
  }
});

Deno.test("verlObjective() maps una and onlineDpo to the plugin's losses on raw rewards", () => {
  const u = mapped(una({ beta: 0.05 }));
  const uo = overridesOf(u);
  assert.equal(uo.get("algorithm.adv_estimator"), "giftwrap_raw");
  assert.equal(uo.get("actor_rollout_ref.actor.policy_loss.loss_mode"), "giftwrap_una");
  assert.equal(u.ok && u.settings.unaBeta, 0.05);
  const d = mapped(onlineDpo({ beta: 0.2 }));
  const dO = overridesOf(d);
  assert.equal(dO.get("actor_rollout_ref.actor.policy_loss.loss_mode"), "giftwrap_online_dpo");
  assert.equal(d.ok && d.settings.dpoBeta, 0.2);
  assert.ok(d.ok && d.warnings.some((w) => w.includes("pairs")));
});

Deno.test("verlObjective() refuses a custom objective and a checkpoint reference for gift", () => {
  const custom = mapped(customObjective("./loss.ts"));
  assert.deepEqual(custom, {
    ok: false,
    field: "objective",
    reason: "a custom TypeScript objective has no verl equivalent",
  });
  const checkpoint = mapped(gift(), { reference: { checkpoint: "ckpt" } });
  assert.equal(!checkpoint.ok && checkpoint.field, "reference");
});

/**
 * A plan's objective as verl settings: the Hydra overrides of `verl.trainer.main_ppo` (every key one
 * of verl's, at the commit the export targets) and, for the losses verl lacks, the settings file of
 * the giftwrap plugin (`giftwrap_verl.py`, written beside it as `giftwrap_verl.json`).
 *
 * Each preset of docs/objectives.md maps as follows (verl's names on the right):
 *
 * - advantage: group-mean/group-std → `grpo` (with `norm_adv_by_std_in_grpo=true`; verl's ε is
 *   1e-6 where giftwrap's GRPO family uses 1e-4: a warning); group-mean/none → `grpo` with
 *   `norm_adv_by_std_in_grpo=false`; leave-one-out → `rloo`; GIFT → the plugin's `gift`; UNA and
 *   online DPO → the plugin's `giftwrap_raw` (the raw reward, which their losses read).
 * - ratio and clip: token → `vanilla` with `clip_ratio_low/high` and `clip_ratio_c=1e9` (verl's
 *   dual clip caps −A·w at −A·clip_ratio_c for A < 0; giftwrap has no dual clip, and verl clamps
 *   log w to ±20, so 1e9 > e^20 turns it off exactly); sequence → `gspo`.
 * - KL in the loss → `use_kl_loss`, `kl_loss_coef`, `kl_loss_type=k3` (verl clamps it: a warning);
 *   KL in the reward (rloo) → `algorithm.use_kl_in_reward`, `kl_penalty=kl` (Σ_t log π_old − log
 *   π_ref, giftwrap's exact form), `kl_ctrl.type=fixed`, `kl_ctrl.kl_coef`.
 * - aggregation: sequence-mean → `seq-mean-token-mean`; token-mean → `token-mean`; constant →
 *   `seq-mean-token-sum-norm` with `loss_scale_factor` = maxNewTokens (verl divides the sequence
 *   mean of token sums by it; without it verl would divide by the padded length of each
 *   micro-batch).
 * - DAPO's dynamic sampling → `algorithm.filter_groups` with metric `acc` (the success reward, which
 *   the reward hook returns under that name) and `max_num_gen_batches` = maxSamplingRounds. Masking
 *   truncated completions has no verl key: refused.
 * - GIFT, UNA, online DPO → the plugin's losses, `actor_rollout_ref.model.external_lib=giftwrap_verl`,
 *   and the settings file. Their group-wise statistics need whole groups in each micro-batch, in
 *   order: `trainer.balance_batch=false`, `actor.use_dynamic_bsz=false`, `actor.shuffle=false` and
 *   micro-batches of G rows (actor, and the log-prob passes alike, so that π_old is computed with
 *   the update's shapes). Reference 'initial' turns `use_kl_loss` on with `kl_loss_coef=0`: that
 *   makes verl compute ref_log_prob and hand it to its loss function, where the plugin reads it.
 *
 * A custom TypeScript objective, and a reference loaded from a checkpoint, have no verl equivalent.
 *
 * @module
 */

import type { Plan } from "../../dsl/plan.ts";

/** One Hydra override: a dotted verl key and its value. */
export type VerlOverride = [key: string, value: string | number | boolean];

/**
 * What `verlObjective()` makes of a plan's objective: the overrides, the plugin's settings (empty
 * when the objective needs no plugin) and warnings on what differs, or the field verl cannot
 * express and why.
 *
 * @example
 * ```ts
 * const mapped: VerlObjective = verlObjective(plan);
 * if (!mapped.ok) console.error(`${mapped.field}: ${mapped.reason}`);
 * ```
 */
export type VerlObjective =
  | { ok: true; overrides: VerlOverride[]; settings: Record<string, unknown>; warnings: string[] }
  | { ok: false; field: string; reason: string };

/** The plugin's module name, as `external_lib` imports it. */
export const VERL_PLUGIN_MODULE = "giftwrap_verl";

/** The format tag of the plugin's settings file. */
export const VERL_SETTINGS_FORMAT = "giftwrap.verl/1";

/** verl's ε on the group standard deviation (`compute_grpo_outcome_advantage`). */
const VERL_GRPO_EPSILON = 1e-6;

/** Above e^20, the largest ratio verl's clamped log-ratio gives: the dual clip never binds. */
const NO_DUAL_CLIP = 1e9;

const ACTOR = "actor_rollout_ref.actor";

type Objective = Plan["objective"];
type Axes = Objective["axes"];

const AGGREGATION: Record<Exclude<Axes["aggregation"], "pair-mean">, string> = {
  "sequence-mean": "seq-mean-token-mean",
  "token-mean": "token-mean",
  "constant": "seq-mean-token-sum-norm",
};

function refuse(field: string, reason: string): VerlObjective {
  return { ok: false, field, reason };
}

/** Overrides of verl's KL in the loss: on with β and k3, or off. */
function klInLoss(axes: Axes, warnings: string[]): VerlOverride[] {
  if (axes.kl === null || axes.kl.placement !== "loss") return [[`${ACTOR}.use_kl_loss`, false]];
  warnings.push(
    `the KL in the loss is giftwrap's k3 exp(ref − logp) − (ref − logp) − 1, unclamped; verl's ` +
      `k3 (= low_var_kl) clamps ref − logp to [−20, 20] and the KL to [−10, 10]`,
  );
  return [
    [`${ACTOR}.use_kl_loss`, true],
    [`${ACTOR}.kl_loss_coef`, axes.kl.beta],
    [`${ACTOR}.kl_loss_type`, "k3"],
  ];
}

/** The clipped-surrogate presets: grpo, drGrpo, dapo, gspo, rloo. */
function surrogate(plan: Plan, warnings: string[]): VerlObjective {
  const { options, axes } = plan.objective;
  const advantage = axes.advantage!;
  const ratio = axes.ratio!;
  const overrides: VerlOverride[] = [];
  // 1) advantage
  if (advantage.baseline === "leave-one-out") {
    overrides.push(["algorithm.adv_estimator", "rloo"]);
  } else {
    overrides.push(["algorithm.adv_estimator", "grpo"]);
    const scaled = advantage.scale === "group-std";
    overrides.push(["algorithm.norm_adv_by_std_in_grpo", scaled]);
    if (scaled && advantage.epsilon !== VERL_GRPO_EPSILON) {
      warnings.push(
        `the advantage's ε on the group std is ${advantage.epsilon} in giftwrap and ` +
          `${VERL_GRPO_EPSILON} in verl's grpo estimator (not configurable there)`,
      );
    }
  }
  // 2) ratio and clip
  overrides.push(
    [`${ACTOR}.policy_loss.loss_mode`, ratio.level === "token" ? "vanilla" : "gspo"],
    [`${ACTOR}.clip_ratio`, ratio.clipLow],
    [`${ACTOR}.clip_ratio_low`, ratio.clipLow],
    [`${ACTOR}.clip_ratio_high`, ratio.clipHigh],
  );
  if (ratio.level === "token") overrides.push([`${ACTOR}.clip_ratio_c`, NO_DUAL_CLIP]);
  // 3) aggregation (verl's gspo loss always aggregates seq-mean-token-mean)
  if (axes.aggregation === "pair-mean") {
    return refuse("objective", "a pair-mean aggregation has no verl loss_agg_mode");
  }
  overrides.push([`${ACTOR}.loss_agg_mode`, AGGREGATION[axes.aggregation]]);
  if (axes.aggregation === "constant") {
    overrides.push([`${ACTOR}.loss_scale_factor`, plan.shapes.newTokens]);
  }
  // 4) KL, in the loss or in the reward
  overrides.push(...klInLoss(axes, warnings));
  if (axes.kl !== null && axes.kl.placement === "reward") {
    overrides.push(
      ["algorithm.use_kl_in_reward", true],
      ["algorithm.kl_penalty", "kl"],
      ["algorithm.kl_ctrl.type", "fixed"],
      ["algorithm.kl_ctrl.kl_coef", axes.kl.beta],
    );
  } else {
    overrides.push(["algorithm.use_kl_in_reward", false]);
  }
  // 5) DAPO's extras
  if (axes.maskTruncated) {
    return refuse(
      "objective.maskTruncated",
      "verl has no setting that leaves truncated completions out of the loss",
    );
  }
  if (axes.dynamicSampling !== null) {
    overrides.push(
      ["algorithm.filter_groups.enable", true],
      ["algorithm.filter_groups.metric", "acc"],
      ["algorithm.filter_groups.max_num_gen_batches", axes.dynamicSampling.maxRounds],
    );
  } else if (options.kind === "dapo") {
    overrides.push(["algorithm.filter_groups.enable", false]);
  }
  return { ok: true, overrides, settings: {}, warnings };
}

/** The plugin's presets: gift, una, onlineDpo. */
function plugin(plan: Plan, warnings: string[]): VerlObjective {
  const { options } = plan.objective;
  const G = plan.shapes.groupSize;
  const reference = plan.reference.kind;
  if (reference === "checkpoint") {
    return refuse(
      "reference",
      "verl's reference policy is the initial model; a reference loaded from a checkpoint has no " +
        "verl equivalent",
    );
  }
  // giftwrap falls back to π_old when no reference is declared: the plugin's 'rollout'
  const mode = reference === "initial" ? "initial" : "rollout";
  const settings: Record<string, unknown> = {
    format: VERL_SETTINGS_FORMAT,
    reference: mode,
    groupSize: G,
  };
  const overrides: VerlOverride[] = [];
  if (options.kind === "gift") {
    overrides.push(["algorithm.adv_estimator", "gift"], [`${ACTOR}.policy_loss.loss_mode`, "gift"]);
    settings.betaC = options.betaC;
    settings.stdEpsilon = options.stdEpsilon;
  } else if (options.kind === "una") {
    overrides.push(
      ["algorithm.adv_estimator", "giftwrap_raw"],
      [`${ACTOR}.policy_loss.loss_mode`, "giftwrap_una"],
    );
    settings.unaBeta = options.beta;
  } else if (options.kind === "onlineDpo") {
    overrides.push(
      ["algorithm.adv_estimator", "giftwrap_raw"],
      [`${ACTOR}.policy_loss.loss_mode`, "giftwrap_online_dpo"],
    );
    settings.dpoBeta = options.beta;
    warnings.push(
      "online DPO's loss is the mean over pairs within a micro-batch; across several " +
        "micro-batches or data-parallel ranks verl's plugin divides by the mini-batch's groups " +
        "instead, so groups without a pair weigh 0 rather than leaving the mean",
    );
  } else {
    return refuse("objective", `'${options.kind}' is not a loss of the giftwrap plugin`);
  }
  overrides.push(
    ["actor_rollout_ref.model.external_lib", VERL_PLUGIN_MODULE],
    // reference 'initial': verl computes ref_log_prob only for a KL; a coefficient of 0 adds nothing
    [`${ACTOR}.use_kl_loss`, mode === "initial"],
    ...(mode === "initial" ? [[`${ACTOR}.kl_loss_coef`, 0] as VerlOverride] : []),
    ["algorithm.use_kl_in_reward", false],
    [`${ACTOR}.entropy_coeff`, 0],
    // whole groups, in order, in every micro-batch
    ["trainer.balance_batch", false],
    [`${ACTOR}.use_dynamic_bsz`, false],
    [`${ACTOR}.shuffle`, false],
    [`${ACTOR}.ppo_micro_batch_size_per_gpu`, G],
    // π_old and π_ref computed with the update's micro-batch shapes
    ["actor_rollout_ref.rollout.log_prob_micro_batch_size_per_gpu", G],
    ["actor_rollout_ref.ref.log_prob_micro_batch_size_per_gpu", G],
  );
  return { ok: true, overrides, settings, warnings };
}

/**
 * The verl settings of `plan`'s objective: Hydra overrides (each key one of verl's), the plugin's
 * settings (`{}` when the objective needs no plugin) and warnings on what verl computes
 * differently; or `{ ok: false, field, reason }` for what verl cannot express (a custom objective,
 * DAPO's `maskTruncated`, a checkpoint reference for the plugin's losses).
 *
 * @example
 * ```ts
 * const mapped = verlObjective(compile(recipe({ ...base, objective: grpo() })));
 * if (mapped.ok) console.log(mapped.overrides.map(([k, v]) => `${k}=${v}`).join(" "));
 * else console.error(`${mapped.field}: ${mapped.reason}`);
 * ```
 */
export function verlObjective(plan: Plan): VerlObjective {
  const warnings: string[] = [];
  switch (plan.objective.axes.loss) {
    case "custom":
      return refuse("objective", "a custom TypeScript objective has no verl equivalent");
    case "clipped-surrogate":
      return surrogate(plan, warnings);
    case "gift":
    case "una":
    case "dpo-pairs":
      return plugin(plan, warnings);
  }
}

/**
 * LoRA's configuration, free of TensorFlow.js: the checked settings ({@linkcode loraConfig}) and
 * PEFT's `adapter_config.json`, written ({@linkcode peftConfigJson}) and read
 * ({@linkcode parsePeftConfig}). The command line's `plan` reads an adapter's configuration
 * without loading tfjs; `lora.ts` holds the adapters themselves.
 *
 * @module
 */

import { LORA_TARGETS } from "../../../dsl/schema.ts";

/** The projections an adapter may target, in the order their adapters are drawn and saved. */
export { LORA_TARGETS };

/** One projection an adapter may target (Hugging Face's module name). */
export type LoraTarget = typeof LORA_TARGETS[number];

/**
 * What {@linkcode loraConfig} takes.
 *
 * @example
 * ```ts
 * const options: LoraOptions = { rank: 16, alpha: 32, targets: ["q_proj", "v_proj"] };
 * ```
 */
export interface LoraOptions {
  /** The rank r of each update. */
  rank: number;
  /** The update's scale is alpha / rank. */
  alpha: number;
  /** Dropout on the adapters' input; only 0 is implemented. @default 0 */
  dropout?: number;
  /** The projections adapted in every layer. */
  targets: readonly string[];
}

/**
 * A checked LoRA configuration: targets unique and in {@linkcode LORA_TARGETS} order.
 *
 * @example
 * ```ts
 * loraConfig({ rank: 8, alpha: 16, targets: ["v_proj", "q_proj"] }).targets; // ["q_proj", "v_proj"]
 * ```
 */
export interface LoraConfig {
  rank: number;
  alpha: number;
  dropout: number;
  targets: LoraTarget[];
}

/**
 * Checks a LoRA configuration: one line naming the field, what was expected and what was given.
 *
 * @example
 * ```ts
 * loraConfig({ rank: 0, alpha: 16, targets: ["q_proj"] });
 * // Error: Cannot use LoRA as 'rank' must be an integer >= 1: current value is 0
 * ```
 */
export function loraConfig(options: LoraOptions): LoraConfig {
  const fail = (field: string, expected: string, given: unknown): never => {
    throw new Error(
      `Cannot use LoRA as '${field}' must be ${expected}: current value is ${
        JSON.stringify(given)
      }`,
    );
  };
  const { rank, alpha, dropout = 0, targets } = options;
  if (!Number.isSafeInteger(rank) || rank < 1) fail("rank", "an integer >= 1", rank);
  if (typeof alpha !== "number" || !Number.isFinite(alpha) || alpha <= 0) {
    fail("alpha", "a positive number", alpha);
  }
  if (dropout !== 0) {
    fail("dropout", "0 (dropout on the adapters' input is not implemented)", dropout);
  }
  return { rank, alpha, dropout, targets: checkTargets(targets, fail) };
}

/** `targets` as unique known names in `LORA_TARGETS` order, or `fail` naming the field. */
function checkTargets(
  targets: unknown,
  fail: (field: string, expected: string, given: unknown) => never,
): LoraTarget[] {
  const known = `a non-empty list of ${LORA_TARGETS.join(", ")}`;
  if (!Array.isArray(targets) || targets.length === 0) return fail("targets", known, targets);
  for (const t of targets) {
    if (!(LORA_TARGETS as readonly unknown[]).includes(t)) fail("targets", known, t);
  }
  if (new Set(targets).size !== targets.length) fail("targets", "without repeats", targets);
  return LORA_TARGETS.filter((t) => targets.includes(t));
}

/**
 * `adapter_config.json` of `lora` as PEFT writes it for a causal LM (the fields of PEFT's
 * `LoraConfig`, sorted), on the base model `baseModel` (a path or a hub id; null: unknown).
 *
 * @example
 * ```ts
 * peftConfigJson(loraConfig({ rank: 8, alpha: 16, targets: ["q_proj"] }), "models/qwen").r; // 8
 * ```
 */
export function peftConfigJson(
  lora: LoraConfig,
  baseModel: string | null,
): Record<string, unknown> {
  return {
    alpha_pattern: {},
    auto_mapping: null,
    base_model_name_or_path: baseModel,
    bias: "none",
    fan_in_fan_out: false,
    inference_mode: true,
    init_lora_weights: true,
    layer_replication: null,
    layers_pattern: null,
    layers_to_transform: null,
    loftq_config: {},
    lora_alpha: lora.alpha,
    lora_dropout: lora.dropout,
    megatron_config: null,
    megatron_core: "megatron.core",
    modules_to_save: null,
    peft_type: "LORA",
    r: lora.rank,
    rank_pattern: {},
    revision: null,
    target_modules: [...lora.targets],
    task_type: "CAUSAL_LM",
    use_dora: false,
    use_rslora: false,
  };
}

/**
 * The LoRA configuration of a PEFT `adapter_config.json` (`raw`, read from `where`), refusing in
 * one line naming the file and the field what this module does not run (another PEFT type,
 * biases, rsLoRA, DoRA, per-layer ranks or layers, extra trained modules, a target pattern).
 * `target_modules` may be a list of names or one of them, or PEFT's `"all-linear"`.
 *
 * @example
 * ```ts
 * const raw = await readJsonFile("adapter/adapter_config.json");
 * parsePeftConfig(raw, "adapter/adapter_config.json").lora.rank; // 16
 * ```
 */
export function parsePeftConfig(
  raw: unknown,
  where: string,
): { lora: LoraConfig; baseModel: string | null } {
  const fail = (field: string, expected: string, given: unknown): never => {
    throw new Error(
      `Cannot load the LoRA adapter config '${where}' as '${field}' must be ${expected}: ` +
        `current value is ${JSON.stringify(given)}`,
    );
  };
  if (typeof raw !== "object" || raw === null || Array.isArray(raw)) {
    return fail("(the file)", "a JSON object", raw);
  }
  const c = raw as Record<string, unknown>;
  const absentOr = (field: string, allowed: unknown[], expected: string) => {
    const value = c[field];
    if (value === undefined) return;
    const ok = allowed.some((a) =>
      typeof a === "object" && a !== null
        ? typeof value === "object" && value !== null && Object.keys(value).length === 0
        : value === a
    );
    if (!ok) fail(field, expected, value);
  };
  if (c.peft_type !== "LORA") fail("peft_type", '"LORA"', c.peft_type);
  const rank = c.r;
  if (typeof rank !== "number" || !Number.isSafeInteger(rank) || rank < 1) {
    fail("r", "an integer >= 1", rank);
  }
  const alpha = c.lora_alpha;
  if (typeof alpha !== "number" || !Number.isFinite(alpha) || alpha <= 0) {
    fail("lora_alpha", "a positive number", alpha);
  }
  const dropout = c.lora_dropout ?? 0;
  if (typeof dropout !== "number" || !(dropout >= 0 && dropout < 1)) {
    fail("lora_dropout", "a number in [0, 1)", dropout);
  }
  absentOr("bias", ["none"], '"none" (adapter biases are not supported)');
  absentOr("fan_in_fan_out", [false], "false");
  absentOr("use_rslora", [false], "false (rsLoRA is not supported)");
  absentOr("use_dora", [false], "false (DoRA is not supported)");
  absentOr("rank_pattern", [{}], "empty (per-layer ranks are not supported)");
  absentOr("alpha_pattern", [{}], "empty (per-layer alphas are not supported)");
  absentOr("layers_to_transform", [null], "null (every layer is adapted)");
  absentOr("layer_replication", [null], "null");
  absentOr("modules_to_save", [null, []], "null (only adapters are loaded)");
  let targets = c.target_modules;
  if (targets === "all-linear") targets = [...LORA_TARGETS];
  else if (typeof targets === "string") targets = [targets];
  const lora: LoraConfig = {
    rank: rank as number,
    alpha: alpha as number,
    dropout: dropout as number,
    targets: checkTargets(targets, (_, expected, given) =>
      fail(
        "target_modules",
        `"all-linear" or ${expected} (a pattern is not supported)`,
        given,
      )),
  };
  const base = c.base_model_name_or_path ?? null;
  if (base !== null && typeof base !== "string") {
    fail("base_model_name_or_path", "a string or null", base);
  }
  return { lora, baseModel: base as string | null };
}

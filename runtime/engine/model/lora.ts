/**
 * LoRA (Hu et al., 2021) as PEFT has it: a frozen linear weight W plus a trained low-rank update,
 *
 *     y = x·W (+ b) + s·(x·Aᵀ)·Bᵀ,   A [r, in], B [out, r], s = alpha / r,
 *
 * on the projections named by `targets` (`q_proj`, `k_proj`, `v_proj`, `o_proj`, `gate_proj`,
 * `up_proj`, `down_proj`) of every layer. A is drawn as PEFT draws it (Kaiming-uniform with
 * a = √5: uniform in ±1/√in), from the caller's {@linkcode Rng}; B starts at zero, so a fresh
 * adapter leaves the model's outputs exactly as they were.
 *
 * The adapters are kept in the kernel set's layout (`[in, out]`: A as [in, r], B as [r, out], so
 * the update is two plain products) and named after the weight they adapt
 * (`model.layers.0.self_attn.q_proj.lora_A.weight`); `forward()` and `tokenLogProbs()` in
 * `transformer.ts` take them as an option. Without it the model is the base model, bit for bit:
 * that is how the adapters are switched off (a reference policy that shares the base weights).
 * The base weights are never among the tensors differentiated, so no gradient is computed or
 * held for them.
 *
 * On disk the adapter is PEFT's: `adapter_config.json` and `adapter_model.safetensors`, tensors
 * named `base_model.model.<module>.lora_A.weight` ([r, in]) and `.lora_B.weight` ([out, r]).
 * {@linkcode mergeLora} folds an adapter into full weights (W + s·B·A) for a plain checkpoint.
 *
 * What it leaves out: dropout on the adapters' input (`dropout` must be 0 in a config made here;
 * an adapter loaded with PEFT's `lora_dropout` keeps the value, and the forward is PEFT's
 * evaluation forward, without dropout), rsLoRA, DoRA, per-layer ranks (`rank_pattern`), adapters
 * on the embedding or the output head, and adapter biases.
 *
 * @module
 */

import { tf } from "../tf.ts";
import type { LinearLayout } from "../kernels/types.ts";
import type { ModelConfig, Params } from "./config.ts";
import type { Rng } from "../random.ts";
import { readJsonFile } from "./_regular_file.ts";
import {
  encodeSafetensors,
  readSafetensorsFile,
  type TensorData,
  writeFileAtomic,
} from "./safetensors.ts";

/** The projections an adapter may target, in the order their adapters are drawn and saved. */
export const LORA_TARGETS = [
  "q_proj",
  "k_proj",
  "v_proj",
  "o_proj",
  "gate_proj",
  "up_proj",
  "down_proj",
] as const;

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
 * Trained low-rank adapters of a model, as `forward()` takes them.
 *
 * @example
 * ```ts
 * const adapters: LoraAdapters = initLoraAdapters(config, lora, new Rng(1), kernels.layout);
 * adapters.scaling; // lora.alpha / lora.rank
 * ```
 */
export interface LoraAdapters {
  config: LoraConfig;
  /** alpha / rank. */
  scaling: number;
  /** The layout of the tensors in `params`: the kernel set's (`KernelSet.layout`). */
  layout: LinearLayout;
  /**
   * A and B of each adapted projection, by `<module>.lora_A.weight` and `<module>.lora_B.weight`
   * (`model.layers.0.self_attn.q_proj.lora_A.weight`): [in, r] and [r, out] in `[in, out]`
   * layout, PEFT's [r, in] and [out, r] in `[out, in]`.
   */
  params: Record<string, tf.Variable>;
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

/** The module `target` of `layer` (`model.layers.0.self_attn.q_proj`), its input and output widths. */
function targetModule(
  config: ModelConfig,
  layer: number,
  target: LoraTarget,
): { module: string; inputs: number; outputs: number } {
  const { dModel: d, heads, kvHeads, headDim, ffnDim } = config;
  const widths: Record<LoraTarget, [number, number]> = {
    q_proj: [d, heads * headDim],
    k_proj: [d, kvHeads * headDim],
    v_proj: [d, kvHeads * headDim],
    o_proj: [heads * headDim, d],
    gate_proj: [d, ffnDim],
    up_proj: [d, ffnDim],
    down_proj: [ffnDim, d],
  };
  const group = target === "gate_proj" || target === "up_proj" || target === "down_proj"
    ? "mlp"
    : "self_attn";
  const [inputs, outputs] = widths[target];
  return { module: `model.layers.${layer}.${group}.${target}`, inputs, outputs };
}

/**
 * Every adapter tensor of `lora` on `config`'s model with its shape in `layout`, in the order
 * they are drawn: layer by layer, targets in {@linkcode LORA_TARGETS} order, A then B.
 *
 * @example
 * ```ts
 * const lora = loraConfig({ rank: 4, alpha: 8, targets: ["q_proj"] });
 * loraParamShapes(config, lora)["model.layers.0.self_attn.q_proj.lora_A.weight"]; // [dModel, 4]
 * ```
 */
export function loraParamShapes(
  config: ModelConfig,
  lora: LoraConfig,
  layout: LinearLayout = "[in, out]",
): Record<string, number[]> {
  const r = lora.rank;
  const shapes: Record<string, number[]> = {};
  for (let l = 0; l < config.layers; l++) {
    for (const target of lora.targets) {
      const { module, inputs, outputs } = targetModule(config, l, target);
      const inOut = layout === "[in, out]";
      shapes[`${module}.lora_A.weight`] = inOut ? [inputs, r] : [r, inputs];
      shapes[`${module}.lora_B.weight`] = inOut ? [r, outputs] : [outputs, r];
    }
  }
  return shapes;
}

/**
 * Fresh adapters of `lora` for `config`'s model, as trainable tf.Variables in `layout`: each A
 * drawn from `rng` as PEFT draws it (Kaiming-uniform, a = √5: uniform in ±1/√in, drawn in PEFT's
 * [r, in] order), each B zero.
 *
 * @example
 * ```ts
 * const lora = loraConfig({ rank: 16, alpha: 32, targets: ["q_proj", "k_proj", "v_proj", "o_proj"] });
 * const adapters = initLoraAdapters(config, lora, new Rng(plan.seed).fork("lora"), kernels.layout);
 * ```
 */
export function initLoraAdapters(
  config: ModelConfig,
  lora: LoraConfig,
  rng: Rng,
  layout: LinearLayout = "[in, out]",
): LoraAdapters {
  const params: Record<string, tf.Variable> = {};
  for (const [name, shape] of Object.entries(loraParamShapes(config, lora, layout))) {
    const size = shape[0]! * shape[1]!;
    let values: Float32Array = new Float32Array(size);
    if (name.endsWith("lora_A.weight")) {
      const inputs = layout === "[in, out]" ? shape[0]! : shape[1]!;
      const bound = 1 / Math.sqrt(inputs); // gain √(2 / (1 + 5)) times √(3 / in)
      for (let i = 0; i < size; i++) values[i] = (2 * rng.uniform() - 1) * bound; // [r, in]
      if (layout === "[in, out]") values = transpose(values, lora.rank, inputs);
    }
    const t = tf.tensor(values, shape);
    params[name] = tf.variable(t, true);
    t.dispose();
  }
  return { config: lora, scaling: lora.alpha / lora.rank, layout, params };
}

/**
 * Frees the adapters' tensors.
 *
 * @example
 * ```ts
 * const adapters = initLoraAdapters(config, lora, new Rng(1));
 * disposeLoraAdapters(adapters);
 * ```
 */
export function disposeLoraAdapters(adapters: LoraAdapters): void {
  tf.dispose(Object.values(adapters.params));
}

/**
 * The model's weights with each adapter folded in: W + s·A·B for `[in, out]` weights (s·B·A in
 * `[out, in]`), the weights' own layout, which must be the adapters'. The merged weights are new
 * tensors (the caller disposes them); every other entry is `params`' own tensor.
 *
 * @example
 * ```ts
 * const merged = tf.tidy(() => mergeLora(params, adapters));
 * // forward(kernels, merged, config, ids) ≈ forward(kernels, params, config, ids, { adapters })
 * ```
 */
export function mergeLora(params: Params, adapters: LoraAdapters): Params {
  const merged: Params = { ...params };
  for (const name of Object.keys(adapters.params)) {
    if (!name.endsWith(".lora_A.weight")) continue;
    const module = name.slice(0, -".lora_A.weight".length);
    const weight = `${module}.weight`;
    const w = params[weight];
    if (!w) throw new Error(`Cannot merge the LoRA adapter as the model has no '${weight}'`);
    const a = adapters.params[name]!;
    const b = adapters.params[`${module}.lora_B.weight`]!;
    merged[weight] = tf.tidy(() => {
      const update = adapters.layout === "[in, out]" ? tf.matMul(a, b) : tf.matMul(b, a);
      return tf.add(w, tf.mul(update, adapters.scaling));
    });
  }
  return merged;
}

/** PEFT's prefix of every tensor name of a causal LM's adapter. */
const PEFT_PREFIX = "base_model.model.";

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

/**
 * Options of {@linkcode saveLoraAdapter}.
 *
 * @example
 * ```ts
 * const options: SaveLoraAdapterOptions = { baseModel: "models/Qwen2.5-0.5B" };
 * ```
 */
export interface SaveLoraAdapterOptions {
  /** `base_model_name_or_path`: the base model's directory or hub id. @default null */
  baseModel?: string | null;
}

/**
 * Saves `adapters` as a PEFT adapter directory `dir` (created when absent; each file written
 * atomically, replacing the one there): `adapter_model.safetensors` (F32, PEFT's names and
 * [r, in] / [out, r] shapes, metadata `{format: "pt"}`), then `adapter_config.json`
 * ({@linkcode peftConfigJson}), which PEFT's `PeftModel.from_pretrained(base, dir)` loads.
 *
 * @example
 * ```ts
 * await saveLoraAdapter("out/adapter", adapters, { baseModel: "models/Qwen2.5-0.5B" });
 * ```
 */
export async function saveLoraAdapter(
  dir: string,
  adapters: LoraAdapters,
  options: SaveLoraAdapterOptions = {},
): Promise<void> {
  const tensors: Record<string, TensorData> = {};
  for (const [name, t] of Object.entries(adapters.params)) {
    const data = (await t.data()) as Float32Array;
    const [rows, cols] = t.shape as [number, number];
    tensors[PEFT_PREFIX + name] = adapters.layout === "[in, out]"
      ? { dtype: "F32", shape: [cols, rows], data: transpose(data, rows, cols) }
      : { dtype: "F32", shape: [rows, cols], data: Float32Array.from(data) };
  }
  const json = peftConfigJson(adapters.config, options.baseModel ?? null);
  await Deno.mkdir(dir, { recursive: true });
  await writeFileAtomic(
    `${dir}/adapter_model.safetensors`,
    encodeSafetensors(tensors, { format: "pt" }),
  );
  await writeFileAtomic(`${dir}/adapter_config.json`, JSON.stringify(json, null, 2) + "\n");
}

/**
 * Options of {@linkcode loadLoraAdapter}.
 *
 * @example
 * ```ts
 * const options: LoadLoraAdapterOptions = { layout: kernels.layout };
 * ```
 */
export interface LoadLoraAdapterOptions {
  /** The layout to hold the adapters in (`KernelSet.layout`). @default "[in, out]" */
  layout?: LinearLayout;
}

/**
 * What {@linkcode loadLoraAdapter} returns: the adapters and the base model the file names.
 *
 * @example
 * ```ts
 * const { baseModel, params } = await loadLoraAdapter("out/adapter", config);
 * ```
 */
export interface LoadedLoraAdapter extends LoraAdapters {
  /** `base_model_name_or_path`, or null when the file has none. */
  baseModel: string | null;
}

/**
 * Loads the PEFT adapter directory `dir` for `config`'s model, as trainable variables in
 * `options.layout`: `adapter_config.json` is checked ({@linkcode parsePeftConfig}) and
 * `adapter_model.safetensors` must hold exactly the tensors that config gives on this model (F32,
 * F16 or BF16, widened), each of its shape; anything else is refused in one line naming the file
 * and the tensor, before any tensor data is read.
 *
 * @example
 * ```ts
 * const adapters = await loadLoraAdapter("out/adapter", config, { layout: kernels.layout });
 * const logits = tf.tidy(() => forward(kernels, params, config, ids, { adapters }).logits);
 * ```
 */
export async function loadLoraAdapter(
  dir: string,
  config: ModelConfig,
  options: LoadLoraAdapterOptions = {},
): Promise<LoadedLoraAdapter> {
  const layout = options.layout ?? "[in, out]";
  const configPath = `${dir}/adapter_config.json`;
  const { lora, baseModel } = parsePeftConfig(await readJsonFile(configPath), configPath);
  const path = `${dir}/adapter_model.safetensors`;
  const expected = loraParamShapes(config, lora, "[out, in]"); // PEFT's shapes
  const refuse = (why: string): never => {
    throw new Error(`Cannot load the LoRA adapter '${path}' as ${why}`);
  };
  const { tensors } = await readSafetensorsFile(path, {
    inspect(infos) {
      const seen = new Set<string>();
      for (const { name: stored, shape } of infos) {
        const name = stored.startsWith(PEFT_PREFIX) ? stored.slice(PEFT_PREFIX.length) : null;
        const want = name === null ? undefined : expected[name];
        if (want === undefined) {
          refuse(
            `tensor '${stored}' is not one of a rank-${lora.rank} adapter on ` +
              `${lora.targets.join(", ")} of ${config.layers} layers`,
          );
        }
        if (shape.length !== 2 || shape[0] !== want![0] || shape[1] !== want![1]) {
          refuse(
            `tensor '${stored}' has shape [${shape.join(", ")}], expected [${want!.join(", ")}]`,
          );
        }
        seen.add(name!);
      }
      for (const name of Object.keys(expected)) {
        if (!seen.has(name)) refuse(`tensor '${PEFT_PREFIX}${name}' is missing`);
      }
    },
  });
  const params: Record<string, tf.Variable> = {};
  for (const name of Object.keys(expected)) {
    const { shape, data } = tensors[PEFT_PREFIX + name]!;
    const [rows, cols] = shape as [number, number];
    const t = layout === "[in, out]"
      ? tf.tensor(transpose(data, rows, cols), [cols, rows])
      : tf.tensor(data, [rows, cols]);
    params[name] = tf.variable(t, true);
    t.dispose();
  }
  return { config: lora, scaling: lora.alpha / lora.rank, layout, params, baseModel };
}

/** A row-major [rows, cols] matrix transposed to [cols, rows]. */
function transpose(data: Float32Array, rows: number, cols: number): Float32Array {
  const out = new Float32Array(data.length);
  for (let i = 0; i < rows; i++) {
    for (let j = 0; j < cols; j++) out[j * rows + i] = data[i * cols + j]!;
  }
  return out;
}

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
  type LoraConfig,
  type LoraTarget,
  parsePeftConfig,
  peftConfigJson,
} from "./lora_config.ts";
import {
  encodeSafetensors,
  readSafetensorsFile,
  type TensorData,
  writeFileAtomic,
} from "./safetensors.ts";

export {
  LORA_TARGETS,
  type LoraConfig,
  loraConfig,
  type LoraOptions,
  type LoraTarget,
  parsePeftConfig,
  peftConfigJson,
} from "./lora_config.ts";

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
 * The files of `adapters` as a PEFT adapter directory, by name: `adapter_model.safetensors` (F32,
 * PEFT's names and [r, in] / [out, r] shapes, metadata `{format: "pt"}`) and
 * `adapter_config.json` ({@linkcode peftConfigJson}). A run's checkpoint holds them beside its
 * optimiser state; {@linkcode saveLoraAdapter} writes them on their own.
 *
 * @example
 * ```ts
 * const files = await loraAdapterFiles(adapters, { baseModel: "models/Qwen2.5-0.5B" });
 * Object.keys(files); // ["adapter_model.safetensors", "adapter_config.json"]
 * ```
 */
export async function loraAdapterFiles(
  adapters: LoraAdapters,
  options: SaveLoraAdapterOptions = {},
): Promise<{ "adapter_model.safetensors": Uint8Array; "adapter_config.json": string }> {
  const tensors: Record<string, TensorData> = {};
  for (const [name, t] of Object.entries(adapters.params)) {
    const data = (await t.data()) as Float32Array;
    const [rows, cols] = t.shape as [number, number];
    tensors[PEFT_PREFIX + name] = adapters.layout === "[in, out]"
      ? { dtype: "F32", shape: [cols, rows], data: transpose(data, rows, cols) }
      : { dtype: "F32", shape: [rows, cols], data: Float32Array.from(data) };
  }
  const json = peftConfigJson(adapters.config, options.baseModel ?? null);
  return {
    "adapter_model.safetensors": encodeSafetensors(tensors, { format: "pt" }),
    "adapter_config.json": JSON.stringify(json, null, 2) + "\n",
  };
}

/**
 * Saves `adapters` as a PEFT adapter directory `dir` (created when absent; each file written
 * atomically, replacing the one there): {@linkcode loraAdapterFiles}, the tensors first, which
 * PEFT's `PeftModel.from_pretrained(base, dir)` loads.
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
  const files = await loraAdapterFiles(adapters, options);
  await Deno.mkdir(dir, { recursive: true });
  await writeFileAtomic(`${dir}/adapter_model.safetensors`, files["adapter_model.safetensors"]);
  await writeFileAtomic(`${dir}/adapter_config.json`, files["adapter_config.json"]);
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
 * A PEFT adapter directory read and checked, its tensors not made yet: what
 * {@linkcode readLoraAdapter} returns.
 *
 * @example
 * ```ts
 * const { lora, tensors } = await readLoraAdapter("out/adapter", config);
 * tensors["model.layers.0.self_attn.q_proj.lora_A.weight"].shape; // [r, in]
 * ```
 */
export interface LoraAdapterData {
  config: LoraConfig;
  /** `base_model_name_or_path`, or null when the file has none. */
  baseModel: string | null;
  /** A and B by giftwrap's name (PEFT's less its prefix), in PEFT's [r, in] and [out, r] shapes. */
  tensors: Record<string, TensorData>;
}

/**
 * Reads the PEFT adapter directory `dir` for `config`'s model without making a tensor (a resumed
 * run reads its checkpoint before its backend is chosen): `adapter_config.json` is checked
 * ({@linkcode parsePeftConfig}) and `adapter_model.safetensors` must hold exactly the tensors that
 * config gives on this model (F32, F16 or BF16, widened), each of its shape; anything else is
 * refused in one line naming the file and the tensor, before any tensor data is read.
 *
 * @example
 * ```ts
 * const data = await readLoraAdapter("out/adapter", config);
 * const adapters = loraAdaptersFromData(data, kernels.layout);
 * ```
 */
export async function readLoraAdapter(
  dir: string,
  config: ModelConfig,
): Promise<LoraAdapterData> {
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
  const byName: Record<string, TensorData> = {};
  for (const name of Object.keys(expected)) byName[name] = tensors[PEFT_PREFIX + name]!;
  return { config: lora, baseModel, tensors: byName };
}

/**
 * The adapters of {@linkcode readLoraAdapter}'s `data` as trainable variables in `layout`.
 *
 * @example
 * ```ts
 * const adapters = loraAdaptersFromData(await readLoraAdapter(dir, config), kernels.layout);
 * ```
 */
export function loraAdaptersFromData(
  data: LoraAdapterData,
  layout: LinearLayout = "[in, out]",
): LoraAdapters {
  const params: Record<string, tf.Variable> = {};
  for (const [name, { shape, data: values }] of Object.entries(data.tensors)) {
    const [rows, cols] = shape as [number, number];
    const t = layout === "[in, out]"
      ? tf.tensor(transpose(values, rows, cols), [cols, rows])
      : tf.tensor(values, [rows, cols]);
    params[name] = tf.variable(t, true);
    t.dispose();
  }
  const lora = data.config;
  return { config: lora, scaling: lora.alpha / lora.rank, layout, params };
}

/**
 * Loads the PEFT adapter directory `dir` for `config`'s model, as trainable variables in
 * `options.layout`: {@linkcode readLoraAdapter}'s checks, then its tensors made.
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
  const data = await readLoraAdapter(dir, config);
  return { ...loraAdaptersFromData(data, options.layout), baseModel: data.baseModel };
}

/** A row-major [rows, cols] matrix transposed to [cols, rows]. */
function transpose(data: Float32Array, rows: number, cols: number): Float32Array {
  const out = new Float32Array(data.length);
  for (let i = 0; i < rows; i++) {
    for (let j = 0; j < cols; j++) out[j * rows + i] = data[i * cols + j]!;
  }
  return out;
}

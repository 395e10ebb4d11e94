// LoRA adapters (lora.ts) on small random models of the Llama family with grouped-query
// attention, with and without Qwen2's q/k/v biases: a fresh adapter (B = 0) leaves the logits
// exactly as the base model's on every kernel set; merged weights give the adapted model's logits;
// the adapted forward agrees with a PyTorch implementation of PEFT's (torch_lora.py, reading the
// PEFT files giftwrap writes); PEFT's names, shapes and adapter_config.json round-trip; a training
// step differentiates and changes only the adapters, and nothing leaks.

import assert from "node:assert/strict";
import { type KernelSet, tf, useBackend } from "../../../../runtime/engine/backend.ts";
import { tfjsKernels } from "../../../../runtime/engine/kernels/tfjs.ts";
import { toTensorData } from "../../../../runtime/engine/model/checkpoint.ts";
import {
  disposeLoraAdapters,
  initLoraAdapters,
  loadLoraAdapter,
  LORA_TARGETS,
  type LoraAdapters,
  loraConfig,
  loraParamShapes,
  mergeLora,
  parsePeftConfig,
  peftConfigJson,
  saveLoraAdapter,
} from "../../../../runtime/engine/model/lora.ts";
import {
  encodeSafetensors,
  readSafetensorsFile,
} from "../../../../runtime/engine/model/safetensors.ts";
import {
  forward,
  initParams,
  type ModelConfig,
  tokenLogProbs,
} from "../../../../runtime/engine/model/transformer.ts";
import { adamW, adamWStep, disposeAdamW } from "../../../../runtime/engine/optim.ts";
import { normalArray, Rng } from "../../../../runtime/engine/random.ts";
import { needsTorch, pythonJson, TORCH } from "../../../_requires.ts";
import { relativeError } from "../../_numeric.ts";
import { GQA_CONFIG } from "../../_tiny.ts";

const TORCH_SCRIPT = new URL("./torch_lora.py", import.meta.url).pathname;

/** Qwen2's q/k/v biases, GQA (4 heads on 2), a tied head, ffn width other than 4·d. */
const QWEN2_CONFIG: ModelConfig = {
  vocab: 40,
  dModel: 32,
  layers: 2,
  heads: 4,
  kvHeads: 2,
  headDim: 8,
  ffnDim: 48,
  contextLength: 16,
  tiedEmbeddings: true,
  ropeTheta: 10_000,
  normEps: 1e-6,
  attentionBias: true,
};

const CONFIGS: [string, ModelConfig][] = [
  ["GQA, untied head", GQA_CONFIG],
  ["qwen2 biases, GQA, tied head", QWEN2_CONFIG],
];

const ALL = loraConfig({ rank: 4, alpha: 8, targets: [...LORA_TARGETS] });

/** The kernel sets present here, each on its backend. */
const KERNEL_SETS: [string, () => Promise<KernelSet>][] = [
  ["cpu", async () => (await useBackend("cpu")).kernels],
  ["wasm", async () => (await useBackend("wasm")).kernels],
  ["tfjs", async () => {
    await useBackend("cpu");
    return tfjsKernels();
  }],
];

/** Random weights of every kind (zero biases and unit gains would hide one never read). */
function randomParams(config: ModelConfig, seed: number): Record<string, tf.Tensor> {
  const params = initParams(config, new Rng(seed));
  const rng = new Rng(seed + 1);
  const out: Record<string, tf.Tensor> = {};
  for (const [name, p] of Object.entries(params)) {
    const values = normalArray(rng, p.size, 1);
    const gain = name.endsWith("norm.weight");
    const std = gain ? 0.3 : name.endsWith(".bias") ? 0.5 : name.includes("embed") ? 1 : 0.3;
    for (let i = 0; i < values.length; i++) values[i] = (gain ? 1 : 0) + std * values[i]!;
    out[name] = tf.tensor(values, p.shape); // plain tensors: a frozen base
    p.dispose();
  }
  return out;
}

/** Gives every B of `adapters` random values of std `std` (a fresh adapter's B is 0). */
function randomiseB(adapters: LoraAdapters, seed: number, std = 0.3): void {
  const rng = new Rng(seed);
  for (const [name, p] of Object.entries(adapters.params)) {
    if (!name.endsWith("lora_B.weight")) continue;
    const t = tf.tensor(normalArray(rng, p.size, std), p.shape);
    p.assign(t);
    t.dispose();
  }
}

/** Token ids [rows, time] from 1 on. */
function randomIds(seed: number, rows: number, time: number, vocab: number): tf.Tensor2D {
  const rng = new Rng(seed);
  const ids = Int32Array.from({ length: rows * time }, () => 1 + rng.int(vocab - 1));
  return tf.tensor2d(ids, [rows, time], "int32");
}

/** forward()'s logits as an array. */
function logitsOf(
  kernels: KernelSet,
  params: Record<string, tf.Tensor>,
  config: ModelConfig,
  ids: tf.Tensor2D,
  adapters?: LoraAdapters,
): Float32Array {
  const logits = tf.tidy(() =>
    forward(kernels, params, config, ids, adapters ? { adapters } : {}).logits
  );
  const values = logits.dataSync() as Float32Array;
  logits.dispose();
  return values;
}

function maxDifference(a: ArrayLike<number>, b: ArrayLike<number>): number {
  assert.equal(a.length, b.length);
  let worst = 0;
  for (let i = 0; i < a.length; i++) worst = Math.max(worst, Math.abs(a[i]! - b[i]!));
  return worst;
}

Deno.test("loraConfig() orders the targets and refuses bad fields in one line", () => {
  const config = loraConfig({ rank: 8, alpha: 16, targets: ["v_proj", "down_proj", "q_proj"] });
  assert.deepEqual(config, {
    rank: 8,
    alpha: 16,
    dropout: 0,
    targets: ["q_proj", "v_proj", "down_proj"],
  });
  const refused: [object, string][] = [
    [{ rank: 0 }, "Cannot use LoRA as 'rank' must be an integer >= 1: current value is 0"],
    [{ rank: 2.5 }, "'rank' must be an integer >= 1: current value is 2.5"],
    [{ alpha: -1 }, "'alpha' must be a positive number: current value is -1"],
    [{ dropout: 0.05 }, "'dropout' must be 0 (dropout on the adapters' input is not implemented)"],
    [{ targets: [] }, "'targets' must be a non-empty list of q_proj, k_proj, v_proj, o_proj"],
    [{ targets: ["lm_head"] }, 'current value is "lm_head"'],
    [{ targets: ["q_proj", "q_proj"] }, "'targets' must be without repeats"],
  ];
  for (const [change, message] of refused) {
    assert.throws(
      () => loraConfig({ rank: 8, alpha: 16, targets: ["q_proj"], ...change }),
      (e: Error) => e.message.includes(message) && !e.message.includes("\n"),
      message,
    );
  }
});

Deno.test("initLoraAdapters() draws A as PEFT (uniform in ±1/√in, [r, in] order) and B = 0", async () => {
  await useBackend("cpu");
  const lora = loraConfig({ rank: 3, alpha: 6, targets: ["q_proj", "down_proj"] });
  const shapes = loraParamShapes(GQA_CONFIG, lora);
  assert.deepEqual(Object.keys(shapes), [
    "model.layers.0.self_attn.q_proj.lora_A.weight",
    "model.layers.0.self_attn.q_proj.lora_B.weight",
    "model.layers.0.mlp.down_proj.lora_A.weight",
    "model.layers.0.mlp.down_proj.lora_B.weight",
    "model.layers.1.self_attn.q_proj.lora_A.weight",
    "model.layers.1.self_attn.q_proj.lora_B.weight",
    "model.layers.1.mlp.down_proj.lora_A.weight",
    "model.layers.1.mlp.down_proj.lora_B.weight",
  ]);
  assert.deepEqual(shapes["model.layers.0.self_attn.q_proj.lora_A.weight"], [32, 3]);
  assert.deepEqual(shapes["model.layers.0.self_attn.q_proj.lora_B.weight"], [3, 32]);
  assert.deepEqual(shapes["model.layers.0.mlp.down_proj.lora_A.weight"], [64, 3]);
  assert.deepEqual(shapes["model.layers.0.mlp.down_proj.lora_B.weight"], [3, 32]);

  const inOut = initLoraAdapters(GQA_CONFIG, lora, new Rng(5));
  const outIn = initLoraAdapters(GQA_CONFIG, lora, new Rng(5), "[out, in]");
  try {
    assert.equal(inOut.scaling, 2);
    // By hand: the first A is [r, in] = [3, 32] drawn row by row from the generator's uniforms.
    const rng = new Rng(5);
    const first = Float32Array.from(
      { length: 3 * 32 },
      () => (2 * rng.uniform() - 1) / Math.sqrt(32),
    );
    const a = "model.layers.0.self_attn.q_proj.lora_A.weight";
    assert.deepEqual(outIn.params[a]!.dataSync(), first);
    assert.deepEqual(tf.tidy(() => tf.transpose(inOut.params[a]!).dataSync()), first);
    // The next A (down_proj, in = 64) continues the same stream.
    const next = (2 * rng.uniform() - 1) / Math.sqrt(64);
    assert.equal(
      outIn.params["model.layers.0.mlp.down_proj.lora_A.weight"]!.dataSync()[0],
      Math.fround(next),
    );
    for (const [name, p] of Object.entries(inOut.params)) {
      const values = p.dataSync();
      if (name.endsWith("lora_B.weight")) assert.ok(values.every((v) => v === 0), name);
      else {
        const bound = 1 / Math.sqrt(name.includes("down_proj") ? 64 : 32);
        assert.ok(values.every((v) => Math.abs(v) <= bound), name);
        assert.ok(values.some((v) => Math.abs(v) > bound / 2), `${name} spans its range`);
      }
    }
  } finally {
    disposeLoraAdapters(inOut);
    disposeLoraAdapters(outIn);
  }
});

for (const [what, config] of CONFIGS) {
  Deno.test(`forward() with a fresh adapter (B = 0) gives the base logits exactly: ${what}`, async () => {
    for (const [name, setUp] of KERNEL_SETS) {
      const kernels = await setUp();
      const params = randomParams(config, 3);
      const adapters = initLoraAdapters(config, ALL, new Rng(4), kernels.layout);
      const ids = randomIds(6, 2, 7, config.vocab);
      try {
        const base = logitsOf(kernels, params, config, ids);
        assert.ok(maxDifference(base, new Float32Array(base.length)) > 1, "logits far from 0");
        assert.deepEqual(logitsOf(kernels, params, config, ids, adapters), base, name);
      } finally {
        tf.dispose([...Object.values(params), ids]);
        disposeLoraAdapters(adapters);
      }
    }
  });

  Deno.test(`mergeLora() gives the adapted logits; adapters off give the base's: ${what}`, async () => {
    for (const [name, setUp] of KERNEL_SETS) {
      const kernels = await setUp();
      const params = randomParams(config, 3);
      const adapters = initLoraAdapters(config, ALL, new Rng(4), kernels.layout);
      randomiseB(adapters, 9);
      const ids = randomIds(6, 2, 7, config.vocab);
      const merged = mergeLora(params, adapters);
      try {
        const base = logitsOf(kernels, params, config, ids);
        const adapted = logitsOf(kernels, params, config, ids, adapters);
        const fromMerged = logitsOf(kernels, merged, config, ids);
        const change = maxDifference(adapted, base);
        assert.ok(change > 0.5, `${name}: the adapters change the logits (|Δ| ${change})`);
        // float32 rounding of two orders of the same sums, relative to the largest logit
        const error = relativeError(fromMerged, adapted);
        assert.ok(error < 1e-5, `${name}: merged ${error} from the adapted forward (relative)`);
        // Off: no adapters, the same base tensors, the base's logits bit for bit.
        assert.deepEqual(logitsOf(kernels, params, config, ids), base);
        const changed = Object.keys(merged).filter((n) => merged[n] !== params[n]);
        assert.equal(changed.length, 7 * config.layers);
      } finally {
        tf.dispose(Object.entries(merged).filter(([n, t]) => t !== params[n]).map(([, t]) => t));
        tf.dispose([...Object.values(params), ids]);
        disposeLoraAdapters(adapters);
      }
    }
  });
}

Deno.test("mergeLora() adds s·B·A to a weight, by hand", async () => {
  await useBackend("cpu");
  // A 1-layer model's q_proj only: W [in 2, out 2] = I, A = [[1], [2]] (in × r), B = [[3, 4]].
  const lora = loraConfig({ rank: 1, alpha: 0.5, targets: ["q_proj"] });
  const adapters: LoraAdapters = {
    config: lora,
    scaling: 0.5,
    layout: "[in, out]",
    params: {
      "model.layers.0.self_attn.q_proj.lora_A.weight": tf.variable(tf.tensor2d([[1], [2]])),
      "model.layers.0.self_attn.q_proj.lora_B.weight": tf.variable(tf.tensor2d([[3, 4]])),
    },
  };
  const w = tf.tensor2d([[1, 0], [0, 1]]);
  const merged = mergeLora({ "model.layers.0.self_attn.q_proj.weight": w }, adapters);
  // W + 0.5 · A·B = I + 0.5 · [[3, 4], [6, 8]]
  assert.deepEqual(
    [...merged["model.layers.0.self_attn.q_proj.weight"]!.dataSync()],
    [2.5, 2, 3, 5],
  );
  tf.dispose([w, merged["model.layers.0.self_attn.q_proj.weight"]!]);
  disposeLoraAdapters(adapters);
});

Deno.test("saveLoraAdapter() writes PEFT's files; loadLoraAdapter() reads them back", async () => {
  const kernels = (await useBackend("cpu")).kernels;
  const config = QWEN2_CONFIG;
  const lora = loraConfig({
    rank: 4,
    alpha: 12,
    targets: ["q_proj", "v_proj", "o_proj", "up_proj"],
  });
  const adapters = initLoraAdapters(config, lora, new Rng(4));
  randomiseB(adapters, 9);
  const dir = await Deno.makeTempDir({ prefix: "giftwrap-lora-" });
  try {
    await saveLoraAdapter(`${dir}/adapter`, adapters, { baseModel: "models/qwen" });
    const json = JSON.parse(await Deno.readTextFile(`${dir}/adapter/adapter_config.json`));
    assert.deepEqual(json, {
      alpha_pattern: {},
      auto_mapping: null,
      base_model_name_or_path: "models/qwen",
      bias: "none",
      fan_in_fan_out: false,
      inference_mode: true,
      init_lora_weights: true,
      layer_replication: null,
      layers_pattern: null,
      layers_to_transform: null,
      loftq_config: {},
      lora_alpha: 12,
      lora_dropout: 0,
      megatron_config: null,
      megatron_core: "megatron.core",
      modules_to_save: null,
      peft_type: "LORA",
      r: 4,
      rank_pattern: {},
      revision: null,
      target_modules: ["q_proj", "v_proj", "o_proj", "up_proj"],
      task_type: "CAUSAL_LM",
      use_dora: false,
      use_rslora: false,
    });
    const { tensors, metadata } = await readSafetensorsFile(
      `${dir}/adapter/adapter_model.safetensors`,
    );
    assert.deepEqual(metadata, { format: "pt" });
    assert.equal(Object.keys(tensors).length, 2 * 4 * 2);
    const p = "base_model.model.model.layers.1.";
    assert.deepEqual(tensors[`${p}self_attn.q_proj.lora_A.weight`]!.shape, [4, 32]); // [r, in]
    assert.deepEqual(tensors[`${p}self_attn.q_proj.lora_B.weight`]!.shape, [32, 4]); // [out, r]
    assert.deepEqual(tensors[`${p}self_attn.v_proj.lora_B.weight`]!.shape, [16, 4]); // kvH·hd
    assert.deepEqual(tensors[`${p}self_attn.o_proj.lora_A.weight`]!.shape, [4, 32]);
    assert.deepEqual(tensors[`${p}mlp.up_proj.lora_A.weight`]!.shape, [4, 32]);
    assert.deepEqual(tensors[`${p}mlp.up_proj.lora_B.weight`]!.shape, [48, 4]);
    // [out, r] on disk is the transpose of the [r, out] held
    const held = adapters.params["model.layers.1.mlp.up_proj.lora_B.weight"]!;
    const transposed = tf.tidy(() => tf.transpose(held).dataSync());
    assert.deepEqual(tensors[`${p}mlp.up_proj.lora_B.weight`]!.data, transposed);

    for (const layout of ["[in, out]", "[out, in]"] as const) {
      const loaded = await loadLoraAdapter(`${dir}/adapter`, config, { layout });
      try {
        assert.equal(loaded.baseModel, "models/qwen");
        assert.deepEqual(loaded.config, lora);
        assert.equal(loaded.scaling, 3);
        assert.deepEqual(Object.keys(loaded.params), Object.keys(adapters.params));
        for (const [name, p] of Object.entries(adapters.params)) {
          const back = tf.tidy(() =>
            layout === "[in, out]" ? loaded.params[name]! : tf.transpose(loaded.params[name]!)
          );
          assert.deepEqual(back.dataSync(), p.dataSync(), `${layout} ${name}`);
          if (back !== loaded.params[name]) back.dispose();
        }
      } finally {
        disposeLoraAdapters(loaded);
      }
    }
    // Loaded for the kernel set, it scores tokens as the adapters it was saved from.
    const params = randomParams(config, 3);
    const ids = randomIds(6, 2, 9, config.vocab);
    const loaded = await loadLoraAdapter(`${dir}/adapter`, config, { layout: kernels.layout });
    const score = (a: LoraAdapters) =>
      tf.tidy(() =>
        tokenLogProbs(kernels, params, config, ids, 4, 1, undefined, { adapters: a }).dataSync()
      );
    assert.deepEqual(score(loaded), score(adapters));
    tf.dispose([...Object.values(params), ids]);
    disposeLoraAdapters(loaded);
  } finally {
    disposeLoraAdapters(adapters);
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("parsePeftConfig() reads PEFT's fields and refuses what it does not run, in one line", () => {
  const where = "a/adapter_config.json";
  const base = peftConfigJson(loraConfig({ rank: 8, alpha: 16, targets: ["q_proj"] }), null);
  assert.deepEqual(parsePeftConfig(base, where), {
    lora: { rank: 8, alpha: 16, dropout: 0, targets: ["q_proj"] },
    baseModel: null,
  });
  // A minimal file of PEFT's: dropout kept as given (the forward applies none), all-linear.
  assert.deepEqual(
    parsePeftConfig(
      { peft_type: "LORA", r: 2, lora_alpha: 4, lora_dropout: 0.05, target_modules: "all-linear" },
      where,
    ).lora,
    { rank: 2, alpha: 4, dropout: 0.05, targets: [...LORA_TARGETS] },
  );
  const refused: [object, string][] = [
    [{ peft_type: "IA3" }, `'peft_type' must be "LORA": current value is "IA3"`],
    [{ r: 0 }, "'r' must be an integer >= 1: current value is 0"],
    [{ lora_alpha: "16" }, "'lora_alpha' must be a positive number"],
    [{ use_dora: true }, "'use_dora' must be false (DoRA is not supported)"],
    [{ use_rslora: true }, "'use_rslora' must be false"],
    [{ bias: "all" }, "'bias' must be \"none\""],
    [{ rank_pattern: { "q_proj": 4 } }, "'rank_pattern' must be empty"],
    [{ layers_to_transform: [0] }, "'layers_to_transform' must be null"],
    [{ modules_to_save: ["lm_head"] }, "'modules_to_save' must be null"],
    [{ target_modules: ".*q_proj" }, "'target_modules' must be \"all-linear\" or a non-empty"],
    [{ target_modules: ["embed_tokens"] }, 'current value is "embed_tokens"'],
  ];
  for (const [change, message] of refused) {
    assert.throws(
      () => parsePeftConfig({ ...base, ...change }, where),
      (e: Error) =>
        e.message.startsWith(`Cannot load the LoRA adapter config '${where}' as `) &&
        e.message.includes(message) && !e.message.includes("\n"),
      message,
    );
  }
});

Deno.test("loadLoraAdapter() refuses a tensor missing, extra or misshapen, naming it", async () => {
  await useBackend("cpu");
  const lora = loraConfig({ rank: 2, alpha: 2, targets: ["k_proj"] });
  const dir = await Deno.makeTempDir({ prefix: "giftwrap-lora-" });
  const json = JSON.stringify(peftConfigJson(lora, null));
  const p = "base_model.model.model.layers.";
  const tensor = (shape: number[]) => ({
    dtype: "F32" as const,
    shape,
    data: new Float32Array(shape[0]! * shape[1]!),
  });
  const good = {
    [`${p}0.self_attn.k_proj.lora_A.weight`]: tensor([2, 32]),
    [`${p}0.self_attn.k_proj.lora_B.weight`]: tensor([16, 2]),
    [`${p}1.self_attn.k_proj.lora_A.weight`]: tensor([2, 32]),
    [`${p}1.self_attn.k_proj.lora_B.weight`]: tensor([16, 2]),
  };
  const path = `${dir}/adapter_model.safetensors`;
  const cases: [Record<string, ReturnType<typeof tensor>>, string][] = [
    [
      { ...good, [`${p}1.self_attn.k_proj.lora_B.weight`]: tensor([32, 2]) },
      `tensor '${p}1.self_attn.k_proj.lora_B.weight' has shape [32, 2], expected [16, 2]`,
    ],
    [
      Object.fromEntries(Object.entries(good).slice(1)),
      `tensor '${p}0.self_attn.k_proj.lora_A.weight' is missing`,
    ],
    [
      { ...good, [`${p}0.self_attn.q_proj.lora_A.weight`]: tensor([2, 32]) },
      `tensor '${p}0.self_attn.q_proj.lora_A.weight' is not one of a rank-2 adapter on k_proj of 2 layers`,
    ],
  ];
  try {
    await Deno.writeTextFile(`${dir}/adapter_config.json`, json);
    for (const [tensors, message] of cases) {
      await Deno.writeFile(path, encodeSafetensors(tensors));
      const before = tf.memory().numTensors;
      await assert.rejects(
        () => loadLoraAdapter(dir, GQA_CONFIG),
        (e: Error) => e.message === `Cannot load the LoRA adapter '${path}' as ${message}`,
        message,
      );
      assert.equal(tf.memory().numTensors, before);
    }
    await Deno.writeFile(path, encodeSafetensors(good));
    disposeLoraAdapters(await loadLoraAdapter(dir, GQA_CONFIG));
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("a training step with adapters differentiates and changes only the adapters, leaking nothing", async () => {
  const { kernels } = await useBackend("wasm");
  const config = QWEN2_CONFIG;
  const params = randomParams(config, 3);
  const lora = loraConfig({ rank: 4, alpha: 8, targets: ["q_proj", "k_proj", "v_proj", "o_proj"] });
  const adapters = initLoraAdapters(config, lora, new Rng(4), kernels.layout);
  const ids = randomIds(6, 4, 10, config.vocab);
  const baseBefore = Object.fromEntries(
    Object.entries(params).map(([n, p]) => [n, p.dataSync().slice()]),
  );
  const state = adamW(adapters.params, {
    lr: 1e-2,
    betas: [0.9, 0.999],
    eps: 1e-8,
    weightDecay: 0,
    clipGradNorm: 1,
    warmupSteps: 0,
    schedule: "constant",
  }, 10);
  const loss = () =>
    tf.neg(
      tf.mean(tokenLogProbs(kernels, params, config, ids, 5, 1, undefined, { adapters })),
    ) as tf.Scalar;
  /** The gradient of the loss by adapter name: only the adapters are differentiated. */
  const gradients = () => {
    const names = Object.keys(adapters.params);
    const vars = Object.values(adapters.params);
    const { value, grads } = tf.variableGrads(loss, vars);
    value.dispose();
    assert.deepEqual(Object.keys(grads).sort(), vars.map((v) => v.name).sort());
    return Object.fromEntries(names.map((n, i) => [n, grads[vars[i]!.name]!]));
  };
  const step = async () => {
    const grads = gradients();
    try {
      await adamWStep(kernels, state, adapters.params, grads);
    } finally {
      tf.dispose(Object.values(grads));
    }
  };
  try {
    // First step: B = 0, so A's gradient is exactly 0 (as in PEFT) and only B moves.
    const aBefore = adapters.params["model.layers.0.self_attn.q_proj.lora_A.weight"]!.dataSync()
      .slice();
    const logitsBefore = logitsOf(kernels, params, config, ids, adapters);
    const grads = gradients();
    for (const [name, g] of Object.entries(grads)) {
      const largest = tf.tidy(() => tf.max(tf.abs(g)).dataSync()[0]!);
      if (name.includes("lora_A")) assert.equal(largest, 0, name);
      else assert.ok(largest > 1e-4, `${name}: gradient ${largest}`);
    }
    tf.dispose(Object.values(grads));
    await step();
    assert.deepEqual(
      adapters.params["model.layers.0.self_attn.q_proj.lora_A.weight"]!.dataSync(),
      aBefore,
    );
    assert.ok(maxDifference(logitsOf(kernels, params, config, ids, adapters), logitsBefore) > 1e-3);
    // Later steps move A too; nothing is left behind by any of them.
    await step();
    const before = tf.memory().numTensors;
    for (let i = 0; i < 3; i++) await step();
    assert.equal(tf.memory().numTensors, before, "tensors leaked over 3 steps");
    const aAfter = adapters.params["model.layers.0.self_attn.q_proj.lora_A.weight"]!.dataSync();
    assert.ok(maxDifference(aAfter, aBefore) > 1e-4, "A moved once B is not 0");
    for (const [name, p] of Object.entries(params)) {
      assert.deepEqual(p.dataSync(), baseBefore[name], `base '${name}' untouched`);
    }
    // Switched off, the model is the base: the same logits as a model that never had adapters.
    const fresh = randomParams(config, 3);
    assert.deepEqual(logitsOf(kernels, params, config, ids), logitsOf(kernels, fresh, config, ids));
    tf.dispose(Object.values(fresh));
  } finally {
    disposeAdamW(state);
    disposeLoraAdapters(adapters);
    tf.dispose([...Object.values(params), ids]);
  }
});

Deno.test("forward() refuses adapters in another layout than the kernel set's", async () => {
  const { kernels } = await useBackend("cpu");
  const params = randomParams(GQA_CONFIG, 3);
  const adapters = initLoraAdapters(GQA_CONFIG, ALL, new Rng(4), "[out, in]");
  const ids = randomIds(6, 1, 4, GQA_CONFIG.vocab);
  try {
    assert.throws(
      () => tf.tidy(() => forward(kernels, params, GQA_CONFIG, ids, { adapters }).logits),
      /^Error: Cannot run the model with LoRA adapters in layout \[out, in\] on a kernel set of layout \[in, out\]$/,
    );
  } finally {
    tf.dispose([...Object.values(params), ids]);
    disposeLoraAdapters(adapters);
  }
});

Deno.test({
  ...needsTorch("forward() with adapters agrees with PyTorch's PEFT forward on the saved files"),
  async fn() {
    assert.ok(TORCH.ok, `PyTorch is required here: ${!TORCH.ok && TORCH.reason}`);
    const config = QWEN2_CONFIG;
    const [rows, time] = [2, 10];
    const dir = await Deno.makeTempDir({ prefix: "giftwrap-lora-torch-" });
    await useBackend("cpu");
    const params = randomParams(config, 3);
    const adapters = initLoraAdapters(config, ALL, new Rng(4));
    randomiseB(adapters, 9);
    const ids = randomIds(6, rows, time, config.vocab);
    try {
      await Deno.mkdir(`${dir}/model`);
      await Deno.writeFile(
        `${dir}/model/model.safetensors`,
        encodeSafetensors(await toTensorData(params)),
      );
      await Deno.writeTextFile(
        `${dir}/model/config.json`,
        JSON.stringify({
          model_type: "qwen2",
          vocab_size: config.vocab,
          hidden_size: config.dModel,
          intermediate_size: config.ffnDim,
          num_hidden_layers: config.layers,
          num_attention_heads: config.heads,
          num_key_value_heads: config.kvHeads,
          max_position_embeddings: config.contextLength,
          rope_theta: config.ropeTheta,
          rms_norm_eps: config.normEps,
          tie_word_embeddings: config.tiedEmbeddings,
        }),
      );
      await saveLoraAdapter(`${dir}/adapter`, adapters, { baseModel: `${dir}/model` });
      const rowsOfIds = Array.from(
        { length: rows },
        (_, b) => [...ids.dataSync().subarray(b * time, (b + 1) * time)],
      );
      const answer = await pythonJson(
        TORCH_SCRIPT,
        [`${dir}/model`, `${dir}/adapter`],
        rowsOfIds,
      ) as { logits: number[][][] };
      const torchLogits = Float32Array.from(answer.logits.flat(2));
      for (const [name, setUp] of KERNEL_SETS) {
        const kernels = await setUp();
        const local = randomParams(config, 3);
        const loaded = await loadLoraAdapter(`${dir}/adapter`, config, { layout: kernels.layout });
        const localIds = randomIds(6, rows, time, config.vocab);
        try {
          const ours = logitsOf(kernels, local, config, localIds, loaded);
          const base = logitsOf(kernels, local, config, localIds);
          assert.ok(maxDifference(ours, base) > 0.5, "the adapters change the logits");
          const error = maxDifference(ours, torchLogits);
          assert.ok(error < 1e-4, `${name}: |Δ| ${error} from PyTorch`);
        } finally {
          tf.dispose([...Object.values(local), localIds]);
          disposeLoraAdapters(loaded);
        }
      }
    } finally {
      tf.dispose([...Object.values(params), ids]);
      disposeLoraAdapters(adapters);
      await Deno.remove(dir, { recursive: true });
    }
  },
});

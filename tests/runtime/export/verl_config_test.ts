// verlConfig(): the plan's settings as verl's Hydra overrides (keys of verl's configuration at
// the pinned commit, values from the plan), the refusals naming the field, and run.sh: its
// arguments, its checks and the command it runs (stub python3 and ray on PATH record it).

import assert from "node:assert/strict";
import { join } from "node:path";
import { hfModel, lora, safeCompile, tasks, tinyGpt } from "../../../mod.ts";
import type { Recipe } from "../../../dsl/schema.ts";
import { type Plan, planHash } from "../../../dsl/plan.ts";
import {
  hydraText,
  type Override,
  verlConfig,
  type VerlSettings,
} from "../../../runtime/export/verl_config.ts";
import { runScript, shellQuote } from "../../../runtime/export/run_script.ts";
import { models, realRecipe, SMOLLM } from "../../dsl/_real_models.ts";
import { base } from "../../dsl/_fixtures.ts";
import { verlKeys } from "./_verl_keys.ts";

function planOf(recipe: Recipe): Plan {
  const result = safeCompile(recipe, { models: models(SMOLLM), checkMemory: false });
  assert.ok(result.ok, JSON.stringify(!result.ok && result.issues));
  return result.plan;
}

const PATHS = { train: "$DATA/train.parquet", eval: "$DATA/eval.parquet", reward: "$DATA/r.py" };

function settingsOf(recipe: Recipe, trainRows = 100): VerlSettings {
  const settings = verlConfig(planOf(recipe), { paths: PATHS, trainRows });
  assert.ok(settings.ok, JSON.stringify(settings));
  return settings;
}

function valueOf(settings: VerlSettings, key: string): unknown {
  const found = settings.overrides.filter((o) => o.key === key);
  assert.equal(found.length, 1, `${key} set ${found.length} times`);
  return found[0]!.value;
}

Deno.test("hydraText writes Hydra's override grammar", () => {
  assert.equal(hydraText(1e-6), "0.000001");
  assert.equal(hydraText(3e-7), "3e-7");
  assert.equal(hydraText(true), "true");
  assert.equal(hydraText(null), "null");
  assert.equal(hydraText("gift"), "gift");
  assert.equal(hydraText("seq-mean-token-mean"), "seq-mean-token-mean");
  assert.equal(hydraText("/models/Qwen3-0.6B"), "/models/Qwen3-0.6B");
  assert.equal(hydraText("true"), "'true'");
  assert.equal(hydraText("a b"), "'a b'");
  assert.equal(hydraText("it's"), "'it\\'s'");
  assert.equal(hydraText([0.9, 0.999]), "[0.9,0.999]");
  assert.equal(hydraText(["console"]), "[console]");
  assert.equal(hydraText({ enable_thinking: false }), "{enable_thinking:false}");
  assert.equal(hydraText("{% for m in messages %}"), "'{% for m in messages %}'");
  assert.throws(() => hydraText(NaN), /finite/);
});

Deno.test("every key verlConfig emits is in verl's configuration at the pinned commit", () => {
  const keys = verlKeys();
  const recipes: Recipe[] = [
    realRecipe(),
    realRecipe({
      policy: hfModel({ path: "./model", lora: lora({ rank: 8, targets: ["q_proj", "v_proj"] }) }),
      microBatches: 2,
      gradientCheckpointing: true,
      optimizer: { lr: 1e-5, schedule: "cosine", warmupSteps: 4, weightDecay: 0.1 },
      eval: { every: 5 },
      checkpoint: { every: 5, keep: 2 },
      sampling: { temperature: 0.7, topP: 0.9, topK: 20, maxNewTokens: 64 },
    }),
    realRecipe({ data: { kind: "jsonl", path: "./p.jsonl", eval: 0, tooLong: "skip" } }),
  ];
  // run.sh's own keys, set from its arguments.
  const scriptKeys = [
    "trainer.nnodes",
    "trainer.n_gpus_per_node",
    "actor_rollout_ref.rollout.name",
    "actor_rollout_ref.rollout.tensor_model_parallel_size",
    "actor_rollout_ref.model.path",
    "actor_rollout_ref.model.lora_adapter_path",
  ];
  for (const key of scriptKeys) assert.ok(keys.has(key), key);
  for (const recipe of recipes) {
    const settings = settingsOf(recipe);
    for (const { key } of settings.overrides) assert.ok(keys.has(key), `unknown verl key ${key}`);
    const seen = settings.overrides.map((o) => o.key);
    assert.equal(new Set(seen).size, seen.length, "a key set twice");
  }
});

Deno.test("verlConfig maps group, batches, sampling, optimiser, schedule, eval and seed", () => {
  // 4 prompts × 4 completions, 2 optimiser steps per batch, 128 new tokens, 64 prompt tokens.
  const settings = settingsOf(
    realRecipe({
      seed: 11,
      miniBatches: 2,
      epochs: 3,
      steps: 10,
      optimizer: { lr: 2e-6, betas: [0.9, 0.95], weightDecay: 0.01, clipGradNorm: 0.5 },
      sampling: { temperature: 0.8, topP: 0.95, topK: 0, maxNewTokens: 128 },
      eval: { every: 5 },
      checkpoint: { every: 4, keep: 2 },
    }),
    30,
  );
  assert.equal(valueOf(settings, "actor_rollout_ref.rollout.n"), 4);
  assert.equal(valueOf(settings, "data.train_batch_size"), 4);
  assert.equal(valueOf(settings, "actor_rollout_ref.actor.ppo_mini_batch_size"), 2);
  assert.equal(valueOf(settings, "actor_rollout_ref.actor.ppo_epochs"), 3);
  assert.equal(valueOf(settings, "actor_rollout_ref.actor.ppo_micro_batch_size_per_gpu"), 4);
  assert.equal(valueOf(settings, "data.max_prompt_length"), 64);
  assert.equal(valueOf(settings, "data.max_response_length"), 128);
  assert.equal(valueOf(settings, "actor_rollout_ref.rollout.temperature"), 0.8);
  assert.equal(valueOf(settings, "actor_rollout_ref.rollout.top_p"), 0.95);
  assert.equal(valueOf(settings, "actor_rollout_ref.rollout.top_k"), -1);
  assert.equal(valueOf(settings, "actor_rollout_ref.actor.optim.lr"), 2e-6);
  assert.deepEqual(valueOf(settings, "actor_rollout_ref.actor.optim.betas"), [0.9, 0.95]);
  assert.equal(valueOf(settings, "actor_rollout_ref.actor.optim.weight_decay"), 0.01);
  assert.equal(valueOf(settings, "actor_rollout_ref.actor.optim.clip_grad"), 0.5);
  assert.equal(valueOf(settings, "trainer.total_training_steps"), 10);
  // 10 steps × 4 prompts over 30 rows: 2 epochs.
  assert.equal(valueOf(settings, "trainer.total_epochs"), 2);
  assert.equal(valueOf(settings, "trainer.test_freq"), 5);
  assert.equal(valueOf(settings, "data.val_max_samples"), 16);
  assert.equal(valueOf(settings, "data.val_files"), "$DATA/eval.parquet");
  assert.equal(valueOf(settings, "actor_rollout_ref.rollout.val_kwargs.do_sample"), false);
  assert.equal(valueOf(settings, "trainer.save_freq"), 4);
  assert.equal(valueOf(settings, "trainer.max_actor_ckpt_to_keep"), 2);
  assert.equal(valueOf(settings, "data.seed"), 11);
  assert.equal(valueOf(settings, "actor_rollout_ref.rollout.seed"), 11);
  assert.equal(valueOf(settings, "reward.custom_reward_function.path"), "$DATA/r.py");
  assert.equal(valueOf(settings, "reward.reward_manager.name"), "batch");
  // No eval: no validation, and the final checkpoint at the last step.
  const quiet = settingsOf(
    realRecipe({ data: { kind: "jsonl", path: "./p.jsonl", eval: 0 }, steps: 7 }),
  );
  assert.equal(valueOf(quiet, "trainer.test_freq"), -1);
  assert.equal(valueOf(quiet, "trainer.val_before_train"), false);
  assert.equal(valueOf(quiet, "trainer.save_freq"), 7);
});

Deno.test("verlConfig maps LoRA, micro-batches, checkpointing, warm-up and cosine", () => {
  const settings = settingsOf(realRecipe({
    policy: hfModel({
      path: "./model",
      lora: lora({ rank: 16, alpha: 32, targets: ["q_proj", "v_proj"] }),
    }),
    group: { prompts: 4, size: 4 },
    miniBatches: 2,
    microBatches: 2,
    gradientCheckpointing: true,
    optimizer: { lr: 1e-4, warmupSteps: 3, schedule: "cosine" },
  }));
  assert.equal(valueOf(settings, "actor_rollout_ref.model.lora_rank"), 16);
  assert.equal(valueOf(settings, "actor_rollout_ref.model.lora_alpha"), 32);
  assert.deepEqual(valueOf(settings, "actor_rollout_ref.model.target_modules"), [
    "q_proj",
    "v_proj",
  ]);
  // 2 prompts of 4 rows per mini-batch, in 2 micro-batches: one group of 4 rows each.
  assert.equal(valueOf(settings, "actor_rollout_ref.actor.ppo_micro_batch_size_per_gpu"), 4);
  assert.equal(valueOf(settings, "actor_rollout_ref.model.enable_gradient_checkpointing"), true);
  // 3 updates of warm-up at 2 updates a step: 2 steps, with a warning.
  assert.equal(valueOf(settings, "actor_rollout_ref.actor.optim.lr_warmup_steps"), 2);
  assert.ok(settings.warnings.some((w) => w.startsWith("optimizer.warmupSteps")));
  assert.equal(valueOf(settings, "actor_rollout_ref.actor.optim.lr_scheduler_type"), "cosine");
  assert.equal(valueOf(settings, "actor_rollout_ref.actor.optim.min_lr_ratio"), 0);
});

Deno.test("verlConfig refuses what verl has no key for, naming the field", () => {
  const refused = (recipe: Recipe, plan?: Plan) => {
    const settings = verlConfig(plan ?? planOf(recipe), { paths: PATHS, trainRows: 10 });
    assert.ok(!settings.ok, "expected a refusal");
    return settings.field;
  };
  const tiny = safeCompile(base);
  assert.ok(tiny.ok);
  assert.equal(refused(base, tiny.plan), "policy");
  const warm = safeCompile({
    ...base,
    policy: tinyGpt({ layers: 2, dModel: 64, heads: 4, warmStart: { sftSteps: 10 } }),
    data: tasks.addition({ digits: 2, train: 1000, eval: 100 }),
  });
  assert.ok(warm.ok, JSON.stringify(!warm.ok && warm.issues));
  assert.equal(refused(base, warm.plan), "policy.warmStart");
  assert.equal(refused(realRecipe({ sampling: { stop: ["\n\n"] } })), "sampling.stop");
  assert.equal(
    refused(realRecipe({ optimizer: { lr: 1e-5, schedule: "linear" } })),
    "optimizer.schedule",
  );
  assert.equal(refused(realRecipe({ optimizer: { lr: 1e-5, eps: 1e-6 } })), "optimizer.eps");
  assert.equal(
    refused(realRecipe({ reference: { checkpoint: "./ckpt" } })),
    "reference.checkpoint",
  );
});

// ---------------------------------------------------------------------------------------------
// run.sh

/** A directory with run.sh for `overrides`, and stub python3 and ray recording their argv. */
async function scriptDir(overrides: Override[], microRows = 4, miniRows = 32): Promise<string> {
  const dir = await Deno.makeTempDir({ prefix: "giftwrap-runsh-" });
  await Deno.writeTextFile(
    join(dir, "run.sh"),
    runScript(overrides, {
      name: "t",
      planHash: "0123456789abcdef",
      modelPath: "/models/it's here",
      adapterPath: null,
      miniBatchRows: miniRows,
      microBatchRows: microRows,
      groupSize: 4,
      recipe: "r.ts",
    }),
  );
  await Deno.mkdir(join(dir, "bin"));
  // Each stub writes its argv as one JSON line; python3 runs the real one for anything but -m.
  const record = `import json, os, sys; open(${
    JSON.stringify(join(dir, "argv.jsonl"))
  }, "a").write(json.dumps([sys.argv[1:], os.environ.get("VERL_USE_EXTERNAL_MODULES")]) + "\\n")`;
  await Deno.writeTextFile(
    join(dir, "bin", "python3"),
    `#!/bin/sh\nif [ "$1" = -m ]; then exec /usr/bin/python3 -c '${record}' "$@"; fi\n` +
      `exec /usr/bin/python3 "$@"\n`,
  );
  await Deno.writeTextFile(
    join(dir, "bin", "ray"),
    `#!/bin/sh\nexec /usr/bin/python3 -c '${record}' "$@"\n`,
  );
  await Deno.chmod(join(dir, "bin", "python3"), 0o755);
  await Deno.chmod(join(dir, "bin", "ray"), 0o755);
  return dir;
}

async function runSh(dir: string, args: string[], env: Record<string, string> = {}) {
  const out = await new Deno.Command("bash", {
    args: [join(dir, "run.sh"), ...args],
    env: {
      PATH: `${join(dir, "bin")}:${Deno.env.get("PATH")}`,
      GIFTWRAP_SKIP_REWARD_CHECK: "1",
      ...env,
    },
    clearEnv: true,
    stdout: "piped",
    stderr: "piped",
  }).output();
  let argv: string[][] = [];
  let modules: (string | null)[] = [];
  try {
    const calls: [string[], string | null][] = (await Deno.readTextFile(join(dir, "argv.jsonl")))
      .trim().split("\n").map((l) => JSON.parse(l));
    argv = calls.map(([a]) => a);
    modules = calls.map(([, m]) => m);
    await Deno.remove(join(dir, "argv.jsonl"));
  } catch { /* nothing ran */ }
  return {
    code: out.code,
    stderr: new TextDecoder().decode(out.stderr),
    argv,
    /** VERL_USE_EXTERNAL_MODULES as each command saw it. */
    modules,
  };
}

const OVERRIDES: Override[] = [
  { key: "algorithm.adv_estimator", value: "gift", from: "objective" },
  { key: "data.train_files", value: "$DATA/train.parquet", from: "data" },
  { key: "data.apply_chat_template_kwargs", value: { enable_thinking: false }, from: "chat" },
  { key: "trainer.logger", value: ["console"], from: "export" },
  { key: "trainer.experiment_name", value: "a b", from: "name" },
];

Deno.test("run.sh runs verl's main_ppo locally with the overrides and its arguments", async () => {
  const dir = await scriptDir(OVERRIDES);
  try {
    const { code, stderr, argv, modules } = await runSh(dir, [
      "--nodes",
      "2",
      "--gpus-per-node",
      "4",
      "--rollout",
      "sglang",
      "--",
      "trainer.logger=[console,wandb]",
    ]);
    assert.equal(code, 0, stderr);
    assert.equal(argv.length, 1);
    // verl imports the plugin in every process that imports verl.
    assert.deepEqual(modules, ["giftwrap_verl"]);
    const real = await Deno.realPath(dir);
    assert.deepEqual(argv[0], [
      "-m",
      "verl.trainer.main_ppo",
      "algorithm.adv_estimator=gift",
      `data.train_files='${real}/train.parquet'`,
      "data.apply_chat_template_kwargs={enable_thinking:false}",
      "trainer.logger=[console]",
      "trainer.experiment_name='a b'",
      "trainer.nnodes=2",
      "trainer.n_gpus_per_node=4",
      "actor_rollout_ref.rollout.name=sglang",
      "actor_rollout_ref.rollout.tensor_model_parallel_size=1",
      "actor_rollout_ref.model.path='/models/it's here'",
      "trainer.logger=[console,wandb]",
    ]);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("run.sh submits a Ray job with RAY_ADDRESS, each word quoted for Ray's shell", async () => {
  const dir = await scriptDir(OVERRIDES);
  try {
    const { code, stderr, argv } = await runSh(dir, ["--model", "/m/x y"], {
      RAY_ADDRESS: "http://head:8265",
      GIFTWRAP_REWARD_URL: "http://10.0.0.5:8787/score",
    });
    assert.equal(code, 0, stderr);
    const call = argv[0]!;
    const real = await Deno.realPath(dir);
    assert.deepEqual(call.slice(0, 9), [
      "job",
      "submit",
      "--address",
      "http://head:8265",
      "--working-dir",
      real,
      "--runtime-env-json",
      '{"env_vars": {"GIFTWRAP_REWARD_URL": "http://10.0.0.5:8787/score", ' +
      '"VERL_USE_EXTERNAL_MODULES": "giftwrap_verl"}}',
      "--",
    ]);
    // Ray joins the words with spaces and a shell splits them again: the same words come back.
    const joined = call.slice(9).join(" ");
    const words = await new Deno.Command("bash", {
      args: ["-c", `printf '%s\\0' ${joined}`],
      stdout: "piped",
    }).output();
    const back = new TextDecoder().decode(words.stdout).split("\0").slice(0, -1);
    assert.deepEqual(back.slice(0, 4), [
      "python3",
      "-m",
      "verl.trainer.main_ppo",
      "algorithm.adv_estimator=gift",
    ]);
    // Relative to the job's working directory, which Ray unpacks on every node.
    assert.ok(back.includes("data.train_files='./train.parquet'"));
    assert.ok(back.includes("trainer.experiment_name='a b'"));
    assert.ok(back.includes("actor_rollout_ref.model.path='/m/x y'"));
    assert.ok(back.includes("trainer.nnodes=1"));
    assert.ok(back.includes("trainer.n_gpus_per_node=8"));
    assert.doesNotMatch(stderr, /warning/);
    // A reward server on localhost is only reachable on this machine: a warning.
    const local = await runSh(dir, [], { RAY_ADDRESS: "http://head:8265" });
    assert.equal(local.code, 0);
    assert.match(local.stderr, /warning: GIFTWRAP_REWARD_URL is http:\/\/127\.0\.0\.1/);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("run.sh refuses bad arguments and GPU counts that split groups, in one line", async () => {
  // 8 rows per optimiser step, micro-batches of 4 rows (one group).
  const dir = await scriptDir(OVERRIDES, 4, 8);
  try {
    const cases: [string[], RegExp][] = [
      [["--nodes", "0"], /^run\.sh: --nodes: expected a positive integer, got '0'$/],
      [["--gpus-per-node"], /^run\.sh: --gpus-per-node: expected a value$/],
      [["--rollout", "hf"], /^run\.sh: --rollout: expected vllm or sglang, got 'hf'$/],
      [["--bogus"], /^run\.sh: unknown argument '--bogus' \(verl overrides go after --\)$/],
      [["--gpus-per-node", "3"], /3 GPUs must divide the 8 rows of an optimiser step$/],
      // 8 rows over 4 GPUs: 2 rows each, not a whole group of 4.
      [["--gpus-per-node", "4"], /each GPU's 2 rows must be whole micro-batches of 4 rows/],
      [["--gpus-per-node", "2", "--rollout-tp", "4"], /--rollout-tp 4 must divide/],
    ];
    for (const [args, message] of cases) {
      const { code, stderr, argv } = await runSh(dir, args);
      assert.equal(code, 2, args.join(" "));
      assert.equal(stderr.trim().split("\n").length, 1, stderr);
      assert.match(stderr.trim(), message);
      assert.equal(argv.length, 0);
    }
    const ok = await runSh(dir, ["--gpus-per-node", "2"]);
    assert.equal(ok.code, 0, ok.stderr);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("run.sh asks the reward server's /health first, and warns of another plan", async () => {
  const dir = await scriptDir(OVERRIDES);
  let plan = "0123456789abcdef";
  const server = Deno.serve({ hostname: "127.0.0.1", port: 0, onListen() {} }, (request) => {
    const path = new URL(request.url).pathname;
    return path === "/health"
      ? Response.json({ ok: true, plan, rewards: ["r"] })
      : new Response("no", { status: 404 });
  });
  const url = `http://127.0.0.1:${server.addr.port}/score`;
  try {
    const up = await runSh(dir, [], { GIFTWRAP_SKIP_REWARD_CHECK: "", GIFTWRAP_REWARD_URL: url });
    assert.equal(up.code, 0, up.stderr);
    assert.equal(up.stderr, "");
    plan = "fedcba9876543210";
    const other = await runSh(dir, [], {
      GIFTWRAP_SKIP_REWARD_CHECK: "",
      GIFTWRAP_REWARD_URL: url,
    });
    assert.equal(other.code, 0);
    assert.match(other.stderr, /serves plan fedcba9876543210, this export is plan 0123456789ab/);
  } finally {
    await server.shutdown();
  }
  try {
    const down = await runSh(dir, [], {
      GIFTWRAP_SKIP_REWARD_CHECK: "",
      GIFTWRAP_REWARD_URL: url,
    });
    assert.equal(down.code, 2);
    assert.match(down.stderr, /run\.sh: the reward server at .* does not answer/);
    assert.equal(down.argv.length, 0);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("shellQuote survives bash", async () => {
  for (const text of ["plain", "it's", "a b", "$HOME", "`x`", '"q"', "\\n"]) {
    const out = await new Deno.Command("bash", {
      args: ["-c", `printf '%s' ${shellQuote(text)}`],
      stdout: "piped",
    }).output();
    assert.equal(new TextDecoder().decode(out.stdout), text);
  }
});

Deno.test("checkMemory: false compiles a plan too large for this machine, and no other plan", () => {
  // Full fine-tuning of SmolLM2 on wasm does not fit its 4 GiB heap: refused, unless the plan is
  // for another machine.
  const big = realRecipe();
  const checked = safeCompile(big, { models: models(SMOLLM) });
  assert.ok(!checked.ok);
  assert.equal(checked.issues[0]!.path, "miniBatches");
  assert.ok(safeCompile(big, { models: models(SMOLLM), checkMemory: false }).ok);
  // A plan that fits is the very same plan either way.
  const small = realRecipe({ backend: "cpu" });
  const a = safeCompile(small, { models: models(SMOLLM) });
  const b = safeCompile(small, { models: models(SMOLLM), checkMemory: false });
  assert.ok(a.ok && b.ok);
  assert.equal(planHash(a.plan), planHash(b.plan));
});

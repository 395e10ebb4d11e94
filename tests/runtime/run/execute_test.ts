import assert from "node:assert/strict";
import { planHash } from "../../../mod.ts";
import { type KernelSet, tf, useBackend } from "../../../runtime/engine/backend.ts";
import { execute, type RunResult, RunSetupError } from "../../../runtime/run/execute.ts";
import { loadCheckpoint, weightsToTensors } from "../../../runtime/engine/model/checkpoint.ts";
import { forward, initParams } from "../../../runtime/engine/model/transformer.ts";
import { saveRewardModel, SCORE_WEIGHT } from "../../../runtime/rl/rewards/reward_model.ts";
import { Rng } from "../../../runtime/engine/random.ts";
import type { SampleGroup, StepMetrics } from "../../../runtime/rl/train_step.ts";
import { decodeSafetensors } from "../../../runtime/engine/model/safetensors.ts";
import { RewardError } from "../../../runtime/rl/rewards/mod.ts";
import { writeReport } from "../../../analysis/report/mod.ts";
import { withTempDir } from "../../_helpers.ts";
import { tinyPlan } from "../_tiny.ts";

/**
 * The loss after each of the tiny recipe's 5 steps on wasm, recorded from this implementation
 * when the runtime was written. A change of model, sampler, objective, optimiser or seeding that
 * moves them is a change of behaviour: check it, then re-record.
 */
const RECORDED_LOSSES = [
  0.1874992549419403,
  0.7499714493751526,
  0.6770381033420563,
  0.7499677240848541,
  0.7912987768650055,
];

/** Runs the tiny plan once per test file; the tests below read what it left. */
interface TinyRun {
  result: RunResult;
  log: string[];
  tensorsAfterStep: number[];
  finalLogits: number[][][];
  /** The kernel set the run used. */
  kernels: KernelSet;
  runsDir: string;
}

const IDS = [[1, 4, 13, 7, 14, 5, 2], [1, 9, 13, 12, 14, 4, 8]]; // "<bos>1+4=2<eos>", "<bos>6+9=15"

async function runTiny(runsDir: string): Promise<TinyRun> {
  const log: string[] = [];
  const tensorsAfterStep: number[] = [];
  let finalLogits: number[][][] = [];
  let kernels: KernelSet | null = null;
  const result = await execute(tinyPlan(), {
    runsDir,
    log: (line) => log.push(line),
    report: writeReport,
    onStep: () => tensorsAfterStep.push(tf.memory().numTensors),
    onFinish: (run) => {
      kernels = run.kernels;
      finalLogits = tf.tidy(() =>
        forward(run.kernels, run.params, run.config, tf.tensor2d(IDS, [2, 7], "int32")).logits
          .arraySync()
      );
    },
  });
  return { result, log, tensorsAfterStep, finalLogits, kernels: kernels!, runsDir };
}

async function readJsonl(path: string): Promise<Record<string, unknown>[]> {
  return (await Deno.readTextFile(path)).trimEnd().split("\n").map((l) => JSON.parse(l));
}

Deno.test("execute() on the tiny recipe", async (t) => {
  await withTempDir(async (runsDir) => {
    const run = await runTiny(runsDir);
    const { result } = run;

    await t.step("matches the recorded loss trajectory (tolerance 1e-4)", () => {
      const losses = result.metrics.map((m) => m.loss);
      assert.equal(losses.length, 5);
      losses.forEach((loss, i) => {
        assert.ok(
          Math.abs(loss - RECORDED_LOSSES[i]!) < 1e-4,
          `step ${i + 1}: loss ${loss}, recorded ${RECORDED_LOSSES[i]} (all: ${losses})`,
        );
      });
    });

    await t.step("logs the gradient norm before and after clipping", async () => {
      const clip = tinyPlan().optimizer.clipGradNorm;
      assert.equal(clip, 1);
      const lines = (await readJsonl(`${result.dir}/metrics.jsonl`)).slice(1);
      assert.equal(lines.length, 5);
      for (const m of lines) {
        const [before, after] = [m.gradNorm, m.gradNormClipped];
        assert.ok(typeof before === "number" && typeof after === "number", JSON.stringify(m));
        assert.ok(after <= clip + 1e-6, `step ${m.step}: ${after} after clipping`);
        assert.ok(before >= after, `step ${m.step}: ${before} before, ${after} after`);
      }
      // GIFT's first update (u ≡ 0 as π is the reference) is scaled ~1/ε, far over the clip norm;
      // a step whose every update is over it is scaled down to it.
      assert.ok((lines[0]!.gradNorm as number) > 1e3, `step 1: ${lines[0]!.gradNorm}`);
      const norms = lines.map((m) => [m.gradNorm, m.gradNormClipped]);
      assert.ok(
        lines.some((m) => Math.abs((m.gradNormClipped as number) - clip) < 1e-6),
        `no step clipped to ${clip}: ${JSON.stringify(norms)}`,
      );
    });

    await t.step("leaks no tensor across steps", () => {
      const [, , third, ...rest] = run.tensorsAfterStep;
      assert.ok(third !== undefined && rest.length === 2);
      for (const n of rest) {
        assert.equal(n, third, `tensors after each step: ${run.tensorsAfterStep}`);
      }
    });

    await t.step("writes the run directory", async () => {
      const dir = result.dir;
      assert.match(dir, /\/tiny-\d{8}-\d{6}$/);
      const names = (await Array.fromAsync(Deno.readDir(dir))).map((e) => e.name).sort();
      assert.deepEqual(names, [
        "checkpoints",
        "metrics.jsonl",
        "plan.json",
        "recipe.json",
        "report.html",
        "run.json",
        "samples.jsonl",
      ]);
      const plan = tinyPlan();
      assert.deepEqual(JSON.parse(await Deno.readTextFile(`${dir}/recipe.json`)), plan.recipe);
      const savedPlan = JSON.parse(await Deno.readTextFile(`${dir}/plan.json`));
      assert.equal(savedPlan.hash, planHash(plan));
      assert.equal(result.hash, planHash(plan));

      const lines = await readJsonl(`${dir}/metrics.jsonl`);
      assert.deepEqual(lines[0], { step: 0, evalAccuracy: result.accuracyBefore });
      const steps = lines.slice(1) as unknown as StepMetrics[];
      assert.deepEqual(steps.map((m) => m.step), [1, 2, 3, 4, 5]);
      for (const m of steps) {
        for (
          const key of [
            "rewardMean",
            "rewardStd",
            "zeroStdGroups",
            "kl",
            "completionLength",
            "gradNorm",
            "stepSeconds",
            "tokensPerSecond",
            "loss",
          ] as const
        ) {
          assert.equal(typeof m[key], "number", `step ${m.step}: ${key} is ${m[key]}`);
          assert.ok(Number.isFinite(m[key]), `step ${m.step}: ${key} is ${m[key]}`);
        }
        assert.ok(m.rewardMean >= 0 && m.rewardMean <= 1);
        assert.ok(m.zeroStdGroups >= 0 && m.zeroStdGroups <= 1);
        assert.ok(m.completionLength >= 1 && m.completionLength <= plan.shapes.newTokens);
      }
      // Evaluated at step 0, every 2 steps, and at the end.
      assert.deepEqual(
        steps.filter((m) => m.evalAccuracy !== undefined).map((m) => m.step),
        [2, 4, 5],
      );
      assert.equal(steps[4]!.evalAccuracy, result.accuracyAfter);
      // KL to the frozen reference: 0 on the first update, then positive.
      assert.ok(steps.every((m) => m.kl! >= 0));
      assert.ok(steps[0]!.kl! < steps[4]!.kl!, `kl: ${steps.map((m) => m.kl)}`);

      // samples.jsonl: 2 groups (log.sampleGroups) at step 1, every 10 steps and the last.
      const samples = await readJsonl(`${dir}/samples.jsonl`) as unknown as SampleGroup[];
      assert.deepEqual(samples.map((g) => [g.step, g.group]), [[1, 0], [1, 1], [5, 0], [5, 1]]);
      for (const g of samples) {
        assert.equal(g.completions.length, 4);
        const r = g.completions.map((c) => c.reward);
        // GIFT's Â: the group-standardised reward (sample std, ε 1e-6); 0 for an equal group.
        const mean = r.reduce((a, b) => a + b, 0) / 4;
        const std = Math.sqrt(r.reduce((a, b) => a + (b - mean) ** 2, 0) / 3);
        g.completions.forEach((c, i) => {
          assert.ok(Math.abs(c.advantage! - (r[i]! - mean) / (std + 1e-6)) < 1e-5);
          assert.deepEqual(Object.keys(c.rewards), ["numericAnswer"]);
          assert.equal(c.rewards["numericAnswer"], c.reward);
          assert.ok(c.length >= 1 && c.length <= plan.shapes.newTokens);
        });
      }

      const ckpt = `${dir}/checkpoints/final`;
      const files = (await Array.fromAsync(Deno.readDir(ckpt))).map((e) => e.name).sort();
      assert.deepEqual(files, [
        "config.json",
        "metrics.jsonl",
        "model.safetensors",
        "optimizer.safetensors",
        "trainer_state.json",
      ]);
      const state = JSON.parse(await Deno.readTextFile(`${ckpt}/trainer_state.json`));
      assert.equal(state.step, 5);
      assert.equal(state.optimizer.t, 10); // 5 steps × 2 mini-batches
      const optimizer = decodeSafetensors(await Deno.readFile(`${ckpt}/optimizer.safetensors`));
      assert.ok("m.model.embed_tokens.weight" in optimizer.tensors);
    });

    await t.step("writes a final checkpoint that reloads to identical logits", async () => {
      const { config, weights } = await loadCheckpoint(`${result.dir}/checkpoints/final`);
      const params = weightsToTensors(weights, false);
      const logits = tf.tidy(() =>
        forward(run.kernels, params, config, tf.tensor2d(IDS, [2, 7], "int32")).logits.arraySync()
      );
      tf.dispose(Object.values(params));
      assert.deepEqual(logits, run.finalLogits);
    });

    await t.step("prints a line per step and the accuracy before and after", () => {
      const stepLines = run.log.filter((l) => l.startsWith("step "));
      assert.equal(stepLines.length, 5);
      assert.match(
        stepLines[1]!,
        /^step 2\/5 · reward \d\.\d{3} ± \d\.\d{3} · eval \d+\.\d% · [\d,]+ tok\/s · ETA \d+s$/,
      );
      const last = run.log[run.log.length - 1]!;
      assert.match(
        last,
        /^accuracy \d+\.\d% → \d+\.\d% \([+-]\d+\.\d points\) after 5 steps · .* · /,
      );
      assert.ok(last.endsWith(result.dir));
    });

    await t.step(
      "reuses the cached warm start on a rerun, with the same step-0 accuracy",
      async () => {
        const again = await runTiny(runsDir);
        assert.ok(again.log.some((l) => l.startsWith("warm start: cached")), again.log.join("\n"));
        assert.ok(!run.log.some((l) => l.startsWith("warm start: cached")));
        assert.equal(again.result.accuracyBefore, result.accuracyBefore);
        assert.deepEqual(
          again.result.metrics.map((m) => m.loss),
          result.metrics.map((m) => m.loss),
        );
        assert.notEqual(again.result.dir, result.dir);
      },
    );
  });
});

/** The same, recorded for `reference: "rollout"` (the old log-probs pass, π_ref = π_old). */
const RECORDED_ROLLOUT_LOSSES = [0.1874992549419403, 0.37496694922447205, 0.30553486943244934];

Deno.test("execute() with reference 'rollout' matches its recorded trajectory", async () => {
  await withTempDir(async (runsDir) => {
    const plan = tinyPlan({ reference: "rollout", steps: 3 });
    assert.ok(plan.stages.some((s) => s.name === "old log-probs"));
    const result = await execute(plan, { runsDir, log: () => {} });
    const losses = result.metrics.map((m) => m.loss);
    losses.forEach((loss, i) => {
      assert.ok(
        Math.abs(loss - RECORDED_ROLLOUT_LOSSES[i]!) < 1e-4,
        `step ${i + 1}: loss ${loss}, recorded ${RECORDED_ROLLOUT_LOSSES[i]} (all: ${losses})`,
      );
    });
    // The first update of each batch is at π_old (KL 0), the second after one step (KL ≥ 0; 0 when
    // every group of the first mini-batch had equal rewards, so that the first update was 0).
    const kls = result.metrics.map((m) => m.kl!);
    assert.ok(kls.every((kl) => kl >= 0 && kl < 1) && kls.some((kl) => kl > 0), `kl ${kls}`);
  });
});

Deno.test("execute() refuses what this runtime lacks before touching a tensor or the disk", async () => {
  await withTempDir(async (runsDir) => {
    const cases: [Parameters<typeof tinyPlan>[0], RegExp][] = [
      [
        {
          rewards: [{ source: { kind: "fn", module: "/nonexistent/reward.ts" } }],
          eval: { every: 2, metric: { kind: "numericAnswer" } },
        },
        /^rewards\[0\] \('fn'\): .*\/nonexistent\/reward\.ts/,
      ],
      [
        { reference: { checkpoint: "/nonexistent/somewhere" } },
        /^Cannot load reference checkpoint '\/nonexistent\/somewhere': not found$/,
      ],
    ];
    for (const [changes, message] of cases) {
      await assert.rejects(
        () => execute(tinyPlan(changes), { runsDir, log: () => {} }),
        (e: Error) => e instanceof RunSetupError && message.test(e.message),
      );
    }
    assert.deepEqual(await Array.fromAsync(Deno.readDir(runsDir)), []);
    const file = `${runsDir}/a-file`;
    await Deno.writeTextFile(file, "");
    const tensors = tf.memory().numTensors;
    await assert.rejects(
      () => execute(tinyPlan(), { runsDir: file, log: () => {} }),
      (e: Error) =>
        e instanceof RunSetupError &&
        e.message.startsWith(`Cannot create a run directory in '${file}'`),
    );
    // The policy was already initialised when the directory failed: it is released all the same.
    assert.equal(tf.memory().numTensors, tensors);
  });
});

Deno.test("execute() refuses a plan its backend's memory cannot hold, compiled without the check", async () => {
  await withTempDir(async (runsDir) => {
    // Compiled for cpu with no machine memory given, nothing was held; run on wasm, whose heap
    // is 4 GiB, its warm start of 8 TiB is refused before anything loads.
    const plan = tinyPlan({ backend: "cpu", sampling: { temperature: 1, maxNewTokens: 131072 } });
    const wasm = { ...plan, backend: { ...plan.backend, name: "wasm" as const } };
    const tensors = tf.memory().numTensors;
    await assert.rejects(
      () => execute(wasm, { runsDir, log: () => {} }),
      (e: Error) =>
        e instanceof RunSetupError &&
        /^Cannot run plan: sampling\.maxNewTokens: the warm start's estimated peak of 8\.01 TiB .* wasm's 4 GiB heap .*; fix: set sampling\.maxNewTokens to 1951 or less/
          .test(e.message),
    );
    assert.deepEqual(await Array.fromAsync(Deno.readDir(runsDir)), []);
    assert.equal(tf.memory().numTensors, tensors);
  });
});

Deno.test("execute() uses a checkpoint as the reference, and refuses one of another shape", async () => {
  await withTempDir(async (dir) => {
    const first = await execute(tinyPlan({ steps: 1 }), { runsDir: dir, log: () => {} });
    const checkpoint = `${first.dir}/checkpoints/final`;
    const result = await execute(tinyPlan({ reference: { checkpoint }, steps: 2 }), {
      runsDir: dir,
      log: () => {},
    });
    // The reference is the once-trained policy, not the fresh one: KL is positive from the start.
    assert.ok(result.metrics[0]!.kl! > 0, `kl ${result.metrics[0]!.kl}`);
    const wider = tinyPlan({ policy: { kind: "tinyGpt", layers: 1, dModel: 48, heads: 2 } });
    await assert.rejects(
      () =>
        execute({ ...wider, reference: { ...wider.reference, kind: "checkpoint", checkpoint } }, {
          runsDir: dir,
          log: () => {},
        }),
      /^RunSetupError: Cannot use reference checkpoint '.*': its dModel is 32, the policy's is 48$/,
    );
  });
});

Deno.test("execute() trains on JSON Lines data, paths relative to the recipe", async () => {
  await withTempDir(async (dir) => {
    await Deno.mkdir(`${dir}/data`);
    const rows = Array.from({ length: 40 }, (_, i) => {
      const [a, b] = [i % 7, (i * 3) % 5];
      return JSON.stringify({ question: `${a}+${b}`, answer: `${a + b}`, id: i });
    });
    await Deno.writeTextFile(`${dir}/data/sums.jsonl`, rows.join("\n") + "\n");
    const plan = tinyPlan({
      data: {
        kind: "jsonl",
        path: "data/sums.jsonl",
        prompt: "question",
        template: "{prompt}=",
        eval: 10,
        maxPromptTokens: 8,
      },
      sampling: { maxNewTokens: 3 },
      steps: 2,
    });
    const result = await execute(plan, {
      runsDir: `${dir}/runs`,
      baseUrl: new URL(`file://${dir}/`),
      log: () => {},
    });
    assert.equal(result.metrics.length, 2);
    assert.ok(result.accuracyBefore !== null && result.accuracyAfter !== null);

    // A bad line is one error naming the file and the line, before any run directory exists.
    await Deno.writeTextFile(`${dir}/data/sums.jsonl`, rows[0] + "\n{oops\n");
    await assert.rejects(
      () =>
        execute(plan, {
          runsDir: `${dir}/runs2`,
          baseUrl: new URL(`file://${dir}/`),
          log: () => {},
        }),
      /data\/sums\.jsonl:2: invalid JSON/,
    );
    await assert.rejects(() => Deno.stat(`${dir}/runs2`), Deno.errors.NotFound);
  });
});

Deno.test("execute() trains each synthetic task", async (t) => {
  const tasks = [
    { kind: "multiplication", digits: 1, train: 40, eval: 10 },
    { kind: "sorting", length: 3, maxValue: 5, train: 40, eval: 10 },
    { kind: "countdown", numbers: 3, maxNumber: 9, maxTarget: 30, train: 40, eval: 10 },
  ] as const;
  for (const data of tasks) {
    await t.step(data.kind, async () => {
      await withTempDir(async (runsDir) => {
        const verifier = data.kind === "countdown"
          ? { kind: "countdown" as const }
          : { kind: "exactMatch" as const };
        const plan = tinyPlan({ data, rewards: [{ source: verifier }], steps: 2 });
        const result = await execute(plan, { runsDir, log: () => {} });
        assert.equal(result.metrics.length, 2);
        assert.ok(result.metrics.every((m) => Number.isFinite(m.loss)));
      });
    });
  }
});

/** A scoring endpoint on 127.0.0.1: 1 for completions of at most 2 characters, else 0. */
function shortAnswerServer(fail = false) {
  const seen: number[] = [];
  const server = Deno.serve({ hostname: "127.0.0.1", port: 0, onListen: () => {} }, async (req) => {
    const { samples } = await req.json() as { samples: { completion: string }[] };
    seen.push(samples.length);
    if (fail) return new Response("down for maintenance", { status: 503 });
    return Response.json({ scores: samples.map((s) => (s.completion.length <= 2 ? 1 : 0)) });
  });
  return { url: `http://127.0.0.1:${server.addr.port}/score`, seen, server };
}

Deno.test("execute() sums two weighted rewards, one of them a remote endpoint", async () => {
  const { url, seen, server } = shortAnswerServer();
  try {
    await withTempDir(async (runsDir) => {
      const plan = tinyPlan({
        rewards: [
          { source: { kind: "numericAnswer" }, weight: 1, success: true },
          { source: { kind: "http", url, batchSize: 8 }, weight: 0.5, name: "short" },
        ],
        steps: 2,
      });
      const result = await execute(plan, { runsDir, log: () => {} });
      assert.deepEqual(seen, [8, 8, 8, 8], "2 steps × 16 samples in POSTs of 8");
      for (const m of result.metrics) {
        assert.deepEqual(Object.keys(m.rewards), ["numericAnswer", "short"]);
        const { numericAnswer, short } = m.rewards as Record<string, { mean: number; std: number }>;
        assert.ok(Math.abs(m.rewardMean - (numericAnswer!.mean + 0.5 * short!.mean)) < 1e-6);
        assert.equal(m.successRate, numericAnswer!.mean);
        assert.ok(short!.std >= 0 && short!.std <= 0.5);
        assert.deepEqual(m.rewardErrors, {});
      }
    });
  } finally {
    await server.shutdown();
  }
});

Deno.test("execute() applies a reward's onError: zero, skip-group, fail", async (t) => {
  const { url, server } = shortAnswerServer(true);
  const rewards = (onError: "fail" | "zero" | "skip-group") => [
    { source: { kind: "numericAnswer" as const }, success: true },
    { source: { kind: "http" as const, url, retries: 0 }, weight: 0.5, name: "short", onError },
  ];
  try {
    await t.step("zero: the step scores 0 for it and counts the failures", async () => {
      await withTempDir(async (runsDir) => {
        const result = await execute(tinyPlan({ rewards: rewards("zero"), steps: 2 }), {
          runsDir,
          log: () => {},
        });
        for (const m of result.metrics) {
          assert.deepEqual(m.rewardErrors, { short: 16 });
          assert.equal(m.skippedGroups, 0);
          assert.equal((m.rewards as Record<string, { mean: number }>).short!.mean, 0);
        }
      });
    });
    await t.step("skip-group: every group sits the update out", async () => {
      await withTempDir(async (runsDir) => {
        const result = await execute(tinyPlan({ rewards: rewards("skip-group"), steps: 2 }), {
          runsDir,
          log: () => {},
        });
        for (const m of result.metrics) {
          assert.equal(m.skippedGroups, 1);
          assert.equal(m.loss, 0);
          assert.equal(m.gradNorm, 0);
        }
      });
    });
    await t.step("fail: the run stops with one line; what was written stays whole", async () => {
      await withTempDir(async (runsDir) => {
        const tensors = tf.memory().numTensors;
        await assert.rejects(
          () =>
            execute(tinyPlan({ rewards: rewards("fail"), steps: 2 }), { runsDir, log: () => {} }),
          (e: Error) =>
            e instanceof RewardError && !e.message.includes("\n") &&
            e.message.startsWith("reward 'short' failed on 16 of 16 samples: http://127.0.0.1:") &&
            e.message.includes("status 503"),
        );
        const [dir] = (await Array.fromAsync(Deno.readDir(runsDir))).filter((e) =>
          e.name !== ".cache"
        );
        const lines = await readJsonl(`${runsDir}/${dir!.name}/metrics.jsonl`);
        assert.deepEqual(lines, [{ step: 0, evalAccuracy: lines[0]!.evalAccuracy }]);
        assert.equal(tf.memory().numTensors, tensors, "the failed run left tensors behind");
      });
    });
  } finally {
    await server.shutdown();
  }
});

Deno.test("execute() evaluates the split and metric the eval section names, not the reward", async () => {
  await withTempDir(async (runsDir) => {
    const log: string[] = [];
    // The reward is shaped (a length penalty only); accuracy still counts exact answers.
    const plan = tinyPlan({
      rewards: [{ source: { kind: "overlongPenalty", buffer: 2 } }],
      eval: { every: 2, split: "train", limit: 12, metric: { kind: "numericAnswer" } },
      steps: 2,
    });
    assert.equal(plan.schedule.evalSplit, "train");
    const result = await execute(plan, { runsDir, log: (l) => log.push(l) });
    assert.ok(
      log.some((l) => /^eval step 0 · accuracy \d+\.\d% \(\d+\/12\)$/.test(l)),
      log.join("\n"),
    );
    assert.ok(result.metrics.every((m) => m.rewardMean <= 0), "a penalty, never positive");
    assert.ok(result.accuracyBefore !== null && result.accuracyBefore >= 0);
  });
});

Deno.test("execute() scores with a sandboxed TypeScript reward, and stops in one line when it is refused", async () => {
  await withTempDir(async (dir) => {
    await Deno.writeTextFile(
      `${dir}/rewards.ts`,
      [
        'import type { RewardFn } from "' +
        new URL("../../../runtime/rl/rewards/types.ts", import.meta.url).href + '";',
        "type Row = { a: number; b: number };",
        "export const closeness: RewardFn<Row> = ({ completion, row }) =>",
        "  completion === String(row.a + row.b) ? 1 : 0;",
        "export const snoop: RewardFn<Row> = async () => (await Deno.readTextFile('/etc/hostname')).length;",
        "",
      ].join("\n"),
    );
    const base = new URL(`file://${dir}/recipe.json`);
    const plan = (exportName: string) =>
      tinyPlan({
        rewards: [{
          source: { kind: "fn", module: "./rewards.ts", export: exportName },
          name: exportName,
        }],
        eval: { every: 2, metric: { kind: "numericAnswer" } },
        steps: 1,
      });
    const result = await execute(plan("closeness"), {
      runsDir: `${dir}/runs`,
      baseUrl: base,
      log: () => {},
    });
    assert.deepEqual(result.metrics[0]!.rewardErrors, {});
    await assert.rejects(
      () => execute(plan("snoop"), { runsDir: `${dir}/runs`, baseUrl: base, log: () => {} }),
      (e: Error) =>
        e instanceof RewardError &&
        /^reward 'snoop' failed on 16 of 16 samples: .*permission denied: Requires read access/
          .test(e.message),
    );
  });
});

Deno.test("execute() scores with a reward model checkpoint", async () => {
  await useBackend("wasm");
  await withTempDir(async (dir) => {
    const config = {
      vocab: 15,
      dModel: 16,
      layers: 1,
      heads: 2,
      kvHeads: 2,
      headDim: 8,
      ffnDim: 32,
      contextLength: 16,
      tiedEmbeddings: true,
      ropeTheta: 10_000,
      normEps: 1e-5,
    };
    const params: Record<string, tf.Tensor> = initParams(config, new Rng(3));
    params[SCORE_WEIGHT] = tf.ones([1, 16]);
    await saveRewardModel(`${dir}/rm`, params, config, "0123456789+=");
    tf.dispose(Object.values(params));
    const plan = tinyPlan({
      rewards: [
        { source: { kind: "numericAnswer" }, success: true },
        { source: { kind: "rewardModel", checkpoint: "rm" }, weight: 0.1, name: "rm" },
      ],
      steps: 1,
    });
    const result = await execute(plan, {
      runsDir: `${dir}/runs`,
      baseUrl: new URL(`file://${dir}/`),
      log: () => {},
    });
    const rm = (result.metrics[0]!.rewards as Record<string, { mean: number; std: number }>).rm!;
    assert.ok(Number.isFinite(rm.mean) && rm.mean !== 0 && rm.std > 0, JSON.stringify(rm));
  });
});

Deno.test("execute() tracks train accuracy and KL to the initial policy when asked", async () => {
  await withTempDir(async (runsDir) => {
    for (const reference of ["initial", "rollout"] as const) {
      const result = await execute(tinyPlan({ reference, steps: 2 }), {
        runsDir,
        log: () => {},
        track: { trainAccuracy: true, klInitial: true },
      });
      const [first, second] = result.metrics;
      assert.equal(typeof second!.trainAccuracy, "number");
      assert.equal(first!.trainAccuracy, undefined, "evaluated at steps 2 and 5 only");
      // Step 1 samples from the initial policy itself; by step 2 it has moved.
      assert.ok(Math.abs(first!.klInitial!) < 1e-5, `${reference}: ${first!.klInitial}`);
      assert.ok(second!.klInitial! > 0, `${reference}: ${second!.klInitial}`);
      assert.ok(first!.entropy > 0 && first!.entropy < Math.log(15) + 1e-6);
      const lines = await readJsonl(`${result.dir}/metrics.jsonl`);
      assert.equal(typeof lines[0]!.trainAccuracy, "number");
    }
  });
});

Deno.test("execute() trains with a user's objective module, and names a bad one in one line", async () => {
  await withTempDir(async (runsDir) => {
    const module = new URL("../../../recipes/objectives/reinforce.ts", import.meta.url).href;
    const custom = (exportName: string) =>
      tinyPlan({
        reference: "none",
        objective: { kind: "custom", module, export: exportName, reads: { reference: false } },
        steps: 2,
      });
    const result = await execute(custom("reinforce"), { runsDir, log: () => {} });
    assert.ok(result.metrics.every((m) => Number.isFinite(m.loss)));
    assert.deepEqual(Object.keys(result.metrics[0]!.objective), ["advantageAbs"]);
    await assert.rejects(
      () => execute(custom("nothing"), { runsDir, log: () => {} }),
      (e: Error) =>
        e instanceof RunSetupError &&
        /^Cannot use objective .*reinforce\.ts#nothing: expected an Objective/.test(e.message),
    );
  });
});

Deno.test("execute() reads the log-prob passes from the plan, never its stage names", async () => {
  await withTempDir(async (runsDir) => {
    // Stage names are for people: renamed, the run still makes the old log-probs pass.
    const plan = tinyPlan({ reference: "rollout", steps: 3 });
    const renamed = { ...plan, stages: plan.stages.map((s) => ({ ...s, name: `(${s.name})` })) };
    const result = await execute(renamed, { runsDir, log: () => {} });
    const losses = result.metrics.map((m) => m.loss);
    losses.forEach((loss, i) => {
      assert.ok(
        Math.abs(loss - RECORDED_ROLLOUT_LOSSES[i]!) < 1e-4,
        `step ${i + 1}: loss ${loss}, recorded ${RECORDED_ROLLOUT_LOSSES[i]} (all: ${losses})`,
      );
    });
  });
});

/**
 * The trainer's memory as a long run's report is rebuilt: a synthetic run directory grows by
 * `--steps` metrics lines (two sampled groups every 10 steps), and `report.html` is rewritten every
 * `--every` steps, as a run with `checkpoint.every` does; the process's resident set is printed
 * after each rewrite. Not a test: a measurement, recorded in bench/RESULTS.md.
 *
 *   deno run --allow-read --allow-write --allow-env bench/report_memory.ts --steps 6000 --every 100
 *   deno run … bench/report_memory.ts --module path/to/another/analysis/report/mod.ts
 *
 * `--module` measures another version of the report (e.g. one checked out from an older commit).
 *
 * @module
 */

import { parseArgs } from "node:util";

const { values } = parseArgs({
  options: {
    steps: { type: "string", default: "6000" },
    every: { type: "string", default: "100" },
    module: { type: "string", default: new URL("../analysis/report/mod.ts", import.meta.url).href },
  },
});
const steps = Number(values.steps);
const every = Number(values.every);
const moduleUrl = values.module!.includes("://")
  ? values.module!
  : new URL(values.module!, `file://${Deno.cwd()}/`).href;
const { writeReport } = await import(moduleUrl) as {
  writeReport: (dir: string) => Promise<string>;
};

/** A metrics line like a GRPO run's on two reward sources. */
function metricsLine(step: number): Record<string, unknown> {
  const t = step / steps;
  const correct = 0.3 + 0.4 * t + 0.05 * Math.sin(step);
  return {
    step,
    rewardMean: 0.7 * correct + 0.24,
    rewardStd: 0.3,
    rewards: { correct: { mean: correct, std: 0.4 }, format: { mean: 0.8, std: 0.2 } },
    rewardErrors: {},
    successRate: correct,
    zeroStdGroups: 0.5 - 0.3 * t,
    kl: 0.002 * Math.sqrt(step),
    entropy: 1.2 - 0.4 * t,
    completionLength: 12 - 4 * t,
    truncated: 0.05,
    loss: 0.1 * Math.cos(step),
    gradNorm: 0.8 + 0.5 * Math.sin(step),
    gradNormClipped: 0.8,
    lr: 3e-4,
    sampleSeconds: 0.2,
    stepSeconds: 0.5,
    tokensPerSecond: 800,
    skippedUpdates: 0,
    ...(step % 10 === 0 ? { evalAccuracy: 0.6 + 0.2 * t } : {}),
  };
}

/** Two groups of eight completions, as `log.samplesEvery` writes them. */
function sampleLines(step: number): string {
  return [0, 1].map((group) =>
    JSON.stringify({
      step,
      group,
      prompt: `${step % 90 + 10}+${group + 20}=`,
      answer: String(step % 90 + 30 + group),
      completions: Array.from({ length: 8 }, (_, i) => ({
        text: `${step % 90 + 30 + group + i - 1}`,
        reward: i === 1 ? 1 : 0,
        rewards: { correct: i === 1 ? 1 : 0, format: 1 },
        advantage: i === 1 ? 1.5 : -0.2,
        length: 3,
        truncated: false,
      })),
    }) + "\n"
  ).join("");
}

const dir = await Deno.makeTempDir({ prefix: "giftwrap_report_memory_" });
try {
  await Deno.writeTextFile(
    `${dir}/plan.json`,
    JSON.stringify({
      name: "report-memory",
      seed: 1,
      rewards: [{ name: "correct" }, { name: "format" }],
      objective: { kind: "grpo" },
      optimizer: { clipGradNorm: 1 },
      schedule: { steps },
    }),
  );
  await Deno.writeTextFile(
    `${dir}/metrics.jsonl`,
    JSON.stringify({ step: 0, evalAccuracy: 0.6 }) + "\n",
  );
  await Deno.writeTextFile(`${dir}/samples.jsonl`, "");
  const mib = (bytes: number) => (bytes / 2 ** 20).toFixed(0);
  console.log(`report module: ${moduleUrl}`);
  console.log("| steps | RSS MiB | heap used MiB | report ms |");
  console.log("| ----: | ------: | ------------: | --------: |");
  for (let step = 1; step <= steps; step++) {
    await Deno.writeTextFile(`${dir}/metrics.jsonl`, JSON.stringify(metricsLine(step)) + "\n", {
      append: true,
    });
    if (step % 10 === 0) {
      await Deno.writeTextFile(`${dir}/samples.jsonl`, sampleLines(step), { append: true });
    }
    if (step % every !== 0) continue;
    const started = performance.now();
    await writeReport(dir);
    const ms = performance.now() - started;
    // With --v8-flags=--expose-gc: the heap that stays live between reports, not garbage.
    (globalThis as { gc?: () => void }).gc?.();
    const memory = Deno.memoryUsage();
    if (step % (every * 10) === 0 || step === every) {
      console.log(`| ${step} | ${mib(memory.rss)} | ${mib(memory.heapUsed)} | ${ms.toFixed(0)} |`);
    }
  }
} finally {
  await Deno.remove(dir, { recursive: true });
}

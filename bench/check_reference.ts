/**
 * Sanity check of bench/torch_ref.py (not a test): the comparison in bench/bench.ts is only fair
 * if both sides run the same model. For each configuration, giftwrap's initial weights are
 * exported to the PyTorch worker, then on the same batch:
 *
 * 1) the forward log-probs of the completion tokens [B, C] must agree to `--tolerance` (1e-4);
 * 2) `--steps` (3) train steps (GIFT, clipping, AdamW) are taken on both, and the loss of each
 *    step and the log-probs after them are compared (reported; AdamW's sign-like first steps
 *    amplify float32 noise, so these are expected to agree less tightly). With LoRA both train
 *    giftwrap's adapters (exported with the weights).
 *
 *   deno run --allow-read --allow-write --allow-run --allow-env --allow-sys bench/check_reference.ts
 *   … bench/check_reference.ts --configs front-door --backend cpu
 *   … bench/check_reference.ts --configs qwen-0.5b-lora --steps 1   # minutes a step
 *   GIFTWRAP_BLAS=0 deno run … bench/check_reference.ts   # giftwrap's matmuls without OpenBLAS
 *
 * Exits 1 when a forward difference is above the tolerance.
 *
 * @module
 */

import { parseArgs } from "node:util";
import { autoBackend, benchConfig, CONFIG_NAMES, type ConfigName } from "./_configs.ts";
import { startGiftwrapWorker, startTorchWorker, type WorkerProcess } from "./_protocol.ts";
import type { BackendName } from "../runtime/engine/backend.ts";

/** Largest |a_i − b_i|. */
function maxDiff(a: number[], b: number[]): number {
  if (a.length !== b.length) throw new Error(`Cannot compare ${a.length} values with ${b.length}`);
  return a.reduce((m, x, i) => Math.max(m, Math.abs(x - b[i]!)), 0);
}

interface CheckResult {
  config: string;
  /** giftwrap's backend, as it describes it. */
  backend: string;
  forward: number;
  losses: [number, number][];
  /** Max |Δ| of the log-probs after the trajectory; null when giftwrap could not train. */
  after: number | null;
  /** Why giftwrap could not train (the wasm heap is capped at 4 GiB). */
  trainError?: string;
}

async function check(
  name: ConfigName,
  backend: BackendName,
  dir: string,
  steps: number,
): Promise<CheckResult> {
  const { setup } = benchConfig(name);
  const weights = `${dir}/${name}.f32`;
  const workers: WorkerProcess[] = [];
  try {
    const giftwrap = startGiftwrapWorker();
    workers.push(giftwrap);
    const described = String(
      (await giftwrap.request({ cmd: "setup", config: { ...setup, backend } })).backend,
    );
    await giftwrap.request({ cmd: "export", path: weights });
    const torch = startTorchWorker(1);
    workers.push(torch);
    await torch.request({ cmd: "setup", config: { ...setup, weights } });
    const logp = async (w: WorkerProcess) =>
      (await w.request({ cmd: "logprobs" })).logp as number[];

    // 1) forward log-probs with identical weights
    const forward = maxDiff(await logp(giftwrap), await logp(torch));
    // 2) a short trajectory: loss of each step, log-probs after the last
    const losses: [number, number][] = [];
    for (let i = 0; i < steps; i++) {
      let g: number;
      try {
        g = (await giftwrap.request({ cmd: "train" })).loss as number;
      } catch (e) {
        const trainError = e instanceof Error ? e.message : String(e);
        return { config: name, backend: described, forward, losses, after: null, trainError };
      }
      const t = (await torch.request({ cmd: "train" })).loss as number;
      losses.push([g, t]);
    }
    const after = maxDiff(await logp(giftwrap), await logp(torch));
    return { config: name, backend: described, forward, losses, after };
  } finally {
    for (const w of workers) await w.close();
  }
}

async function main(): Promise<void> {
  const { values } = parseArgs({
    args: Deno.args,
    options: {
      configs: { type: "string", default: CONFIG_NAMES.join(",") },
      backend: { type: "string" },
      tolerance: { type: "string", default: "1e-4" },
      steps: { type: "string", default: "3" },
    },
  });
  const configs = values.configs.split(",") as ConfigName[];
  for (const c of configs) {
    if (!CONFIG_NAMES.includes(c)) {
      throw new Error(`Cannot check '${c}': expected one of ${CONFIG_NAMES.join(", ")}`);
    }
  }
  const backend = (values.backend ?? autoBackend()) as BackendName;
  const tolerance = Number(values.tolerance);
  const steps = Number(values.steps);
  if (!Number.isInteger(steps) || steps < 0) {
    throw new Error(
      `Cannot check as '--steps' must be an integer >= 0: current value is ${values.steps}`,
    );
  }
  const dir = await Deno.makeTempDir({ prefix: "giftwrap-check-" });
  let ok = true;
  try {
    console.log(`giftwrap vs bench/torch_ref.py, identical weights and batch\n`);
    console.log(
      "| config | giftwrap backend | forward log-probs, max abs diff | " +
        `loss of ${steps} steps (giftwrap / PyTorch) | log-probs after, max abs diff |`,
    );
    console.log("|---|---|--:|---|--:|");
    for (const name of configs) {
      const r = await check(name, backend, dir, steps);
      const losses = r.trainError
        ? `giftwrap cannot train: ${r.trainError}`
        : r.losses.map(([g, t]) => `${g.toFixed(6)} / ${t.toFixed(6)}`).join(", ");
      const after = r.after === null ? "—" : r.after.toExponential(2);
      const forward = r.forward.toExponential(2);
      console.log(`| ${r.config} | ${r.backend} | ${forward} | ${losses} | ${after} |`);
      if (!(r.forward <= tolerance)) ok = false;
    }
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
  console.log(
    ok ? `\nok: every forward difference is within ${tolerance}` : `\nFAILED: above ${tolerance}`,
  );
  if (!ok) Deno.exit(1);
}

await main();

/**
 * Where the time goes: one train step and one sampling run of a configuration, after warm-up,
 * under giftwrap's `tf.profile` and PyTorch's `torch.profiler`, as time by kernel (op). Same
 * workers, weights and batch as bench/bench.ts.
 *
 *   deno run --allow-read --allow-write --allow-run --allow-env --allow-sys bench/profile.ts
 *   … bench/profile.ts --config large-b8 --backend wasm --top 8 --no-blas
 *   … bench/profile.ts --config smollm-135m --warmup 1 --what sample
 *   … bench/profile.ts --config qwen-0.5b-lora --warmup 0 --no-peer   # giftwrap's side alone
 *
 * On wasm and cpu with OpenBLAS the sampler runs outside tfjs (`kernels/decode.ts`): its profile is
 * the decoder's own timers, by part of its step.
 *
 * Profiling slows both sides (tfjs reads every kernel's output to check for NaN), so the totals
 * here are above the bench's; compare shares, not times, with bench/RESULTS.md.
 *
 * @module
 */

import { cpus } from "node:os";
import { parseArgs } from "node:util";
import { autoBackend, benchConfig, CONFIG_NAMES, type ConfigName } from "./_configs.ts";
import {
  type Answer,
  DEBIAN_PYTHON,
  GIFTWRAP_WORKER,
  openblasCore,
  startGiftwrapWorker,
  startTorchWorker,
} from "./_protocol.ts";

interface Kernel {
  name: string;
  ms: number;
  calls: number;
}

function report(side: string, what: string, a: Answer): string {
  const kernels = a.kernels as Kernel[];
  const kernelMs = a.kernelMs as number;
  const table = (rows: Kernel[], total: number) => [
    "| kernel | ms | share of kernel time | calls |",
    "|---|--:|--:|--:|",
    ...rows.map((k) =>
      `| ${k.name} | ${k.ms.toFixed(1)} | ${(100 * k.ms / total).toFixed(0)}% | ${k.calls} |`
    ),
  ];
  const lines = [
    `${side} · ${what}: ${(a.ms as number).toFixed(1)} ms wall${
      a.cpuMs ? ` (${(a.cpuMs as number).toFixed(0)} ms of CPU)` : ""
    }, ${kernelMs.toFixed(1)} ms in ` +
    `${a.kernelCalls} kernel calls${
      a.peakBytes ? `, peak tensors ${((a.peakBytes as number) / 2 ** 20).toFixed(0)} MiB` : ""
    }`,
    ...table(kernels, kernelMs),
  ];
  // the OpenBLAS decoder runs outside tfjs: its own timers, by part of its step
  const decoder = a.decoder as Kernel[] | undefined;
  if (decoder) {
    const total = decoder.reduce((sum, k) => sum + k.ms, 0);
    lines.push(
      "",
      `${side} · ${what}, the OpenBLAS decoder: ${total.toFixed(1)} ms of the ` +
        `${(a.ms as number).toFixed(1)} ms wall (the rest: drawing tokens, their entropy, set-up)`,
      ...table(decoder, total).map((line) => line.replace("share of kernel time", "share")),
    );
  }
  return lines.join("\n");
}

/** `work` after 500 ms, once the other worker's spinning threads sleep (see bench.ts `pause`). */
async function rested(work: () => Promise<Answer>): Promise<Answer> {
  await new Promise((resolve) => setTimeout(resolve, 500));
  return await work();
}

/**
 * Profiles with the command-line flags `args`; `worker` is the script that runs giftwrap's worker
 * (bench/gpu.ts passes its bundle's).
 */
export async function profileMain(
  args: string[],
  worker: readonly string[] = GIFTWRAP_WORKER,
): Promise<void> {
  const { values } = parseArgs({
    args,
    options: {
      config: { type: "string", default: "front-door" },
      backend: { type: "string" },
      threads: { type: "string", default: "1" },
      top: { type: "string", default: "10" },
      warmup: { type: "string", default: "2" },
      what: { type: "string", default: "train,sample" },
      "no-blas": { type: "boolean", default: false },
      "openblas-core": { type: "string", default: "best" },
      "torch-device": { type: "string", default: "cpu" },
      python: { type: "string", default: DEBIAN_PYTHON },
      "no-peer": { type: "boolean", default: false },
    },
  });
  const device = values["torch-device"];
  const name = values.config as ConfigName;
  if (!CONFIG_NAMES.includes(name)) {
    throw new Error(`Cannot profile '${name}': expected one of ${CONFIG_NAMES.join(", ")}`);
  }
  const { setup, giftwrapUnavailable } = benchConfig(name);
  if (giftwrapUnavailable !== undefined) {
    throw new Error(`Cannot profile '${name}': giftwrap does not run it (${giftwrapUnavailable})`);
  }
  const warmup = Number(values.warmup);
  if (!Number.isInteger(warmup) || warmup < 0) {
    throw new Error(
      `Cannot profile as '--warmup' must be an integer >= 0: current value is ${values.warmup}`,
    );
  }
  const parts = values.what.split(",");
  if (parts.some((w) => w !== "train" && w !== "sample")) {
    throw new Error(
      `Cannot profile as '--what' must list some of train, sample: current value is ${values.what}`,
    );
  }
  const backend = values.backend ?? autoBackend();
  const threads = Number(values.threads);
  const top = Number(values.top);
  const info = await new Deno.Command("cat", { args: ["/proc/cpuinfo"] }).output();
  const flags = new Set(
    new TextDecoder().decode(info.stdout).match(/^flags\s*:(.*)$/m)?.[1]?.trim().split(/\s+/),
  );
  const blas = await openblasCore(values["openblas-core"], flags, values.python);
  const dir = await Deno.makeTempDir({ prefix: "giftwrap-profile-" });
  const giftwrap = startGiftwrapWorker({
    ...blas.env,
    ...(values["no-blas"] ? { GIFTWRAP_BLAS: "0" } : {}),
  }, worker);
  const torch = values["no-peer"] ? null : startTorchWorker(threads, blas.env, values.python);
  try {
    const weights = `${dir}/${name}.f32`;
    const g = await giftwrap.request({ cmd: "setup", config: { ...setup, backend } });
    if (torch) await giftwrap.request({ cmd: "export", path: weights });
    const t = torch
      ? await torch.request({ cmd: "setup", config: { ...setup, weights, threads, device } })
      : null;
    console.log(
      `${name} · giftwrap ${g.backend}${g.update ? ` (${g.update})` : ""} · PyTorch ${
        t === null
          ? "not run (--no-peer)"
          : `${t.torch}, ${device === "cuda" ? `on CUDA (${t.device})` : `${t.threads} thread(s)`}`
      } · ` +
        `${blas.note} · ${cpus().length} cores\n`,
    );
    for (const what of parts as ("train" | "sample")[]) {
      for (let i = 0; i < warmup; i++) {
        await giftwrap.request({ cmd: what });
        await torch?.request({ cmd: what });
      }
      const gp = await rested(() => giftwrap.request({ cmd: "profile", what, top }));
      // printed before PyTorch's profile starts: at real sizes that one takes minutes
      console.log(`${report("giftwrap", what, gp)}\n`);
      if (!torch) continue;
      const tp = await rested(() =>
        torch.request({ cmd: "profile", what, top, newTokens: gp.steps })
      );
      console.log(`${report("PyTorch", what, tp)}\n`);
    }
  } finally {
    await giftwrap.close();
    await torch?.close();
    await Deno.remove(dir, { recursive: true });
  }
}

if (import.meta.main) await profileMain(Deno.args);

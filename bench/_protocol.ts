/**
 * The worker protocol shared by bench/bench.ts, bench/check_reference.ts and the two workers
 * (bench/_giftwrap_worker.ts, bench/torch_ref.py): one JSON command per line on the worker's
 * stdin, one JSON answer per line on its stdout. Also the client that starts a worker and talks
 * to it. Loads no TensorFlow.js.
 *
 * @module
 */

import process from "node:process";
import type { ModelConfig } from "../runtime/engine/model/transformer.ts";
import type { AdamWOptions } from "../runtime/engine/optim.ts";
import type { BackendName } from "../runtime/engine/backend.ts";

/** What `{"cmd": "setup"}` carries: the model, the batch, the optimiser. */
export interface WorkerConfig {
  /** The model (runtime/engine/model/transformer.ts's `ModelConfig`). */
  model: ModelConfig;
  shapes: {
    /** B = P·G */
    rows: number;
    /** G */
    groupSize: number;
    promptTokens: number;
    /** C: tokens sampled per row, and completion tokens scored per row in a train step. */
    newTokens: number;
  };
  optimizer: AdamWOptions;
  /** GIFT's options. */
  objective: { betaC: number; stdEpsilon: number };
  /** [B, P + C] token ids, row-major: each group's G rows share their prompt. */
  ids: number[];
  /** [B] rewards. */
  rewards: number[];
  /** The constant reference log-prob of every completion token (a uniform reference policy). */
  refLogp: number;
  seed: number;
  /** The tokenizer's alphabet (giftwrap's sampler decodes the completions). */
  alphabet: string;
  /**
   * LoRA: only rank-`rank` adapters on the projections named in `targets` (`q_proj`, …) train,
   * scaled by alpha / rank; the base weights are frozen. giftwrap draws its adapters from the
   * seed (`initLoraAdapters`) and exports them with the weights; PyTorch loads them.
   */
  lora?: { rank: number; alpha: number; targets: string[] };
  /**
   * giftwrap: split the train step's update into micro-batches of this many rows (whole groups),
   * their gradients accumulated (`runtime/rl/micro_batches.ts`): the same update, one micro-batch's
   * activations alive at a time. PyTorch runs the whole batch at once. @default the whole batch
   */
  microBatchRows?: number;
  /**
   * giftwrap: recompute each transformer block in the backward pass instead of keeping its
   * activations (`tokenLogProbs`'s `gradientCheckpointing`). @default false
   */
  gradientCheckpointing?: boolean;
  /** giftwrap: the tfjs backend. */
  backend?: BackendName;
  /** PyTorch: intra-op threads. */
  threads?: number;
  /** PyTorch: "cpu" (the default) or "cuda". */
  device?: string;
  /** PyTorch: giftwrap's exported weights (float32, manifest at `weights + ".json"`). */
  weights?: string;
}

/** One answer line; `error` set when the command failed. */
export type Answer = Record<string, unknown> & { error?: string };

/** Lines of a byte stream, without their `\n`. */
export async function* readLines(stream: ReadableStream<Uint8Array>): AsyncGenerator<string> {
  let pending = "";
  for await (const chunk of stream.pipeThrough(new TextDecoderStream())) {
    pending += chunk;
    let end: number;
    while ((end = pending.indexOf("\n")) >= 0) {
      yield pending.slice(0, end);
      pending = pending.slice(end + 1);
    }
  }
  if (pending.length > 0) yield pending;
}

/** A started worker process. */
export interface WorkerProcess {
  /** For messages: "giftwrap" or "PyTorch". */
  name: string;
  /** Sends one command and waits for its answer; throws the worker's error as an `Error`. */
  request(command: Record<string, unknown>): Promise<Answer>;
  /** Closes its stdin (it exits) and waits for it. */
  close(): Promise<void>;
}

/** Options of {@linkcode startWorker}. */
export interface StartOptions {
  /** Extra environment variables. @default {{}} */
  env?: Record<string, string>;
}

/**
 * Starts `program args…` as a worker, in the repository root. Lines it prints that are not JSON
 * (library warnings) go to stderr, prefixed with its name; its stderr is inherited.
 *
 * @example
 * ```ts
 * const torch = startWorker("PyTorch", "/usr/bin/python3", ["bench/torch_ref.py"]);
 * await torch.request({ cmd: "memory" }); // { peakRssBytes: …, … }
 * await torch.close();
 * ```
 */
export function startWorker(
  name: string,
  program: string,
  args: string[],
  options: StartOptions = {},
): WorkerProcess {
  const child = new Deno.Command(program, {
    args,
    cwd: new URL("..", import.meta.url),
    env: options.env ?? {},
    stdin: "piped",
    stdout: "piped",
    stderr: "inherit",
  }).spawn();
  const writer = child.stdin.getWriter();
  const lines = readLines(child.stdout);
  const encoder = new TextEncoder();
  return {
    name,
    async request(command) {
      await writer.write(encoder.encode(JSON.stringify(command) + "\n"));
      for (;;) {
        const next = await lines.next();
        if (next.done) throw new Error(`The ${name} worker exited during '${command.cmd}'`);
        if (!next.value.startsWith("{")) {
          console.error(`[${name}] ${next.value}`);
          continue;
        }
        const answer = JSON.parse(next.value) as Answer;
        if (answer.error !== undefined) {
          throw new Error(`The ${name} worker failed '${command.cmd}': ${answer.error}`);
        }
        return answer;
      }
    },
    async close() {
      await writer.close().catch(() => {});
      for await (const _ of lines); // drain, so the child never blocks on a full pipe
      await child.status;
    },
  };
}

/**
 * Peak and current resident set of this process, in bytes. The peak is getrusage's `ru_maxrss`,
 * the counter /proc/self/status shows as VmHWM (Deno reads /proc/self only under --allow-all).
 */
export function residentBytes(): { peakRssBytes: number; rssBytes: number } {
  return { peakRssBytes: process.resourceUsage().maxRSS * 1024, rssBytes: Deno.memoryUsage().rss };
}

/** The script (and its arguments) that runs giftwrap's worker: the source file by default. */
export const GIFTWRAP_WORKER = ["bench/_giftwrap_worker.ts"];

/**
 * Starts giftwrap's worker under this Deno, with `deno task run`'s permissions (FFI included:
 * giftwrap may run matrix products through OpenBLAS, which `GIFTWRAP_BLAS=0` in `env` turns off).
 * `script` is bench/_giftwrap_worker.ts, or for bench/gpu.sh the one-file bundle with the
 * argument that selects its worker.
 */
export function startGiftwrapWorker(
  env: Record<string, string> = {},
  script: readonly string[] = GIFTWRAP_WORKER,
): WorkerProcess {
  const args = [
    "run",
    "--allow-read",
    "--allow-write",
    "--allow-env",
    "--allow-sys",
    "--allow-ffi",
  ];
  return startWorker("giftwrap", Deno.execPath(), [...args, ...script], { env });
}

/** The interpreter with torch on this machine: Debian's, since its torch loads in no other. */
export const DEBIAN_PYTHON = "/usr/bin/python3";

/**
 * Starts bench/torch_ref.py under `python` (Debian's by default), with OpenMP and OpenBLAS
 * limited to `threads` threads before torch loads.
 */
export function startTorchWorker(
  threads: number,
  env: Record<string, string> = {},
  python = DEBIAN_PYTHON,
): WorkerProcess {
  const limits = { OMP_NUM_THREADS: String(threads), OPENBLAS_NUM_THREADS: String(threads) };
  return startWorker("PyTorch", python, ["bench/torch_ref.py"], {
    env: { ...env, ...limits },
  });
}

/** CPUs that OpenBLAS 0.3.21 falls back to when it does not know a CPU model (SSE3-era kernels). */
const FALLBACK_CORES = ["Prescott", "Core2", "Penryn", "Dunnington", "Nehalem", "Katmai"];

/**
 * The `OPENBLAS_CORETYPE` both workers get. OpenBLAS 0.3.21 (Debian 12) does not know recent Xeons
 * (family 6, model 207) and falls back to its Prescott kernels, 4-5× slower than its AVX-512 ones
 * on this machine; both sides of the comparison call OpenBLAS (torch for every matmul, giftwrap
 * when it uses OpenBLAS), so both get the same choice.
 *
 * - `"auto"`: OpenBLAS's own detection (nothing set);
 * - `"best"`: its detection, unless that fell back to SSE3-era kernels on a CPU with AVX-512
 *   (`SkylakeX`) or AVX2 (`Haswell`);
 * - anything else: that core type.
 */
export async function openblasCore(
  requested: string,
  cpuFlags: ReadonlySet<string>,
  python = DEBIAN_PYTHON,
): Promise<{ env: Record<string, string>; note: string }> {
  const probe = await new Deno.Command(python, {
    args: [
      "-c",
      'import ctypes; lib = ctypes.CDLL("libopenblas.so.0"); ' +
      "lib.openblas_get_corename.restype = ctypes.c_char_p; " +
      "print(lib.openblas_get_corename().decode())",
    ],
    stderr: "null",
  }).output().catch(() => null); // no such interpreter: no OpenBLAS to tune
  const detected = probe ? new TextDecoder().decode(probe.stdout).trim() || "unknown" : "unknown";
  if (detected === "unknown") return { env: {}, note: "OpenBLAS not found" };
  if (requested === "auto") return { env: {}, note: `OpenBLAS core ${detected} (its own choice)` };
  let chosen = requested;
  if (requested === "best") {
    const fallback = FALLBACK_CORES.includes(detected);
    chosen = !fallback
      ? detected
      : cpuFlags.has("avx512f")
      ? "SkylakeX"
      : cpuFlags.has("avx2")
      ? "Haswell"
      : detected;
  }
  if (chosen === detected) return { env: {}, note: `OpenBLAS core ${detected}` };
  return {
    env: { OPENBLAS_CORETYPE: chosen },
    note: `OpenBLAS core ${chosen} (OPENBLAS_CORETYPE; OpenBLAS itself picks ${detected} here)`,
  };
}

/**
 * `deno task bench`: giftwrap against its PyTorch peer (bench/torch_ref.py), same model, same
 * batch, same weights (giftwrap's initial weights are exported to the PyTorch worker).
 *
 * For each configuration (bench/_configs.ts) and giftwrap backend, one giftwrap worker and one
 * PyTorch worker are started and set up, then:
 *
 * 1) train: `--warmup` steps each, then `--runs` timed steps, alternating (giftwrap, PyTorch,
 *    giftwrap, …) so that machine noise hits both. A step is one optimiser update over the whole
 *    batch: forward, completion log-probs, GIFT loss, backward, clipping, AdamW. When a giftwrap
 *    step takes more than 30 s (the large model on a slow backend), the cell gets 1 warm-up step
 *    and at most 3 timed runs, and the table says so.
 * 2) sample: the same alternation, after at least 250 ms of giftwrap sampling as warm-up (V8
 *    optimises its loops only once they have run a while); each run samples full batches of B
 *    rows with a KV cache, back to back for at least 100 ms (a front-door batch takes ~15 ms, too
 *    short to time alone after a pause). Both samplers prefill each distinct prompt once (a group's rows share
 *    it) and stop computing a row once it has drawn `<eos>`; tokens/s = completion tokens drawn (`<eos>` included) / wall time.
 *    Each side draws its own tokens from the same model, so their lengths agree on average (the
 *    notes give both).
 * 3) on webgpu, counts: a settled train step and sampling call (one batch) of giftwrap's (more of
 *    each until one repeats the previous one's lack of new bind groups, uniform writes and
 *    pipelines: the dispatch caches settle over a process's first ~10 steps), under the WebGPU
 *    counters (runtime/engine/webgpu_counters.ts): kernel dispatches, queue
 *    submits, compute passes, uploads (of them, scalars of at most 4 bytes) and their bytes, reads
 *    back to the CPU, bind groups and pipelines created, and the host time per dispatch; a second
 *    table, for webgpu cells only. They are warm (the timed runs compiled every kernel).
 * 4) memory: each worker's peak resident set (VmHWM), read after everything else.
 *
 * Times are measured inside each worker (no pipe or JSON in them). Between two commands the bench
 * waits `--pause-ms` (500), so that threads still spinning after one worker's work (OpenBLAS's,
 * OpenMP's) are asleep before the other's starts. The table goes to stdout and, unless
 * `--no-append`, to bench/RESULTS.md with the date, machine and versions.
 *
 * Flags: `--configs` (front-door,large,large-b8), `--backends` (the one `auto` picks), `--runs` (5),
 * `--warmup` (2), `--threads` (PyTorch's, 1), `--no-blas` (giftwrap without OpenBLAS),
 * `--openblas-core` (best; see `openblasCore`), `--pause-ms` (500), `--no-append`,
 * `--torch-device` (cpu, or cuda), `--python` (the interpreter with torch; Debian's by default),
 * `--no-peer` (giftwrap alone, no PyTorch: to iterate on giftwrap at sizes where PyTorch takes
 * minutes a step; nothing is appended); `--help` prints them.
 *
 *   deno task bench
 *   deno task bench --configs front-door --backends wasm,cpu --runs 7 --threads 2 --no-append
 *   bench/gpu.sh   # webgpu against PyTorch CUDA, on a GPU machine (see bench/README.md)
 *
 * @module
 */

import os from "node:os";
import { parseArgs } from "node:util";
import {
  autoBackend,
  type BenchConfig,
  benchConfig,
  CONFIG_NAMES,
  type ConfigName,
} from "./_configs.ts";
import {
  type Answer,
  DEBIAN_PYTHON,
  GIFTWRAP_WORKER,
  openblasCore,
  startGiftwrapWorker,
  startTorchWorker,
  type WorkerProcess,
} from "./_protocol.ts";
import type { BackendName } from "../runtime/engine/backend.ts";
import type { WebgpuCounts } from "../runtime/engine/webgpu_counters.ts";

/**
 * A counted train step or sampling call (the worker's `counts`): its counts, the calls run before
 * it until a call repeated the previous one's lack of bind groups, uniform writes and pipelines,
 * and whether one did (else it is the last call the worker allows).
 */
interface SettledCounts {
  counts: WebgpuCounts;
  warmUp: number;
  settled: boolean;
}
import { FRAGMENTATION, type MemoryInputs, processPeakBytes } from "../dsl/memory.ts";

/** A giftwrap train step slower than this gets fewer runs (see the module doc). */
const SLOW_STEP_MS = 30_000;
const SLOW_RUNS = 3;
/**
 * Sampling warms up for at least this much of giftwrap's sampling time (and `--warmup` runs), both
 * sides alike. V8 optimises the sampler's loops only after they have run a while: the front
 * door's first ~10 sampling calls (~15 ms each) ran up to 2× slower than the ones after, while a
 * large model's first call is long enough on its own.
 */
const SAMPLE_WARMUP_MS = 250;
/**
 * A timed sampling run samples the batch back to back for at least this long (once at least),
 * both sides alike, and counts all of it. One front-door batch takes ~15 ms, and the first
 * milliseconds after a pause ran up to 1.5× slower on this machine, in C as in JavaScript
 * (OpenBLAS's products included): timing one batch measured the pause more than the sampler.
 */
const SAMPLE_MIN_MS = 100;
const BENCH_CONFIGS: ConfigName[] = ["front-door", "large", "large-b8"];
const BACKENDS: BackendName[] = ["wasm", "cpu", "webgpu", "tensorflow"];
const RESULTS = new URL("./RESULTS.md", import.meta.url);

/** Options of one bench run (the command-line flags). */
interface Options {
  runs: number;
  warmup: number;
  configs: ConfigName[];
  backends: BackendName[];
  threads: number;
  /** Whether giftwrap may use OpenBLAS for matrix products (`--no-blas` sets GIFTWRAP_BLAS=0). */
  blas: boolean;
  /** OpenBLAS kernels for both workers: "best", "auto" or a core type (see `openblasCore`). */
  openblasCore: string;
  /** Milliseconds between two commands (see `pause`). */
  pauseMs: number;
  append: boolean;
  /** PyTorch's device: "cpu" or "cuda". */
  torchDevice: "cpu" | "cuda";
  /** The Python interpreter whose torch runs bench/torch_ref.py. */
  python: string;
  /** The script that runs giftwrap's worker (see `startGiftwrapWorker`). */
  worker: readonly string[];
  /** Whether PyTorch runs too (`--no-peer`: giftwrap alone, no ratios, nothing appended). */
  peer: boolean;
}

/** What one configuration × backend measured. */
interface Cell {
  config: ConfigName;
  backend: BackendName;
  runs: number;
  /** Train step times, ms, in run order. */
  trainMs: { giftwrap: number[]; torch: number[] };
  /** Sampling tokens/s, in run order. */
  tokensPerSecond: { giftwrap: number[]; torch: number[] };
  /** Model calls per sampling run (giftwrap's; PyTorch mirrored them). */
  sampleSteps: number[];
  newTokens: number;
  /** giftwrap's is null when it did not run the configuration (`giftwrapUnavailable`), PyTorch's without a peer. */
  peakRssBytes: { giftwrap: number | null; torch: number | null };
  /** GPU memory at its peak, where a side runs on one (webgpu's buffer pool, CUDA's allocator). */
  peakDeviceBytes: { giftwrap: number | null; torch: number | null };
  /**
   * giftwrap's estimated peak (`processPeakBytes` of the configuration's `estimate`), where the
   * configuration has one.
   */
  estimateBytes: number | null;
  /** giftwrap's live tensors after each timed command. */
  numTensors: number[];
  notes: string[];
  /** Versions and descriptions the workers reported at setup (giftwrap's empty when it did not run). */
  setup: { giftwrap: Answer; torch: Answer };
  /** Why giftwrap did not run this configuration, when it did not: PyTorch ran alone. */
  giftwrapUnavailable?: string;
  /**
   * On webgpu, what one settled train step and one sampling call asked of WebGPU (null where
   * that failed; absent on other backends).
   */
  webgpu?: { train: SettledCounts | null; sample: SettledCounts | null };
}

function median(values: number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  const mid = sorted.length >> 1;
  return sorted.length % 2 === 1 ? sorted[mid]! : (sorted[mid - 1]! + sorted[mid]!) / 2;
}

function spread(values: number[], digits = 1): string {
  if (values.length === 0) return "not run";
  return `median ${median(values).toFixed(digits)} (${Math.min(...values).toFixed(digits)}–${
    Math.max(...values).toFixed(digits)
  })`;
}

/**
 * Waits `--pause-ms` between two workers' commands. Threads that spin after their work (OpenBLAS's
 * and OpenMP's busy-wait before sleeping) would otherwise take cores from the worker that runs
 * next: with both sides on 2 threads, PyTorch's step was up to 20× slower without the pause.
 */
function pause(options: Options): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, options.pauseMs));
}

/** A request's answer, or its error message. */
async function attempt(
  work: () => Promise<Answer>,
): Promise<{ ok: true; answer: Answer } | { ok: false; error: string }> {
  try {
    return { ok: true, answer: await work() };
  } catch (e) {
    return { ok: false, error: e instanceof Error ? e.message : String(e) };
  }
}

/** A giftwrap worker on `backend`, set up with `setup`. */
async function giftwrapWorker(
  setup: BenchConfig["setup"],
  backend: BackendName,
  options: Options,
  env: Record<string, string>,
) {
  const worker = startGiftwrapWorker(
    { ...env, ...(options.blas ? {} : { GIFTWRAP_BLAS: "0" }) },
    options.worker,
  );
  try {
    const answer = await worker.request({ cmd: "setup", config: { ...setup, backend } });
    return { worker, answer };
  } catch (e) {
    await worker.close();
    throw e;
  }
}

async function measure(
  name: ConfigName,
  backend: BackendName,
  options: Options,
  env: Record<string, string>,
  dir: string,
): Promise<Cell> {
  const { setup, giftwrapUnavailable, estimate } = benchConfig(name);
  const label = `${name} · ${backend}`;
  const weights = `${dir}/${name}.f32`;
  const notes: string[] = [];
  const numTensors: number[] = [];
  // 0) setup: giftwrap initialises the weights (from the seed), PyTorch loads them; where giftwrap
  //    cannot run the configuration, PyTorch draws its own from the same distributions, and runs alone
  let giftwrap: WorkerProcess | null = null;
  let gSetup: Answer = {};
  if (giftwrapUnavailable === undefined) {
    ({ worker: giftwrap, answer: gSetup } = await giftwrapWorker(setup, backend, options, env));
  } else {
    notes.push(`${label}: giftwrap not run (${giftwrapUnavailable}); PyTorch timed alone`);
  }
  const torch = options.peer ? startTorchWorker(options.threads, env, options.python) : null;
  try {
    if (torch) await giftwrap?.request({ cmd: "export", path: weights });
    const tSetup = torch
      ? await torch.request({
        cmd: "setup",
        config: {
          ...setup,
          ...(giftwrap ? { weights } : {}),
          threads: options.threads,
          device: options.torchDevice,
        },
      })
      : {};
    console.error(
      `${label}: ${tSetup.params ?? gSetup.params} parameters (${
        tSetup.trainable ?? gSetup.trainable
      } trained), ${giftwrap ? gSetup.backend : "giftwrap not run"}${
        gSetup.update ? ` (${gSetup.update})` : ""
      }, torch ${tSetup.torch ?? "not run"}`,
    );
    if (gSetup.update) notes.push(`${label}: giftwrap's update: ${gSetup.update}`);

    // 1) train: warm-up, then alternating timed runs. A giftwrap failure (the wasm heap is 4 GiB)
    //    is reported, and PyTorch is timed alone.
    let runs = options.runs;
    let warmup = options.warmup;
    let failed: string | null = null;
    const trainMs = { giftwrap: [] as number[], torch: [] as number[] };
    for (let i = 0; i < warmup + runs; i++) {
      const timed = i >= warmup;
      let gMs: number | null = null;
      const g = giftwrap;
      if (g !== null && failed === null) {
        await pause(options);
        const result = await attempt(() => g.request({ cmd: "train" }));
        if (!result.ok) {
          failed = result.error;
          notes.push(`${label}: giftwrap's train step failed (${failed}); PyTorch timed alone`);
        } else {
          gMs = result.answer.ms as number;
          if (timed) trainMs.giftwrap.push(gMs);
          if (timed) numTensors.push(result.answer.numTensors as number);
          if (i === 0 && !timed && gMs > SLOW_STEP_MS && runs > SLOW_RUNS) {
            [runs, warmup] = [SLOW_RUNS, 1];
            notes.push(
              `${label}: ${SLOW_RUNS} runs after 1 warm-up (a giftwrap train step took ` +
                `${(gMs / 1000).toFixed(0)} s > ${SLOW_STEP_MS / 1000} s)`,
            );
          }
        }
      }
      let tMs: number | null = null;
      if (torch) {
        await pause(options);
        tMs = (await torch.request({ cmd: "train" })).ms as number;
        if (timed) trainMs.torch.push(tMs);
      }
      console.error(
        `${label}: train ${timed ? `${i - warmup + 1}/${runs}` : "warm-up"}: giftwrap ` +
          `${gMs === null ? (g ? "failed" : "not run") : `${gMs.toFixed(1)} ms`}, PyTorch ${
            tMs === null ? "not run" : `${tMs.toFixed(1)} ms`
          }`,
      );
    }
    if (giftwrap !== null && failed !== null) {
      // a fresh worker for sampling, with the same initial weights
      await giftwrap.close();
      ({ worker: giftwrap, answer: gSetup } = await giftwrapWorker(setup, backend, options, env));
    }

    // 2) sampling: the same alternation. Both samplers prefill each distinct prompt once and stop
    //    computing a row once it has drawn <eos>; tokens/s counts the completion tokens drawn.
    const tokensPerSecond = { giftwrap: [] as number[], torch: [] as number[] };
    const sampleSteps: number[] = [];
    const perRow = { giftwrap: [] as number[], torch: [] as number[] };
    const rate = (a: Answer) => ((a.tokens as number) * 1000) / (a.ms as number);
    let warmups = 0;
    let warmedMs = 0;
    for (let i = 0, timed = 0; timed < runs; i++) {
      let g: Answer | null = null;
      if (giftwrap !== null) {
        await pause(options);
        g = await giftwrap.request({ cmd: "sample", minMs: SAMPLE_MIN_MS });
      }
      let t: Answer | null = null;
      if (torch) {
        await pause(options);
        t = await torch.request({ cmd: "sample", minMs: SAMPLE_MIN_MS });
      }
      if (i < warmup || warmedMs < SAMPLE_WARMUP_MS) {
        warmups++;
        warmedMs += (g ?? t)!.ms as number;
        continue;
      }
      timed++;
      if (t) {
        tokensPerSecond.torch.push(rate(t));
        perRow.torch.push((t.tokens as number) / setup.shapes.rows / (t.calls as number));
      }
      if (g !== null) {
        tokensPerSecond.giftwrap.push(rate(g));
        sampleSteps.push(g.steps as number);
        perRow.giftwrap.push((g.tokens as number) / setup.shapes.rows / (g.calls as number));
        numTensors.push(g.numTensors as number);
      }
      console.error(
        `${label}: sample ${timed}/${runs}: giftwrap ${
          g === null
            ? "not run"
            : `${rate(g).toFixed(0)} tok/s (${g.tokens} tokens in ${g.calls} batches)`
        }, PyTorch ${
          t === null ? "not run" : `${rate(t).toFixed(0)} tok/s (${t.tokens} tokens in ${t.calls})`
        }`,
      );
    }
    const mean = (xs: number[]) => xs.reduce((a, b) => a + b, 0) / xs.length;
    if (warmups > warmup) notes.push(`${label}: ${warmups} sampling warm-up runs each`);
    notes.push(
      `${label}: completion tokens per row drawn (mean of the timed runs; at most ` +
        `${setup.shapes.newTokens}, <eos> included): giftwrap ${
          giftwrap === null ? "not run" : mean(perRow.giftwrap).toFixed(1)
        }, ` +
        `PyTorch ${torch ? mean(perRow.torch).toFixed(1) : "not run"}`,
    );
    if (new Set(numTensors).size > 1) {
      notes.push(`${label}: giftwrap's live tensors were not flat: ${numTensors.join(", ")}`);
    }

    // 3) webgpu: one more train step and one sampling call, counted
    let webgpu: Cell["webgpu"];
    if (giftwrap !== null && backend === "webgpu") {
      const g = giftwrap;
      const count = async (what: "train" | "sample") => {
        const result = await attempt(() => g.request({ cmd: "counts", what }));
        if (result.ok) {
          const { counts, warmUp, settled } = result.answer;
          return {
            counts: counts as WebgpuCounts,
            warmUp: Number(warmUp),
            settled: settled === true,
          };
        }
        notes.push(`${label}: giftwrap's ${what} not counted (${result.error})`);
        return null;
      };
      webgpu = {
        train: failed === null ? await count("train") : null,
        sample: await count("sample"),
      };
    }

    // 4) memory, after everything else
    const gMemory = giftwrap === null ? null : await giftwrap.request({ cmd: "memory" });
    const tMemory = torch ? await torch.request({ cmd: "memory" }) : null;
    if (giftwrap !== null && failed !== null) {
      notes.push(
        `${label}: giftwrap's peak RSS is its sampling worker's (the train worker failed)`,
      );
    }
    if (typeof gMemory?.heapBytes === "number") {
      notes.push(
        `${label}: giftwrap's wasm heap grew to ${mib(gMemory.heapBytes)} (of 4096 MiB at most)`,
      );
    }
    return {
      config: name,
      backend,
      runs,
      trainMs,
      tokensPerSecond,
      sampleSteps,
      newTokens: setup.shapes.newTokens,
      peakRssBytes: {
        giftwrap: gMemory === null ? null : gMemory.peakRssBytes as number,
        torch: tMemory === null ? null : tMemory.peakRssBytes as number,
      },
      peakDeviceBytes: {
        giftwrap: (gMemory?.peakDeviceBytes as number | null | undefined) ?? null,
        torch: (tMemory?.peakDeviceBytes as number | null | undefined) ?? null,
      },
      estimateBytes: estimate === undefined ? null : estimateNote(estimate, backend, label, notes),
      numTensors,
      notes,
      setup: { giftwrap: gSetup, torch: tSetup },
      ...(giftwrapUnavailable === undefined ? {} : { giftwrapUnavailable }),
      ...(webgpu ? { webgpu } : {}),
    };
  } finally {
    await giftwrap?.close();
    await torch?.close();
  }
}

/**
 * giftwrap's estimated peak on `backend` from `estimate` (dsl/memory.ts), with a note of its parts
 * and its inputs; the estimate leaves out the runtime and the heap's fragmentation.
 */
function estimateNote(
  estimate: MemoryInputs,
  backend: BackendName,
  label: string,
  notes: string[],
): number {
  const peak = processPeakBytes(estimate, backend);
  notes.push(
    `${label}: estimated peak ${mib(peak.total)} = the larger of the update (${
      mib(peak.update)
    }) and sampling's tensors (sampling ${mib(peak.sample)} with the decoder's own ` +
      `${
        mib(peak.decoder)
      }, beside the heap where nonzero); the runtime and the heap's fragmentation (up to ` +
      `${FRAGMENTATION}×) not included. Inputs: micro-batches of ${estimate.passRows} rows, ` +
      `activation checkpointing ${estimate.gradientCheckpointing ? "on" : "off"}, ` +
      `${estimate.lora ? `LoRA rank ${estimate.lora.rank}` : "full fine-tuning"}, ` +
      `${estimate.referenceCopy ? "a reference copy" : "no reference copy"} (bench/_configs.ts)`,
  );
  return peak.total;
}

function mib(bytes: number): string {
  return `${(bytes / 2 ** 20).toFixed(0)} MiB`;
}

function ratio(a: number, b: number): string {
  return `${(a / b).toFixed(a / b >= 10 ? 1 : 2)}×`;
}

/** The backend as giftwrap described it, shortened: `wasm` or `wasm + OpenBLAS, 2 threads`. */
function backendLabel(c: Cell): string {
  if (c.giftwrapUnavailable !== undefined) return `${c.backend} (giftwrap not run)`;
  const matmul = String(c.setup.giftwrap.backend).match(/matmul: (.*)$/)?.[1];
  return matmul ? `${c.backend} + ${matmul}` : c.backend;
}

/** The results as a Markdown table; ratios are giftwrap / PyTorch. */
function table(cells: Cell[]): string {
  const lines = [
    "| config | backend | runs | train ms giftwrap | train ms PyTorch | ratio | sample tok/s giftwrap | " +
    "sample tok/s PyTorch | ratio | peak RSS giftwrap | peak RSS PyTorch | ratio | " +
    "giftwrap estimate (RSS / estimate) |",
    "|---|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|",
  ];
  /** A median, or null for no runs. */
  const mid = (xs: number[]) => xs.length > 0 ? median(xs) : null;
  const show = (x: number | null, f: (x: number) => string) => x === null ? "n/a" : f(x);
  const both = (a: number | null, b: number | null) => a !== null && b !== null;
  for (const c of cells) {
    // giftwrap not run (see the notes for why) or no peer: one side's numbers, no ratio
    const ran = c.peakRssBytes.giftwrap !== null;
    const ok = c.trainMs.giftwrap.length > 0;
    const train = [mid(c.trainMs.giftwrap), mid(c.trainMs.torch)] as const;
    const rate = [mid(c.tokensPerSecond.giftwrap), mid(c.tokensPerSecond.torch)] as const;
    // a failed train step leaves giftwrap's peak that of a worker that only sampled: no ratio
    const rss = [ok ? c.peakRssBytes.giftwrap : null, c.peakRssBytes.torch] as const;
    const ms = (x: number) => x.toFixed(1);
    const tps = (x: number) => x.toFixed(0);
    lines.push(
      `| ${c.config} | ${backendLabel(c)} | ${c.runs} | ` +
        `${ran && !ok ? "failed" : show(train[0], ms)} | ${show(train[1], ms)} | ` +
        `${both(...train) ? ratio(train[0]!, train[1]!) : "—"} | ` +
        `${show(rate[0], tps)} | ${show(rate[1], tps)} | ` +
        `${both(...rate) ? ratio(rate[0]!, rate[1]!) : "—"} | ` +
        `${ran && !ok ? `${mib(c.peakRssBytes.giftwrap!)} (sampling only)` : show(rss[0], mib)} | ${
          show(rss[1], mib)
        } | ${both(...rss) ? ratio(rss[0]!, rss[1]!) : "—"} | ${estimateCell(c, ok)} |`,
    );
  }
  return lines.join("\n");
}

/**
 * The webgpu cells' counts as a Markdown table, a train step and a sampling call each (empty
 * without webgpu cells): what runtime/engine/webgpu_counters.ts counts.
 */
function countsTable(cells: Cell[]): string {
  const counted = cells.filter((c) => c.webgpu !== undefined);
  if (counted.length === 0) return "";
  const lines = [
    "| config | giftwrap on webgpu | dispatches | submits | compute passes | uploads (scalar) | " +
    "upload bytes | reads | bind groups | pipelines | host µs / dispatch | ms in submit | " +
    "counted after |",
    "|---|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|",
  ];
  for (const c of counted) {
    const works = [["train step", c.webgpu!.train], ["sampling call", c.webgpu!.sample]] as const;
    for (const [work, counted] of works) {
      if (counted === null) {
        lines.push(`| ${c.config} | ${work} | not counted | | | | | | | | | | |`);
        continue;
      }
      const n = counted.counts;
      const after = `${counted.warmUp} more${counted.settled ? "" : ", not settled"}`;
      lines.push(
        `| ${c.config} | ${work} | ${n.dispatches} | ${n.submits} | ${n.computePasses} | ` +
          `${n.uploads} (${n.scalarUploads}) | ${n.uploadBytes} | ${n.reads} | ${n.bindGroups} | ` +
          `${n.pipelines} | ${
            n.hostUsPerDispatch === null ? "—" : n.hostUsPerDispatch.toFixed(0)
          } | ${n.submitMs.toFixed(0)} | ${after} |`,
      );
    }
  }
  return lines.join("\n");
}

/** The note under the counts table: what its host time is. */
const COUNTS_NOTE = "webgpu counts (runtime/engine/webgpu_counters.ts) of one settled train step " +
  "and one settled sampling call (one batch): after the timed runs, more of each (counted after) " +
  "until one made no bind group, wrote no uniform and compiled no pipeline, right after another " +
  "that made none either (not settled: none did within the worker's limit, and the last is " +
  "shown); uploads are tensor data written from the CPU (scalar: at most 4 bytes); reads are " +
  "buffers mapped back to the CPU; host µs / dispatch = (wall time − time inside queue.submit − time " +
  "waiting on reads) / dispatches, of a step a few steps into the run, before V8 has optimised " +
  "its JavaScript (warm steps, hundreds in, are faster: bench/webgpu_host.ts); ms in submit: the " +
  "time inside queue.submit (on lavapipe, the kernels themselves run there)";

/** giftwrap's estimate and the measured peak's ratio to it (none where its train step failed). */
function estimateCell(c: Cell, ok = false): string {
  if (c.estimateBytes === null) return "—";
  const measured = c.peakRssBytes.giftwrap;
  return measured === null || !ok
    ? mib(c.estimateBytes)
    : `${mib(c.estimateBytes)} (${ratio(measured, c.estimateBytes)})`;
}

/** This machine's CPU, from /proc/cpuinfo (read by `cat`: Deno reads /proc only under --allow-all). */
async function cpuInfo(): Promise<{ description: string; flags: Set<string> }> {
  const out = await new Deno.Command("cat", { args: ["/proc/cpuinfo"] }).output();
  const info = new TextDecoder().decode(out.stdout);
  const model = info.match(/^model name\s*:\s*(.*)$/m)?.[1] ?? os.cpus()[0]?.model ?? "unknown CPU";
  const cores = info.match(/^processor\s*:/gm)?.length ?? os.cpus().length;
  const flags = new Set(info.match(/^flags\s*:(.*)$/m)?.[1]?.trim().split(/\s+/) ?? []);
  const gib = (os.totalmem() / 2 ** 30).toFixed(0);
  const avx512 = flags.has("avx512f") ? ", AVX-512" : "";
  return { description: `${model}, ${cores} cores${avx512}, ${gib} GiB`, flags };
}

const HEADER = `# Benchmark results: giftwrap vs PyTorch

Appended by \`deno task bench\` (see README.md in this folder). Each section is one run of it on
one machine. Both sides run the same model (same architecture, FLOPs and weights, checked by
\`check_reference.ts\`) on the same batch:

- **train ms**: one optimiser update over the whole batch (forward, completion log-probs, GIFT
  loss, backward, gradient clipping, AdamW), median of the timed runs.
- **sample tok/s**: KV-cache sampling of a full batch at temperature 1, one prefill per distinct
  prompt, rows leaving the batch at \`<eos>\`; completion tokens drawn / wall time, median of the
  timed runs.
- **peak RSS**: the worker process's VmHWM after all of it (runtime, model, optimiser state,
  activations).
- **giftwrap estimate**: \`processPeakBytes\` in \`dsl/memory.ts\`, from the inputs in
  \`bench/_configs.ts\` (real-size configurations only): the larger of the update and sampling's
  tensors, plus OpenBLAS's decoder's own memory beside wasm's heap; not the runtime, nor the wasm
  heap's fragmentation.

Ratios are giftwrap / PyTorch: above 1 means giftwrap takes longer (train), samples faster
(tok/s) or uses more memory (RSS). giftwrap and PyTorch runs alternate, so noise hits both.
`;

async function append(text: string, results: URL): Promise<void> {
  let existing = "";
  try {
    existing = await Deno.readTextFile(results);
  } catch (e) {
    if (!(e instanceof Deno.errors.NotFound)) throw e;
    existing = HEADER;
  }
  await Deno.writeTextFile(results, `${existing.trimEnd()}\n\n${text}\n`);
  // in deno fmt's layout, so that `deno fmt --check` stays clean after a run
  await new Deno.Command(Deno.execPath(), { args: ["fmt", "--quiet", results.pathname] }).output();
}

/** What `--help` prints. */
const USAGE = `Usage: deno task bench [options]

giftwrap against its PyTorch peer (bench/torch_ref.py): train step, sampling and memory of the same
model, batch and weights; the table goes to stdout and to bench/RESULTS.md.

Options:
  --configs LIST        configurations, some of ${CONFIG_NAMES.join(", ")} (default ${
  BENCH_CONFIGS.join(",")
})
  --backends LIST       giftwrap backends, some of ${BACKENDS.join(", ")} (default: what auto picks)
  --runs N              timed runs of each measurement (default 5)
  --warmup N            warm-up steps before them (default 2)
  --threads N           PyTorch's threads (default 1)
  --no-blas             giftwrap without OpenBLAS
  --openblas-core NAME  OpenBLAS's kernels for both sides (default best)
  --pause-ms N          pause between two commands (default 500)
  --torch-device NAME   cpu or cuda (default cpu)
  --python PATH         the interpreter with torch (default ${DEBIAN_PYTHON})
  --no-append           print the table only, not to bench/RESULTS.md
  --no-peer             giftwrap alone, without PyTorch (nothing is appended)
  --help                this text`;

function parseOptions(args: string[], worker: readonly string[]): Options {
  const { values } = parseArgs({
    args,
    options: {
      runs: { type: "string", default: "5" },
      warmup: { type: "string", default: "2" },
      configs: { type: "string", default: BENCH_CONFIGS.join(",") },
      backends: { type: "string" },
      threads: { type: "string", default: "1" },
      "no-append": { type: "boolean", default: false },
      "no-blas": { type: "boolean", default: false },
      "openblas-core": { type: "string", default: "best" },
      "pause-ms": { type: "string", default: "500" },
      "torch-device": { type: "string", default: "cpu" },
      python: { type: "string", default: DEBIAN_PYTHON },
      "no-peer": { type: "boolean", default: false },
    },
  });
  const int = (name: string, value: string, min: number) => {
    const n = Number(value);
    if (!Number.isInteger(n) || n < min) {
      throw new Error(
        `Cannot run the bench as '--${name}' must be an integer >= ${min}: current value is ${value}`,
      );
    }
    return n;
  };
  const list = <T extends string>(name: string, value: string, allowed: readonly T[]) =>
    value.split(",").map((v) => {
      if (!allowed.includes(v as T)) {
        throw new Error(
          `Cannot run the bench as '--${name}' must list some of ${
            allowed.join(", ")
          }: current value is ${value}`,
        );
      }
      return v as T;
    });
  return {
    runs: int("runs", values.runs, 1),
    warmup: int("warmup", values.warmup, 0),
    configs: list("configs", values.configs, CONFIG_NAMES),
    backends: list("backends", values.backends ?? autoBackend()!, BACKENDS),
    threads: int("threads", values.threads, 1),
    blas: !values["no-blas"],
    openblasCore: values["openblas-core"],
    pauseMs: int("pause-ms", values["pause-ms"], 0),
    append: !values["no-append"],
    torchDevice: list("torch-device", values["torch-device"], ["cpu", "cuda"] as const)[0]!,
    python: values.python,
    worker,
    peer: !values["no-peer"],
  };
}

/**
 * Runs the bench with the command-line flags `args`. `worker` is the script that runs giftwrap's
 * worker, `command` how the results name the command, `results` the file they are appended to
 * (bench/gpu.ts passes its bundle's and the repository's).
 */
export async function benchMain(
  args: string[],
  worker: readonly string[] = GIFTWRAP_WORKER,
  command = "deno task bench",
  results: URL = RESULTS,
): Promise<void> {
  if (args.includes("--help") || args.includes("-h")) {
    console.log(USAGE);
    return;
  }
  const options = parseOptions(args, worker);
  const cpu = await cpuInfo();
  const blas = await openblasCore(options.openblasCore, cpu.flags, options.python);
  console.error(blas.note);
  const dir = await Deno.makeTempDir({ prefix: "giftwrap-bench-" });
  const cells: Cell[] = [];
  try {
    for (const config of options.configs) {
      for (const backend of options.backends) {
        cells.push(await measure(config, backend, options, blas.env, dir));
      }
    }
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
  const first = (cells.find((c) => c.giftwrapUnavailable === undefined) ?? cells[0]!).setup;
  const ran = cells.filter((c) => c.giftwrapUnavailable === undefined);
  const backends = [...new Set(ran.map((c) => `${c.setup.giftwrap.backend}`))].join(", ") ||
    "(none: giftwrap not run)";
  const torchOn = options.torchDevice === "cuda"
    ? `on CUDA (${first.torch.device})`
    : first.torch.threads === undefined
    ? "not run (--no-peer)"
    : `${first.torch.threads} thread(s)`;
  const about = [
    `${new Date().toISOString().slice(0, 16).replace("T", " ")} UTC · ${cpu.description}`,
    `Deno ${Deno.version.deno} · tfjs ${first.giftwrap.tfjs ?? "—"} on ${backends} · PyTorch ` +
    `${first.torch.torch ?? "—"}, ${torchOn} · ${blas.note} · ` +
    `${options.runs} timed runs after ` +
    `${options.warmup} warm-up · \`${[command, ...args].join(" ")}\``,
  ];
  const notes = cells.flatMap((c) => c.notes);
  for (const c of cells) {
    const { giftwrap, torch } = c.peakDeviceBytes;
    if (giftwrap === null && torch === null) continue;
    notes.push(
      `${c.config} · ${c.backend}: peak GPU memory giftwrap ${
        giftwrap === null ? "—" : `${mib(giftwrap)} (tfjs's buffer pool)`
      }, PyTorch ${torch === null ? "—" : `${mib(torch)} (CUDA's caching allocator)`}`,
    );
  }
  const details = cells.map((c) =>
    `- ${c.config} · ${c.backend}: train ms giftwrap ${
      c.giftwrapUnavailable !== undefined
        ? "not run"
        : c.trainMs.giftwrap.length > 0
        ? spread(c.trainMs.giftwrap)
        : "failed"
    }, PyTorch ` +
    `${spread(c.trainMs.torch)}; sample tok/s giftwrap ${
      c.tokensPerSecond.giftwrap.length > 0 ? spread(c.tokensPerSecond.giftwrap, 0) : "not run"
    }, ` +
    `PyTorch ${spread(c.tokensPerSecond.torch, 0)}`
  );
  const counts = countsTable(cells);
  if (counts) notes.push(COUNTS_NOTE);
  const text = [
    `## ${about[0]}`,
    "",
    about[1],
    "",
    table(cells),
    "",
    ...(counts ? [counts, ""] : []),
    ...details,
    ...notes.map((n) => `- ${n}`),
  ].join("\n");
  console.log(`\n${text}`);
  if (options.append && options.peer) {
    await append(text, results);
    console.error(`\nappended to ${results.pathname}`);
  }
}

if (import.meta.main) await benchMain(Deno.args);

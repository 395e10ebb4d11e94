/**
 * A run's checkpoint: everything a resumed run needs to continue exactly where this one was.
 *
 * `checkpoints/step-000010/` holds the policy (`model.safetensors` and `config.json`, loadable as
 * a model on their own), AdamW's moments (`optimizer.safetensors`), and `trainer_state.json`: the
 * step, the update count, both random streams, the data cursor, the fault counters, and how many
 * bytes of `metrics.jsonl` and `samples.jsonl` the checkpoint covers. A copy of `metrics.jsonl` up
 * to that step is kept in it too, so the metrics so far survive whatever happens to the log.
 *
 * With LoRA the base weights never change, so a checkpoint holds the adapters instead of the
 * policy: `adapter_config.json` and `adapter_model.safetensors`, a PEFT adapter directory on its
 * own, with the adapters' AdamW moments in `optimizer.safetensors`.
 *
 * @module
 */

import { alphabetOf, type Tokenizer } from "../engine/model/tokenizer.ts";
import type { HfTokenizer } from "../engine/model/hf_tokenizer.ts";
import { HF_COPIED_FILES, hfConfigJson, MAX_COPIED_FILE_BYTES } from "../engine/model/hf_save.ts";
import { parseHfConfig } from "../engine/model/hf_config.ts";
import type { ModelConfig } from "../engine/model/config.ts";
import { tf } from "../engine/backend.ts";
import { readRegularFile } from "../engine/model/_regular_file.ts";
import {
  checkpointFiles,
  loadCheckpoint,
  MAX_JSON_BYTES,
  readJsonFile,
  toTensorData,
} from "../engine/model/checkpoint.ts";
import { encodeSafetensors, readSafetensorsFile } from "../engine/model/safetensors.ts";
import type { Plan } from "../../dsl/plan.ts";
import { modelConfig, type Params, paramShapes } from "../engine/model/transformer.ts";
import type { LinearLayout } from "../engine/kernels/types.ts";
import { Rng } from "../engine/random.ts";
import { RunSetupError } from "./setup.ts";
import { checkpointName, osReason, writeCheckpointDir } from "./run_dir.ts";
import type { Run } from "../rl/train_step.ts";
import { loraAdapterFiles, readLoraAdapter } from "../engine/model/lora.ts";

/** The largest copy of `metrics.jsonl` a checkpoint is read with (a step's line is about 1 kB). */
const MAX_METRICS_BYTES = 2 ** 30;

/** `trainer_state.json`. */
export interface TrainerState {
  format: "giftwrap.trainer_state/1";
  /** The last step completed. */
  step: number;
  planHash: string;
  optimizer: { t: number };
  rng: { sample: number[]; prompts: number[] };
  cursor: { order: number[]; next: number };
  faults: { inRow: number; total: number };
  /** Bytes of each log the checkpoint covers: a resumed run cuts the logs back to these. */
  logs: { metricsBytes: number; samplesBytes: number };
}

/** A checkpoint read back, its tensors not made yet. */
export interface RunCheckpoint {
  dir: string;
  state: TrainerState;
  /**
   * What trains, as the checkpoint stores it: the policy's weights (linear weights `[out, in]`),
   * or with LoRA the adapters (PEFT's [r, in] A and [out, r] B, by giftwrap's names).
   */
  weights: Awaited<ReturnType<typeof loadCheckpoint>>["weights"];
  /** AdamW's moments by parameter name. */
  moments: { m: Record<string, Float32Array>; v: Record<string, Float32Array> };
  /** `metrics.jsonl` up to the checkpoint's step. */
  metrics: string;
}

function prefixed<T>(prefix: string, record: Record<string, T>): Record<string, T> {
  return Object.fromEntries(Object.entries(record).map(([k, v]) => [prefix + k, v]));
}

/** The trainer's state of `run` after `step`, and the logs' sizes. */
export function trainerState(
  run: Run,
  step: number,
  planHash: string,
  logs: TrainerState["logs"],
): TrainerState {
  return {
    format: "giftwrap.trainer_state/1",
    step,
    planHash,
    optimizer: { t: run.optimizer.t },
    rng: { sample: run.sampleRng.state(), prompts: run.promptRng.state() },
    cursor: { order: [...run.cursor.order], next: run.cursor.next },
    faults: { ...run.faults },
    logs,
  };
}

/**
 * The policy's files in a run checkpoint: giftwrap's (`model.safetensors` in float32 and
 * `config.json`). For a Hugging Face policy, `config.json` is its source's, of the source
 * architecture (giftwrap's section added), and the source's tokenizer and generation files are
 * copied, so the checkpoint is a Hugging Face directory `transformers` loads.
 */
export async function policyFiles(
  params: Record<string, tf.Tensor>,
  config: ModelConfig,
  tokenizer: Tokenizer,
  layout: LinearLayout,
): Promise<Record<string, Uint8Array | string>> {
  const files = await checkpointFiles(params, config, alphabetOf(tokenizer), layout);
  if (tokenizer.kind !== "hf") return files;
  const source = (tokenizer as HfTokenizer).dir;
  const path = `${source}/config.json`;
  const raw = await readJsonFile(path) as Record<string, unknown>;
  const { giftwrap } = JSON.parse(files["config.json"] as string);
  files["config.json"] = JSON.stringify(
    { ...hfConfigJson(raw, parseHfConfig(raw, path), "F32"), giftwrap },
    null,
    2,
  ) + "\n";
  for (const name of HF_COPIED_FILES) {
    try {
      files[name] = await readRegularFile(`${source}/${name}`, MAX_COPIED_FILE_BYTES);
    } catch (e) {
      if (!(e instanceof Deno.errors.NotFound)) throw e;
    }
  }
  return files;
}

/**
 * The model directory of a Hugging Face policy (its tokenizer's), which an adapter names as its
 * `base_model_name_or_path`; null for another policy.
 */
export function baseModelOf(tokenizer: Tokenizer): string | null {
  return tokenizer.kind === "hf" ? (tokenizer as HfTokenizer).dir : null;
}

/**
 * Writes `run`'s checkpoint after `step` as `checkpointsDir/step-NNNNNN` (or `name`), atomically.
 * Returns the directory's name.
 */
export async function saveRunCheckpoint(
  checkpointsDir: string,
  run: Run,
  state: TrainerState,
  metrics: string,
  name = checkpointName(state.step),
): Promise<string> {
  const { params, config, task, kernels } = run;
  const model = run.adapters
    ? await loraAdapterFiles(run.adapters, { baseModel: baseModelOf(task.tokenizer) })
    : await policyFiles(params, config, task.tokenizer, kernels.layout);
  await writeCheckpointDir(`${checkpointsDir}/${name}`, {
    ...model,
    "optimizer.safetensors": encodeSafetensors({
      ...prefixed("m.", await toTensorData(run.optimizer.m, false)),
      ...prefixed("v.", await toTensorData(run.optimizer.v, false)),
    }),
    "metrics.jsonl": metrics,
    // Written last, though the rename makes the directory appear whole or not at all.
    "trainer_state.json": JSON.stringify(state) + "\n",
  });
  return name;
}

/**
 * Reads a checkpoint written by {@linkcode saveRunCheckpoint}. Given the `plan`, it also checks
 * the checkpoint against it before anything of it is used: every field of `trainer_state.json`
 * (types, ranges, the step its directory's name says), the weights' names and shapes, the
 * tokenizer, finite weights and moments, and the copy of `metrics.jsonl` (whole lines, a line per
 * step up to the checkpoint's, exactly `logs.metricsBytes` long). The logs of the run directory
 * are checked by the resume ({@linkcode checkRunLogs}).
 * @throws when a file is missing or malformed, or it belongs to another plan: the message starts
 *   with the file (`trainer_state.json: step is 999, expected 10 (its directory's name)`).
 */
export async function readRunCheckpoint(
  dir: string,
  planHash: string,
  plan?: Plan,
): Promise<RunCheckpoint> {
  const text = await inFile(
    "trainer_state.json",
    async () =>
      new TextDecoder().decode(
        await readRegularFile(`${dir}/trainer_state.json`, MAX_JSON_BYTES),
      ),
  );
  const state = inFileSync("trainer_state.json", () => JSON.parse(text)) as TrainerState;
  if (state === null || typeof state !== "object" || Array.isArray(state)) {
    throw new Error("trainer_state.json: not a JSON object");
  }
  if (state.format !== "giftwrap.trainer_state/1") {
    throw new Error(`trainer_state.json has format '${state.format}'`);
  }
  if (state.planHash !== planHash) {
    throw new Error(`it belongs to plan ${state.planHash}, not ${planHash}`);
  }
  if (plan) checkState(state, plan, expectedStep(dir, plan));
  const lora = plan?.model.kind === "hfModel" ? plan.model.lora : undefined;
  let weights: RunCheckpoint["weights"];
  if (lora !== undefined) {
    // Read before a kernel set is chosen: the adapters' data, checked against the plan's model.
    const { config, tensors } = await inFile(
      "adapter_model.safetensors",
      () => readLoraAdapter(dir, modelConfig(plan!.model)),
    );
    checkAdapter(config, tensors, lora);
    weights = tensors;
  } else {
    if (plan) {
      await inFile("config.json", async () => {
        await readJsonFile(`${dir}/config.json`);
      });
    }
    // Read before a kernel set is chosen.
    const loaded = await inFile("model.safetensors", () => loadCheckpoint(dir, "[out, in]"));
    if (plan) checkWeights(loaded.weights, loaded.alphabet, plan);
    weights = loaded.weights;
  }
  const { tensors } = await inFile(
    "optimizer.safetensors",
    () => readSafetensorsFile(`${dir}/optimizer.safetensors`),
  );
  const moments = { m: {} as Record<string, Float32Array>, v: {} as Record<string, Float32Array> };
  for (const [name, w] of Object.entries(weights)) {
    const m = tensors[`m.${name}`];
    const v = tensors[`v.${name}`];
    if (!m || !v) throw new Error(`optimizer.safetensors lacks the moments of '${name}'`);
    if (plan) {
      for (const [which, t] of [["m", m], ["v", v]] as const) {
        if (t.data.length !== w.data.length) {
          throw new Error(
            `optimizer.safetensors: ${which}.${name} has ${t.data.length} values, expected ` +
              `${w.data.length} (the weight's)`,
          );
        }
        const bad = t.data.findIndex((x) => !Number.isFinite(x) || (which === "v" && x < 0));
        if (bad >= 0) {
          throw new Error(
            `optimizer.safetensors: ${which}.${name}[${bad}] is ${t.data[bad]}, expected a ` +
              `finite number${which === "v" ? " ≥ 0" : ""}`,
          );
        }
      }
    }
    moments.m[name] = m.data;
    moments.v[name] = v.data;
  }
  const metrics = await inFile(
    "metrics.jsonl",
    async () =>
      new TextDecoder().decode(await readRegularFile(`${dir}/metrics.jsonl`, MAX_METRICS_BYTES)),
  );
  if (plan) checkMetricsCopy(metrics, state);
  return { dir, state, weights, moments, metrics };
}

/** Runs `read`, its error's message prefixed with `file` (its class kept: a missing file is `NotFound`). */
async function inFile<T>(file: string, read: () => Promise<T>): Promise<T> {
  try {
    return await read();
  } catch (e) {
    throw withFile(file, e);
  }
}

function inFileSync<T>(file: string, read: () => T): T {
  try {
    return read();
  } catch (e) {
    throw withFile(file, e);
  }
}

function withFile(file: string, e: unknown): Error {
  if (!(e instanceof Error)) return new Error(`${file}: ${String(e)}`);
  const reason = osReason(e);
  if (!reason.startsWith(`${file}`)) e.message = `${file}: ${reason}`;
  return e;
}

/** The step a checkpoint directory must hold: the number in `step-NNNNNN`, or the plan's last. */
function expectedStep(dir: string, plan: Plan): { step: number; why: string } | null {
  const name = dir.slice(dir.lastIndexOf("/") + 1);
  if (name === "final") return { step: plan.schedule.steps, why: "the plan's steps, as final/" };
  const m = /^step-(\d+)$/.exec(name);
  return m ? { step: Number(m[1]), why: "its directory's name" } : null;
}

function isInt(x: unknown, min: number, max: number): x is number {
  return Number.isSafeInteger(x) && (x as number) >= min && (x as number) <= max;
}

function describe(x: unknown): string {
  return typeof x === "string"
    ? JSON.stringify(x)
    : Array.isArray(x)
    ? `an array of ${x.length}`
    : String(typeof x === "object" && x !== null ? JSON.stringify(x).slice(0, 40) : x);
}

function field(name: string, value: unknown, expected: string): Error {
  return new Error(`trainer_state.json: ${name} is ${describe(value)}, expected ${expected}`);
}

/** Checks every field of a trainer state against the plan it claims. */
function checkState(
  state: TrainerState,
  plan: Plan,
  expected: { step: number; why: string } | null,
): void {
  const { steps, optimizerStepsPerBatch } = plan.schedule;
  const s = state as unknown as Record<string, unknown>;
  const object = (name: string) => {
    const value = s[name];
    if (value === null || typeof value !== "object" || Array.isArray(value)) {
      throw field(name, value, "an object");
    }
    return value as Record<string, unknown>;
  };
  if (!isInt(state.step, 1, steps)) {
    throw field("step", state.step, `an integer from 1 to ${steps}`);
  }
  if (expected && state.step !== expected.step) {
    throw field("step", state.step, `${expected.step} (${expected.why})`);
  }
  const optimizer = object("optimizer");
  const updates = state.step * optimizerStepsPerBatch;
  if (!isInt(optimizer.t, 0, updates)) {
    throw field(
      "optimizer.t",
      optimizer.t,
      `an integer from 0 to ${updates} (updates in ${state.step} steps)`,
    );
  }
  const rng = object("rng");
  for (const stream of ["sample", "prompts"]) {
    const words = rng[stream];
    if (
      !Array.isArray(words) || words.length !== 4 || !words.every((w) => isInt(w, 0, 0xffffffff))
    ) {
      throw field(`rng.${stream}`, words, "4 unsigned 32-bit integers");
    }
  }
  const cursor = object("cursor");
  const order = cursor.order;
  const size = plan.data.train;
  if (!Array.isArray(order) || order.length === 0 || (size !== null && order.length !== size)) {
    throw field(
      "cursor.order",
      order,
      size === null ? "a permutation of the train problems" : `a permutation of 0…${size - 1}`,
    );
  }
  const seen = new Uint8Array(order.length);
  for (const i of order) {
    if (!isInt(i, 0, order.length - 1) || seen[i as number]) {
      throw field(
        "cursor.order",
        order,
        `a permutation of 0…${order.length - 1} (holds ${describe(i)})`,
      );
    }
    seen[i as number] = 1;
  }
  if (!isInt(cursor.next, 0, order.length)) {
    throw field("cursor.next", cursor.next, `an integer from 0 to ${order.length}`);
  }
  const faults = object("faults");
  if (!isInt(faults.total, 0, updates)) {
    throw field("faults.total", faults.total, `an integer from 0 to ${updates}`);
  }
  const inRow = plan.optimizer.maxSkippedUpdates - 1;
  if (!isInt(faults.inRow, 0, Math.min(inRow, faults.total as number))) {
    throw field(
      "faults.inRow",
      faults.inRow,
      `an integer from 0 to ${Math.min(inRow, faults.total as number)}`,
    );
  }
  const logs = object("logs");
  for (const log of ["metricsBytes", "samplesBytes"]) {
    if (!isInt(logs[log], 0, Number.MAX_SAFE_INTEGER)) {
      throw field(`logs.${log}`, logs[log], "a byte count (an integer ≥ 0)");
    }
  }
}

/** Checks a checkpoint's weights against the plan's model: names, shapes, tokenizer, finite. */
function checkWeights(weights: RunCheckpoint["weights"], alphabet: string, plan: Plan): void {
  if (plan.tokenizer.kind === "char" && alphabet !== plan.tokenizer.alphabet) {
    throw new Error(
      `config.json: the tokenizer's alphabet is ${JSON.stringify(alphabet)}, expected the plan's ` +
        JSON.stringify(plan.tokenizer.alphabet),
    );
  }
  const shapes = paramShapes(modelConfig(plan.model), "[out, in]");
  for (const [name, { shape }] of Object.entries(shapes)) {
    const w = weights[name];
    if (!w || w.shape.join(",") !== shape.join(",")) {
      throw new Error(
        `model.safetensors: '${name}' has shape ${w ? `[${w.shape}]` : "none"}, expected ` +
          `[${shape}] (the plan's model)`,
      );
    }
    const bad = w.data.findIndex((x) => !Number.isFinite(x));
    if (bad >= 0) {
      throw new Error(
        `model.safetensors: ${name}[${bad}] is ${w.data[bad]}, expected a finite number`,
      );
    }
  }
  const extra = Object.keys(weights).find((name) => !(name in shapes));
  if (extra) throw new Error(`model.safetensors: '${extra}' is not a weight of the plan's model`);
}

/** Checks a checkpoint's adapters against the plan's LoRA settings: rank, alpha, targets, finite. */
function checkAdapter(
  config: { rank: number; alpha: number; targets: readonly string[] },
  tensors: RunCheckpoint["weights"],
  lora: NonNullable<Extract<Plan["model"], { kind: "hfModel" }>["lora"]>,
): void {
  const fields = [
    ["r", config.rank, lora.rank, "rank"],
    ["lora_alpha", config.alpha, lora.alpha, "alpha"],
    ["target_modules", config.targets, lora.targets, "targets"],
  ] as const;
  for (const [field, found, expected, name] of fields) {
    if (JSON.stringify(found) !== JSON.stringify(expected)) {
      throw new Error(
        `adapter_config.json: ${field} is ${JSON.stringify(found)}, expected ` +
          `${JSON.stringify(expected)} (the plan's policy.lora.${name})`,
      );
    }
  }
  for (const [name, w] of Object.entries(tensors)) {
    const bad = w.data.findIndex((x) => !Number.isFinite(x));
    if (bad >= 0) {
      throw new Error(
        `adapter_model.safetensors: ${name}[${bad}] is ${w.data[bad]}, expected a finite number`,
      );
    }
  }
}

/**
 * Checks a checkpoint's copy of `metrics.jsonl`: whole JSON lines, a line per step up to the
 * checkpoint's (after step 0's, when there is one), and `logs.metricsBytes` long.
 */
function checkMetricsCopy(metrics: string, state: TrainerState): void {
  const bytes = new TextEncoder().encode(metrics).length;
  if (bytes !== state.logs.metricsBytes) {
    throw field(
      "logs.metricsBytes",
      state.logs.metricsBytes,
      `${bytes} (its metrics.jsonl's size)`,
    );
  }
  if (metrics !== "" && !metrics.endsWith("\n")) {
    throw new Error("metrics.jsonl: its last line is cut short");
  }
  const lines = metrics === "" ? [] : metrics.slice(0, -1).split("\n");
  const steps = lines.map((line, i) => {
    let step: unknown;
    try {
      step = (JSON.parse(line) as { step?: unknown }).step;
    } catch {
      step = undefined;
    }
    if (!isInt(step, 0, Number.MAX_SAFE_INTEGER)) {
      throw new Error(`metrics.jsonl: line ${i + 1} is not a metrics line with a step`);
    }
    return step;
  });
  const first = steps[0] === 0 ? 0 : 1;
  const expected = Array.from({ length: state.step - first + 1 }, (_, i) => first + i);
  if (steps.join(",") !== expected.join(",")) {
    throw new Error(
      `metrics.jsonl: has the steps ${
        steps.length === 0 ? "none" : `${steps[0]}…${steps.at(-1)} (${steps.length} lines)`
      }, ` +
        `expected a line per step from ${first} to ${state.step} (trainer_state.json's step)`,
    );
  }
}

/**
 * Checks a checkpoint against the run directory's `samples.jsonl`: the log holds at least the
 * `logs.samplesBytes` the checkpoint covers, and they end at a line's end.
 * @throws naming `samples.jsonl` and the field.
 */
export async function checkRunLogs(runDir: string, state: TrainerState): Promise<void> {
  const want = state.logs.samplesBytes;
  if (want === 0) return;
  let file: Deno.FsFile;
  try {
    file = await Deno.open(`${runDir}/samples.jsonl`, { read: true });
  } catch (e) {
    throw new Error(
      `trainer_state.json: logs.samplesBytes is ${want}, but the run's samples.jsonl cannot be ` +
        `read (${osReason(e)})`,
    );
  }
  try {
    const size = (await file.stat()).size;
    if (want > size) {
      throw field("logs.samplesBytes", want, `at most ${size} (the run's samples.jsonl's size)`);
    }
    const last = new Uint8Array(1);
    await file.seek(want - 1, Deno.SeekMode.Start);
    if ((await file.read(last)) !== 1 || last[0] !== 0x0a) {
      throw field("logs.samplesBytes", want, "the end of a line of the run's samples.jsonl");
    }
  } finally {
    file.close();
  }
}

/** Puts a checkpoint's optimiser and trainer state into `run` (its policy is loaded already). */
export function restoreRun(run: Run, checkpoint: RunCheckpoint): void {
  const { state, moments } = checkpoint;
  // The plan may not know how many train problems a data file holds; the task does.
  const size = run.task.splits.train.length;
  if (state.cursor.order.length !== size) {
    throw new RunSetupError(
      `Cannot resume from ${checkpoint.dir}: trainer_state.json: cursor.order has ` +
        `${state.cursor.order.length} problems, expected ${size} (the train split's)`,
    );
  }
  run.optimizer.t = state.optimizer.t;
  for (const [name, m] of Object.entries(run.optimizer.m)) {
    tf.tidy(() => m.assign(tf.tensor(moments.m[name]!, m.shape, "float32")));
    const v = run.optimizer.v[name]!;
    tf.tidy(() => v.assign(tf.tensor(moments.v[name]!, v.shape, "float32")));
  }
  run.sampleRng = Rng.fromState(state.rng.sample);
  run.promptRng = Rng.fromState(state.rng.prompts);
  run.cursor = { order: [...state.cursor.order], next: state.cursor.next };
  run.faults = { ...state.faults };
}

/** Frozen tensors of the weights in a model checkpoint directory, in `layout` (a kernel set's). */
export async function loadFrozen(dir: string, layout: LinearLayout): Promise<Params> {
  const { weights } = await loadCheckpoint(dir, layout);
  return Object.fromEntries(
    Object.entries(weights).map(([name, w]) => [name, tf.tensor(w.data, w.shape, "float32")]),
  );
}

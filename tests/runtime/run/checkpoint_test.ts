import assert from "node:assert/strict";
import { tf } from "../../../runtime/engine/backend.ts";
import { inLayout, weightsToTensors } from "../../../runtime/engine/model/checkpoint.ts";
import { decodeSafetensors, encodeSafetensors } from "../../../runtime/engine/model/safetensors.ts";
import { type Run, trainStep } from "../../../runtime/rl/train_step.ts";
import {
  loadFrozen,
  readRunCheckpoint,
  restoreRun,
  saveRunCheckpoint,
  type TrainerState,
  trainerState,
} from "../../../runtime/run/checkpoint.ts";
import { tinyGpt } from "../../../mod.ts";
import { withTempDir } from "../../_helpers.ts";
import { tinyPlan } from "../_tiny.ts";
import { releaseRun, tinyRun, valuesOf } from "../_run.ts";

const HASH = "0123456789abcdef";

/** Metrics lines without the fields that time a step. */
function timeless(metrics: object): object {
  const { sampleSeconds: _s, stepSeconds: _t, tokensPerSecond: _r, ...rest } = metrics as Record<
    string,
    unknown
  >;
  return rest;
}

Deno.test("saveRunCheckpoint(), readRunCheckpoint() and restoreRun() give back the run, bit for bit", async () => {
  await withTempDir(async (dir) => {
    // Two steps of 2 updates each: moments, update count, streams and cursor all moved.
    const run = await tinyRun({ miniBatches: 2 });
    const fresh = await tinyRun({ miniBatches: 2 });
    let restored: Run | null = null;
    try {
      await trainStep(run, 1);
      await trainStep(run, 2);
      run.faults = { inRow: 1, total: 2 };
      const logs = { metricsBytes: 123, samplesBytes: 4567 };
      const state = trainerState(run, 2, HASH, logs);
      assert.deepEqual(state, {
        format: "giftwrap.trainer_state/1",
        step: 2,
        planHash: HASH,
        optimizer: { t: 4 },
        rng: { sample: run.sampleRng.state(), prompts: run.promptRng.state() },
        cursor: { order: run.cursor.order, next: 8 },
        faults: { inRow: 1, total: 2 },
        logs,
      });
      const metrics = '{"step":0,"evalAccuracy":0.25}\n{"step":1}\n{"step":2}\n';
      const name = await saveRunCheckpoint(dir, run, state, metrics);
      assert.equal(name, "step-000002");
      const files = (await Array.fromAsync(Deno.readDir(`${dir}/${name}`))).map((e) => e.name);
      assert.deepEqual(files.sort(), [
        "config.json",
        "metrics.jsonl",
        "model.safetensors",
        "optimizer.safetensors",
        "trainer_state.json",
      ]);

      const checkpoint = await readRunCheckpoint(`${dir}/${name}`, HASH);
      assert.equal(checkpoint.dir, `${dir}/${name}`);
      assert.deepEqual(checkpoint.state, state);
      assert.equal(checkpoint.metrics, metrics);
      // Into a run just built from the seed, its policy the checkpoint's (read as stored, turned
      // to the kernel set's layout): as a run resumes.
      tf.dispose(Object.values(fresh.params));
      const weights = inLayout(checkpoint.weights, run.kernels.layout);
      restored = { ...fresh, params: weightsToTensors(weights, true) };
      restoreRun(restored, checkpoint);
      assert.deepEqual(valuesOf(restored.params), valuesOf(run.params));
      assert.deepEqual(valuesOf(restored.optimizer.m), valuesOf(run.optimizer.m));
      assert.deepEqual(valuesOf(restored.optimizer.v), valuesOf(run.optimizer.v));
      assert.ok(Object.values(run.optimizer.v).some((v) => v.dataSync().some((x) => x > 0)));
      assert.equal(restored.optimizer.t, 4);
      assert.deepEqual(restored.sampleRng.state(), run.sampleRng.state());
      assert.deepEqual(restored.promptRng.state(), run.promptRng.state());
      assert.deepEqual(restored.cursor, run.cursor);
      assert.deepEqual(restored.faults, run.faults);

      // And both go on the same: the next step, number for number.
      const [a, b] = [await trainStep(run, 3), await trainStep(restored, 3)];
      assert.deepEqual(timeless(b.metrics), timeless(a.metrics));
      assert.deepEqual(b.samples, a.samples);
      assert.deepEqual(valuesOf(restored.params), valuesOf(run.params));

      // The frozen copy of a checkpoint's policy (what a resumed run reloads initial/ as).
      const frozen = await loadFrozen(`${dir}/${name}`, run.kernels.layout);
      assert.ok(Object.values(frozen).every((t) => !(t instanceof tf.Variable)));
      assert.deepEqual(
        valuesOf(frozen),
        Object.fromEntries(Object.entries(weights).map(([n, w]) => [n, w.data])),
      );
      tf.dispose(Object.values(frozen));
    } finally {
      releaseRun(run);
      releaseRun(restored ?? fresh);
    }
  });
});

Deno.test("readRunCheckpoint() refuses another plan's checkpoint, another format and missing moments", async () => {
  await withTempDir(async (dir) => {
    const run = await tinyRun();
    try {
      const state = trainerState(run, 0, HASH, { metricsBytes: 0, samplesBytes: 0 });
      const name = await saveRunCheckpoint(dir, run, state, "", "a");
      const at = `${dir}/${name}`;
      await assert.rejects(
        () => readRunCheckpoint(at, "fedcba9876543210"),
        (e: Error) => e.message === `it belongs to plan ${HASH}, not fedcba9876543210`,
      );
      const stateFile = `${at}/trainer_state.json`;
      const saved = await Deno.readTextFile(stateFile);
      await Deno.writeTextFile(
        stateFile,
        JSON.stringify({ ...JSON.parse(saved), format: "giftwrap.trainer_state/0" }),
      );
      await assert.rejects(
        () => readRunCheckpoint(at, HASH),
        (e: Error) => e.message === "trainer_state.json has format 'giftwrap.trainer_state/0'",
      );
      await Deno.writeTextFile(stateFile, saved);
      // AdamW's state without the second moment of one parameter.
      const file = `${at}/optimizer.safetensors`;
      const { tensors } = decodeSafetensors(await Deno.readFile(file));
      const [first] = Object.keys(run.params);
      delete tensors[`v.${first}`];
      await Deno.writeFile(file, encodeSafetensors(tensors));
      await assert.rejects(
        () => readRunCheckpoint(at, HASH),
        (e: Error) => e.message === `optimizer.safetensors lacks the moments of '${first}'`,
      );
      await Deno.remove(file);
      await assert.rejects(() => readRunCheckpoint(at, HASH), Deno.errors.NotFound);
    } finally {
      releaseRun(run);
    }
  });
});

/** `run` after one step, and its checkpoint saved in `dir` with the metrics of steps 0 and 1. */
async function afterOneStep(dir: string, run: Run): Promise<{ at: string; state: TrainerState }> {
  await trainStep(run, 1);
  const metrics = '{"step":0}\n{"step":1}\n';
  const state = trainerState(run, 1, HASH, { metricsBytes: metrics.length, samplesBytes: 0 });
  return { at: `${dir}/${await saveRunCheckpoint(dir, run, state, metrics)}`, state };
}

Deno.test("readRunCheckpoint() given the plan refuses non-finite moments, shapes not the plan's", async () => {
  await withTempDir(async (dir) => {
    const run = await tinyRun();
    try {
      const { at, state } = await afterOneStep(dir, run);
      // As saved, it passes every check.
      const read = await readRunCheckpoint(at, HASH, run.plan);
      assert.deepEqual(read.state, state);
      const [first] = Object.keys(run.params);
      const optimizer = `${at}/optimizer.safetensors`;
      const saved = await Deno.readFile(optimizer);
      const { tensors } = decodeSafetensors(saved);
      const nan = tensors[`m.${first}`]!.data.slice();
      nan[3] = NaN;
      await Deno.writeFile(
        optimizer,
        encodeSafetensors({ ...tensors, [`m.${first}`]: { ...tensors[`m.${first}`]!, data: nan } }),
      );
      await assert.rejects(
        () => readRunCheckpoint(at, HASH, run.plan),
        (e: Error) =>
          e.message ===
            `optimizer.safetensors: m.${first}[3] is NaN, expected a finite number`,
      );
      // Without the plan, as before: read as it is.
      await readRunCheckpoint(at, HASH);
      await Deno.writeFile(optimizer, saved);
      // A plan of another width.
      const wider = tinyPlan({ policy: tinyGpt({ layers: 1, dModel: 64, heads: 2 }) });
      await assert.rejects(
        () => readRunCheckpoint(at, HASH, wider),
        (e: Error) =>
          /^model\.safetensors: '.*' has shape \[.*\], expected \[.*\] \(the plan's model\)$/.test(
            e.message,
          ),
      );
      // The metrics copy must cover the step.
      await Deno.writeTextFile(`${at}/metrics.jsonl`, '{"step":0}\n{"step":2}\n');
      await assert.rejects(
        () => readRunCheckpoint(at, HASH, run.plan),
        (e: Error) =>
          e.message ===
            "metrics.jsonl: has the steps 0…2 (2 lines), expected a line per step from 0 to 1 (trainer_state.json's step)",
      );
    } finally {
      releaseRun(run);
    }
  });
});

Deno.test("readRunCheckpoint() reads only regular files: a FIFO or /dev/zero in a checkpoint is refused at once", async () => {
  await withTempDir(async (dir) => {
    const run = await tinyRun();
    try {
      const { at, state } = await afterOneStep(dir, run);
      const swap = async (name: string, make: (path: string) => Promise<void>) => {
        const path = `${at}/${name}`;
        const saved = await Deno.readFile(path);
        await Deno.remove(path);
        await make(path);
        try {
          await assert.rejects(
            () => readRunCheckpoint(at, HASH, run.plan),
            (e: Error) =>
              e.message.startsWith(`${name}: Cannot read '${path}' as it is a `) &&
              e.message.endsWith(", not a regular file") && !e.message.includes("\n"),
          );
        } finally {
          await Deno.remove(path);
          await Deno.writeFile(path, saved);
        }
      };
      const fifo = async (path: string) => {
        const made = await new Deno.Command("mkfifo", { args: [path] }).output();
        assert.equal(made.code, 0, new TextDecoder().decode(made.stderr));
      };
      const zero = (path: string) => Deno.symlink("/dev/zero", path);
      await swap("trainer_state.json", fifo);
      await swap("config.json", fifo);
      await swap("optimizer.safetensors", zero);
      await swap("metrics.jsonl", zero);
      // Whole again, it reads.
      assert.deepEqual((await readRunCheckpoint(at, HASH, run.plan)).state, state);
    } finally {
      releaseRun(run);
    }
  });
});

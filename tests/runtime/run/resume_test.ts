// Runs you can trust: a run killed with SIGKILL and resumed writes what an uninterrupted run
// writes; Ctrl-C stops it with a checkpoint; non-finite updates and a NaN reward stop it in one
// line with its last checkpoint intact; run.json records where it came from. Every run here is a
// subprocess of the command line, as a user would start (and kill) it.

import assert from "node:assert/strict";
import { tinyGpt } from "../../../mod.ts";
import { Rng } from "../../../runtime/engine/random.ts";
import type { RunInfo } from "../../../runtime/run/run_dir.ts";
import { readRunCheckpoint } from "../../../runtime/run/checkpoint.ts";
import { assertNoStack, giftwrap, lines, RUN_PERMISSIONS, withTempDir } from "../../_helpers.ts";
import { TINY } from "../_tiny.ts";
import { requires } from "../../_requires.ts";
import { needsWebgpu } from "../_webgpu.ts";

const CLI = decodeURIComponent(new URL("../../../cli.ts", import.meta.url).pathname);
const FIXTURES = new URL("../fixtures/", import.meta.url);

/** The tiny recipe for 12 steps, checkpointing every 2 (keeping 2), on `backend`. */
function resumable(backend: "cpu" | "wasm" | "webgpu", changes: Record<string, unknown> = {}) {
  return {
    ...TINY,
    policy: tinyGpt({
      layers: 1,
      dModel: 32,
      heads: 2,
      warmStart: { sftSteps: 20, batchSize: 16, lr: 0.01 },
    }),
    steps: 12,
    eval: { every: 4 },
    checkpoint: { every: 2, keep: 2 },
    log: { samplesEvery: 3 },
    backend,
    ...changes,
  };
}

async function writeRecipe(dir: string, name: string, value: unknown): Promise<string> {
  const path = `${dir}/${name}.json`;
  await Deno.writeTextFile(path, JSON.stringify(value, null, 2));
  return path;
}

/** The run directory a run's first line names (`run … → DIR`). */
function runDirOf(stdout: string): string {
  const m = / → (\S+)/.exec(lines(stdout)[0] ?? "");
  assert.ok(m, `no run directory in:\n${stdout}`);
  return m[1]!;
}

/**
 * Starts `giftwrap args`, reads its output until the line `step <step>/`, waits `delayMs` (so
 * the kill may land mid-step or mid-checkpoint) and sends `signal`. Returns the run directory, the
 * exit code and what it printed.
 */
async function stopAt(
  args: string[],
  step: number,
  delayMs: number,
  signal: Deno.Signal,
): Promise<{ dir: string; code: number; stdout: string; stderr: string }> {
  const child = new Deno.Command(Deno.execPath(), {
    args: ["run", ...RUN_PERMISSIONS, CLI, ...args],
    env: { NO_COLOR: "1" },
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  const stderr = new Response(child.stderr).text();
  let stdout = "";
  let signalled = false;
  const decoder = new TextDecoder();
  for await (const chunk of child.stdout) {
    stdout += decoder.decode(chunk, { stream: true });
    if (!signalled && stdout.includes(`\nstep ${step}/`)) {
      signalled = true;
      await new Promise((resolve) => setTimeout(resolve, delayMs));
      child.kill(signal);
    }
  }
  const { code } = await child.status;
  assert.ok(signalled, `never reached step ${step}:\n${stdout}\n${await stderr}`);
  return { dir: runDirOf(stdout), code, stdout, stderr: await stderr };
}

/** Metrics lines without the fields that time the run. */
async function metricsOf(dir: string): Promise<Record<string, unknown>[]> {
  const text = await Deno.readTextFile(`${dir}/metrics.jsonl`);
  return lines(text).map((line) => {
    const { sampleSeconds: _s, stepSeconds: _t, tokensPerSecond: _r, ...rest } = JSON.parse(line);
    return rest;
  });
}

async function runInfo(dir: string): Promise<RunInfo> {
  return JSON.parse(await Deno.readTextFile(`${dir}/run.json`));
}

/** A 2-step run of the tiny recipe in `tmp/runs`: its recipe file and run directory. */
async function shortRun(tmp: string): Promise<{ recipe: string; dir: string }> {
  const recipe = await writeRecipe(
    tmp,
    "short",
    resumable("wasm", { steps: 2, eval: { every: 1 } }),
  );
  const ran = await giftwrap(["run", recipe, "--runs-dir", `${tmp}/runs`]);
  assert.equal(ran.code, 0, ran.stderr);
  return { recipe, dir: runDirOf(ran.stdout) };
}

/** Asserts that two run directories wrote the same run: metrics, samples, final weights. */
async function assertSameRun(resumed: string, uninterrupted: string): Promise<void> {
  assert.deepEqual(await metricsOf(resumed), await metricsOf(uninterrupted));
  assert.equal(
    await Deno.readTextFile(`${resumed}/samples.jsonl`),
    await Deno.readTextFile(`${uninterrupted}/samples.jsonl`),
  );
  for (const file of ["model.safetensors", "optimizer.safetensors"]) {
    assert.deepEqual(
      await Deno.readFile(`${resumed}/checkpoints/final/${file}`),
      await Deno.readFile(`${uninterrupted}/checkpoints/final/${file}`),
      file,
    );
  }
  // The trainer's state too, but for the logs' sizes in bytes, which the timings change.
  const state = async (dir: string) => {
    const { logs: _, ...rest } = JSON.parse(
      await Deno.readTextFile(`${dir}/checkpoints/final/trainer_state.json`),
    );
    return rest;
  };
  assert.deepEqual(await state(resumed), await state(uninterrupted));
}

for (const [backend, seed] of [["cpu", 1], ["wasm", 2]] as const) {
  Deno.test(`execute() killed with SIGKILL twice and resumed writes the uninterrupted run (${backend})`, async () => {
    await withTempDir(async (tmp) => {
      // 24 steps: the kills land by step 15 or so, well before the run could end on its own.
      const recipe = await writeRecipe(tmp, "resumable", resumable(backend, { steps: 24 }));
      const runsDir = `${tmp}/runs`;
      const full = await giftwrap(["run", recipe, "--runs-dir", runsDir]);
      assert.equal(full.code, 0, full.stderr);
      const uninterrupted = runDirOf(full.stdout);

      // Two kills at steps drawn from a seeded stream, each some milliseconds into the step.
      const rng = new Rng(seed);
      const first = 2 + rng.int(4); // 2…5
      const second = first + 6 + rng.int(4); // 8…15: past where the first kill may have got to
      const killed = await stopAt(
        ["run", recipe, "--runs-dir", runsDir],
        first,
        rng.int(200),
        "SIGKILL",
      );
      assert.equal(killed.code, 137);
      const dir = killed.dir;
      const again = await stopAt(["run", recipe, "--resume", dir], second, rng.int(200), "SIGKILL");
      assert.equal(again.dir, dir);
      // Killed before its first checkpoint, a run starts over in its directory.
      assert.match(lines(again.stdout)[0]!, / · from (step \d+|the start)$/);
      const resumed = await giftwrap(["run", recipe, "--resume", dir]);
      assert.equal(resumed.code, 0, resumed.stderr);
      assertNoStack(resumed.stderr);

      await assertSameRun(dir, uninterrupted);
      const info = await runInfo(dir);
      assert.equal(info.status, "finished");
      assert.equal(info.resumes.length, 2);
      // Each resume starts at a checkpoint (every 2 steps, or the start), the second no earlier
      // than the first, and before the step the second run was killed after. (A kill lands some
      // milliseconds after its step's line, so a later checkpoint may already be written.)
      const [one, two] = info.resumes.map((r) => r.fromStep) as [number, number];
      assert.ok(one % 2 === 0 && two % 2 === 0 && one <= two && one < second, `${one}, ${two}`);
      // Only the newest 2 step checkpoints are kept, beside initial/ and final/; nothing half-written.
      const kept = (await Array.fromAsync(Deno.readDir(`${dir}/checkpoints`))).map((e) => e.name);
      assert.deepEqual(kept.sort(), ["final", "initial", "step-000020", "step-000022"]);
    });
  });
}

Deno.test("execute() stopped by Ctrl-C writes a checkpoint, exits 130 and resumes exactly", async () => {
  await withTempDir(async (tmp) => {
    // 40 steps, so that the run is still going when the signal arrives after step 3.
    const recipe = await writeRecipe(tmp, "resumable", resumable("wasm", { steps: 40 }));
    const runsDir = `${tmp}/runs`;
    const full = await giftwrap(["run", recipe, "--runs-dir", runsDir]);
    assert.equal(full.code, 0, full.stderr);

    const stopped = await stopAt(["run", recipe, "--runs-dir", runsDir], 3, 0, "SIGINT");
    assert.equal(stopped.code, 130, stopped.stderr);
    assertNoStack(stopped.stderr);
    assert.ok(
      lines(stopped.stdout).includes(
        "stopping after this step to write a checkpoint (Ctrl-C again to quit now)",
      ),
      stopped.stdout,
    );
    const last = lines(stopped.stdout).at(-1)!;
    const m =
      /^stopped after step (\d+) of 40: checkpoint checkpoints\/step-0+(\d+) · resume with --resume (\S+)$/
        .exec(last);
    assert.ok(m, last);
    assert.equal(m[1], m[2]);
    assert.equal(m[3], stopped.dir);
    const info = await runInfo(stopped.dir);
    assert.equal(info.status, "interrupted");
    assert.equal(info.checkpoint?.step, Number(m[1]));
    // The checkpoint of the step it stopped at, although 3 is not a multiple of checkpoint.every.
    const state = await readRunCheckpoint(`${stopped.dir}/${info.checkpoint!.dir}`, info.planHash);
    assert.equal(state.state.step, Number(m[1]));

    const resumed = await giftwrap(["run", recipe, "--resume", stopped.dir]);
    assert.equal(resumed.code, 0, resumed.stderr);
    await assertSameRun(stopped.dir, runDirOf(full.stdout));
  });
});

Deno.test({
  ...needsWebgpu(
    "execute() on webgpu stopped by Ctrl-C and resumed writes the uninterrupted run, bit for bit",
  ),
  async fn() {
    // webgpu reads once per train step and keeps AdamW's schedule and step counter on the device
    // (optim.ts, DeviceUpdates): a resumed run rebuilds them from the checkpoint's t. Small: a
    // short warm start and 5 steps, a few seconds each on lavapipe.
    await withTempDir(async (tmp) => {
      const recipe = await writeRecipe(
        tmp,
        "resumable",
        resumable("webgpu", {
          policy: tinyGpt({
            layers: 1,
            dModel: 32,
            heads: 2,
            warmStart: { sftSteps: 4, batchSize: 16, lr: 0.01 },
          }),
          steps: 5,
          eval: { every: 5 },
          log: { samplesEvery: 1 },
        }),
      );
      const runsDir = `${tmp}/runs`;
      const full = await giftwrap(["run", recipe, "--runs-dir", runsDir]);
      assert.equal(full.code, 0, full.stderr);
      const stopped = await stopAt(["run", recipe, "--runs-dir", runsDir], 2, 0, "SIGINT");
      assert.equal(stopped.code, 130, stopped.stderr);
      const info = await runInfo(stopped.dir);
      assert.equal(info.status, "interrupted");
      assert.ok(
        info.checkpoint!.step >= 2 && info.checkpoint!.step < 5,
        `${info.checkpoint!.step}`,
      );
      const resumed = await giftwrap(["run", recipe, "--resume", stopped.dir]);
      assert.equal(resumed.code, 0, resumed.stderr);
      assertNoStack(resumed.stderr);
      await assertSameRun(stopped.dir, runDirOf(full.stdout));
    });
  },
});

Deno.test("execute() records its provenance in run.json", async () => {
  await withTempDir(async (tmp) => {
    const { recipe, dir } = await shortRun(tmp);
    const info = await runInfo(dir);
    const plan = JSON.parse(await Deno.readTextFile(`${dir}/plan.json`));
    const deno = JSON.parse(
      await Deno.readTextFile(new URL("../../../deno.json", import.meta.url)),
    );
    assert.equal(info.format, "giftwrap.run/1");
    assert.equal(info.name, "tiny");
    assert.equal(info.status, "finished");
    assert.equal(info.planHash, plan.hash);
    assert.equal(info.seed, 7);
    assert.equal(info.recipe.source, recipe);
    assert.equal(info.backend.name, "wasm");
    assert.match(info.backend.description, /^wasm/);
    assert.deepEqual(info.versions, {
      giftwrap: deno.version,
      deno: Deno.version.deno,
      v8: Deno.version.v8,
      typescript: Deno.version.typescript,
      tfjs: "4.22.0",
    });
    assert.equal(info.host, Deno.hostname());
    assert.deepEqual([info.step, info.steps], [2, 2]);
    assert.deepEqual(info.checkpoint, { step: 2, dir: "checkpoints/final" });
    assert.ok(info.result && info.result.accuracyBefore !== null && info.result.seconds > 0);
    assert.equal(info.error, null);
    assert.ok(Date.parse(info.started) <= Date.parse(info.updated));
  });
});

Deno.test("execute() skips a poisoned update, logs and counts it, and stops after 3 in a row", async () => {
  await withTempDir(async (tmp) => {
    const objective = (options: Record<string, unknown>) => ({
      kind: "custom",
      module: new URL("poisoned_objective.ts", FIXTURES).href,
      export: "poisoned",
      reads: { reference: true },
      options,
    });
    // Updates 3 and 4 are step 2's two mini-batches: a NaN gradient, then a NaN loss.
    const skipping = await writeRecipe(
      tmp,
      "skipping",
      resumable("wasm", {
        steps: 4,
        miniBatches: 2,
        objective: objective({ poison: [3], nanLoss: [4] }),
      }),
    );
    const ran = await giftwrap(["run", skipping, "--runs-dir", `${tmp}/runs`]);
    assert.equal(ran.code, 0, ran.stderr);
    assert.ok(
      lines(ran.stdout).includes(
        "step 2: skipped 2 updates with a non-finite loss or gradient (2 in all)",
      ),
      ran.stdout,
    );
    const metrics = await metricsOf(runDirOf(ran.stdout));
    assert.deepEqual(metrics.slice(1).map((m) => m.skippedUpdates), [0, 2, 0, 0]);
    assert.equal(metrics[2]!.gradNorm, null); // NaN, written as null
    assert.equal(metrics[2]!.loss, null);
    assert.ok(Number.isFinite(metrics[3]!.gradNorm as number));

    // From update 5 (step 3) on, every update is poisoned: the third in a row stops the run.
    const stopping = await writeRecipe(
      tmp,
      "stopping",
      resumable("wasm", { steps: 6, miniBatches: 2, objective: objective({ from: 5 }) }),
    );
    const failed = await giftwrap(["run", stopping, "--runs-dir", `${tmp}/runs`]);
    assert.equal(failed.code, 1);
    assert.deepEqual(lines(failed.stderr), [
      "giftwrap: Stopped at step 4: 3 updates in a row had a non-finite gradient (norm NaN), " +
      "so none was applied (optimizer.maxSkippedUpdates)",
    ]);
    const dir = runDirOf(failed.stdout);
    assert.match(
      lines(failed.stdout).at(-1)!,
      /^the last checkpoint is step 2 \(.*\/checkpoints\/step-000002\) · resume with --resume /,
    );
    const info = await runInfo(dir);
    assert.equal(info.status, "failed");
    assert.match(info.error!, /^Stopped at step 4: 3 updates in a row/);
    // The last good checkpoint loads, and its weights are finite.
    const good = await readRunCheckpoint(`${dir}/checkpoints/step-000002`, info.planHash);
    for (const [name, w] of Object.entries(good.weights)) {
      assert.ok(w.data.every(Number.isFinite), name);
    }
  });
});

Deno.test("execute() stops in one line when a reward source returns NaN, its checkpoint intact", async () => {
  await withTempDir(async (tmp) => {
    const recipe = await writeRecipe(
      tmp,
      "nan_reward",
      resumable("wasm", {
        rewards: [{
          source: {
            kind: "fn",
            module: new URL("nan_reward.ts", FIXTURES).href,
            export: "nanAfter48",
            range: [0, 1],
          },
          success: true,
        }],
        eval: { every: 4, metric: { kind: "numericAnswer" } },
      }),
    );
    const ran = await giftwrap(["run", recipe, "--runs-dir", `${tmp}/runs`]);
    assert.equal(ran.code, 1);
    assertNoStack(ran.stderr);
    const error = lines(ran.stderr);
    assert.equal(error.length, 1, ran.stderr);
    assert.match(
      error[0]!,
      /^giftwrap: reward 'fn' failed on 16 of 16 samples: reward .*#nanAfter48: returned NaN, not a finite number$/,
    );
    const dir = runDirOf(ran.stdout);
    const info = await runInfo(dir);
    assert.equal(info.status, "failed");
    assert.equal(info.step, 3); // steps 1–3 scored 48 samples
    assert.deepEqual(info.checkpoint, { step: 2, dir: "checkpoints/step-000002" });
    await readRunCheckpoint(`${dir}/checkpoints/step-000002`, info.planHash);
    assert.deepEqual((await metricsOf(dir)).map((m) => m.step), [0, 1, 2, 3]);
    assert.ok((await Deno.readTextFile(`${dir}/report.html`)).includes("failed"));
  });
});

Deno.test("execute() refuses to resume another plan's run, or a finished one, in one line", async () => {
  await withTempDir(async (tmp) => {
    const { recipe, dir } = await shortRun(tmp);
    const finished = await giftwrap(["run", recipe, "--resume", dir]);
    assert.equal(finished.code, 2);
    assert.deepEqual(lines(finished.stderr), [
      `giftwrap: Cannot resume '${dir}': it finished (step 2)`,
    ]);
    const other = await writeRecipe(
      tmp,
      "other",
      resumable("wasm", { steps: 3, eval: { every: 1 } }),
    );
    const mismatch = await giftwrap(["run", other, "--resume", dir]);
    assert.equal(mismatch.code, 2);
    assert.match(
      lines(mismatch.stderr)[0]!,
      /^giftwrap: Cannot resume '.*': it ran plan [0-9a-f]{16}, this recipe compiles to [0-9a-f]{16}; resume it with the recipe it ran, .*\/recipe\.json$/,
    );
    const nothing = await giftwrap(["run", recipe, "--resume", `${tmp}/nowhere`]);
    assert.equal(nothing.code, 2);
    assert.deepEqual(lines(nothing.stderr), [
      `giftwrap: Cannot resume '${tmp}/nowhere': it has no plan.json`,
    ]);
  });
});

/** Whether this process may mount a tmpfs (root, as in CI): the disk tests need one. */
function canMount(): boolean {
  const dir = Deno.makeTempDirSync({ prefix: "giftwrap_mount_" });
  try {
    const mount = new Deno.Command("mount", {
      args: ["-t", "tmpfs", "-o", "size=64k", "tmpfs", dir],
      stdout: "null",
      stderr: "null",
    }).outputSync();
    if (!mount.success) return false;
    new Deno.Command("umount", { args: [dir] }).outputSync();
    return true;
  } catch {
    return false;
  } finally {
    Deno.removeSync(dir, { recursive: true });
  }
}

const MOUNT = Deno.build.os === "linux" && canMount();
/** The disk tests: where this process may mount a tmpfs (root on Linux, as in CI). */
const needsMount = requires(MOUNT, "cannot mount a tmpfs here (needs root on Linux)");

/** Runs `body` with a tmpfs mounted at `dir` with `options`, unmounted afterwards. */
async function withTmpfs(dir: string, options: string, body: () => Promise<void>): Promise<void> {
  await Deno.mkdir(dir, { recursive: true });
  const mount = await new Deno.Command("mount", {
    args: ["-t", "tmpfs", "-o", options, "tmpfs", dir],
  })
    .output();
  assert.ok(mount.success, new TextDecoder().decode(mount.stderr));
  try {
    await body();
  } finally {
    await new Deno.Command("umount", { args: [dir] }).output();
  }
}

Deno.test({
  ...needsMount(
    "execute() on a full disk stops at the failing write in one line, and resumes exactly",
  ),
  async fn() {
    await withTempDir(async (tmp) => {
      const recipe = await writeRecipe(
        tmp,
        "every_step",
        resumable("wasm", { checkpoint: { every: 1, keep: 100 } }),
      );
      const full = await giftwrap(["run", recipe, "--runs-dir", `${tmp}/runs`]);
      assert.equal(full.code, 0, full.stderr);

      // 1 MiB holds the warm start, the initial policy and a few checkpoints of 170 kB, not 12.
      const disk = `${tmp}/disk`;
      await withTmpfs(disk, "size=1m", async () => {
        const failed = await giftwrap(["run", recipe, "--runs-dir", `${disk}/runs`]);
        assert.equal(failed.code, 1);
        assertNoStack(failed.stderr);
        assert.equal(lines(failed.stderr).length, 1, failed.stderr);
        assert.match(
          failed.stderr,
          /^giftwrap: Cannot write '.*': No space left on device \(os error 28\)\n$/,
        );
        const dir = runDirOf(failed.stdout);
        // Nothing half-written: every checkpoint there loads, and no temporary directory is left.
        const plan = JSON.parse(await Deno.readTextFile(`${dir}/plan.json`));
        const kept = (await Array.fromAsync(Deno.readDir(`${dir}/checkpoints`))).map((e) => e.name);
        assert.ok(kept.every((n) => !n.includes(".tmp-")), `${kept}`);
        const steps = kept.filter((n) => n.startsWith("step-"));
        assert.ok(steps.length >= 1 && steps.length < 12, `${kept}`);
        for (const name of steps) await readRunCheckpoint(`${dir}/checkpoints/${name}`, plan.hash);

        // With room again, it resumes from its last checkpoint and ends as if never stopped.
        const grown = await new Deno.Command("mount", {
          args: ["-o", "remount,size=16m", disk],
        }).output();
        assert.ok(grown.success);
        const resumed = await giftwrap(["run", recipe, "--resume", dir]);
        assert.equal(resumed.code, 0, resumed.stderr);
        await assertSameRun(dir, runDirOf(full.stdout));
      });
    });
  },
});

Deno.test({
  ...needsMount("execute() reports a run directory it cannot write before training, in one line"),
  async fn() {
    await withTempDir(async (tmp) => {
      const recipe = await writeRecipe(
        tmp,
        "short",
        resumable("wasm", { steps: 2, eval: { every: 1 } }),
      );
      const readOnly = `${tmp}/read-only`;
      await withTmpfs(readOnly, "ro,size=64k", async () => {
        for (const runsDir of [readOnly, `${readOnly}/runs`]) {
          const ran = await giftwrap(["run", recipe, "--runs-dir", runsDir]);
          assert.equal(ran.code, 2);
          assert.equal(ran.stdout, "");
          assert.deepEqual(lines(ran.stderr), [
            `giftwrap: Cannot create a run directory in '${runsDir}': Read-only file system (os error 30)`,
          ]);
        }
        assert.deepEqual(await Array.fromAsync(Deno.readDir(readOnly)), []);
      });
    });
  },
});

Deno.test("execute() resumed with no checkpoint yet starts over in the same directory", async () => {
  await withTempDir(async (tmp) => {
    const { recipe, dir } = await shortRun(tmp);
    const finished = await metricsOf(dir);
    // As if killed during step 1: no step checkpoint, run.json still "running", a partial line.
    await Deno.remove(`${dir}/checkpoints`, { recursive: true });
    const info = await runInfo(dir);
    await Deno.writeTextFile(`${dir}/run.json`, JSON.stringify({ ...info, status: "running" }));
    await Deno.writeTextFile(`${dir}/metrics.jsonl`, '{"step":0,"evalAcc', { append: true });
    const resumed = await giftwrap(["run", recipe, "--resume", dir]);
    assert.equal(resumed.code, 0, resumed.stderr);
    assert.match(lines(resumed.stdout)[0]!, / · from the start$/);
    assert.deepEqual(await metricsOf(dir), finished);
    assert.deepEqual((await runInfo(dir)).resumes.map((r) => r.fromStep), [0]);
  });
});

const CRASHER = decodeURIComponent(new URL("crash_after_rename.ts", FIXTURES).pathname);

/**
 * Runs `giftwrap args`, killed with SIGKILL the moment a rename lands on a path ending with
 * `suffix` (a checkpoint in place, `run.json` not yet updated). Returns the run directory.
 */
async function crashAfterRename(args: string[], suffix: string): Promise<string> {
  const { code, stdout, stderr } = await new Deno.Command(Deno.execPath(), {
    args: ["run", ...RUN_PERMISSIONS, "--allow-run", CRASHER, ...args],
    env: { NO_COLOR: "1", CRASH_AFTER_RENAME: suffix },
    stdout: "piped",
    stderr: "piped",
  }).output();
  const text = new TextDecoder();
  assert.equal(code, 137, `not killed at ${suffix}:\n${text.decode(stdout)}${text.decode(stderr)}`);
  return runDirOf(text.decode(stdout));
}

/** Every file under `dir` (but `run.lock`), by relative path: its bytes. */
async function filesOf(dir: string, under = ""): Promise<Map<string, Uint8Array>> {
  const files = new Map<string, Uint8Array>();
  for await (const entry of Deno.readDir(`${dir}/${under}`)) {
    const path = under === "" ? entry.name : `${under}/${entry.name}`;
    if (entry.isDirectory) {
      for (const [p, bytes] of await filesOf(dir, path)) files.set(p, bytes);
    } else if (path !== "run.lock") {
      files.set(path, await Deno.readFile(`${dir}/${path}`));
    }
  }
  return files;
}

Deno.test("execute() killed as checkpoints/final lands, before run.json says so, resumes and finishes", async () => {
  await withTempDir(async (tmp) => {
    const recipe = await writeRecipe(tmp, "resumable", resumable("wasm"));
    const runsDir = `${tmp}/runs`;
    const full = await giftwrap(["run", recipe, "--runs-dir", runsDir]);
    assert.equal(full.code, 0, full.stderr);
    const dir = await crashAfterRename(
      ["run", recipe, "--runs-dir", runsDir],
      "/checkpoints/final",
    );
    assert.equal((await runInfo(dir)).status, "running");
    const final = await filesOf(`${dir}/checkpoints/final`);

    const resumed = await giftwrap(["run", recipe, "--resume", dir]);
    assert.equal(resumed.code, 0, resumed.stderr);
    assertNoStack(resumed.stderr);
    assert.match(lines(resumed.stdout)[0]!, / · from step 12$/);
    assert.ok(
      lines(resumed.stdout).includes(
        "checkpoints/final is complete: every step is done; finishing the run without training",
      ),
      resumed.stdout,
    );
    // The final checkpoint is the one the killed run wrote, untouched, and the run is the
    // uninterrupted one.
    assert.deepEqual(await filesOf(`${dir}/checkpoints/final`), final);
    await assertSameRun(dir, runDirOf(full.stdout));
    const info = await runInfo(dir);
    assert.equal(info.status, "finished");
    assert.deepEqual(info.resumes.map((r) => r.fromStep), [12]);
    assert.deepEqual(info.checkpoint, { step: 12, dir: "checkpoints/final" });
  });
});

Deno.test("execute() resumed past a corrupted newest checkpoint keeps it aside and writes the uninterrupted run", async () => {
  await withTempDir(async (tmp) => {
    const recipe = await writeRecipe(tmp, "resumable", resumable("wasm"));
    const runsDir = `${tmp}/runs`;
    const full = await giftwrap(["run", recipe, "--runs-dir", runsDir]);
    assert.equal(full.code, 0, full.stderr);
    const dir = await crashAfterRename(
      ["run", recipe, "--runs-dir", runsDir],
      "/checkpoints/step-000008",
    );
    // Its weights cut short, as a failing disk might leave them.
    const model = `${dir}/checkpoints/step-000008/model.safetensors`;
    const bytes = await Deno.readFile(model);
    await Deno.writeFile(model, bytes.subarray(0, bytes.length >> 1));
    const corrupted = await filesOf(`${dir}/checkpoints/step-000008`);

    const resumed = await giftwrap(["run", recipe, "--resume", dir]);
    assert.equal(resumed.code, 0, resumed.stderr);
    assertNoStack(resumed.stderr);
    const out = lines(resumed.stdout);
    assert.match(
      out[0]!,
      /^checkpoint step-000008 cannot be used \(checkpoints\/step-000008\/model\.safetensors: .*\); trying the one before$/,
    );
    assert.match(out[1]!, / · from step 6$/);
    assert.equal(out[2], "checkpoint step-000008 is kept as checkpoints/step-000008.unreadable");
    await assertSameRun(dir, runDirOf(full.stdout));
    assert.deepEqual((await runInfo(dir)).resumes.map((r) => r.fromStep), [6]);
    // Nothing it could not read is deleted: the corrupted checkpoint is aside, as it was.
    assert.deepEqual(await filesOf(`${dir}/checkpoints/step-000008.unreadable`), corrupted);
    const kept = (await Array.fromAsync(Deno.readDir(`${dir}/checkpoints`))).map((e) => e.name);
    assert.deepEqual(kept.sort(), [
      "final",
      "initial",
      "step-000008",
      "step-000008.unreadable",
      "step-000010",
    ]);
  });
});

Deno.test("execute() with no checkpoint it can use stops in one line, changes nothing, and --restart starts over", async () => {
  await withTempDir(async (tmp) => {
    const recipe = await writeRecipe(tmp, "short", resumable("wasm", { steps: 6 }));
    const runsDir = `${tmp}/runs`;
    const full = await giftwrap(["run", recipe, "--runs-dir", runsDir]);
    assert.equal(full.code, 0, full.stderr);
    const dir = await crashAfterRename(
      ["run", recipe, "--runs-dir", runsDir],
      "/checkpoints/step-000004",
    );
    // Both step checkpoints' trainer state unreadable; their weights intact.
    for (const name of ["step-000002", "step-000004"]) {
      await Deno.writeTextFile(`${dir}/checkpoints/${name}/trainer_state.json`, '{"format":');
    }
    const before = await filesOf(dir);
    const refused = await giftwrap(["run", recipe, "--resume", dir]);
    assert.equal(refused.code, 2, refused.stderr);
    assert.equal(refused.stdout, "");
    assertNoStack(refused.stderr);
    assert.deepEqual(lines(refused.stderr), [
      `giftwrap: Cannot resume '${dir}': no checkpoint can be used ` +
      `(checkpoints/step-000004/trainer_state.json: Unexpected end of JSON input); nothing was ` +
      `changed; to start the run over in this directory, run it with --restart ${dir} instead ` +
      `of --resume (its files are then moved to ${dir}/previous-<time>/)`,
    ]);
    assert.deepEqual(await filesOf(dir), before);

    const restarted = await giftwrap(["run", recipe, "--restart", dir]);
    assert.equal(restarted.code, 0, restarted.stderr);
    assert.match(lines(restarted.stdout)[0]!, /^restart tiny · .* → .* · from the start$/);
    await assertSameRun(dir, runDirOf(full.stdout));
    const info = await runInfo(dir);
    assert.equal(info.status, "finished");
    assert.deepEqual(info.resumes, []);
    // The earlier files, byte for byte, in previous-<time>/.
    const [previous, ...more] = (await Array.fromAsync(Deno.readDir(dir)))
      .map((e) => e.name).filter((n) => n.startsWith("previous-"));
    assert.match(previous!, /^previous-\d{8}-\d{6}$/);
    assert.deepEqual(more, []);
    const moved = await filesOf(`${dir}/${previous}`);
    const expected = new Map(
      [...before].filter(([p]) => !["recipe.json", "plan.json"].includes(p)),
    );
    assert.deepEqual(moved, expected);
    // --resume and --restart together are a usage error.
    const both = await giftwrap(["run", recipe, "--resume", dir, "--restart", dir]);
    assert.equal(both.code, 2);
  });
});

Deno.test("execute() resumed where run.json is gone but checkpoints/final is complete finishes, never retrains", async () => {
  await withTempDir(async (tmp) => {
    const { recipe, dir } = await shortRun(tmp);
    const metrics = await Deno.readTextFile(`${dir}/metrics.jsonl`);
    const final = await Deno.stat(`${dir}/checkpoints/final/model.safetensors`);
    await Deno.remove(`${dir}/run.json`);
    const resumed = await giftwrap(["run", recipe, "--resume", dir]);
    assert.equal(resumed.code, 0, resumed.stderr);
    assert.ok(
      lines(resumed.stdout).includes(
        "checkpoints/final is complete: every step is done; finishing the run without training",
      ),
      resumed.stdout,
    );
    assert.equal(await Deno.readTextFile(`${dir}/metrics.jsonl`), metrics);
    // The same file, never written again.
    assert.equal((await Deno.stat(`${dir}/checkpoints/final/model.safetensors`)).ino, final.ino);
    const info = await runInfo(dir);
    assert.equal(info.status, "finished");
    assert.deepEqual([info.step, info.checkpoint?.dir], [2, "checkpoints/final"]);
  });
});

Deno.test("execute() refuses a checkpoint whose state does not hold up, naming the file and field", async () => {
  await withTempDir(async (tmp) => {
    const recipe = await writeRecipe(tmp, "short", resumable("wasm", { steps: 6 }));
    const dir = await crashAfterRename(
      ["run", recipe, "--runs-dir", `${tmp}/runs`],
      "/checkpoints/step-000002",
    );
    const file = `${dir}/checkpoints/step-000002/trainer_state.json`;
    const state = JSON.parse(await Deno.readTextFile(file));
    const metricsSize = (await Deno.stat(`${dir}/metrics.jsonl`)).size;
    const cases: [Record<string, unknown>, string][] = [
      [{ step: 999 }, "step is 999, expected an integer from 1 to 6"],
      [{ step: 4 }, "step is 4, expected 2 (its directory's name)"],
      [
        { logs: { ...state.logs, metricsBytes: 1e12 } },
        `logs.metricsBytes is 1000000000000, expected ${state.logs.metricsBytes} (its metrics.jsonl's size)`,
      ],
      [
        { logs: { ...state.logs, metricsBytes: -1 } },
        "logs.metricsBytes is -1, expected a byte count (an integer ≥ 0)",
      ],
      [
        { logs: { ...state.logs, samplesBytes: state.logs.samplesBytes + 1e9 } },
        `logs.samplesBytes is ${
          state.logs.samplesBytes + 1e9
        }, expected at most ${state.logs.samplesBytes} (the run's samples.jsonl's size)`,
      ],
      [
        { cursor: { ...state.cursor, next: 1e9 } },
        `cursor.next is 1000000000, expected an integer from 0 to 60`,
      ],
      [
        { cursor: { ...state.cursor, order: state.cursor.order.map(() => 0) } },
        "cursor.order is an array of 60, expected a permutation of 0…59 (holds 0)",
      ],
    ];
    for (const [change, why] of cases) {
      await Deno.writeTextFile(file, JSON.stringify({ ...state, ...change }));
      const refused = await giftwrap(["run", recipe, "--resume", dir]);
      assert.equal(refused.code, 2, refused.stderr);
      assert.equal(refused.stdout, "");
      assert.equal(lines(refused.stderr).length, 1, refused.stderr);
      assert.ok(
        refused.stderr.startsWith(
          `giftwrap: Cannot resume '${dir}': no checkpoint can be used ` +
            `(checkpoints/step-000002/trainer_state.json: ${why}); nothing was changed;`,
        ),
        refused.stderr,
      );
      assert.equal((await Deno.stat(`${dir}/metrics.jsonl`)).size, metricsSize);
    }
  });
});

Deno.test({
  ...needsMount(
    "execute() whose warm-start cache write meets a full disk fails in one line, run.json failed, no temporary left",
  ),
  async fn() {
    await withTempDir(async (tmp) => {
      const recipe = await writeRecipe(
        tmp,
        "short",
        resumable("wasm", { steps: 2, eval: { every: 1 } }),
      );
      // Room for the run directory's first files, not for the warm start's weights.
      const disk = `${tmp}/disk`;
      await withTmpfs(disk, "size=64k", async () => {
        const failed = await giftwrap(["run", recipe, "--runs-dir", `${disk}/runs`]);
        assert.equal(failed.code, 1);
        assertNoStack(failed.stderr);
        assert.match(
          failed.stderr,
          /^giftwrap: Cannot write '.*\/runs\/\.cache\/warm-start\/[0-9a-f]{16}': No space left on device \(os error 28\)\n$/,
        );
        const dir = runDirOf(failed.stdout);
        const info = await runInfo(dir);
        assert.equal(info.status, "failed");
        assert.match(info.error!, /^Cannot write '.*': No space left on device/);
        const cache = await Array.fromAsync(Deno.readDir(`${disk}/runs/.cache/warm-start`));
        assert.deepEqual(cache.map((e) => e.name), []);
      });
    });
  },
});

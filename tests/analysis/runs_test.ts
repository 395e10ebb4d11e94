/**
 * Listing runs from hand-made run directories in a temporary runs directory: each `run.json` status,
 * a killed run (`stopped`), a directory from before `run.json`, a corrupt one, and what is skipped.
 */

import assert from "node:assert/strict";
import { formatRuns, listRuns, type RunSummary } from "../../analysis/runs.ts";
import { lockRunDir } from "../../runtime/run/run_dir.ts";
import { withTempDir } from "../_helpers.ts";

/** A `run.json` as the trainer writes it, with `fields` over the defaults. */
function runJson(fields: Record<string, unknown>): string {
  return JSON.stringify(
    {
      format: "giftwrap.run/1",
      name: "addition",
      status: "finished",
      started: "2026-11-26T10:00:00.000Z",
      updated: "2026-11-26T10:05:00.000Z",
      pid: Deno.pid,
      host: "vm",
      recipe: { source: "recipes/addition.ts" },
      planHash: "3dfc49152e7c2685",
      seed: 1,
      backend: { name: "cpu", description: "cpu" },
      versions: { giftwrap: "0.1.0", deno: "2.9.0", v8: "14", typescript: "5.9", tfjs: "4.22.0" },
      steps: 150,
      step: 150,
      checkpoint: { step: 150, dir: "checkpoints/step-150" },
      resumes: [],
      result: { accuracyBefore: 0.502, accuracyAfter: 0.9, rewardMean: 0.8125, seconds: 95 },
      error: null,
      ...fields,
    },
    null,
    2,
  ) + "\n";
}

/** Writes `files` (name → text) into `runsDir/dir`. */
async function writeRun(runsDir: string, dir: string, files: Record<string, string>) {
  await Deno.mkdir(`${runsDir}/${dir}`, { recursive: true });
  for (const [name, text] of Object.entries(files)) {
    await Deno.writeTextFile(`${runsDir}/${dir}/${name}`, text);
  }
}

const METRICS = [
  { step: 0, evalAccuracy: 0.4 },
  { step: 1, rewardMean: 0.25, rewardStd: 0.4 },
  { step: 2, rewardMean: 0.375, rewardStd: 0.45, evalAccuracy: 0.55 },
  { step: 3, rewardMean: 0.5, rewardStd: 0.5 },
].map((line) => JSON.stringify(line) + "\n").join("") + '{"step":4,"rewa'; // cut short by a kill

const PLAN = JSON.stringify({
  hash: "0123456789abcdef",
  format: "giftwrap.plan/1",
  name: "old-recipe",
  schedule: { steps: 40, evalEvery: 2 },
});

Deno.test("listRuns() reads each run.json, newest first", async () => {
  await withTempDir(async (runsDir) => {
    await writeRun(runsDir, "addition-20261126-100000", { "run.json": runJson({}) });
    await writeRun(runsDir, "addition-20261126-110000", {
      "run.json": runJson({
        status: "failed",
        started: "2026-11-26T11:00:00.000Z",
        step: 3,
        checkpoint: null,
        result: null,
        error: "Cannot sample as the model returned NaN logits at step 4",
      }),
      "metrics.jsonl": METRICS,
    });
    await writeRun(runsDir, "addition-20261126-090000", {
      "run.json": runJson({
        status: "interrupted",
        started: "2026-11-26T09:00:00.000Z",
        step: 20,
        checkpoint: { step: 20, dir: "checkpoints/step-20" },
        result: { accuracyBefore: 0.5, accuracyAfter: null, rewardMean: 0.3, seconds: 12 },
      }),
    });
    const runs = await listRuns(runsDir);
    assert.deepEqual(runs, [
      {
        dir: `${runsDir}/addition-20261126-110000`,
        name: "addition",
        status: "failed",
        step: 3,
        steps: 150,
        started: "2026-11-26T11:00:00.000Z",
        // No result: how far it got, from metrics.jsonl.
        accuracyBefore: 0.4,
        accuracyAfter: 0.55,
        rewardMean: 0.5,
        planHash: "3dfc49152e7c2685",
        checkpointStep: null,
        error: "Cannot sample as the model returned NaN logits at step 4",
      },
      {
        dir: `${runsDir}/addition-20261126-100000`,
        name: "addition",
        status: "finished",
        step: 150,
        steps: 150,
        started: "2026-11-26T10:00:00.000Z",
        accuracyBefore: 0.502,
        accuracyAfter: 0.9,
        rewardMean: 0.8125,
        planHash: "3dfc49152e7c2685",
        checkpointStep: 150,
        error: null,
      },
      {
        dir: `${runsDir}/addition-20261126-090000`,
        name: "addition",
        status: "interrupted",
        step: 20,
        steps: 150,
        started: "2026-11-26T09:00:00.000Z",
        accuracyBefore: 0.5,
        accuracyAfter: null,
        rewardMean: 0.3,
        planHash: "3dfc49152e7c2685",
        checkpointStep: 20,
        error: null,
      },
    ]);
    // The --json form is the summaries themselves.
    assert.deepEqual(JSON.parse(JSON.stringify(runs)), runs);
  });
});

Deno.test("listRuns() shows a running run whose process no longer holds run.lock as stopped", async () => {
  await withTempDir(async (runsDir) => {
    const running = { status: "running", step: 7, result: null, checkpoint: null };
    await writeRun(runsDir, "live", { "run.json": runJson(running) });
    const lock = await lockRunDir(`${runsDir}/live`);
    assert.ok(lock);
    try {
      // Killed: its lock file stays, unheld; or it died before making one.
      await writeRun(runsDir, "killed", {
        "run.json": runJson({
          ...running,
          started: "2026-11-26T09:00:00.000Z",
          checkpoint: { step: 5, dir: "checkpoints/step-5" },
        }),
        "run.lock": "",
      });
      await writeRun(runsDir, "unlocked", { "run.json": runJson(running) });
      const status = Object.fromEntries(
        (await listRuns(runsDir)).map((r) => [r.dir.slice(runsDir.length + 1), r.status]),
      );
      assert.deepEqual(status, { live: "running", killed: "stopped", unlocked: "stopped" });
      const [killed] = (await listRuns(runsDir)).filter((r) => r.dir.endsWith("killed"));
      assert.equal(killed?.checkpointStep, 5);
      // Only one process may hold it.
      assert.equal(await lockRunDir(`${runsDir}/live`), null);
    } finally {
      lock.close();
    }
  });
});

Deno.test("listRuns() sums up a run directory from before run.json from plan.json and metrics.jsonl", async () => {
  await withTempDir(async (runsDir) => {
    await writeRun(runsDir, "old-recipe-20261125-093000", {
      "plan.json": PLAN,
      "recipe.json": "{}",
      "metrics.jsonl": METRICS,
    });
    assert.deepEqual(await listRuns(runsDir), [{
      dir: `${runsDir}/old-recipe-20261125-093000`,
      name: "old-recipe",
      status: "unknown",
      step: 3,
      steps: 40,
      started: "2026-11-25T09:30:00.000Z", // the UTC stamp in the directory's name
      accuracyBefore: 0.4,
      accuracyAfter: 0.55,
      rewardMean: 0.5,
      planHash: "0123456789abcdef",
      checkpointStep: null,
      error: null,
    }]);
  });
});

Deno.test("listRuns() reports a corrupt run.json as corrupt", async () => {
  await withTempDir(async (runsDir) => {
    await writeRun(runsDir, "old-recipe-20261125-093000", {
      "run.json": '{"format": "giftwrap.run/1", "name": ',
      "plan.json": PLAN,
    });
    await writeRun(runsDir, "future-20261125-100000", {
      "run.json": runJson({ format: "giftwrap.run/2" }),
    });
    await writeRun(runsDir, "odd-20261125-110000", { "run.json": runJson({ status: "paused" }) });
    await writeRun(runsDir, "list-20261125-120000", { "run.json": "[]" });
    const runs = await listRuns(runsDir);
    assert.deepEqual(
      runs.map((r) => [r.name, r.status, r.error?.replace(/: .*JSON.*$/, ": …")]),
      [
        ["list-20261125-120000", "corrupt", "Cannot read run.json as it is not a JSON object"],
        [
          "odd-20261125-110000",
          "corrupt",
          "Cannot read run.json as 'status' must be running | finished | failed | interrupted: " +
          'current value is "paused"',
        ],
        [
          "future-20261125-100000",
          "corrupt",
          "Cannot read run.json as 'format' must be 'giftwrap.run/1': current value is " +
          '"giftwrap.run/2"',
        ],
        // What plan.json says is still shown.
        ["old-recipe", "corrupt", "Cannot read run.json as it is not JSON: …"],
      ],
    );
    assert.equal(runs[3]!.steps, 40);
    assert.equal(runs[3]!.planHash, "0123456789abcdef");
  });
});

Deno.test("listRuns() skips .cache, files and directories that are not runs", async () => {
  await withTempDir(async (runsDir) => {
    await writeRun(runsDir, ".cache/warm-start/abc", { "plan.json": PLAN });
    await writeRun(runsDir, ".hidden-run", { "run.json": runJson({}) });
    await writeRun(runsDir, "scratch", { "notes.txt": "not a run" });
    await Deno.writeTextFile(`${runsDir}/run.json`, runJson({}));
    await writeRun(runsDir, "addition-20261126-100000", { "run.json": runJson({}) });
    const runs = await listRuns(runsDir);
    assert.deepEqual(runs.map((r) => r.dir), [`${runsDir}/addition-20261126-100000`]);
    assert.deepEqual(await listRuns(`${runsDir}/missing`), []);
  });
});

Deno.test("listRuns() orders by start time, runs without one last", async () => {
  await withTempDir(async (runsDir) => {
    const at = (started: string) => ({ "run.json": runJson({ started }) });
    await writeRun(runsDir, "b", at("2026-11-26T12:00:00.000Z"));
    await writeRun(runsDir, "a", at("2026-11-26T14:00:00.000Z"));
    await writeRun(runsDir, "old-recipe-20261126-130000", { "plan.json": PLAN });
    await writeRun(runsDir, "renamed", { "plan.json": PLAN }); // no stamp: no start time
    await writeRun(runsDir, "c", at("2026-11-26T12:00:00.000Z"));
    assert.deepEqual((await listRuns(runsDir)).map((r) => r.dir.slice(runsDir.length + 1)), [
      "a",
      "old-recipe-20261126-130000",
      "c", // started with b: the later directory name first
      "b",
      "renamed",
    ]);
  });
});

Deno.test("formatRuns() lays the runs out as a table", () => {
  // Start times made from local time, so the table reads the same in any time zone.
  const local = (h: number, m: number) => new Date(2026, 10, 26, h, m).toISOString();
  const base: RunSummary = {
    dir: "runs/addition-gift-20261126-162023",
    name: "addition-gift",
    status: "finished",
    step: 150,
    steps: 150,
    started: local(16, 20),
    accuracyBefore: 0.502,
    accuracyAfter: 0.9,
    rewardMean: 0.8125,
    planHash: "3dfc49152e7c2685",
    checkpointStep: 150,
    error: null,
  };
  const runs: RunSummary[] = [
    base,
    {
      ...base,
      dir: "runs/countdown-dapo-20261126-171500",
      name: "countdown-dapo",
      status: "stopped",
      step: 42,
      steps: 1000,
      started: local(17, 15),
      accuracyAfter: null,
      rewardMean: -0.25,
      checkpointStep: 25, // killed 17 steps after its last checkpoint: a resume starts at 25
    },
    {
      ...base,
      dir: "runs/sorting-20261126-180000",
      name: "sorting",
      status: "failed",
      step: 7,
      steps: 40,
      started: local(18, 0),
      accuracyBefore: 0.1,
      accuracyAfter: null,
      rewardMean: 0.125,
      checkpointStep: null, // failed before its first checkpoint: a resume starts over
    },
    {
      ...base,
      dir: "runs/addition-gift-20261126-190000",
      status: "interrupted",
      step: 20,
      started: local(19, 0),
      accuracyAfter: null,
      checkpointStep: 20, // Ctrl-C writes a checkpoint of the step it finished
    },
    {
      ...base,
      dir: "runs/expA-20261126-162310",
      name: "expA",
      status: "unknown",
      step: 0,
      steps: 0,
      started: null,
      accuracyBefore: null,
      accuracyAfter: null,
      rewardMean: null,
      checkpointStep: null,
    },
  ];
  assert.equal(
    formatRuns(runs),
    [
      "dir                             recipe          status                         steps  accuracy       reward  started",
      "addition-gift-20261126-162023   addition-gift   finished                     150/150  50.2% → 90.0%   0.813  2026-11-26 16:20",
      "countdown-dapo-20261126-171500  countdown-dapo  stopped      42/1000 (checkpoint 25)  50.2% → -      -0.250  2026-11-26 17:15",
      "sorting-20261126-180000         sorting         failed          7/40 (no checkpoint)  10.0% → -       0.125  2026-11-26 18:00",
      "addition-gift-20261126-190000   addition-gift   interrupted                   20/150  50.2% → -       0.813  2026-11-26 19:00",
      "expA-20261126-162310            expA            unknown                          0/0  -                   -  -",
    ].join("\n"),
  );
  assert.equal(
    formatRuns([]),
    "dir  recipe  status  steps  accuracy  reward  started",
  );
});
